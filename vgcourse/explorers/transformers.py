"""Explorer of the transformers chapter: layer-norm position and residual scaling × depth
→ per-block gradient profile."""

from __future__ import annotations

import ipywidgets as widgets

from vgcourse._validation import check_int
from vgcourse.experiments.transformers import (
    SORT_VOCAB,
    TRAINED_ACCURACY,
    VARIANTS,
    WEIGHTS,
    GradientProfileConfig,
    GradientProfileResult,
    WarmupConfig,
    WarmupResult,
    run_gradient_profile,
    run_warmup,
)
from vgcourse.plots import transformers as plots
from vgcourse.widgets import Explorer, control, select

GRID_DEPTHS = (2, 6, 12, 24)  # the depths the static page precomputes


def gradient_profile_readout(result: GradientProfileResult) -> str:
    """One line of HTML: block 1 / block L gradient, the last block's gradient, the stream's growth."""
    variant, depth = result.config.variants[0], result.config.depths[0]
    profile = result.profile(variant, depth)
    stream = result.stream(variant, depth)
    return (
        f"MLP W² gradient: block 1 / block L = {float((profile[:, 0] / profile[:, -1]).mean()):.3g}"
        f" &nbsp;·&nbsp; block L = {float(profile[:, -1].mean()):.3g}"
        f" &nbsp;·&nbsp; RMS(x_L) / RMS(x₀) = {float((stream[:, -1] / stream[:, 0]).mean()):.3g}"
        f" &nbsp;·&nbsp; loss at init = {float(result.loss.values.mean()):.3g}"
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

    The arguments are the controls' starting values (stack: a label of ``VARIANTS``, weight: one of
    ``WEIGHTS``), the depth slider's upper end and the networks per setting (seeds 0, 1, ...).
    """
    controls = {
        "depth": control(GradientProfileConfig, "depths", depth, "blocks L", name="depth", high=max_depth),
        "stack": control(GradientProfileConfig, "variants", stack, name="stack", kind=widgets.Dropdown),
    }
    view_controls = {"weight": select("weight", weight, WEIGHTS)}

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
        view_controls=view_controls,
    )


# --- Training, warmup and diagnose (T2) ---

WARMUP_LRS = (0.003, 0.01, 0.03)  # the peak learning rates the warmup explorer offers


def warmup_readout(result: WarmupResult) -> str:
    """One line of HTML: the run's final validation accuracy and loss, and whether it trained."""
    variant, lr = result.config.variants[0], result.config.lrs[0]
    accuracy = float(result.final_accuracy.values[0, 0, 0])
    verdict = "trains" if accuracy >= TRAINED_ACCURACY else "fails"
    return (
        f"{variant} at lr {lr:g}: final validation accuracy {accuracy:.3f} &nbsp;·&nbsp; "
        f"loss {float(result.final_val_loss.values[0, 0, 0]):.3f} &nbsp;·&nbsp; {verdict} "
        f"(the chapter's line: {TRAINED_ACCURACY:.0%}; chance 1/{SORT_VOCAB})"
    )


def warmup_explorer(layout: str = "Post-LN", warmup: int = 0, lr: float = 0.01) -> Explorer:
    """The chapter's sorting transformer trained with Adam (``run_warmup``, seed 0, 200 steps): where LN
    sits, the linear warmup length and the peak learning rate; draws ``plots.warmup_curves``.

    The arguments are the controls' starting values: ``layout`` "Post-LN" or "Pre-LN", ``warmup`` the
    warmup length in steps (0: none; a multiple of 25 in [0, 100]), ``lr`` one of ``WARMUP_LRS``.
    """
    check_int("warmup", warmup)  # 0 is no warmup: not a value of the config's warmup_steps
    if warmup not in range(0, 101, 25):
        raise ValueError(f"warmup must be a multiple of 25 in [0, 100]; got {warmup}")
    controls = {
        "layout": select("layout", layout, ["Post-LN", "Pre-LN"]),
        "warmup": widgets.IntSlider(
            value=warmup, min=0, max=100, step=25, description="warmup W", continuous_update=False
        ),
        "lr": control(
            WarmupConfig, "lrs", lr, "peak lr", name="lr", options=WARMUP_LRS, kind=widgets.Dropdown
        ),
    }

    def make_config(layout: str, warmup: int, lr: float) -> WarmupConfig:
        variant = layout if warmup == 0 else f"{layout} + warmup"
        return WarmupConfig(variants=(variant,), lrs=(lr,), warmup_steps=max(warmup, 1))

    return Explorer(
        controls,
        make_config,
        run_warmup,
        plots.warmup_curves,
        readout=warmup_readout,
        title="Adam on the sorting task: where the norm sits, warmup and the learning rate",
        # the static page: 2 layouts x 2 warmups x 2 rates = 8 runs, 4 of them the chapter's own
        page_grid={
            "layout": ["Post-LN", "Pre-LN"],
            "warmup": sorted({0, 50, warmup}),
            "lr": sorted({0.003, 0.01, lr}),
        },
    )
