"""Exercises of the recurrent-networks chapter: LSTMs and GRUs."""

from __future__ import annotations

import math
import sys

from vgcourse._validation import check_float
from vgcourse.exercises.core import Exercise, Mistake, register
from vgcourse.experiments.recurrent_networks import LagProfileConfig, run_lag_profile

EDGE_LAG, EDGE_SEEDS = 50, (0, 1, 2)
EDGE_WINDOW = (0.1, 10.0)
"""The accepted range of the gradient ratio over ``EDGE_LAG`` steps: neither vanishing nor exploding."""


def edge_ratio(radius: float) -> float:
    """‖∂L/∂x_{T-50}‖ / ‖∂L/∂x_T‖ of a vanilla RNN with ρ(W_hh) = radius, T = 51, at initialization.

    The geometric mean over three networks (seeds 0, 1, 2) of the chapter's ``run_lag_profile`` (a ratio
    that underflowed to 0 counts as the smallest positive float).
    """
    radius = check_float("radius", radius, 0.0, strict_minimum=True)
    logs = []
    for seed in EDGE_SEEDS:
        config = LagProfileConfig(archs=("rnn",), seq_len=EDGE_LAG + 1, spectral_radius=radius, seed=seed)
        ratio = run_lag_profile(config).relative.sel(arch="rnn", lag=EDGE_LAG)
        logs.append(math.log(max(ratio, sys.float_info.min)))  # a ratio that underflowed to 0: tiny
    return math.exp(sum(logs) / len(logs))


# Keys of the answers and of the typical mistakes (made by tests/exercise_solutions.py).
_KEYS: dict[str, tuple[str, ...]] = {"forget_gate_steps": ("23383cb591ace63f1b66f301",)}
_MISTAKES: dict[str, tuple[tuple[str, ...], ...]] = {
    "forget_gate_steps": (
        ("cf0d0928cea4875dd403559e",),
        ("31f8bbc35bb1051db39931b3",),
        ("214d89aa86a0770541343ac0",),
        ("4fb461fedca3641abbdc83ff",),
    )
}


register(
    Exercise(
        id="recurrent_networks.forget_gate_steps",
        title="How long does the cell remember?",
        prompt=(
            "An LSTM's forget-gate bias is initialized to b_f = 1, and every forget gate sits at σ(b_f) "
            "(the other inputs of the gate are zero). Along the cell path the gradient is multiplied by "
            "the forget gate at every step. After how many steps k is the product of the forget gates, "
            "for the first time, below 1/1000?"
        ),
        kind="number",
        digits=None,
        keys=_KEYS["forget_gate_steps"],
        hint="compute f = σ(1) = 1/(1 + e^-1), then solve f^k < 10^-3 for the smallest whole k (logarithms).",
        mistakes=(
            Mistake(
                "check the boundary: after that many steps the product is still at or above 1/1000 (keep "
                "more digits of σ(1): rounding it to 0.73 moves the answer). Count the first step below.",
                _MISTAKES["forget_gate_steps"][0],
            ),
            Mistake(
                "that is the default forget bias b_f = 0, where f = σ(0) = 1/2; here b_f = 1.",
                _MISTAKES["forget_gate_steps"][1],
            ),
            Mistake(
                "the forget gate uses the logistic sigmoid σ, not tanh.",
                _MISTAKES["forget_gate_steps"][2],
            ),
            Mistake(
                "e^-1 is not σ(1): the gate is f = 1/(1 + e^-b), which is above 1/2 for b > 0.",
                _MISTAKES["forget_gate_steps"][3],
            ),
        ),
    )
)

register(
    Exercise(
        id="recurrent_networks.edge_radius",
        title="Neither vanishing nor exploding over 50 steps",
        prompt=(
            "Rescale the vanilla RNN's W_hh to spectral radius ρ (as in the chapter's explorer). Find a ρ "
            "at which the gradient reaching the input 50 steps back is within a factor 10 of the gradient "
            "at the last step: 0.1 <= ‖∂L/∂x_{T-50}‖ / ‖∂L/∂x_T‖ <= 10 (geometric mean of three networks)."
        ),
        kind="setting",
        measure=edge_ratio,
        accept=EDGE_WINDOW,
        hint="watch the ratio: below 0.1 the gradient vanishes over the 50 steps, above 10 it explodes.",
        mistakes=(
            Mistake(
                "close, and exactly right for a linear RNN; but tanh'(a) < 1 takes a little off every step, "
                "so the gradient still vanishes. Go somewhat above 1.",
                applies=lambda m: 1e-6 <= m < EDGE_WINDOW[0],
            ),
            Mistake(
                "the gradient vanishes fast, as at PyTorch's default scale: increase ρ well beyond that.",
                applies=lambda m: m < 1e-6,
            ),
            Mistake(
                "the gradient explodes over 50 steps: decrease ρ.",
                applies=lambda m: m > EDGE_WINDOW[1],
            ),
        ),
        control={"min": 0.25, "max": 4.0, "step": 0.01},
    )
)
