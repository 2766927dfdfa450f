"""Exercises of chapter 2, the sigmoid's 0.25 bound."""

from __future__ import annotations

from vgcourse.exercises.core import Exercise, Mistake, register

# Keys of the answers and of the typical mistakes (made by tests/exercise_solutions.py).
_KEYS: dict[str, tuple[str, ...]] = {
    "max_derivative": (
        "59a7cf64e03f979ef9a1f3ae",
        "93a1d03e012c9af237e4e2b5",
        "957685798b1c42e87e59e143",
        "a1bdd1fcd6e57a43363f7bf9",
    ),
    "ten_layer_bound": (
        "26280929b45e51d84f4e466b",
        "3cb0a89942e1f52309b49a96",
        "545e4bb1c5bf6f8140952418",
        "b4568355593fc9e568a5dc14",
        "b7e129760dc3e0c17992de66",
        "dd79b9ee47a75c3c70bf4a88",
    ),
}
_MISTAKES: dict[str, tuple[tuple[str, ...], ...]] = {
    "max_derivative": (
        ("9fecfc3cbe87283584ffd04e",),
        ("1cb95b4069d6572001657e43",),
        ("0810e0a32fc6ad69598f0bc8", "9ebdaa67a92f5ff49847babf"),
    ),
    "ten_layer_bound": (
        ("1d4ad3c17c8a122fd5ef5e7f", "94fe6f0bd596ca7d02c4460d"),
        ("a44b3b877a0965b618fd6732",),
        ("8efe6181f79758c57705c663", "c187de897596dde7e1afaf97"),
    ),
}

register(
    Exercise(
        id="sigmoid_bound.max_derivative",
        title="The largest slope of the sigmoid",
        prompt="What is the largest value the derivative of the logistic sigmoid σ(x) = 1/(1+e^-x) takes?",
        kind="number",
        digits=3,
        keys=_KEYS["max_derivative"],
        hint="write σ'(x) in terms of σ(x) itself and maximise a product p(1-p) over p in (0, 1).",
        mistakes=(
            Mistake(
                "that is σ(0), the value of the function, not of its derivative.",
                _MISTAKES["max_derivative"][0],
            ),
            Mistake("that is tanh's largest slope.", _MISTAKES["max_derivative"][1]),
            Mistake(
                "that is the slope at x = 1; where is the sigmoid steepest?", _MISTAKES["max_derivative"][2]
            ),
        ),
    )
)

register(
    Exercise(
        id="sigmoid_bound.ten_layer_bound",
        title="Ten sigmoid layers",
        prompt=(
            "Ignore the weights. By at most what factor can the activation derivatives of a 10-layer "
            "sigmoid network scale the gradient on its way from the output to the input?"
        ),
        kind="number",
        digits=3,
        keys=_KEYS["ten_layer_bound"],
        hint="each layer contributes one diagonal factor diag(σ'(a_l)); bound each factor, then combine.",
        mistakes=(
            Mistake(
                "count the layers again: one diagonal factor per layer.", _MISTAKES["ten_layer_bound"][0]
            ),
            Mistake(
                "the chain rule multiplies the factors; it does not add.", _MISTAKES["ten_layer_bound"][1]
            ),
            Mistake(
                "that uses σ(0), the function's value, not its largest derivative.",
                _MISTAKES["ten_layer_bound"][2],
            ),
        ),
    )
)
