"""Explorer of the linear-chain chapter: depth and weight scale of a deep linear network
→ per-layer gradient norms."""

from __future__ import annotations

from functools import partial

from vgcourse.experiments.linear_chain import (
    INITS,
    LayerProfileConfig,
    LayerProfileResult,
    run_layer_profile,
)
from vgcourse.plots import linear_chain as plots
from vgcourse.widgets import Explorer, control


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

    Each change runs ``run_layer_profile`` (one forward and one backward pass of an n-wide network). The
    arguments are the controls' starting values (scale in [0.5, 2]), the depth slider's upper end and the
    fixed width n and seed.
    """
    controls = {
        "depth": control(LayerProfileConfig, "depth", depth, "depth L", high=max_depth),
        # linear steps of 0.005 from 0.5: s = 1 and round values like 0.95 are exact slider positions
        "scale": control(
            LayerProfileConfig, "scale", scale, "scale s", low=0.5, high=2.0, step=0.005, readout_format=".3f"
        ),
        "init": control(LayerProfileConfig, "init", init, "weights"),
    }

    # The static page's grid (6 x 11 x 2 views): the start, and the depths and scales the chapter discusses.
    page_depths = sorted({5, 10, 20, 30, 50, max_depth, depth} & set(range(1, max_depth + 1)))
    page_scales = sorted({0.5, 0.8, 0.9, 0.95, 0.98, 1.0, 1.02, 1.05, 1.1, 1.25, 2.0, float(scale)})

    return Explorer(
        controls,
        partial(LayerProfileConfig, width=width, seed=seed),
        run_layer_profile,
        plots.layer_profile,
        readout=layer_profile_readout,
        title="A deep linear network: per-layer norms",
        page_grid={"depth": page_depths, "scale": page_scales, "init": list(INITS)},
    )
