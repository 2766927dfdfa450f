"""Explorer of the detecting-and-fixing chapter: the remedies' factors → what ``diagnose`` reports
for that network at init."""

from __future__ import annotations

from functools import partial

import ipywidgets as widgets

from vgcourse._validation import check_int
from vgcourse.experiments.detecting_and_fixing import (
    GRID_ACTIVATIONS,
    GRID_INITS,
    GRID_NORMS,
    RemedyDiagnosisConfig,
    RemedyDiagnosisResult,
    run_remedy_diagnosis,
)
from vgcourse.plots import detecting_and_fixing as plots
from vgcourse.widgets import Explorer, control, select


def remedy_readout(result: RemedyDiagnosisResult) -> str:
    """One line of HTML: the first layer's gradient ratio and what ``diagnose`` flagged (each problem with
    the number of layers it names; one about the whole model, such as the initial loss, with none)."""
    report = result.report
    kinds = ", ".join(f.label for f in report.problems)
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

    The arguments are the controls' starting values (``panel``: one of
    ``plots.detecting_and_fixing.REMEDY_PANELS``), the blocks slider's upper end (<= 25: depth <= 50) and
    the fixed hidden width, learning rate of the diagnosed step and seed.
    """
    check_int("max_blocks", max_blocks, minimum=1, maximum=25)
    controls = {
        "activation": control(RemedyDiagnosisConfig, "activation", activation, kind=widgets.Dropdown),
        "init": control(RemedyDiagnosisConfig, "init", init),
        "skip": control(
            RemedyDiagnosisConfig, "skip", skip, "blocks", options=[("plain", False), ("skip", True)]
        ),
        "norm": control(RemedyDiagnosisConfig, "norm", norm),
        "blocks": control(RemedyDiagnosisConfig, "blocks", blocks, high=max_blocks),
    }

    return Explorer(
        controls,
        partial(RemedyDiagnosisConfig, width=width, lr=lr, seed=seed),
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
        view_controls={"panel": select("panel", panel, plots.REMEDY_PANELS)},
    )
