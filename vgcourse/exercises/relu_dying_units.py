"""Exercises of chapter 3, ReLU and dying units."""

from __future__ import annotations

import torch

from vgcourse.exercises.core import Exercise, Mistake, register


def zero_gradient_fraction(bias: float = -2.0, std: float = 1.0) -> float:
    """P(a <= 0) for a ~ N(bias, std²): the share of inputs on which a ReLU unit passes no gradient."""
    return float(torch.distributions.Normal(bias, std).cdf(torch.zeros(())))


register(
    Exercise(
        id="relu_dying_units.zero_gradient_fraction",
        title="How often does a unit pass no gradient?",
        prompt=(
            "Over the training inputs, a ReLU unit's pre-activation a = w·x + b is distributed as N(-2, 1) "
            "(mean -2, standard deviation 1). On what fraction of the inputs is its gradient exactly zero?"
        ),
        kind="number",
        solution=zero_gradient_fraction,
        hint="ReLU'(a) = 0 exactly when a <= 0; express P(a <= 0) with the standard normal CDF Φ.",
        mistakes=(
            Mistake(
                lambda: 1.0 - zero_gradient_fraction(), "check the sign: that is the fraction with a > 0."
            ),
            Mistake(lambda: 0.5, "that ignores the bias; with mean -2 the unit is off far more often."),
            Mistake(
                lambda: 2 * zero_gradient_fraction() - 1,
                "that is a two-sided interval P(|a + 2| < 2); the question is one-sided: a <= 0.",
            ),
        ),
        rel_tol=2e-3,
        control={"min": 0.0, "max": 1.0, "step": 0.001},
    )
)
