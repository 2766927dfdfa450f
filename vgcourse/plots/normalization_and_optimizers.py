"""Figures of the chapter on normalization layers and adaptive optimizers (first half: normalization)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vgcourse.experiments.normalization_and_optimizers import (
    ADAM_EPS,
    OPTIMIZER_NAMES,
    AdamFirstStepResult,
    BatchSizeResult,
    NormGrowthResult,
    NormProfileResult,
    OptimizerGridResult,
    SamePathResult,
    ScaleInvarianceResult,
    TrainEvalResult,
)
from vgcourse.meanfield import predicted_growth
from vgcourse.plots._common import (
    check_result,
    check_results,
    checked,
    figure_and_axes,
    figure_and_axes_grid,
    log_scale,
    positive_only,
    trailing_mean,
)

NORM_COLORS = {"none": "0.45", "batch": "C3", "layer": "C0", "rms": "C2"}
NORM_LABELS = {"none": "no norm", "batch": "BatchNorm", "layer": "LayerNorm", "rms": "RMSNorm"}
_FONT = 9


def _batch_ticks(ax: Axes, sizes: np.ndarray) -> None:
    """A base-2 log x axis labelled with the batch sizes themselves (4, 16, 64, not 2², 2⁴, 2⁶)."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.set_xticklabels([f"{int(b)}" for b in sizes])
    ax.xaxis.set_minor_locator(plt.NullLocator())


def _finish(fig: Figure, *axes: Axes) -> Figure:
    """Major grid lines on ``axes``, then the figure laid out."""
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    return fig


@checked
def train_eval(result: TrainEvalResult, *, ax: Axes | None = None) -> Figure:
    """BatchNorm's relative difference between training-mode and evaluation-mode outputs against the
    batch size (log-log)."""
    check_result(result, TrainEvalResult)
    fig, ax = figure_and_axes(ax, figsize=(4.8, 3.2))
    sizes = np.asarray(result.config.batch_sizes)
    ax.plot(sizes, result.relative_difference.values, "o-", color=NORM_COLORS["batch"], label="measured")
    log_scale(ax)
    _batch_ticks(ax, sizes)
    ax.set_xlabel("batch size B")
    ax.set_ylabel("‖y_train − y_eval‖ / ‖y_eval‖")
    ax.set_title("BatchNorm: batch vs running statistics", fontsize=_FONT + 1)
    return _finish(fig, ax)


def _profile_panel(ax: Axes, results: Sequence[NormProfileResult], which: str, predict: bool) -> None:
    for r in results:
        layers = np.arange(1, r.config.depth + 1)
        color = NORM_COLORS[r.config.norm]
        values = r.backward / r.backward[-1] if which == "backward" else r.forward
        ax.plot(layers, values, color=color, label=NORM_LABELS[r.config.norm])
        if predict and which == "backward" and r.config.norm != "none":
            rate = predicted_growth(r.config.norm, r.config.activation)
            ax.plot(layers, rate ** (r.config.depth - layers), color=color, ls="--", lw=1)
    log_scale(ax)
    ax.set_xlabel("layer l")


@checked
def layer_profiles(results: Sequence[NormProfileResult], axes: Sequence[Axes] | None = None) -> Figure:
    """Rows: activations; left: the rms of the pre-normalization signal h_l; right: ‖∂J/∂h_l‖ over
    ‖∂J/∂h_L‖, per layer, one line per normalization; dashed, the mean-field growth ``predicted_growth``."""
    results = check_results(results, NormProfileResult)
    activations = list(dict.fromkeys(r.config.activation for r in results))
    fig, grid, _ = figure_and_axes_grid(axes, (len(activations), 2), (7.2, 3.0 * len(activations)))
    for row, act in enumerate(activations):
        mine = [r for r in results if r.config.activation == act]
        left, right = grid[2 * row], grid[2 * row + 1]
        _profile_panel(left, mine, "forward", False)
        _profile_panel(right, mine, "backward", True)
        left.set_ylabel("rms of h_l")
        right.set_ylabel("‖∂J/∂h_l‖ / ‖∂J/∂h_L‖")
        left.set_title(f"{act}: forward signal", fontsize=_FONT + 1)
        right.set_title(f"{act}: backward signal", fontsize=_FONT + 1)
    grid[1].legend(fontsize=_FONT, loc="upper right")
    return _finish(fig, *grid)


@checked
def layer_profile(result: NormProfileResult, *, ax: Axes | None = None) -> Figure:
    """One network: per layer, ‖∂J/∂h_l‖, the rms of h_l and ‖∂J/∂W_l‖ on one log axis (the explorer's
    view); dashed, the backward signal's mean-field growth from the last layer."""
    check_result(result, NormProfileResult)
    fig, ax = figure_and_axes(ax, figsize=(6.4, 3.6))
    cfg = result.config
    layers = np.arange(1, cfg.depth + 1)
    ax.plot(layers, result.backward, color="C3", label="‖∂J/∂h_l‖ (backward)")
    ax.plot(layers, result.weight_grad, color="C1", label="‖∂J/∂W_l‖ (weight gradient)")
    ax.plot(layers, result.forward, color="C0", label="rms of h_l (forward)")
    if cfg.norm != "none":
        rate = predicted_growth(cfg.norm, cfg.activation)
        ax.plot(layers, result.backward[-1] * rate ** (cfg.depth - layers), "k--", lw=1, label="mean field")
    log_scale(ax)
    ax.set_xlabel("layer l")
    ax.set_title(f"{NORM_LABELS[cfg.norm]}, {cfg.activation}, L = {cfg.depth}", fontsize=_FONT + 1)
    ax.legend(fontsize=_FONT, loc="best")
    return _finish(fig, ax)


@checked
def batch_size_growth(result: BatchSizeResult, *, ax: Axes | None = None) -> Figure:
    """Growth per layer of the backward signal against the batch size; dashed, the mean-field value."""
    check_result(result, BatchSizeResult)
    fig, ax = figure_and_axes(ax, figsize=(5.6, 3.4))
    sizes = np.asarray(result.config.batch_sizes)
    styles = {"relu": "-", "tanh": ":"}
    for norm, act in itertools.product(result.config.norms, result.config.activations):
        color, values = NORM_COLORS[norm], result.growth.sel(norm=norm, activation=act).values
        ax.plot(sizes, values, "o" + styles[act], color=color, label=f"{NORM_LABELS[norm]}, {act}")
        ax.axhline(predicted_growth(norm, act), color=color, ls="--", lw=0.8)
    _batch_ticks(ax, sizes)
    ax.set_xlabel("batch size B")
    ax.set_ylabel("growth per layer")
    ax.legend(fontsize=_FONT, ncol=2, loc="upper right")
    return _finish(fig, ax)


@checked
def scale_invariance(
    result: ScaleInvarianceResult, path: SamePathResult, axes: Sequence[Axes] | None = None
) -> Figure:
    """Left: ‖∇_W J(cW)‖ against c (log-log) with the line 1/c. Right: the training loss of the runs
    (W, lr), (cW, c² lr) and (cW, lr)."""
    if not isinstance(result, ScaleInvarianceResult) or not isinstance(path, SamePathResult):
        raise TypeError("scale_invariance needs a ScaleInvarianceResult and a SamePathResult")
    fig, (left, right), _ = figure_and_axes_grid(axes, (1, 2), (7.2, 3.2))
    scales = np.asarray(result.config.scales)
    ref = result.grad_norm.sel(scale=1.0)
    left.plot(scales, ref / scales, "k--", lw=1, label="‖∇J(W)‖ / c")
    left.plot(scales, result.grad_norm.values, "o", color=NORM_COLORS[result.config.norm], label="measured")
    left.set_xscale("log", base=2)
    log_scale(left)
    left.set_xlabel("scale c of W")
    left.set_ylabel("‖∇_W J(cW)‖")
    left.legend(fontsize=_FONT)
    c = path.config.scale
    labels = ("W, lr", f"{c:g}W, {c * c:g}·lr", f"{c:g}W, lr")
    styles = (("C0", "-", 2.5), ("C1", "--", 1.2), ("0.45", "-", 1.2))
    for losses, label, (color, ls, lw) in zip(path.losses, labels, styles, strict=True):
        index, smooth = trailing_mean(losses, 10)
        right.plot(index + 1, smooth, color=color, ls=ls, lw=lw, label=label)
    log_scale(right)
    right.set_xlabel("SGD step")
    right.set_ylabel("training loss (10-step mean)")
    right.legend(fontsize=_FONT)
    return _finish(fig, left, right)


@checked
def norm_growth(result: NormGrowthResult, axes: Sequence[Axes] | None = None) -> Figure:
    """Left: ‖W‖ over its initial value, step by step, one line per weight decay λ. Right: the update
    ratio lr‖g‖/‖W‖ (50-step root mean square) with the equilibrium sqrt(2 lr λ − (lr λ)²) dashed."""
    check_result(result, NormGrowthResult)
    fig, (left, right), _ = figure_and_axes_grid(axes, (1, 2), (7.2, 3.2))
    steps = np.arange(1, result.config.steps + 1)
    for i, wd in enumerate(result.config.weight_decays):
        color = f"C{i}"
        label = "no weight decay" if wd == 0 else f"λ = {wd:g}"
        left.plot(steps, result.weight_norm[i] / result.initial_norm, color=color, label=label)
        index, mean_square = trailing_mean(result.update_ratio[i] ** 2, 50)
        right.plot(index + 1, np.sqrt(mean_square), color=color, label=label)
        if wd > 0:
            right.axhline(result.predicted_ratio.sel(weight_decay=wd), color=color, ls="--", lw=1)
    left.set_ylim(bottom=0)
    left.set_xlabel("SGD step")
    left.set_ylabel("‖W‖ / ‖W₀‖")
    left.legend(fontsize=_FONT)
    log_scale(right)
    right.set_xlabel("SGD step")
    right.set_ylabel("update ratio lr‖g‖/‖W‖")
    return _finish(fig, left, right)


# --- Adaptive optimizers (N2) ---

OPTIMIZER_COLORS = {"momentum": "0.35", "adam": "C1"}


@checked
def optimizer_grid(result: OptimizerGridResult, axes: Sequence[Axes] | None = None) -> Figure:
    """Left: validation accuracy against the learning rate for SGD with momentum and for Adam: the grid
    (mean over the grid seeds, line) and the best learning rate at every seed (dots). Right: at each
    optimizer's best learning rate, how far one step moves each layer's weights, std(ΔW)/lr (log scale;
    median over seeds, band: min to max)."""
    check_result(result, OptimizerGridResult)
    fig, (left, right), _ = figure_and_axes_grid(axes, (1, 2), (7.2, 3.0))
    layers = np.arange(1, len(result.layer_names) + 1)
    for optimizer in OPTIMIZER_NAMES:
        color, label = OPTIMIZER_COLORS[optimizer], OPTIMIZER_NAMES[optimizer]
        grid = result.grid_accuracy[optimizer]
        left.plot(np.asarray(grid.axes["lr"]), grid.values.mean(axis=1), "-", color=color, label=label)
        best = result.best_lr[optimizer]
        accuracy = result.accuracy.sel(optimizer=optimizer).values
        left.plot(np.full(len(accuracy), best), accuracy, "o", color=color, ms=4, alpha=0.7)
        steps = result.update_size.sel(optimizer=optimizer).values
        right.plot(layers, np.median(steps, axis=0), "o-", color=color, label=f"{label}, lr {best:g}")
        right.fill_between(layers, steps.min(axis=0), steps.max(axis=0), color=color, alpha=0.2, lw=0)
    log_scale(left, "x")
    left.set_ylim(0.4, 1.02)
    left.set_xlabel("learning rate")
    left.set_ylabel("validation accuracy")
    left.set_title("after 30 epochs", fontsize=_FONT + 1)
    left.legend(fontsize=_FONT, loc="upper left")
    log_scale(right)
    right.set_xticks(layers, [name.replace("layer ", "") for name in result.layer_names])
    right.set_xlabel("layer")
    right.set_ylabel("std(ΔW) / lr")
    right.set_title("one step, in learning rates", fontsize=_FONT + 1)
    right.legend(fontsize=_FONT, loc="lower right")
    return _finish(fig, left, right)


@checked
def first_step(result: AdamFirstStepResult, axes: Sequence[Axes] | None = None) -> Figure:
    """Left: the rms of each layer's weight gradient at initialization (log scale, one line per seed) and
    Adam's ε. Right: Adam's first step in learning rates, rms(ΔW)/lr, against the gradient's rms, one dot
    per layer and seed, with the update rule's g/(g + ε); steps that round to 0 in float32 are not drawn."""
    check_result(result, AdamFirstStepResult)
    fig, (left, right), _ = figure_and_axes_grid(axes, (1, 2), (7.2, 3.0))
    layers = np.arange(1, result.grad_rms.shape[1] + 1)
    for s in range(result.grad_rms.shape[0]):
        left.plot(
            layers, result.grad_rms[s], "-", color="C0", alpha=0.7, label="gradient rms" if s == 0 else None
        )
    left.axhline(ADAM_EPS, color="C3", ls="--", lw=1, label="Adam's ε")
    log_scale(left)
    left.set_xlabel("layer (the last is the output layer)")
    left.set_ylabel("rms of ∂J/∂W")
    left.set_title(f"{result.config.depth} sigmoid layers of 5 units", fontsize=_FONT + 1)
    left.legend(fontsize=_FONT, loc="upper left")
    g = result.grad_rms.ravel()
    step = positive_only(result.step.ravel())
    right.plot(g, step, "o", color="C1", ms=3.5, alpha=0.8, label="measured")
    drawn = g[g > 0]  # a gradient that underflowed to 0 (a deep network) has no place on the log axis
    if drawn.size:
        grid = np.geomspace(drawn.min(), drawn.max(), 200)
        right.plot(grid, grid / (grid + ADAM_EPS), "-", color="0.3", lw=1, label="g / (g + ε)")
    right.axvline(ADAM_EPS, color="C3", ls="--", lw=1)
    log_scale(right, "x")
    log_scale(right)
    right.set_xlabel("rms of ∂J/∂W")
    right.set_ylabel("rms(ΔW) / lr")
    right.set_title(f"Adam's first step, lr {result.config.lr:g}", fontsize=_FONT + 1)
    right.legend(fontsize=_FONT, loc="lower right")
    return _finish(fig, left, right)
