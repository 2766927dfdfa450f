"""Exercises of the chapter on the sigmoid's 0.25 bound."""

from __future__ import annotations

from vgcourse.exercises.core import Exercise, Mistake, register

# Keys of the answers and of the typical mistakes (made by tests/exercise_solutions.py).
_KEYS: dict[str, tuple[str, ...]] = {
    "max_derivative": (
        "11f81a1297b970a7d490ec1f",
        "4ffe6084c0ebf63972fb4507",
        "66b4582836aaca26f72556cc",
        "8477135733b546d6bf2bb7ff",
        "957685798b1c42e87e59e143",
        "c05a04a69caf43a286496f49",
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
        ("a1bdd1fcd6e57a43363f7bf9",),
        ("29035c1eff64762f6d891cd4", "f6848d8e6fe713564d0b751c"),
        ("6276736dd25a3cb7661da81b", "a01435e0458ed8ee0c29b5a9"),
        ("6324c574ef16d9319367ea7a", "bd1a3efb579fde495fadafdd"),
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
        title="The steepest slope away from zero",
        prompt=(
            "A sigmoid unit's pre-activation x stays out of the middle: |x| ≥ 2 on every input. What is "
            "the largest value the derivative of the logistic sigmoid σ(x) = 1/(1+e^-x) takes on |x| ≥ 2?"
        ),
        kind="number",
        digits=3,
        keys=_KEYS["max_derivative"],
        hint=(
            "write σ'(x) in terms of σ(x) itself; where on |x| ≥ 2 is p(1-p) largest, with p = σ(x)? "
            "σ' is symmetric and falls as |x| grows."
        ),
        mistakes=(
            Mistake(
                "that is the peak at x = 0, which lies outside |x| ≥ 2: on that range σ' is largest "
                "where |x| is smallest.",
                _MISTAKES["max_derivative"][0],
            ),
            Mistake(
                "that is σ(2), the value of the function, not of its derivative.",
                _MISTAKES["max_derivative"][1],
            ),
            Mistake(
                "that is the bound e^-|x|, which σ' stays below; the question asks for σ' itself.",
                _MISTAKES["max_derivative"][2],
            ),
            Mistake(
                "that is tanh's slope; the question is about the logistic sigmoid.",
                _MISTAKES["max_derivative"][3],
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
