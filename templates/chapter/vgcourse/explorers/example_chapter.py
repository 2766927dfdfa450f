"""Explorer of the example chapter (a template, see CONTRIBUTING.md): depth × activation → gradients."""

from __future__ import annotations

import ipywidgets as widgets

from vgcourse.experiments.example_chapter import ACTIVATIONS, GainConfig, GainResult, run_gain
from vgcourse.plots.example_chapter import gradient_profile
from vgcourse.widgets import Explorer, control

__all__ = ["gain_explorer", "gain_readout"]


def gain_readout(result: GainResult) -> str:
    """One line of HTML under the figure: the first-to-last gradient ratio."""
    ratio = result.ratio
    if ratio == 0:
        return "‖∂J/∂W₁‖ / ‖∂J/∂W_L‖ = 0: the first layers' gradients underflowed float32"
    return f"‖∂J/∂W₁‖ / ‖∂J/∂W_L‖ = {ratio:.3g}"


def gain_explorer(depth: int = 10, activation: str = "sigmoid") -> Explorer:
    """A depth slider and an activation menu; shows ``gradient_profile`` of ``run_gain``.

    Args:
        depth: the initial depth L.
        activation: the initial activation, one of ``ACTIVATIONS``.
    """
    controls = {  # built from the config's declared constraints (a bad start is an error naming them)
        "depth": control(GainConfig, "depth", depth, "depth L"),
        "activation": control(GainConfig, "activation", activation, kind=widgets.Dropdown),
    }
    return Explorer(
        controls,
        GainConfig,
        run_gain,
        gradient_profile,
        readout=gain_readout,
        title="Depth and activation: the gradient of every layer at initialization",
        # the static page shows these settings precomputed (at most ~150 views); the others are disabled
        page_grid={"depth": sorted({2, 10, 30, 100, depth}), "activation": list(ACTIVATIONS)},
    )
