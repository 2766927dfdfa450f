"""Figures of chapter 3, ReLU and dying units: gradient flow at init, dead units over training.

Each function takes a result of ``vgcourse.experiments.relu_dying_units`` and ``ax`` (or ``axes``) to draw
into (a new figure when None), and returns the Figure.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from vgcourse.experiments.relu_dying_units import (
    DyingResult,
    DyingSweepResult,
    FrozenUnitsResult,
    GradientFlowResult,
)
from vgcourse.plots._common import checked, figure_and_axes, log_scale

__all__ = ["backward_factors", "dead_grid", "dead_over_training", "frozen_units", "gradient_flow"]

_LAYER_COLORS = plt.get_cmap("viridis")


def _check(result: Any, kind: type, name: str) -> None:
    if not isinstance(result, kind):
        raise TypeError(f"{name} must be a {kind.__name__}; got {type(result).__name__}")


@checked
def gradient_flow(result: GradientFlowResult, *, ax: Axes | None = None) -> Figure:
    """‖∂J/∂W_l‖ against layer l at initialization, one line per activation (log y).

    The line is the geometric mean over seeds, the band spans the smallest to the largest seed.
    """
    _check(result, GradientFlowResult, "result")
    fig, ax = figure_and_axes(ax)
    layers = np.arange(1, result.config.depth + 1)
    for a, activation in enumerate(result.config.activations):
        values = result.grad_norm[a]
        center = np.exp(np.log(values).mean(axis=0))
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
    """The per-layer factor ‖δ_l‖ / ‖δ_{l+1}‖ measured (markers) vs predicted ρ_l = g·rms f'(z_l) (line).

    Values are geometric means over seeds; dotted lines mark 1 (no loss) and 1/4 (sigmoid's bound).
    """
    _check(result, GradientFlowResult, "result")
    fig, ax = figure_and_axes(ax)
    layers = np.arange(1, result.config.depth)
    for a, activation in enumerate(result.config.activations):
        measured = np.exp(np.log(result.measured_factor[a]).mean(axis=0))
        predicted = np.exp(np.log(result.predicted_factor[a]).mean(axis=0))
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
    """Dead fraction of each hidden layer against training step, with the validation accuracy (dashed).

    Both share the y axis [0, 1]. A run that diverged ends with a red cross.

    ``legend``: draw the legend; ``title``: the axes title (default: activation, learning rate, bias and
    final accuracy).
    """
    _check(result, DyingResult, "result")
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
    """Small multiples of ``dead_over_training``: rows over learning rate, columns over bias initialization.

    Three bias columns fit the book's text column (<= 7.2 in wide) at readable font sizes (>= 9 pt).

    ``axes``: a (lrs, bias_inits) array of axes to draw on; a new figure when None.
    """
    _check(sweep, DyingSweepResult, "sweep")
    rows, cols = len(sweep.config.lrs), len(sweep.config.bias_inits)
    if axes is None:
        fig, axes = plt.subplots(
            rows,
            cols,
            figsize=(min(7.2, 2.2 * cols + 0.6), 1.75 * rows + 1.0),
            sharex=True,
            sharey=True,
            squeeze=False,
        )
    else:
        axes = np.asarray(axes, dtype=object)
        if axes.size != rows * cols or not all(isinstance(a, Axes) for a in axes.flat):
            raise ValueError(f"axes must hold {rows} x {cols} matplotlib Axes (lrs x bias_inits)")
        axes = axes.reshape(rows, cols)
        fig = axes[0, 0].figure
    for i, lr in enumerate(sweep.config.lrs):
        for j, bias in enumerate(sweep.config.bias_inits):
            run = sweep.runs.sel(lr=lr, bias_init=bias)
            title = f"lr {lr:g}, bias {bias:g}: acc {run.final_accuracy:.2f}"
            dead_over_training(run, ax=axes[i, j], legend=False, title=title)
            axes[i, j].title.set_fontsize(9)
            if i < rows - 1:
                axes[i, j].set_xlabel("")
            if j > 0:
                axes[i, j].set_ylabel("")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle(f"dead fraction per layer during training ({sweep.config.base.activation})")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


@checked
def frozen_units(result: FrozenUnitsResult, *, ax: Axes | None = None) -> Figure:
    """Per layer: units dead at checkpoint A, split into those still silent at B (weights bit-identical)
    and those that fired again in between (revived, weights changed).
    """
    _check(result, FrozenUnitsResult, "result")
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
