"""Exercises of the initialization chapter: Xavier/Glorot and He/Kaiming initialization."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from vgcourse._validation import check_float
from vgcourse.exercises.core import Exercise, Mistake, register

FAN_IN, FAN_OUT = 400, 100
TANH_DEPTH, TANH_WIDTH, TANH_SEEDS = 30, 100, (0, 1, 2)
BALANCED = (0.2, 5.0)
HE_BAND = (1.9, 2.1)
"""Accepted Var(W)·fan_in of a learner's He initializer (2 within 5 %; a (100, 400) draw varies by ~0.7 %)."""


def _near(measured: float, target: float) -> bool:
    return math.isclose(measured, target, rel_tol=0.05)


def variance_times_fan_in(init: Callable[[int, int, torch.Generator], torch.Tensor]) -> float:
    """Measure a learner's initializer: Var(W)·fan_in on a (100, 400) layer (He gives 2)."""
    if not callable(init):
        raise TypeError("pass your function itself, e.g. check('initialization.he_init', he_init)")
    weights = init(FAN_IN, FAN_OUT, torch.Generator().manual_seed(0))
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"your function must return a torch.Tensor; it returned {type(weights).__name__}")
    if tuple(weights.shape) != (FAN_OUT, FAN_IN):
        raise ValueError(
            f"your function must return shape (fan_out, fan_in) = {(FAN_OUT, FAN_IN)}; "
            f"got {tuple(weights.shape)}"
        )
    return float(weights.double().var() * FAN_IN)


def tanh_backprop_ratio(scale: float) -> float:
    """||dL/dh_0|| / ||dL/dh_{L-1}|| of a 30-layer tanh chain, W ~ N(0, scale²/n); geometric mean of 3 seeds.

    Below 1 the back-propagated gradient shrinks toward the input (vanishes); above 1 it grows (explodes).
    """
    scale = check_float("scale", scale, minimum=0.0, strict_minimum=True)
    logs = []
    for seed in TANH_SEEDS:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(64, TANH_WIDTH, generator=g, requires_grad=True)
        h, inputs = x, []
        for _ in range(TANH_DEPTH):
            inputs.append(h)
            weight = torch.randn(TANH_WIDTH, TANH_WIDTH, generator=g) * scale / math.sqrt(TANH_WIDTH)
            h = torch.tanh(h @ weight.T)
        first, last = torch.autograd.grad(h, (x, inputs[-1]), torch.randn(h.shape, generator=g))
        logs.append(math.log(float(first.norm() / last.norm())))
    return math.exp(sum(logs) / len(logs))


# Keys of the answer and of the typical mistakes (made by tests/exercise_solutions.py).
_KEYS: dict[str, tuple[str, ...]] = {
    "he_std": (
        "5427f0fa5546516b553ac625",
        "a67e88e04e8d6645651d62c5",
        "ca25735523aae928d8c29512",
        "f5e9a1b61d3824c368d94930",
        "f9eaa8c1c3f1268281a47e02",
    )
}
_MISTAKES: dict[str, tuple[tuple[str, ...], ...]] = {
    "he_std": (
        ("260fd7d239fa05142738aea6", "a9b2f1ec648d028e46ec6427"),
        ("45ace15ea4d739f97e5c27ed", "90fb7655bf563f7913a0ea5e"),
        ("e4a41a3abf87e3c54e3e6d0d", "fdc7386b70a084108fe4f97e"),
        ("3b9fbc71695799cf4acd092e", "b3c4421206df3c8a3031718f"),
    )
}


register(
    Exercise(
        id="initialization.he_std",
        title="He initialization by hand",
        prompt=(
            "A ReLU layer maps 512 inputs to 256 outputs. With He (Kaiming) normal initialization, "
            "what is the standard deviation of its weights?"
        ),
        kind="number",
        digits=3,
        keys=_KEYS["he_std"],
        hint=(
            "He keeps Var(a_l) = n_in·Var(W)·E[h²] constant, and ReLU passes half the variance: "
            "E[h²] = Var(a)/2."
        ),
        mistakes=(
            Mistake(
                "that is the variance; the question asks for the standard deviation.", _MISTAKES["he_std"][0]
            ),
            Mistake("off by a factor √2: ReLU zeroes half of its inputs.", _MISTAKES["he_std"][1]),
            Mistake("fan_in and fan_out swapped: the forward pass sums over inputs.", _MISTAKES["he_std"][2]),
            Mistake("that is Xavier/Glorot's normalized scale, for tanh.", _MISTAKES["he_std"][3]),
        ),
    )
)

register(
    Exercise(
        id="initialization.he_init",
        title="Write He initialization",
        prompt=(
            "Write he_init(fan_in, fan_out, generator) returning a weight tensor of shape (fan_out, fan_in) "
            "(as nn.Linear stores it) drawn from He/Kaiming normal initialization for ReLU, "
            "using the generator."
        ),
        kind="function",
        variable="he_init",
        measure=variance_times_fan_in,
        accept=HE_BAND,
        hint="the variance should be 2 divided by the number of inputs each output sums over.",
        mistakes=(
            Mistake("the variance is a factor 2 too small for ReLU.", applies=lambda m: _near(m, 1.0)),
            Mistake("fan_in and fan_out are swapped.", applies=lambda m: _near(m, 2.0 * FAN_IN / FAN_OUT)),
            Mistake(
                "that is Xavier/Glorot's variance, not He's.",
                applies=lambda m: _near(m, 2.0 * FAN_IN / (FAN_IN + FAN_OUT)),
            ),
            Mistake(
                "2/fan_in is the variance: the standard deviation is its square root.",
                applies=lambda m: _near(m, 4.0 / FAN_IN),
            ),
        ),
    )
)

register(
    Exercise(
        id="initialization.tanh_scale",
        title="The edge between vanishing and exploding",
        prompt=(
            "A 30-layer tanh network has weights W ~ N(0, s²/n). Find a scale s at which the gradient "
            "back-propagated to the input is neither vanishing nor exploding: within a factor 5 of the "
            "gradient at the last layer."
        ),
        kind="setting",
        measure=tanh_backprop_ratio,
        accept=BALANCED,
        hint="watch the ratio: below 1 the gradient vanishes toward the input, above 1 it explodes.",
        mistakes=(
            Mistake(
                "close: s = 1 preserves variance for a linear layer, but tanh'(a) < 1 away from 0 "
                "shrinks every layer a little. Go slightly above 1.",
                applies=lambda m: 0.1 <= m < BALANCED[0],
            ),
            Mistake(
                "the gradient vanishes toward the input: increase s.",
                applies=lambda m: m < 0.1,
            ),
            Mistake(
                "the gradient explodes toward the input: decrease s.",
                applies=lambda m: m > BALANCED[1],
            ),
        ),
        control={"min": 0.25, "max": 4.0, "step": 0.01, "log": True, "label": "s"},
    )
)
