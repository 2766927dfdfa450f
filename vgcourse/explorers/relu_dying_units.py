"""Explorer of chapter 3: learning rate × bias initialization × activation → dead units during training."""

from __future__ import annotations

import dataclasses
import functools

import ipywidgets as widgets

from vgcourse.activations import RELU_FAMILY
from vgcourse.experiments.relu_dying_units import DyingConfig, DyingResult, run_dying
from vgcourse.plots.relu_dying_units import dead_over_training
from vgcourse.widgets import Explorer

__all__ = ["EXPLORER_BASE", "LEARNING_RATES", "dying_explorer", "explorer_config"]

LEARNING_RATES = (0.03, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
"""The learning-rate slider's stops: a 1-2-3-5 series holding the chapter's 0.1, 0.3, 1 and 3."""

EXPLORER_BASE = DyingConfig(steps=50, measure_every=10, reference="val")
"""The explorer's run: a sixth of the chapter's 300 steps, and units counted on the validation images (about
a quarter of the training set), so that one update, a whole training run, takes about 0.1 s on a CPU core.
Units killed by a large step or a negative bias die in the first steps, so the explorer shows them; the
slower dying of the chapter's lr-3 run needs its 300 steps."""


def explorer_config(
    lr: float = 3.0, bias_init: float = 0.0, activation: str = "relu", init: str = "kaiming_normal"
) -> DyingConfig:
    """The ``DyingConfig`` the explorer runs for these control values (everything else from EXPLORER_BASE).

    Args:
        lr: learning rate.
        bias_init: initial value of every bias.
        activation: one of ``RELU_FAMILY``.
        init: "kaiming_normal" (He) or "default" (PyTorch's).
    """
    return dataclasses.replace(EXPLORER_BASE, lr=lr, bias_init=bias_init, activation=activation, init=init)


@functools.lru_cache(maxsize=256)
def _cached_run(config: DyingConfig) -> DyingResult:
    """``run_dying`` remembered per config (configs are frozen, so a revisited setting is instant)."""
    return run_dying(config)


def _readout(result: DyingResult) -> str:
    dead = ", ".join(
        f"{name} {value:.0%}" for name, value in zip(result.layer_names, result.dead_frac[-1], strict=True)
    )
    text = (
        f"after {result.steps_run} steps: validation accuracy {result.final_accuracy:.3f}; dead units "
        f"(z ≤ 0 on every validation image): {dead}"
    )
    return text + " — the run diverged and stopped" if result.diverged else text


def dying_explorer() -> Explorer:
    """Controls: learning rate (stops ``LEARNING_RATES``), bias initialization, activation and weights.

    Each change trains a fresh network (``EXPLORER_BASE`` with those values) with ``run_dying`` and draws
    ``plots.relu_dying_units.dead_over_training``; results are cached per setting.
    """
    base = EXPLORER_BASE
    controls = {
        "lr": widgets.SelectionSlider(
            options=[(f"{lr:g}", lr) for lr in LEARNING_RATES],
            value=3.0,
            description="learning rate",
            continuous_update=False,
        ),
        "bias_init": widgets.FloatSlider(
            value=0.0,
            min=-3.0,
            max=1.0,
            step=0.25,
            description="bias init",
            readout_format=".2f",
            continuous_update=False,
        ),
        "activation": widgets.Dropdown(options=list(RELU_FAMILY), value="relu", description="activation"),
        "init": widgets.ToggleButtons(
            options=[("He", "kaiming_normal"), ("PyTorch default", "default")],
            value="kaiming_normal",
            description="weights",
        ),
    }
    return Explorer(
        controls,
        explorer_config,
        _cached_run,
        dead_over_training,
        readout=_readout,
        title=(
            f"Dead units per layer while training on digits ({base.depth} hidden layers of "
            f"{base.width} units, plain SGD, {base.steps} steps)"
        ),
        # the static page: 5 learning rates x 4 bias inits x 3 activations = 60 training runs with He
        # init (~25 s of one core at build time)
        page_grid={
            "lr": [0.1, 0.3, 1.0, 3.0, 10.0],
            "bias_init": [-2.0, -1.0, 0.0, 0.5],
            "activation": ["relu", "leaky_relu", "elu"],
        },
    )
