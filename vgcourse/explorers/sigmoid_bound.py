"""Explorer of chapter 2: activation x depth x initialization -> per-layer gradients at initialization."""

from __future__ import annotations

import html

import ipywidgets as widgets

from vgcourse.experiments.sigmoid_bound import INITS, InitGradientConfig, InitGradients, run_init_gradients
from vgcourse.plots import sigmoid_bound as plots
from vgcourse.widgets import Explorer

__all__ = ["init_gradients_explorer"]


def _readout(result: InitGradients) -> str:
    return html.escape(result.summary())  # plain text: legible in the page's light and dark modes


def init_gradients_explorer(
    activation: str = "sigmoid", depth: int = 20, init: str = "xavier_normal", weight_scale: float = 1.0
) -> Explorer[InitGradientConfig, InitGradients]:
    """Controls for activation, depth, initialization and weight scale; shows ``plots.gradient_profile``
    of ``run_init_gradients`` (||∂J/∂h_l|| under its envelope) and reads out the saturated fraction.

    Args:
        activation: starting activation ("sigmoid", "tanh" or "relu").
        depth: starting number of hidden layers (2 to 50).
        init: starting initialization, one of ``INITS``.
        weight_scale: starting multiplier of the hidden weights (1/4 to 16).
    """
    InitGradientConfig(activation=activation, depth=depth, init=init, weight_scale=weight_scale)  # validate
    controls = {
        "activation": widgets.Dropdown(
            options=["sigmoid", "tanh", "relu"], value=activation, description="activation"
        ),
        "depth": widgets.IntSlider(
            value=depth, min=2, max=50, step=1, description="depth", continuous_update=False
        ),
        "init": widgets.Dropdown(options=list(INITS), value=init, description="init"),
        "weight_scale": widgets.FloatLogSlider(
            value=weight_scale,
            base=2,
            min=-2,
            max=4,
            step=0.5,
            description="weight scale",
            continuous_update=False,
        ),
    }

    def make_config(activation: str, depth: int, init: str, weight_scale: float) -> InitGradientConfig:
        return InitGradientConfig(activation=activation, depth=depth, init=init, weight_scale=weight_scale)

    return Explorer(
        controls,
        make_config,
        run_init_gradients,
        plots.gradient_profile,
        readout=_readout,
        title="Gradients at initialization: how much of ∂J/∂h_L reaches each layer?",
        # the static page: 3 activations x 5 inits x 3 depths x 3 scales = 135 views
        page_grid={
            "activation": ["sigmoid", "tanh", "relu"],
            "depth": sorted({5, 20, 50, depth}),
            "init": list(INITS),
            "weight_scale": sorted({0.5, 1.0, 2.0, weight_scale}),
        },
    )
