"""Explorer of the normalization-and-optimizers chapter: normalization × activation × depth × batch size
→ per-layer signals."""

from __future__ import annotations

from functools import partial

import ipywidgets as widgets

from vgcourse.experiments.normalization_and_optimizers import (
    ACTIVATIONS,
    NORM_KINDS,
    NormProfileConfig,
    NormProfileResult,
    run_norm_profile,
)
from vgcourse.meanfield import predicted_growth
from vgcourse.plots import normalization_and_optimizers as plots
from vgcourse.widgets import Explorer, control

BATCH_SIZES = (4, 16, 64, 256)


def norm_profile_readout(result: NormProfileResult) -> str:
    """One line of HTML: the gradient ratio across the layers, the growth per layer and its prediction."""
    cfg = result.config
    text = (
        f"‖∂J/∂h₁‖ / ‖∂J/∂h_L‖ = {result.grad_ratio:.3g} &nbsp;·&nbsp; "
        f"growth per layer = {result.growth_per_layer:.3f}"
    )
    if cfg.norm != "none":
        text += f" (mean field: {predicted_growth(cfg.norm, cfg.activation):.3f})"
    return text + f" &nbsp;·&nbsp; loss at init = {result.loss:.3g}"


def norm_profile_explorer(
    depth: int = 30,
    norm: str = "batch",
    activation: str = "relu",
    batch_size: int = 64,
    *,
    width: int = 64,
    max_depth: int = 100,
    seed: int = 0,
) -> Explorer:
    """Controls for depth L, normalization, activation and batch size; shows ``plots.layer_profile`` of
    ``run_norm_profile`` (one forward and one backward pass of a plain network on a batch of digits).

    The arguments are the controls' starting values, the depth slider's upper end and the fixed width
    and seed (of the weights and the batch).
    """
    controls = {
        "depth": control(NormProfileConfig, "depth", depth, "layers L", high=max_depth),
        "norm": control(NormProfileConfig, "norm", norm, kind=widgets.Dropdown),
        "activation": control(NormProfileConfig, "activation", activation, "φ"),
        "batch_size": control(
            NormProfileConfig, "batch_size", batch_size, "batch", options=BATCH_SIZES, kind=widgets.Dropdown
        ),
    }

    return Explorer(
        controls,
        partial(NormProfileConfig, width=width, seed=seed),
        run_norm_profile,
        plots.layer_profile,
        readout=norm_profile_readout,
        title="Plain network with normalization: per-layer signals at initialization",
        # the static page: 2 depths x 4 norms x 2 activations = 16 settings at the starting batch size
        page_grid={
            "depth": sorted({10, depth} & set(range(2, max_depth + 1))),
            "norm": list(NORM_KINDS),
            "activation": list(ACTIVATIONS),
        },
    )
