"""Exercises of chapter 7, detecting and fixing vanishing gradients."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn

from vgcourse._validation import check_float
from vgcourse.data import digits
from vgcourse.diagnose import UPDATE_RATIO_GUIDE, diagnose
from vgcourse.exercises.core import Exercise, Mistake, register
from vgcourse.initializers import initialize
from vgcourse.models import MLP

# A hidden layer of 64 × 64 weights and the 64 → 10 output layer of the same network.
LAYER_WEIGHTS, LAYER_NORM = 4096, 0.64
OUTPUT_WEIGHTS, OUTPUT_NORM = 640, 0.0253
GUIDE_BAND = (UPDATE_RATIO_GUIDE / 2, UPDATE_RATIO_GUIDE * 2)


def per_weight_ratio(
    layer_norm: float = LAYER_NORM,
    layer_weights: int = LAYER_WEIGHTS,
    output_norm: float = OUTPUT_NORM,
    output_weights: int = OUTPUT_WEIGHTS,
) -> float:
    """The ratio ``diagnose`` reports: (‖g_l‖/√n_l) / (‖g_out‖/√n_out)."""
    return (layer_norm / math.sqrt(layer_weights)) / (output_norm / math.sqrt(output_weights))


@functools.cache
def _healthy_network() -> tuple[MLP, tuple[torch.Tensor, torch.Tensor]]:
    """The chapter's healthy reference: 8 He-initialized ReLU layers of width 64, and 128 digits."""
    torch.manual_seed(0)
    model = initialize(
        MLP(64, 10, 8, 64, "relu"), "kaiming_normal", generator=torch.Generator().manual_seed(0)
    )
    data = digits(seed=0)
    return model, (data.x_train[:128], data.y_train[:128])


def median_update_ratio(lr: float) -> float:
    """The median over the layers of the update:data ratio of one plain SGD step at ``lr``, measured
    with ``diagnose`` on the chapter's healthy network."""
    lr = check_float("lr", lr, 0.0, strict_minimum=True)
    model, batch = _healthy_network()
    return float(np.median(diagnose(model, nn.CrossEntropyLoss(), batch, lr=lr).values("update_ratio")))


def guide_lr() -> float:
    """The learning rate that puts the median update:data ratio on the 1e-3 guide (plain SGD: ratio ∝ lr)."""
    return UPDATE_RATIO_GUIDE / median_update_ratio(1.0)


register(
    Exercise(
        id="detecting_and_fixing.per_weight_ratio",
        title="The ratio diagnose reports",
        prompt=(
            f"A hidden layer with {LAYER_WEIGHTS} weights has a gradient of norm {LAYER_NORM}; the output "
            f"layer, with {OUTPUT_WEIGHTS} weights, has a gradient of norm {OUTPUT_NORM}. What ratio to the "
            "output layer does diagnose report for the hidden layer?"
        ),
        kind="number",
        solution=per_weight_ratio,
        hint="diagnose compares the gradient per weight: divide each norm by the square root of its size.",
        mistakes=(
            Mistake(
                lambda: LAYER_NORM / OUTPUT_NORM,
                "that compares raw norms, which grow with the number of weights; compare per weight.",
            ),
            Mistake(
                lambda: 1.0 / per_weight_ratio(),
                "upside down: the ratio is the hidden layer's value divided by the output layer's.",
            ),
            Mistake(
                lambda: (LAYER_NORM / LAYER_WEIGHTS) / (OUTPUT_NORM / OUTPUT_WEIGHTS),
                "the norm is a square root of a sum of squares: divide by √n, not by n.",
            ),
        ),
        rel_tol=0.01,
        control={"min": 0.0, "max": 100.0, "step": 0.01},
    )
)

register(
    Exercise(
        id="detecting_and_fixing.guide_lr",
        title="A learning rate on the guide",
        prompt=(
            "Find a learning rate for which one plain SGD step on the chapter's healthy network (8 He-"
            "initialized ReLU layers) gives a median update:data ratio within a factor 2 of the 1e-3 guide, "
            "as diagnose measures it."
        ),
        kind="setting",
        solution=guide_lr,
        measure=median_update_ratio,
        accept=lambda measured, _reference: GUIDE_BAND[0] <= measured <= GUIDE_BAND[1],
        hint="for plain SGD the update is lr × gradient: the ratio grows in proportion to the learning rate.",
        mistakes=(
            Mistake(
                lambda: 1e-4,
                "the layers barely move: the median ratio is below the guide. Increase the learning rate.",
                applies=lambda m: m < GUIDE_BAND[0],
            ),
            Mistake(
                lambda: 0.3,
                "each step moves the weights more than the guide suggests: decrease the learning rate.",
                applies=lambda m: GUIDE_BAND[1] < m <= 0.1,
            ),
            Mistake(
                lambda: 30.0,
                "far too large: one step rewrites more than a tenth of every layer (diagnose flags it).",
                applies=lambda m: m > 0.1,
            ),
        ),
        control={"min": 1e-4, "max": 10.0, "step": 0.01, "log": True},
    )
)
