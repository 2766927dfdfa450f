"""Explorer of the sigmoid-bound chapter: activation x depth x initialization
-> per-layer gradients at initialization."""

from __future__ import annotations

import html
import math

import numpy as np
from ipywidgets import Dropdown

from vgcourse.experiments.sigmoid_bound import INITS, InitGradientConfig, InitGradients, run_init_gradients
from vgcourse.plots import sigmoid_bound as plots
from vgcourse.widgets import Explorer, control


def init_gradients_readout(result: InitGradients) -> str:
    """One line of plain text (legible in the page's light and dark modes): the decay and its bound, in all
    and per layer, the mean f'(a) and the saturated fraction."""
    sat = np.nanmean(result.saturated_frac) if np.isfinite(result.saturated_frac).any() else math.nan
    sat_text = "n/a (not sigmoid/tanh)" if math.isnan(sat) else f"{100 * sat:.1f}%"
    return html.escape(
        f"{result.config.activation}, depth {result.config.depth}, {result.config.init}: "
        f"||∂J/∂h_0|| / ||∂J/∂h_L|| = {result.decay:.3g} (bound {result.envelope[0]:.3g}); "
        f"per layer {result.per_layer_factor:.3f} (bound {result.envelope_factor:.3f}); "
        f"mean f'(a) = {np.mean(result.mean_derivative):.3f}; saturated units: {sat_text}"
    )


def init_gradients_explorer(
    activation: str = "sigmoid", depth: int = 20, init: str = "xavier_normal", weight_scale: float = 1.0
) -> Explorer[InitGradientConfig, InitGradients]:
    """Controls for activation, depth, initialization and weight scale; shows ``plots.gradient_profile``
    of ``run_init_gradients`` (||∂J/∂h_l|| under its envelope) and reads out the saturated fraction.

    The arguments are the controls' starting values: activation ("sigmoid", "tanh" or "relu"), hidden
    layers (2 to 50), initialization and multiplier of the hidden weights (1/4 to 16).
    """
    controls = {
        "activation": control(
            InitGradientConfig, "activation", activation, options=["sigmoid", "tanh", "relu"], kind=Dropdown
        ),
        "depth": control(InitGradientConfig, "depth", depth, low=2, high=50),
        "init": control(InitGradientConfig, "init", init, kind=Dropdown),
        "weight_scale": control(
            InitGradientConfig,
            "weight_scale",
            weight_scale,
            "weight scale",
            low=0.25,
            high=16,
            step=0.5,
            base=2,
        ),
    }

    return Explorer(
        controls,
        InitGradientConfig,
        run_init_gradients,
        plots.gradient_profile,
        readout=init_gradients_readout,
        title="Gradients at initialization: how much of ∂J/∂h_L reaches each layer?",
        # the static page: 3 activations x 5 inits x 3 depths x 3 scales = 135 views
        page_grid={
            "activation": ["sigmoid", "tanh", "relu"],
            "depth": sorted({5, 20, 50, depth}),
            "init": list(INITS),
            "weight_scale": sorted({0.5, 1.0, 2.0, weight_scale}),
        },
    )
