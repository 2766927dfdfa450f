"""Explorer of the example chapter (a template, see CONTRIBUTING.md): depth × activation → gradients."""

from __future__ import annotations

import ipywidgets as widgets

from vgcourse.config import constraints
from vgcourse.experiments.example_chapter import ACTIVATIONS, GainConfig, GainResult, run_gain
from vgcourse.plots.example_chapter import gradient_profile
from vgcourse.widgets import Explorer

__all__ = ["gain_explorer", "gain_readout"]


def gain_readout(result: GainResult) -> str:
    """One line of HTML under the figure: the first-to-last gradient ratio."""
    ratio = result.ratio()
    if ratio == 0:
        return "‖∂J/∂W₁‖ / ‖∂J/∂W_L‖ = 0: the first layers' gradients underflowed float32"
    return f"‖∂J/∂W₁‖ / ‖∂J/∂W_L‖ = {ratio:.3g}"


def gain_explorer(depth: int = 10, activation: str = "sigmoid") -> Explorer:
    """A depth slider and an activation menu; shows ``gradient_profile`` of ``run_gain``.

    Args:
        depth: the initial depth L.
        activation: the initial activation, one of ``ACTIVATIONS``.
    """
    GainConfig(depth=depth, activation=activation)  # a bad start is a ValueError naming the field
    span = constraints(GainConfig)["depth"]  # the slider's range is the config's declared range
    controls = {
        "depth": widgets.IntSlider(
            value=depth, min=span.low, max=span.high, step=1, description="depth L", continuous_update=False
        ),
        "activation": widgets.Dropdown(options=list(ACTIVATIONS), value=activation, description="activation"),
    }

    def make_config(depth: int, activation: str) -> GainConfig:
        return GainConfig(depth=depth, activation=activation)

    return Explorer(
        controls,
        make_config,
        run_gain,
        gradient_profile,
        readout=gain_readout,
        title="Depth and activation: the gradient of every layer at initialization",
        # the static page shows these settings precomputed (at most ~150 views); the others are disabled
        page_grid={"depth": sorted({2, 10, 30, 100, depth}), "activation": list(ACTIVATIONS)},
    )
