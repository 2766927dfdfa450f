"""Exercises of chapter 5, residual networks."""

from __future__ import annotations

from vgcourse._validation import check_float, check_int
from vgcourse.exercises.core import Exercise, Mistake, register
from vgcourse.experiments.residual_networks import (
    RESIDUAL,
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


# Keys of the answers and of the typical mistakes (made by tests/exercise_solutions.py).
_KEYS: dict[str, tuple[str, ...]] = {"variance_after_blocks": ("c1b8a898d009e3e940d49b7c",)}
_MISTAKES: dict[str, tuple[tuple[str, ...], ...]] = {
    "variance_after_blocks": (
        ("d7a27f0ecde7b52a5ac9da19",),
        ("a29df7682990715652af5fb8",),
        ("c7a29263b977a38e4b1176e1",),
        ("fa0e97c029c2dca88d0d877c",),
        ("32d92cabd7fbde43662bf500",),
        ("ff215156c180afb968f667bf",),
    )
}


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
        digits=None,
        keys=_KEYS["variance_after_blocks"],
        hint=(
            "write E[x_{l+1}²] in terms of E[x_l²] for one block (uncorrelated terms: their second moments "
            "add), then apply it block after block."
        ),
        mistakes=(
            Mistake(
                "that is additive growth: each branch adds the second moment of its own input, and that "
                "input has already grown in the blocks before.",
                _MISTAKES["variance_after_blocks"][0],
            ),
            Mistake(
                "the skip connection does not hold the signal fixed: x_l and F(x_l) are uncorrelated, so "
                "their second moments add at every block.",
                _MISTAKES["variance_after_blocks"][1],
            ),
            Mistake(
                "the growth compounds: each block multiplies the second moment by a factor, it does not "
                "add 2.",
                _MISTAKES["variance_after_blocks"][2],
            ),
            Mistake(
                "count the factors again: one per block, and the input counts as block 0.",
                _MISTAKES["variance_after_blocks"][3],
            ),
            Mistake(
                "that is a branch that doubles the second moment (gain 2 on both of its layers); here the "
                "branch alone preserves it.",
                _MISTAKES["variance_after_blocks"][4],
            ),
            Mistake(
                "that is the growth of the standard deviation, √E[x²]; the question asks for E[x²].",
                _MISTAKES["variance_after_blocks"][5],
            ),
        ),
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
        measure=forward_growth,
        accept=TAMED,
        hint="each block multiplies E[x²] by 1 + α²; choose α so that 50 such factors stay between 2 and 3.",
        mistakes=(
            Mistake(
                "the stream still explodes: a factor 1 + α² per block compounds over 50 blocks. α has to "
                "shrink as the stack gets deeper.",
                applies=lambda m: m > 30.0,
            ),
            Mistake(
                "close, but still too much growth: make α a little smaller.",
                applies=lambda m: TAMED[1] < m <= 30.0,
            ),
            Mistake(
                "now the branches barely contribute: α² is tiny next to the identity's 1 (α = 1/L scales too "
                "hard). Make α larger.",
                applies=lambda m: m < TAMED[0],
            ),
        ),
        control={"min": 0.01, "max": 1.0, "step": 0.01, "log": True, "label": "α"},
    )
)
