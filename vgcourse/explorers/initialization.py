"""Explorer of the initialization chapter: init scheme × activation × depth → predicted vs measured
variance by layer."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import ipywidgets as widgets

from vgcourse.config import geometric_mean
from vgcourse.experiments.initialization import (
    INIT_SCHEMES,
    SCHEME_LABELS,
    VarianceConfig,
    VarianceProfile,
    run_variance_profile,
)
from vgcourse.plots.initialization import profile
from vgcourse.widgets import Explorer, control

EXPLORER_ACTIVATIONS = ("tanh", "relu", "identity", "sigmoid")
EXPLORER_WIDTH = 64  # narrower than the chapter's 128 so that an update at depth 50 stays well under 150 ms
EXPLORER_SEEDS = (0, 1, 2)


def variance_readout(result: VarianceProfile) -> str:
    """One line: measured Var(δ_1)/Var(δ_L) (geometric mean, min..max over seeds) vs the two predictions."""
    ratio = result.grad_ratio
    center = geometric_mean(ratio)
    gaussian, linear = result.predicted.grad_ratio, result.linear.grad_ratio
    return (
        f"Var(δ_1)/Var(δ_L): measured {center:.3g} (seeds: {ratio.min():.3g} to {ratio.max():.3g}), "
        f"predicted {gaussian:.3g} (Gaussian), {linear:.3g} (linear regime)"
    )


def variance_explorer(
    *,
    scheme: str = "xavier",
    activation: str = "tanh",
    depth: int = 30,
    width: int = EXPLORER_WIDTH,
    batch_size: int = 64,
    seeds: Sequence[int] = EXPLORER_SEEDS,
) -> Explorer:
    """Pick an initialization scheme, an activation and a depth; see predicted and measured variances.

    Each change runs ``run_variance_profile`` (one batched forward and backward pass per seed) and
    redraws ``vgcourse.plots.initialization.profile``, the figure of the chapter's small multiples.

    scheme, activation (one of ``EXPLORER_ACTIVATIONS``) and depth (2 to 50) are the controls' starting
    values; width, batch size (inputs per seed) and the seeds measured at every update are fixed.
    """
    controls = {
        "scheme": control(
            VarianceConfig,
            "scheme",
            scheme,
            "init",
            options=[(SCHEME_LABELS[s], s) for s in INIT_SCHEMES],
            kind=widgets.Dropdown,
        ),
        "activation": control(VarianceConfig, "activation", activation, "", options=EXPLORER_ACTIVATIONS),
        "depth": control(VarianceConfig, "depth", depth, low=2, high=50),
    }

    return Explorer(
        controls,
        partial(VarianceConfig, width=width, batch_size=batch_size, seeds=tuple(seeds)),
        run_variance_profile,
        profile,
        readout=variance_readout,
        title="Initialization: predicted (dashed, dotted) vs measured (band: seeds) variance by layer",
        # the static page: 5 schemes x 4 activations x 5 depths = 100 views
        page_grid={
            "scheme": list(INIT_SCHEMES),
            "activation": list(EXPLORER_ACTIVATIONS),
            "depth": sorted({5, 10, 20, 30, 50, depth}),
        },
    )
