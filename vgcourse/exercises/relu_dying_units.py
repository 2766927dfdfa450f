"""Exercises of the chapter on ReLU and dying units."""

from __future__ import annotations

from vgcourse.exercises.core import Exercise, Mistake, register

# Keys of the answer and of the typical mistakes (made by tests/exercise_solutions.py).
_KEYS: dict[str, tuple[str, ...]] = {
    "zero_gradient_fraction": (
        "31aab46d171ca7576d4c0eb8",
        "4c84b432374f0f134467ec1a",
        "5981d12eef92aabec1be2288",
        "827b7be76ea088c9befb2cd6",
        "82ce10200b92327b92cd77b4",
        "8ae170025914094c01a88940",
    )
}
_MISTAKES: dict[str, tuple[tuple[str, ...], ...]] = {
    "zero_gradient_fraction": (
        ("203d06912cd1a8a76944fffc", "e2351d80adfdad2309791ce4"),
        ("91dcbec1d57032af22b995df",),
        ("dcc297f16534769d68a8b0d2", "dd3aebb6afc640241add7e40"),
    )
}

register(
    Exercise(
        id="relu_dying_units.zero_gradient_fraction",
        title="How often does a unit pass no gradient?",
        prompt=(
            "Over the training inputs, a ReLU unit's pre-activation a = w·x + b is distributed as N(-2, 1) "
            "(mean -2, standard deviation 1). On what fraction of the inputs is its gradient exactly zero?"
        ),
        kind="number",
        digits=3,
        keys=_KEYS["zero_gradient_fraction"],
        hint="ReLU'(a) = 0 exactly when a <= 0; express P(a <= 0) with the standard normal CDF Φ.",
        mistakes=(
            Mistake(
                "check the sign: that is the fraction with a > 0.", _MISTAKES["zero_gradient_fraction"][0]
            ),
            Mistake(
                "that ignores the bias; with mean -2 the unit is off far more often.",
                _MISTAKES["zero_gradient_fraction"][1],
            ),
            Mistake(
                "that is a two-sided interval P(|a + 2| < 2); the question is one-sided: a <= 0.",
                _MISTAKES["zero_gradient_fraction"][2],
            ),
        ),
    )
)
