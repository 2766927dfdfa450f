"""Exercises of the residual-networks chapter."""

from __future__ import annotations

import functools

from vgcourse._validation import check_float
from vgcourse.exercises.core import Exercise, Mistake, register
from vgcourse.experiments.residual_networks import ForwardVarianceConfig, NetworkSpec, run_forward_variance

__all__ = ["MAX_ALPHA", "SCALE_DEPTH", "TAMED", "VARIANCE_DEPTH", "forward_growth"]

VARIANCE_DEPTH = 12
SCALE_DEPTH = 50
TAMED = (1.5, 2.0)
"""Accepted E[x_50²]/E[x_0²] after SCALE_DEPTH blocks: less than the chapter's α = 1/√L gives (→ e)."""
MAX_ALPHA = 100.0
"""The largest α measured: growth (1 + α²)^50 ≈ 1e200 there; the float64 stream overflows from α ≈ 1e4."""


def forward_growth(alpha: float) -> float:
    """E[x_50²]/E[x_0²] of a 50-block He-initialized residual stack with branch scale α, measured on digits
    (width 128, 128 examples, geometric mean over 3 networks)."""
    alpha = check_float("alpha", alpha, minimum=0.0, strict_minimum=True)
    if alpha > MAX_ALPHA:  # the measurement would be inf or NaN, then (1 + α²) overflows a Python float
        raise ValueError(
            f"alpha must lie in (0, {MAX_ALPHA:g}], the range this check can measure (the stream grows by "
            f"(1 + α²)^{SCALE_DEPTH}, about 1e200 at α = {MAX_ALPHA:g}); got {alpha:g}"
        )
    return _forward_growth(alpha)


@functools.lru_cache(maxsize=64)
def _forward_growth(alpha: float) -> float:
    """`forward_growth` of a checked α (seeded networks: one value per α, so a repeated check is free)."""
    config = ForwardVarianceConfig(
        depth=SCALE_DEPTH, networks=(NetworkSpec(branch_scale=alpha),), width=128, batch_size=128, n_seeds=3
    )
    return float(run_forward_variance(config).ratio.mean("seed", geometric=True).values[0, -1])


# Keys of the answers and of the typical mistakes (made by tests/exercise_solutions.py).
_KEYS: dict[str, tuple[str, ...]] = {"variance_after_blocks": ("8087dc5d534a8018a98cf836",)}
_MISTAKES: dict[str, tuple[tuple[str, ...], ...]] = {
    "variance_after_blocks": (
        ("022f115865766b19db698b04",),
        ("a29df7682990715652af5fb8",),
        ("6a2923622f8f991fa5702be6",),
        ("dea4f6cffa5a0fb8aeefc6e4",),
        ("689948bc33b4f456f28be50d",),
        ("aec7d6beb7a233314afaf131",),
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
            f"What is E[x²] after {VARIANCE_DEPTH} blocks?"
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
            f"A residual stack of {SCALE_DEPTH} unnormalized, He-initialized blocks computes "
            "x_{l+1} = x_l + α·F(x_l). Choose the branch scale α so that the forward signal grows by a "
            f"factor between {TAMED[0]:g} and {TAMED[1]:g} over the {SCALE_DEPTH} blocks, "
            f"E[x_{SCALE_DEPTH}²]/E[x_0²] in [{TAMED[0]:g}, {TAMED[1]:g}]: less growth than the chapter's "
            "α = 1/√L gives, with branches that still contribute. Compute α from the growth per block, "
            "then check it (the slider lets you try values). The checker builds the stack and measures the "
            "growth, which runs a few percent below the prediction at finite width: aim inside the window."
        ),
        kind="setting",
        measure=forward_growth,
        accept=TAMED,
        hint=(
            f"each block multiplies E[x²] by 1 + α²; choose α so that {SCALE_DEPTH} such factors multiply "
            f"to a number between {TAMED[0]:g} and {TAMED[1]:g}."
        ),
        mistakes=(
            Mistake(
                f"the stream still explodes: a factor 1 + α² per block compounds over {SCALE_DEPTH} blocks. "
                "α has to shrink as the stack gets deeper.",
                applies=lambda m: m > 30.0,
            ),
            Mistake(
                "that is about the growth of the chapter's α = 1/√L, where (1 + 1/L)^L approaches e; this "
                "stack should grow less. Solve (1 + α²)^L = target for α.",
                applies=lambda m: TAMED[1] < m <= 3.2,
            ),
            Mistake(
                "still too much growth: make α smaller.",
                applies=lambda m: 3.2 < m <= 30.0,
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
