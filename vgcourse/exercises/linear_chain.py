"""Exercises of chapter 1, the linear chain."""

from __future__ import annotations

import math

import torch

from vgcourse.exercises.core import Exercise, Mistake, register


def vanishing_depth(factor: float = 0.9, threshold: float = 1e-3) -> int:
    """Smallest depth L with factor^L < threshold: L = floor(ln(threshold) / ln(factor)) + 1."""
    return math.floor(math.log(threshold) / math.log(factor)) + 1


def underflow_depth(factor: float = 0.5, dtype: torch.dtype = torch.float32, max_depth: int = 5000) -> int:
    """Smallest L at which 1.0 multiplied L times by ``factor`` is exactly 0 in ``dtype`` (measured)."""
    value = torch.ones((), dtype=dtype)
    for depth in range(1, max_depth + 1):
        value = value * factor
        if value.item() == 0.0:
            return depth
    raise ValueError(f"no underflow within {max_depth} layers for factor {factor}")


register(
    Exercise(
        id="linear_chain.vanishing_depth",
        title="When is the gradient a thousand times smaller?",
        prompt=(
            "Every layer of a deep linear chain multiplies the back-propagated gradient by 0.9. After "
            "passing back through how many layers L is it, for the first time, below 1/1000 of the output "
            "gradient?"
        ),
        kind="number",
        solution=vanishing_depth,
        hint="solve 0.9^L < 10^-3 for the smallest whole L, with logarithms of one base on both sides.",
        mistakes=(
            Mistake(
                lambda: vanishing_depth() - 1,
                "one short: at that depth the factor is still just above 1/1000. The first depth *below* it.",
            ),
            Mistake(
                lambda: math.ceil(math.log(1e-3) / -0.1),
                "ln(0.9) is not exactly -0.1; that approximation is too coarse at this depth.",
            ),
            Mistake(
                lambda: math.ceil(math.log10(1e-3) / math.log(0.9)),
                "use the same logarithm on both sides: log10 above and ln below do not divide.",
            ),
        ),
        control={"min": 1, "max": 200, "step": 1},
    )
)

register(
    Exercise(
        id="linear_chain.float32_underflow",
        title="Where float32 gives up",
        prompt=(
            "A gradient of 1.0 is halved by every layer it passes back through, computed in float32. "
            "After how many layers is it exactly 0?"
        ),
        kind="number",
        solution=underflow_depth,
        hint="think about the smallest positive float32 number, subnormals included: torch.finfo and 2^-k.",
        mistakes=(
            Mistake(
                lambda: 126,
                "2^-126 is the smallest *normal* float32; subnormal numbers go further down.",
            ),
            Mistake(
                lambda: underflow_depth() - 1,
                "at that depth the value is the smallest subnormal, still positive: one more halving.",
            ),
            Mistake(
                lambda: underflow_depth() + 1,
                "one too many: the chapter's table counts the first layer's *weight* gradient, which has one "
                "factor fewer than the gradient passed back through every layer.",
            ),
            Mistake(
                lambda: underflow_depth(dtype=torch.float64),
                "that is where float64 underflows; float32 has far fewer exponent bits.",
            ),
        ),
        control={"min": 1, "max": 1100, "step": 1},
    )
)
