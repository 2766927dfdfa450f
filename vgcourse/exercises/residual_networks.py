"""Exercises of chapter 5, residual networks."""

from __future__ import annotations

import math

from vgcourse._validation import check_float, check_int
from vgcourse.exercises.core import Exercise, Mistake, register
from vgcourse.experiments.residual_networks import (
    RESIDUAL,
    RESIDUAL_KAIMING,
    ForwardVarianceConfig,
    NetworkSpec,
    run_forward_variance,
)

__all__ = ["SCALE_DEPTH", "TAMED", "VARIANCE_DEPTH", "forward_growth", "predicted_second_moment"]

VARIANCE_DEPTH = 10
SCALE_DEPTH = 50
TAMED = (2.0, 3.0)  # accepted E[x_L²]/E[x_0²] after SCALE_DEPTH blocks


def predicted_second_moment(depth: int = VARIANCE_DEPTH, spec: NetworkSpec = RESIDUAL) -> float:
    """E[x_L²] for E[x_0²] = 1 after ``depth`` unnormalized blocks: (1 + α² g)^L (2^L for He-initialized
    branches at α = 1).

    Args:
        depth: number of blocks L.
        spec: the network (unnormalized).
    """
    check_int("depth", depth, minimum=1)
    growth = spec.growth_per_block(depth)
    if growth is None:
        raise ValueError(f"{spec.label!r} has a norm: its growth is not a constant factor per block")
    return growth**depth


def forward_growth(alpha: float) -> float:
    """E[x_50²]/E[x_0²] of a 50-block He-initialized residual stack with branch scale α, measured on digits
    (width 128, 128 examples, geometric mean over 3 networks).

    Args:
        alpha: the branch scale α > 0.
    """
    alpha = check_float("alpha", alpha, minimum=0.0, strict_minimum=True)
    config = ForwardVarianceConfig(
        depth=SCALE_DEPTH, networks=(NetworkSpec(branch_scale=alpha),), width=128, batch_size=128, n_seeds=3
    )
    return run_forward_variance(config).final_ratio(config.networks[0])


register(
    Exercise(
        id="residual_networks.variance_after_blocks",
        title="Predict the forward growth",
        prompt=(
            "An unnormalized residual stack computes x_{l+1} = x_l + F(x_l). Each branch F is He-initialized "
            "so that, on its own, it preserves the second moment, E[F(x)²] = E[x²], and its output is "
            "uncorrelated with its input. The stream enters the first block with E[x_0²] = 1. "
            "What is E[x²] after 10 blocks?"
        ),
        kind="number",
        solution=predicted_second_moment,
        hint=(
            "write E[x_{l+1}²] in terms of E[x_l²] for one block (uncorrelated terms: their second moments "
            "add), then apply it block after block."
        ),
        mistakes=(
            Mistake(
                lambda: 1 + VARIANCE_DEPTH,
                "that is additive growth: each branch adds the second moment of its own input, and that "
                "input has already grown in the blocks before.",
            ),
            Mistake(
                lambda: 1.0,
                "the skip connection does not hold the signal fixed: x_l and F(x_l) are uncorrelated, so "
                "their second moments add at every block.",
            ),
            Mistake(
                lambda: 2 * VARIANCE_DEPTH,
                "the growth compounds: each block multiplies the second moment by a factor, it does not "
                "add 2.",
            ),
            Mistake(
                lambda: predicted_second_moment(VARIANCE_DEPTH + 1),
                "count the factors again: one per block, and the input counts as block 0.",
            ),
            Mistake(
                lambda: predicted_second_moment(VARIANCE_DEPTH, RESIDUAL_KAIMING),
                "that is a branch that doubles the second moment (gain 2 on both of its layers); here the "
                "branch alone preserves it.",
            ),
            Mistake(
                lambda: math.sqrt(predicted_second_moment()),
                "that is the growth of the standard deviation, √E[x²]; the question asks for E[x²].",
            ),
        ),
        control={"min": 0.0, "max": 1e6, "step": 1.0},
    )
)

register(
    Exercise(
        id="residual_networks.branch_scale",
        title="Tame the stream with the branch scale",
        prompt=(
            "A residual stack of 50 unnormalized, He-initialized blocks computes x_{l+1} = x_l + α·F(x_l). "
            "Set the branch scale α (the slider) so that the forward signal grows by a factor between 2 "
            "and 3 over the 50 blocks, E[x_50²]/E[x_0²] in [2, 3]: tamed, yet with branches that still "
            "contribute. "
            "The checker builds the stack and measures the growth."
        ),
        kind="setting",
        solution=lambda: 1.0 / math.sqrt(SCALE_DEPTH),
        measure=forward_growth,
        accept=lambda measured, _reference: TAMED[0] <= measured <= TAMED[1],
        hint="each block multiplies E[x²] by 1 + α²; choose α so that 50 such factors stay between 2 and 3.",
        mistakes=(
            Mistake(
                lambda: 1.0,
                "the stream still explodes: a factor 1 + α² per block compounds over 50 blocks. α has to "
                "shrink as the stack gets deeper.",
                applies=lambda m: m > 30.0,
            ),
            Mistake(
                lambda: 0.25,
                "close, but still too much growth: make α a little smaller.",
                applies=lambda m: TAMED[1] < m <= 30.0,
            ),
            Mistake(
                lambda: 1.0 / SCALE_DEPTH,
                "now the branches barely contribute: α² is tiny next to the identity's 1 (α = 1/L scales too "
                "hard). Make α larger.",
                applies=lambda m: m < TAMED[0],
            ),
        ),
        control={"min": 0.01, "max": 1.0, "step": 0.01, "log": True, "label": "α"},
    )
)
