"""Figures of the chapter on ReLU and dying units, from results of ``experiments.relu_dying_units``."""

from __future__ import annotations

import itertools
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from vgcourse.config import geometric_mean
from vgcourse.experiments.relu_dying_units import (
    DyingResult,
    DyingSweepResult,
    FrozenUnitsResult,
    GradientFlowResult,
)
from vgcourse.plots._common import (
    check_result,
    checked,
    figure_and_axes,
    figure_and_axes_grid,
    log_scale,
    outer_labels_only,
)

__all__ = ["backward_factors", "dead_grid", "dead_over_training", "frozen_units", "gradient_flow"]

_LAYER_COLORS = plt.get_cmap("viridis")


@checked
def gradient_flow(result: GradientFlowResult, *, ax: Axes | None = None) -> Figure:
    """‖∂J/∂W_l‖ against layer l at initialization per activation (log y): geometric mean, band min..max."""
    check_result(result, GradientFlowResult)
    fig, ax = figure_and_axes(ax)
    layers = np.arange(1, result.config.depth + 1)
    for a, activation in enumerate(result.config.activations):
        values = result.grad_norm[a]
        center = geometric_mean(values, axis=0)
        (line,) = ax.plot(layers, center, marker="o", markersize=3, label=activation)
        ax.fill_between(layers, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)
    log_scale(ax, "y")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer l (1 = input side)")
    ax.set_ylabel(r"$\|\partial J / \partial W_l\|$")
    ax.set_title(f"weight gradients at init, depth {result.config.depth}, {result.config.n_seeds} seeds")
    ax.legend()
    return fig


@checked
def backward_factors(result: GradientFlowResult, *, ax: Axes | None = None) -> Figure:
    """‖δ_l‖ / ‖δ_{l+1}‖ measured (markers) vs predicted ρ_l = g·rms f'(z_l), geometric means over seeds."""
    check_result(result, GradientFlowResult)
    fig, ax = figure_and_axes(ax)
    layers = np.arange(1, result.config.depth)
    for a, activation in enumerate(result.config.activations):
        measured = geometric_mean(result.measured_factor[a], axis=0)
        predicted = geometric_mean(result.predicted_factor[a], axis=0)
        (line,) = ax.plot(layers, predicted, label=f"{activation}: predicted " + r"$\rho_l$")
        ax.plot(layers, measured, "o", color=line.get_color(), markersize=4, label=f"{activation}: measured")
    for level in (1.0, 0.25):
        ax.axhline(level, color="gray", linestyle=":", linewidth=1)
    log_scale(ax, "y")
    low, high = ax.get_ylim()
    ticks = [t for t in (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1, 2, 4) if low <= t <= high]
    if len(ticks) >= 2:
        ax.set_yticks(ticks, [f"1/{round(1 / t)}" if t < 1 else f"{t:g}" for t in ticks])
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer l")
    ax.set_ylabel(r"$\|\delta_l\| \,/\, \|\delta_{l+1}\|$")
    ax.set_title("what one layer does to the backward signal")
    ax.legend(fontsize="small")
    return fig


def _describe(config: Any) -> str:
    return f"lr {config.lr:g}, bias {config.bias_init:g}"


@checked
def dead_over_training(
    result: DyingResult, *, ax: Axes | None = None, legend: bool = True, title: str | None = None
) -> Figure:
    """Dead fraction of each hidden layer and validation accuracy (dashed) by step; divergence: red x."""
    check_result(result, DyingResult)
    fig, ax = figure_and_axes(ax)
    n_layers = len(result.layer_names)
    for i, name in enumerate(result.layer_names):
        color = _LAYER_COLORS(i / max(1, n_layers - 1) * 0.9)
        ax.plot(result.steps, result.dead_frac[:, i], color=color, marker=".", label=f"dead, {name}")
    ax.plot(result.steps, result.val_accuracy, color="black", linestyle="--", label="val accuracy")
    if result.diverged:
        ax.plot(result.steps[-1], result.val_accuracy[-1], "x", color="red", markersize=10, label="diverged")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("fraction")
    if title is None:
        config = result.config
        title = f"{config.activation}, {_describe(config)}: acc {result.final_accuracy:.2f}"
    ax.set_title(title, fontsize="medium")
    if legend:
        ax.legend(fontsize=9, loc="best")
    return fig


@checked
def dead_grid(sweep: DyingSweepResult, *, axes: np.ndarray | None = None) -> Figure:
    """Small multiples of ``dead_over_training``: rows over learning rate, columns over bias init."""
    check_result(sweep, DyingSweepResult, "sweep")
    rows, cols = len(sweep.config.lrs), len(sweep.config.bias_inits)
    size = (min(7.2, 2.2 * cols + 0.6), 1.75 * rows + 1.0)
    fig, axes, _ = figure_and_axes_grid(axes, (rows, cols), size, sharex=True, sharey=True)
    cells = itertools.product(sweep.config.lrs, sweep.config.bias_inits)
    for ax, (lr, bias) in zip(axes, cells, strict=True):
        run = sweep.runs.sel(lr=lr, bias_init=bias)
        title = f"lr {lr:g}, bias {bias:g}: acc {run.final_accuracy:.2f}"
        dead_over_training(run, ax=ax, legend=False, title=title)
        ax.title.set_fontsize(9)
    outer_labels_only(axes, cols)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle(f"dead fraction per layer during training ({sweep.config.base.activation})")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


@checked
def frozen_units(result: FrozenUnitsResult, *, ax: Axes | None = None) -> Figure:
    """Per layer: units dead at checkpoint A, split into still silent at B and fired again (revived)."""
    check_result(result, FrozenUnitsResult)
    fig, ax = figure_and_axes(ax)
    x = np.arange(len(result.layer_names))
    ax.bar(x, result.silent_identical, color="tab:gray", label="silent A→B: weights bit-identical")
    changed = result.silent - result.silent_identical
    if changed.any():
        ax.bar(
            x, changed, bottom=result.silent_identical, color="tab:red", label="silent A→B: weights changed"
        )
    ax.bar(x, result.revived, bottom=result.silent, color="tab:orange", label="fired again: revived")
    ax.set_xticks(x, result.layer_names)
    ax.set_ylabel("units dead at checkpoint A")
    config = result.config
    ax.set_title(f"{_describe(config.base)}: steps {config.steps_a} → {config.steps_a + config.steps_b}")
    ax.legend(fontsize="small")
    return fig
