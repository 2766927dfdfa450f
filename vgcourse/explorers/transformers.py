"""Explorer of chapter 8: layer-norm position and residual scaling × depth → per-block gradient profile."""

from __future__ import annotations

import ipywidgets as widgets

from vgcourse._validation import check_choice, check_int
from vgcourse.experiments.transformers import (
    VARIANTS,
    WEIGHTS,
    GradientProfileConfig,
    GradientProfileResult,
    run_gradient_profile,
)
from vgcourse.plots import transformers as plots
from vgcourse.widgets import Explorer

__all__ = ["GRID_DEPTHS", "gradient_profile_explorer", "gradient_profile_readout"]

GRID_DEPTHS = (2, 6, 12, 24)
"""The depths the static page precomputes."""


def gradient_profile_readout(result: GradientProfileResult) -> str:
    """One line of HTML: block 1 / block L gradient, the last block's gradient, the stream's growth."""
    variant, depth = result.config.variants[0], result.config.depths[0]
    profile = result.profile(variant, depth)
    stream = result.stream(variant, depth)
    return (
        f"MLP W² gradient: block 1 / block L = {float((profile[:, 0] / profile[:, -1]).mean()):.3g}"
        f" &nbsp;·&nbsp; block L = {float(profile[:, -1].mean()):.3g}"
        f" &nbsp;·&nbsp; RMS(x_L) / RMS(x₀) = {float((stream[:, -1] / stream[:, 0]).mean()):.3g}"
        f" &nbsp;·&nbsp; loss at init = {float(result.loss.mean()):.3g}"
    )


def gradient_profile_explorer(
    depth: int = 12,
    stack: str = "Pre-LN",
    weight: str = "proj",
    *,
    max_depth: int = 48,
    n_seeds: int = 2,
) -> Explorer:
    """A depth slider, the stack (where LN sits and which residual scaling) and the weight shown; draws
    ``plots.layer_profile`` of ``run_gradient_profile`` (one forward and backward pass per seed; d_model 64,
    4 heads, 16 tokens, batch 8, random tokens and targets).

    Args:
        depth: the initial number of blocks L.
        stack: the initial stack, a label of ``VARIANTS``.
        weight: the initial weight shown, one of ``WEIGHTS``.
        max_depth: the depth slider's upper end.
        n_seeds: networks per setting (seeds 0, 1, ...), one line each.
    """
    check_int("max_depth", max_depth, minimum=2, maximum=200)
    check_int("depth", depth, minimum=1, maximum=max_depth)
    check_choice("stack", stack, VARIANTS)
    check_choice("weight", weight, WEIGHTS)
    check_int("n_seeds", n_seeds, minimum=1, maximum=10)
    controls = {
        "depth": widgets.IntSlider(
            value=depth, min=1, max=max_depth, step=1, description="blocks L", continuous_update=False
        ),
        "stack": widgets.Dropdown(options=list(VARIANTS), value=stack, description="stack"),
    }

    def make_config(depth: int, stack: str) -> GradientProfileConfig:
        return GradientProfileConfig(variants=(stack,), depths=(depth,), n_seeds=n_seeds)

    def plot(result: GradientProfileResult, weight: str = weight):
        return plots.layer_profile(result, weight=weight)

    plot.__name__ = "layer_profile"
    return Explorer(
        controls,
        make_config,
        run_gradient_profile,
        plot,
        readout=gradient_profile_readout,
        title="Where layer norm sits, residual scaling and depth: per-block gradients at initialization",
        # the static page: 4 depths x 5 stacks x 2 weights = 40 views from 20 runs
        page_grid={
            "depth": sorted({*GRID_DEPTHS, depth} & set(range(1, max_depth + 1))),
            "stack": list(VARIANTS),
            "weight": sorted({"proj", "q", weight}, key=WEIGHTS.index),
        },
        view_controls={
            "weight": widgets.ToggleButtons(options=list(WEIGHTS), value=weight, description="weight")
        },
    )
