"""Explorer of chapter 7: the remedies' factors → what ``diagnose`` reports for that network at init."""

from __future__ import annotations

import ipywidgets as widgets

from vgcourse._validation import check_choice, check_float, check_int
from vgcourse.experiments.detecting_and_fixing import (
    GRID_ACTIVATIONS,
    GRID_INITS,
    GRID_NORMS,
    RemedyDiagnosisConfig,
    RemedyDiagnosisResult,
    run_remedy_diagnosis,
)
from vgcourse.plots import detecting_and_fixing as plots
from vgcourse.widgets import Explorer

__all__ = ["remedy_explorer", "remedy_readout"]


def remedy_readout(result: RemedyDiagnosisResult) -> str:
    """One line of HTML: the first layer's gradient ratio and what ``diagnose`` flagged."""
    report = result.report
    kinds = ", ".join(f"{f.kind.replace('_', ' ')} ({len(f.layers)} layers)" for f in report.problems)
    return (
        f"layer 1 gets {report.layers[0].ratio:.2g}× the output layer's gradient per weight "
        f"&nbsp;·&nbsp; diagnose: {kinds or 'healthy'}"
    )


def remedy_explorer(
    activation: str = "sigmoid",
    init: str = "default",
    skip: bool = False,
    norm: str = "none",
    blocks: int = 10,
    panel: str = "gradient ratios",
    *,
    width: int = 32,
    lr: float = 0.05,
    max_blocks: int = 25,
    seed: int = 0,
) -> Explorer:
    """Controls for the four factors that act at initialization and the depth; shows one panel of
    ``diagnose``'s figure (the panel buttons redraw without recomputing).

    Each change builds the network (a ``ResidualMLP``: 2·blocks hidden layers) and runs
    ``run_remedy_diagnosis``: one forward, backward and SGD-momentum step on 128 digits.

    Args:
        activation: the initial activation, one of ``GRID_ACTIVATIONS``.
        init: the initial initialization, one of ``GRID_INITS``.
        skip: whether blocks start with skip connections.
        norm: the initial normalization, one of ``GRID_NORMS``.
        blocks: the initial number of blocks.
        panel: the initial panel, one of ``plots.detecting_and_fixing.REMEDY_PANELS``.
        width: the hidden width (fixed).
        lr: the learning rate of the diagnosed step (fixed).
        max_blocks: the blocks slider's upper end (<= 25: depth <= 50).
        seed: the initialization's seed (fixed).
    """
    check_choice("activation", activation, GRID_ACTIVATIONS)
    check_choice("init", init, GRID_INITS)
    if not isinstance(skip, bool):
        raise TypeError(f"skip must be True or False; got {skip!r}")
    check_choice("norm", norm, GRID_NORMS)
    check_choice("panel", panel, tuple(plots.REMEDY_PANELS))
    check_int("max_blocks", max_blocks, minimum=1, maximum=25)
    check_int("blocks", blocks, minimum=1, maximum=max_blocks)
    check_int("width", width, minimum=1, maximum=256)
    check_float("lr", lr, 0.0, strict_minimum=True)
    check_int("seed", seed, minimum=0)
    controls = {
        "activation": widgets.Dropdown(
            options=list(GRID_ACTIVATIONS), value=activation, description="activation"
        ),
        "init": widgets.ToggleButtons(options=list(GRID_INITS), value=init, description="init"),
        "skip": widgets.ToggleButtons(
            options=[("plain", False), ("skip", True)], value=skip, description="blocks"
        ),
        "norm": widgets.ToggleButtons(options=list(GRID_NORMS), value=norm, description="norm"),
        "blocks": widgets.IntSlider(
            value=blocks, min=1, max=max_blocks, step=1, description="blocks", continuous_update=False
        ),
    }

    def make_config(activation: str, init: str, skip: bool, norm: str, blocks: int) -> RemedyDiagnosisConfig:
        return RemedyDiagnosisConfig(
            activation=activation,
            init=init,
            skip=skip,
            norm=norm,
            blocks=blocks,
            width=width,
            lr=lr,
            seed=seed,
        )

    return Explorer(
        controls,
        make_config,
        run_remedy_diagnosis,
        plots.remedy_panel,
        readout=remedy_readout,
        title="What diagnose sees at initialization",
        # the static page: 3 activations x 3 inits x 2 x 2 norms x 3 panels = 108 views at the start's
        # depth (~25 s of one core at build time; GELU and layer norm only live, in Colab or Jupyter)
        page_grid={
            "activation": sorted({"sigmoid", "tanh", "relu", activation}, key=GRID_ACTIVATIONS.index),
            "init": list(GRID_INITS),
            "skip": [False, True],
            "norm": sorted({"none", "batch", norm}, key=GRID_NORMS.index),
        },
        view_controls={
            "panel": widgets.ToggleButtons(
                options=list(plots.REMEDY_PANELS), value=panel, description="panel"
            )
        },
    )
