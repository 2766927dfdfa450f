"""Figures of the initialization chapter: predicted (dashed) vs measured variances (geometric mean over
seeds, band from the smallest to the largest seed)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vgcourse._validation import check_int
from vgcourse.config import geometric_mean
from vgcourse.experiments.initialization import (
    SCHEME_LABELS,
    BackpropHistograms,
    CriticalProfile,
    DeepTraining,
    GainSweep,
    SchemeSweep,
    VarianceProfile,
)
from vgcourse.initializers import gain as torch_gain
from vgcourse.meanfield import CriticalLine
from vgcourse.plots._common import (
    check_result,
    checked,
    figure_and_axes,
    figure_and_axes_grid,
    log_scale,
    outer_labels_only,
    positive_only,
    trailing_mean,
)
from vgcourse.plots.figure_check import allow_clipping

SCHEME_COLORS = {
    "naive": "tab:red",
    "small": "tab:purple",
    "standard": "tab:brown",
    "xavier": "tab:blue",
    "he": "tab:green",
}
_FORWARD, _BACKWARD = "tab:blue", "tab:orange"


def _gain_label(g: float) -> str:
    """ "√2" and "5/3" for PyTorch's relu and tanh gains, else the number."""
    for value, label in ((math.sqrt(2.0), "√2"), (5.0 / 3.0, "5/3")):
        if abs(g - value) < 1e-9:
            return label
    return f"{g:.3g}"


def _shown(values: Any) -> np.ndarray:
    """The values a log axis draws with room to spare: outside [1e-250, 1e250] they become NaN."""
    return positive_only(values, 1e250)


def _band(ax: Axes, x: np.ndarray, values: np.ndarray, color: str, label: str | None) -> None:
    """Geometric mean over rows (seeds) as a line, min..max as a shaded band."""
    center = geometric_mean(values, axis=0)
    low, high = _shown(values.min(axis=0)), _shown(values.max(axis=0))
    ax.fill_between(x, low, high, color=color, alpha=0.25, linewidth=0)
    ax.plot(x, _shown(center), color=color, linewidth=1.8, label=label)


@checked
def profile(
    result: VarianceProfile, *, ax: Axes | None = None, show_linear: bool = True, legend: bool = True
) -> Figure:
    """Var(a_l) and Var(δ_l) by layer, measured and predicted; ``show_linear``: the linear regime's too."""
    check_result(result, VarianceProfile)
    fig, ax = figure_and_axes(ax, figsize=(5.6, 4.0))
    x = result.layers
    drawn = []
    for measured, predicted, linear, color, name in (
        (result.activation_var, result.predicted.activation_var, result.linear.activation_var, _FORWARD, "a"),
        (result.grad_var, result.predicted.grad_var, result.linear.grad_var, _BACKWARD, "δ"),
    ):
        _band(ax, x, measured, color, f"Var({name}ₗ) measured")  # plain text: mathtext is slow to draw
        ax.plot(x, _shown(predicted), color="black", linestyle="--", linewidth=1.0)
        drawn += [*_shown(measured).ravel(), *_shown(predicted)]
        if show_linear and not np.allclose(linear, predicted, rtol=0.02, equal_nan=True):
            # the limits follow the measurement; a linear-regime prediction far off it leaves the panel
            (dotted,) = ax.plot(x, _shown(linear), color=color, linestyle=":", linewidth=1.4)
            allow_clipping(dotted)
    ax.plot([], [], color="black", linestyle="--", linewidth=1.0, label="predicted (Gaussian)")
    if show_linear:
        ax.plot([], [], color="gray", linestyle=":", linewidth=1.4, label="predicted (linear regime)")
    log_scale(ax, "y")
    finite = np.array([v for v in drawn if np.isfinite(v)])
    if finite.size:
        low, high = math.log10(finite.min()), math.log10(finite.max())
        pad = max(1.0, 0.08 * (high - low))
        ax.set_ylim(10 ** max(low - pad, -260.0), 10 ** min(high + pad, 260.0))  # ticks stay finite
    ax.set_xlabel("layer l (input → output)")
    ax.set_ylabel("variance")
    c = result.config
    ax.set_title(f"{result.label}, {c.activation}, width {c.width}", fontsize="medium")
    if legend:
        ax.legend(fontsize="small", loc="best")
    return fig


@checked
def scheme_grid(sweep: SchemeSweep, *, axes: Any = None) -> Figure:
    """Small multiples of ``profile``: one row per scheme, one column per activation."""
    check_result(sweep, SchemeSweep, "sweep")
    rows, cols = len(sweep.config.schemes), len(sweep.config.activations)
    fig, grid, _ = figure_and_axes_grid(axes, (rows, cols), (min(7.4, 3.7 * cols), 2.5 * rows + 0.9))
    cells = itertools.product(sweep.config.schemes, sweep.config.activations)
    for ax, (scheme, activation) in zip(grid, cells, strict=True):
        profile(sweep.profiles.sel(scheme=scheme, activation=activation), ax=ax, legend=False)
        ax.set_title(f"{SCHEME_LABELS[scheme]}, {activation}", fontsize="small")
    outer_labels_only(grid, cols)
    handles, labels = grid[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize="small", frameon=False)
    fig.suptitle(f"predicted vs measured, depth {sweep.config.depth}, {len(sweep.config.seeds)} seeds")
    fig.tight_layout(rect=(0, 0.6 / (2.5 * rows + 0.9), 1, 1))
    return fig


@checked
def gradient_overview(sweep: SchemeSweep, *, axes: Any = None) -> Figure:
    """All schemes on shared log axes: Var(a_l) (top row), Var(δ_l) (bottom row), a column per activation."""
    check_result(sweep, SchemeSweep, "sweep")
    cols = len(sweep.config.activations)
    fig, flat, _ = figure_and_axes_grid(axes, (2, cols), (min(7.4, 3.7 * cols), 6.6), sharex=True)
    grid = np.array(flat, dtype=object).reshape(2, cols)
    for j, activation in enumerate(sweep.config.activations):
        for scheme in sweep.config.schemes:
            p = sweep.profiles.sel(scheme=scheme, activation=activation)
            color = SCHEME_COLORS[scheme]
            for i, (measured, predicted) in enumerate(
                ((p.activation_var, p.predicted.activation_var), (p.grad_var, p.predicted.grad_var))
            ):
                _band(grid[i, j], p.layers, measured, color, SCHEME_LABELS[scheme] if i == 0 else None)
                grid[i, j].plot(p.layers, _shown(predicted), color=color, linestyle="--", linewidth=1.0)
        grid[0, j].set_title(f"{activation} network, depth {sweep.config.depth}", fontsize="medium")
        grid[0, j].set_ylabel(r"forward: $\mathrm{Var}(a_l)$")
        grid[1, j].set_ylabel(r"backward: $\mathrm{Var}(\delta_l)$")
        grid[1, j].set_xlabel("layer l (input → output)")
        for i in range(2):
            log_scale(grid[i, j], "y")
            grid[i, j].axhline(1.0, color="gray", linewidth=0.6)
    grid[0, 0].plot([], [], color="black", linestyle="--", linewidth=1.0, label="predicted (Gaussian)")
    grid[0, 0].legend(fontsize="small", loc="best")
    fig.tight_layout()
    return fig


@checked
def gain_curves(sweep: GainSweep, *, axes: Any = None) -> Figure:
    """Var(δ_1)/Var(δ_L) (left) and Var(a_L) (right) against the gain g (Var(W) = g²/n), PyTorch's dotted."""
    check_result(sweep, GainSweep, "sweep")
    fig, (left, right), _ = figure_and_axes_grid(axes, (1, 2), (7.4, 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, activation in enumerate(sweep.config.activations):
        color = colors[i % len(colors)]
        left.plot(sweep.grid, sweep.predicted_ratio[i], color=color, label=f"{activation} (predicted)")
        right.plot(sweep.grid, sweep.predicted_top_var[i], color=color, label=f"{activation} (predicted)")
        for ax, metric in ((left, "ratio"), (right, "top")):
            profiles = sweep.profiles.sel(activation=activation).values
            values = [p.grad_ratio if metric == "ratio" else p.activation_var[:, -1] for p in profiles]
            center = np.array([geometric_mean(v) for v in values])
            errors = np.array([[c - v.min(), v.max() - c] for c, v in zip(center, values, strict=True)]).T
            errors = np.maximum(errors, 0.0)  # one seed: the geometric mean may round past its one value
            ax.errorbar(sweep.config.gains, center, yerr=errors, fmt="o", color=color, capsize=3)
        for ax in (left, right):
            ax.axvline(torch_gain(activation), color=color, linewidth=0.8, linestyle=":")
    left.axhline(1.0, color="gray", linewidth=0.6)
    for ax in (left, right):
        log_scale(ax, "y")
        ax.set_xticks(sweep.config.gains, [_gain_label(g) for g in sweep.config.gains])
        ax.set_xlabel(r"gain $g$ (Var(W) = $g^2/n$)")
    left.errorbar([], [], fmt="o", color="gray", label="measured")
    left.set_ylabel(r"$\mathrm{Var}(\delta_1) \,/\, \mathrm{Var}(\delta_L)$")
    right.set_ylabel(rf"$\mathrm{{Var}}(a_L)$, L = {sweep.config.depth}")
    left.set_title("gradient ratio across the network", fontsize="medium")
    right.set_title("forward signal at the last layer", fontsize="medium")
    left.legend(fontsize="small")
    fig.tight_layout()
    return fig


@checked
def backprop_histograms(result: BackpropHistograms, *, axes: Any = None, bins: int = 81) -> Figure:
    """Normalized histograms of δ_l per layer, one panel per scheme (Glorot & Bengio 2010, Fig. 7)."""
    check_result(result, BackpropHistograms)
    check_int("bins", bins, minimum=5)
    schemes = result.config.schemes
    fig, grid, _ = figure_and_axes_grid(axes, (len(schemes), 1), (7.0, 2.6 * len(schemes) + 0.3), sharex=True)
    everything = np.concatenate([v for per_scheme in result.values for v in per_scheme])
    limit = float(np.quantile(np.abs(everything), 0.995))
    edges = np.linspace(-limit, limit, bins)
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, result.config.depth))
    for k, scheme in enumerate(schemes):
        ax = grid[k]
        for i, values in enumerate(result.values[k]):
            counts, _ = np.histogram(values, bins=edges)
            ax.stairs(counts / max(1, len(values)), edges, color=colors[i], label=f"layer {i + 1}")
        ax.set_title(f"{SCHEME_LABELS[scheme]}, {result.config.activation}", fontsize="medium")
        ax.set_ylabel("fraction of values")
    grid[-1].set_xlabel(r"back-propagated gradient $\partial\,\mathrm{Cost} / \partial a_l$")
    grid[0].legend(fontsize="small", ncol=2)
    fig.tight_layout()
    return fig


@checked
def deep_training(result: DeepTraining, *, ax: Axes | None = None, smooth: int = 10) -> Figure:
    """Training loss per step (``smooth``-step moving average), one line per seed, a colour per scheme."""
    check_result(result, DeepTraining)
    check_int("smooth", smooth, minimum=1)
    fig, ax = figure_and_axes(ax, figsize=(6.4, 4.0))
    for scheme, row in zip(result.config.schemes, result.histories, strict=True):
        for j, history in enumerate(row):
            steps, loss = trailing_mean(history.loss, smooth)
            label = SCHEME_LABELS[scheme] if j == 0 else None
            ax.plot(steps, loss, color=SCHEME_COLORS[scheme], linewidth=1.2, alpha=0.85, label=label)
    ax.axhline(math.log(10.0), color="gray", linestyle="--", linewidth=0.8, label="chance: ln 10")
    c = result.config
    ax.set_title(f"{c.depth}-layer {c.activation} network on digits, {len(c.seeds)} seeds", fontsize="medium")
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss ({smooth}-step average)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")
    return fig


_POINT_COLORS = ("tab:blue", "tab:green", "tab:red", "tab:purple", "tab:brown")


@checked
def critical_phase(
    line: CriticalLine, measured: CriticalProfile, *, gains: Any = (), axes: Any = None
) -> Figure:
    """tanh's critical line χ = 1 in (σ_w², σ_b²) with the measured points and ``gains``' g² (left), and
    Var(δ_l)/Var(δ_L) against L - l at each point (right)."""
    check_result(line, CriticalLine, "line")
    check_result(measured, CriticalProfile, "measured")
    fig, (left, right), _ = figure_and_axes_grid(axes, (1, 2), (7.4, 3.5))
    left.plot(line.weight_var, line.bias_var, color="black", linewidth=1.8, label="critical line χ = 1")
    top = float(max(line.bias_var.max(), measured.config.bias_var) * 1.1)
    weight_vars = list(measured.config.weight_vars or ())
    squared = [float(g) ** 2 for g in gains]
    right_edge = max([*line.weight_var, *weight_vars, *squared]) * 1.08
    left.fill_betweenx(line.bias_var, 0.0, line.weight_var, color="tab:blue", alpha=0.08, linewidth=0)
    left.fill_betweenx(line.bias_var, line.weight_var, right_edge, color="tab:red", alpha=0.08, linewidth=0)
    left.text(0.05, 0.93, "ordered: χ < 1", transform=left.transAxes, fontsize="small", va="top")
    left.text(0.95, 0.07, "chaotic: χ > 1", transform=left.transAxes, fontsize="small", ha="right")
    if squared:
        left.plot(squared, [0.0] * len(squared), "x", color="gray", label="gain sweep g² (no bias)")
    for k, w in enumerate(weight_vars):
        color = _POINT_COLORS[k % len(_POINT_COLORS)]
        left.plot([w], [measured.config.bias_var], "o", color=color)
    left.set_xlim(0.0, right_edge)
    left.set_ylim(-0.02 * top, top)
    left.set_xlabel(r"$\sigma_w^2$ (Var(W) = $\sigma_w^2/n$)")
    left.set_ylabel(r"$\sigma_b^2$ (Var(b))")
    left.set_title("tanh: ordered and chaotic phases", fontsize="medium")
    left.legend(fontsize="small", loc="center left")
    c = measured.config
    crossed = c.depth - np.arange(1, c.depth + 1)  # L - l for l = 1..L
    ratio = measured.grad_var / measured.grad_var[:, :, -1:]  # Var(δ_l) / Var(δ_L)
    predicted = measured.predicted_grad_var / measured.predicted_grad_var[:, -1:]
    for k, (w, chi) in enumerate(zip(weight_vars, measured.chi.values, strict=True)):
        color = _POINT_COLORS[k % len(_POINT_COLORS)]
        _band(right, crossed, ratio[k], color, f"σ_w² = {w:.3g} (χ = {chi:.2f})")
        right.plot(crossed, _shown(predicted[k]), color=color, linestyle="--", linewidth=1.0)
    right.axhline(1.0, color="gray", linewidth=0.6)
    log_scale(right, "y")
    right.set_xlabel("layers crossed, L − l")
    right.set_ylabel(r"$\mathrm{Var}(\delta_l) \,/\, \mathrm{Var}(\delta_L)$")
    right.set_title(f"σ_b² = {c.bias_var:.3g}, width {c.width}, {len(c.seeds)} seeds", fontsize="medium")
    right.legend(fontsize="small", loc="upper left")
    fig.tight_layout()
    return fig
