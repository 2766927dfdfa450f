"""Exercises of the chapter "Detecting and fixing vanishing gradients"."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vgcourse._cache import copied_cache
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


@copied_cache(maxsize=1)
def _healthy_network() -> tuple[MLP, tuple[torch.Tensor, torch.Tensor]]:
    """The chapter's healthy reference: 8 He-initialized ReLU layers of width 64, and 128 digits."""
    model = initialize(
        MLP(64, 10, 8, 64, "relu", seed=0), "kaiming_normal", generator=torch.Generator().manual_seed(0)
    )
    data = digits(seed=0)
    return model, (data.x_train[:128], data.y_train[:128])


def median_update_ratio(lr: float) -> float:
    """The median over the layers of the update:data ratio of one plain SGD step at ``lr``, measured
    with ``diagnose`` on the chapter's healthy network."""
    lr = check_float("lr", lr, 0.0, strict_minimum=True)
    model, batch = _healthy_network()
    return float(np.median(diagnose(model, nn.CrossEntropyLoss(), batch, lr=lr).columns["update_ratio"]))


# Keys of the answers and of the typical mistakes (made by tests/exercise_solutions.py).
_KEYS: dict[str, tuple[str, ...]] = {
    "per_weight_ratio": (
        "4711738dcdd6b44b838c610a",
        "7e12ca4735c09329e634546f",
        "a20cd38d28ff62bd959f987c",
        "c74f314b5af9f92660909da6",
        "e94514f0270e77c104ed3627",
        "f5682cf396997acf8dbdcebc",
    )
}
_MISTAKES: dict[str, tuple[tuple[str, ...], ...]] = {
    "per_weight_ratio": (
        ("61910cffd6725a129f575da6", "f51f5b50b875bdb26546fa69"),
        ("4adc9050edd6b868de06971b", "981082afc3e77161a27942a2"),
        ("42d76a18ab527de622083eab", "729454999bdbfa996fea54b3"),
    )
}


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
        digits=3,
        keys=_KEYS["per_weight_ratio"],
        hint="diagnose compares the gradient per weight: divide each norm by the square root of its size.",
        mistakes=(
            Mistake(
                "that compares raw norms, which grow with the number of weights; compare per weight.",
                _MISTAKES["per_weight_ratio"][0],
            ),
            Mistake(
                "upside down: the ratio is the hidden layer's value divided by the output layer's.",
                _MISTAKES["per_weight_ratio"][1],
            ),
            Mistake(
                "the norm is a square root of a sum of squares: divide by √n, not by n.",
                _MISTAKES["per_weight_ratio"][2],
            ),
        ),
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
        measure=median_update_ratio,
        accept=GUIDE_BAND,
        hint="for plain SGD the update is lr × gradient: the ratio grows in proportion to the learning rate.",
        mistakes=(
            Mistake(
                "the layers barely move: the median ratio is below the guide. Increase the learning rate.",
                applies=lambda m: m < GUIDE_BAND[0],
            ),
            Mistake(
                "each step moves the weights more than the guide suggests: decrease the learning rate.",
                applies=lambda m: GUIDE_BAND[1] < m <= 0.1,
            ),
            Mistake(
                "far too large: one step rewrites more than a tenth of every layer (diagnose flags it).",
                applies=lambda m: m > 0.1,
            ),
        ),
        control={"min": 1e-4, "max": 10.0, "step": 0.01, "log": True},
    )
)
