"""Explorer of chapter 1: depth and weight scale of a deep linear network → per-layer gradient norms."""

from __future__ import annotations

import ipywidgets as widgets

from vgcourse._validation import check_choice, check_float, check_int
from vgcourse.experiments.linear_chain import (
    INITS,
    LayerProfileConfig,
    LayerProfileResult,
    run_layer_profile,
)
from vgcourse.plots import linear_chain as plots
from vgcourse.widgets import Explorer

__all__ = ["layer_profile_explorer", "layer_profile_readout"]


def layer_profile_readout(result: LayerProfileResult) -> str:
    """One line of HTML: the first and last layer's gradient norms and the prediction s^(L-1)."""
    first, last = result.weight_grad_norm[0], result.weight_grad_norm[-1]
    return (
        f"layer 1: ‖∂J/∂W₁‖ = {first:.3g} &nbsp;·&nbsp; layer {result.config.depth}: {last:.3g} "
        f"&nbsp;·&nbsp; s<sup>L−1</sup> = {result.predicted_weight_grad_norm:.3g} "
        f"&nbsp;·&nbsp; backward signal at layer 1: ‖δ₁‖ = {result.backward_norm[0]:.3g}"
    )


def layer_profile_explorer(
    depth: int = 30,
    scale: float = 1.0,
    init: str = "orthogonal",
    *,
    width: int = 32,
    max_depth: int = 100,
    seed: int = 0,
) -> Explorer:
    """Sliders for depth L and weight scale s, buttons for the init; shows ``plots.layer_profile``.

    Each change runs ``run_layer_profile`` (one forward and one backward pass of an n-wide network).

    Args:
        depth: the initial number of layers L.
        scale: the initial weight scale s, in [0.5, 2].
        init: the initial weights, "orthogonal" or "gaussian".
        width: n, the size of every layer (fixed).
        max_depth: the depth slider's upper end.
        seed: the random seed of the weights (fixed).
    """
    check_int("max_depth", max_depth, minimum=2, maximum=1000)
    check_int("depth", depth, minimum=1, maximum=max_depth)
    check_float("scale", scale, minimum=0.5, maximum=2.0)
    check_choice("init", init, INITS)
    check_int("width", width, minimum=1, maximum=1024)
    check_int("seed", seed, minimum=0)
    controls = {
        "depth": widgets.IntSlider(
            value=depth, min=1, max=max_depth, step=1, description="depth L", continuous_update=False
        ),
        # linear steps of 0.005 from 0.5: s = 1 and round values like 0.95 are exact slider positions
        "scale": widgets.FloatSlider(
            value=scale,
            min=0.5,
            max=2.0,
            step=0.005,
            description="scale s",
            readout_format=".3f",
            continuous_update=False,
        ),
        "init": widgets.ToggleButtons(options=list(INITS), value=init, description="weights"),
    }

    # The static page's grid (6 x 11 x 2 views): the start, and the depths and scales the chapter discusses.
    page_depths = sorted({5, 10, 20, 30, 50, max_depth, depth} & set(range(1, max_depth + 1)))
    page_scales = sorted({0.5, 0.8, 0.9, 0.95, 0.98, 1.0, 1.02, 1.05, 1.1, 1.25, 2.0, float(scale)})

    def make_config(depth: int, scale: float, init: str) -> LayerProfileConfig:
        return LayerProfileConfig(depth=depth, width=width, scale=float(scale), init=init, seed=seed)

    return Explorer(
        controls,
        make_config,
        run_layer_profile,
        plots.layer_profile,
        readout=layer_profile_readout,
        title="A deep linear network: per-layer norms",
        page_grid={"depth": page_depths, "scale": page_scales, "init": list(INITS)},
    )
