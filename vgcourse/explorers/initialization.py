"""Chapter 4 explorer: init scheme × activation × depth → predicted vs measured variance by layer."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import ipywidgets as widgets

from vgcourse._validation import check_int
from vgcourse.experiments.initialization import (
    INIT_SCHEMES,
    SCHEME_LABELS,
    VarianceConfig,
    VarianceProfile,
    geometric_mean,
    run_variance_profile,
)
from vgcourse.plots.initialization import profile
from vgcourse.widgets import Explorer

__all__ = [
    "EXPLORER_ACTIVATIONS",
    "EXPLORER_SEEDS",
    "EXPLORER_WIDTH",
    "variance_explorer",
    "variance_readout",
]

EXPLORER_ACTIVATIONS = ("tanh", "relu", "identity", "sigmoid")
EXPLORER_WIDTH = 64  # narrower than the chapter's 128 so that an update at depth 50 stays well under 150 ms
EXPLORER_SEEDS = (0, 1, 2)


def variance_readout(result: VarianceProfile) -> str:
    """One line: measured Var(δ_1)/Var(δ_L) (geometric mean, min..max over seeds) vs the two predictions.

    Args:
        result: a ``run_variance_profile`` result.
    """
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

    Args:
        scheme: initial scheme, one of ``INIT_SCHEMES``.
        activation: initial activation, one of ``EXPLORER_ACTIVATIONS``.
        depth: initial depth, 2..50.
        width: units per layer (kept small so that an update is fast).
        batch_size: inputs per seed.
        seeds: the seeds measured at every update.
    """
    check_int("depth", depth, minimum=2, maximum=50)
    base = VarianceConfig(
        scheme=scheme,
        activation=activation,
        depth=depth,
        width=width,
        batch_size=batch_size,
        seeds=tuple(seeds),
    )
    if activation not in EXPLORER_ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; valid choices: {', '.join(EXPLORER_ACTIVATIONS)}"
        )
    controls = {
        "scheme": widgets.Dropdown(
            options=[(SCHEME_LABELS[s], s) for s in INIT_SCHEMES], value=scheme, description="init"
        ),
        "activation": widgets.ToggleButtons(options=list(EXPLORER_ACTIVATIONS), value=activation),
        "depth": widgets.IntSlider(
            value=depth, min=2, max=50, step=1, description="depth", continuous_update=False
        ),
    }

    def make_config(scheme: str, activation: str, depth: int) -> VarianceConfig:
        return dataclasses.replace(base, scheme=scheme, activation=activation, depth=depth)

    return Explorer(
        controls,
        make_config,
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
