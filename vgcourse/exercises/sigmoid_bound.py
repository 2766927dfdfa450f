"""Exercises of chapter 2, the sigmoid's 0.25 bound."""

from __future__ import annotations

import torch

from vgcourse.activations import derivative
from vgcourse.exercises.core import Exercise, Mistake, register


def sigmoid_derivative_max() -> float:
    """max_x σ'(x) = σ'(0) = 1/4, evaluated with the package's closed-form derivative."""
    return float(derivative("sigmoid", torch.zeros(())))


def derivative_bound(depth: int = 10) -> float:
    """(max σ')^L: the most that L sigmoid derivatives together can pass on."""
    return sigmoid_derivative_max() ** depth


register(
    Exercise(
        id="sigmoid_bound.max_derivative",
        title="The largest slope of the sigmoid",
        prompt="What is the largest value the derivative of the logistic sigmoid σ(x) = 1/(1+e^-x) takes?",
        kind="number",
        solution=sigmoid_derivative_max,
        hint="write σ'(x) in terms of σ(x) itself and maximise a product p(1-p) over p in (0, 1).",
        mistakes=(
            Mistake(lambda: 0.5, "0.5 is σ(0), the value of the function, not of its derivative."),
            Mistake(lambda: float(derivative("tanh", torch.zeros(()))), "that is tanh's largest slope."),
            Mistake(
                lambda: float(derivative("sigmoid", torch.ones(()))),
                "that is the slope at x = 1; where is the sigmoid steepest?",
            ),
        ),
        control={"min": 0.0, "max": 1.0, "step": 0.005},
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
        solution=derivative_bound,
        hint="each layer contributes one diagonal factor diag(σ'(a_l)); bound each factor, then combine.",
        mistakes=(
            Mistake(lambda: derivative_bound(9), "count the layers again: ten diagonal factors, not nine."),
            Mistake(
                lambda: 10 * sigmoid_derivative_max(),
                "the chain rule multiplies the factors; it does not add.",
            ),
            Mistake(lambda: 0.5**10, "0.5 is σ(0), not the largest derivative."),
        ),
        rel_tol=1e-3,
        control={"min": 0.0, "max": 1.0, "step": 1e-7},
    )
)
