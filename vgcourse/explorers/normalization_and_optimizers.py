"""Explorer of chapter 7: normalization × activation × depth × batch size → per-layer signals."""

from __future__ import annotations

import ipywidgets as widgets

from vgcourse._validation import check_choice, check_int
from vgcourse.experiments.normalization_and_optimizers import (
    ACTIVATIONS,
    NORM_KINDS,
    NormProfileConfig,
    NormProfileResult,
    predicted_growth,
    run_norm_profile,
)
from vgcourse.plots import normalization_and_optimizers as plots
from vgcourse.widgets import Explorer

__all__ = ["norm_profile_explorer", "norm_profile_readout"]

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

    Args:
        depth: the initial number of layers L.
        norm: the initial normalization, "none", "batch", "layer" or "rms".
        activation: the initial activation, "relu" or "tanh".
        batch_size: the initial batch size (one of 4, 16, 64, 256).
        width: units per layer (fixed).
        max_depth: the depth slider's upper end.
        seed: the random seed of the weights and the batch (fixed).
    """
    check_int("max_depth", max_depth, minimum=2, maximum=500)
    check_int("depth", depth, minimum=2, maximum=max_depth)
    check_choice("norm", norm, NORM_KINDS)
    check_choice("activation", activation, ACTIVATIONS)
    if batch_size not in BATCH_SIZES:
        raise ValueError(f"batch_size must be one of {BATCH_SIZES}; got {batch_size!r}")
    check_int("width", width, minimum=2, maximum=512)
    check_int("seed", seed, minimum=0)
    controls = {
        "depth": widgets.IntSlider(
            value=depth, min=2, max=max_depth, step=1, description="layers L", continuous_update=False
        ),
        "norm": widgets.Dropdown(options=list(NORM_KINDS), value=norm, description="norm"),
        "activation": widgets.ToggleButtons(options=list(ACTIVATIONS), value=activation, description="φ"),
        "batch_size": widgets.Dropdown(options=list(BATCH_SIZES), value=batch_size, description="batch"),
    }

    def make_config(depth: int, norm: str, activation: str, batch_size: int) -> NormProfileConfig:
        return NormProfileConfig(
            norm=norm, activation=activation, depth=depth, width=width, batch_size=batch_size, seed=seed
        )

    return Explorer(
        controls,
        make_config,
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
