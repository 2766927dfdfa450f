"""Exercises of chapter 4, Xavier/Glorot and He/Kaiming initialization."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from vgcourse._validation import check_float
from vgcourse.exercises.core import Exercise, Mistake, register

FAN_IN, FAN_OUT = 400, 100
TANH_DEPTH, TANH_WIDTH, TANH_SEEDS = 30, 100, (0, 1, 2)
BALANCED = (0.2, 5.0)


def he_std(fan_in: int = 512) -> float:
    """He/Kaiming normal for ReLU: std = sqrt(2 / fan_in)."""
    return math.sqrt(2.0 / fan_in)


def he_init_reference(fan_in: int, fan_out: int, generator: torch.Generator) -> torch.Tensor:
    """W ~ N(0, 2/fan_in), shape (fan_out, fan_in) as nn.Linear stores it."""
    return torch.randn(fan_out, fan_in, generator=generator) * math.sqrt(2.0 / fan_in)


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


def _gaussian(variance: Callable[[int, int], float]) -> Callable[[int, int, torch.Generator], torch.Tensor]:
    return lambda fan_in, fan_out, g: (
        torch.randn(fan_out, fan_in, generator=g) * math.sqrt(variance(fan_in, fan_out))
    )


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
            if h is not x:
                h.retain_grad()
            inputs.append(h)
            weight = torch.randn(TANH_WIDTH, TANH_WIDTH, generator=g) * scale / math.sqrt(TANH_WIDTH)
            h = torch.tanh(h @ weight.T)
        h.backward(torch.randn(h.shape, generator=g))
        logs.append(math.log(float(inputs[0].grad.norm() / inputs[-1].grad.norm())))
    return math.exp(sum(logs) / len(logs))


def balanced_tanh_scale(low: float = 1.0, high: float = 1.5, iterations: int = 12) -> float:
    """The scale where the ratio is 1 (neither vanishing nor exploding), by bisection on log(ratio)."""
    for _ in range(iterations):
        middle = (low + high) / 2
        low, high = (middle, high) if tanh_backprop_ratio(middle) < 1.0 else (low, middle)
    return (low + high) / 2


register(
    Exercise(
        id="initialization.he_std",
        title="He initialization by hand",
        prompt=(
            "A ReLU layer maps 512 inputs to 256 outputs. With He (Kaiming) normal initialization, "
            "what is the standard deviation of its weights?"
        ),
        kind="number",
        solution=he_std,
        hint=(
            "He keeps Var(a_l) = n_in·Var(W)·E[h²] constant, and ReLU passes half the variance: "
            "E[h²] = Var(a)/2."
        ),
        mistakes=(
            Mistake(lambda: 2.0 / 512, "that is the variance; the question asks for the standard deviation."),
            Mistake(lambda: math.sqrt(1.0 / 512), "off by a factor √2: ReLU zeroes half of its inputs."),
            Mistake(
                lambda: math.sqrt(2.0 / 256), "fan_in and fan_out swapped: the forward pass sums over inputs."
            ),
            Mistake(
                lambda: math.sqrt(2.0 / (512 + 256)), "that is Xavier/Glorot's normalized scale, for tanh."
            ),
        ),
        control={"min": 0.0, "max": 0.2, "step": 0.0005},
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
        solution=lambda: he_init_reference,
        measure=variance_times_fan_in,
        rel_tol=0.05,
        hint="the variance should be 2 divided by the number of inputs each output sums over.",
        mistakes=(
            Mistake(
                lambda: _gaussian(lambda i, o: 1.0 / i), "the variance is a factor 2 too small for ReLU."
            ),
            Mistake(lambda: _gaussian(lambda i, o: 2.0 / o), "fan_in and fan_out are swapped."),
            Mistake(
                lambda: _gaussian(lambda i, o: 2.0 / (i + o)), "that is Xavier/Glorot's variance, not He's."
            ),
            Mistake(
                lambda: _gaussian(lambda i, o: (2.0 / i) ** 2),
                "2/fan_in is the variance: the standard deviation is its square root.",
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
        solution=balanced_tanh_scale,
        measure=tanh_backprop_ratio,
        accept=lambda measured, _reference: BALANCED[0] <= measured <= BALANCED[1],
        hint="watch the ratio: below 1 the gradient vanishes toward the input, above 1 it explodes.",
        mistakes=(
            Mistake(
                lambda: 1.0,
                "close: s = 1 preserves variance for a linear layer, but tanh'(a) < 1 away from 0 "
                "shrinks every layer a little. Go slightly above 1.",
                applies=lambda m: 0.1 <= m < BALANCED[0],
            ),
            Mistake(
                lambda: 0.5,
                "the gradient vanishes toward the input: increase s.",
                applies=lambda m: m < 0.1,
            ),
            Mistake(
                lambda: 2.0,
                "the gradient explodes toward the input: decrease s.",
                applies=lambda m: m > BALANCED[1],
            ),
        ),
        control={"min": 0.25, "max": 4.0, "step": 0.01, "log": True, "label": "s"},
    )
)
