"""Figures of the chapter on the sigmoid's 0.25 bound, from results of ``vgcourse.experiments.sigmoid_bound``;
multi-panel figures take ``ax`` as a sequence of Axes (one per panel, in the documented order)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vgcourse._validation import check_choice, check_int
from vgcourse.experiments.sigmoid_bound import (
    CirclesResult,
    DepthSweep,
    DerivativeMaxima,
    InitGradients,
    MnistResult,
    SaturationSweep,
)
from vgcourse.plots._common import (
    check_result,
    check_results,
    checked,
    figure_and_axes,
    legend_below,
    log_scale,
    small_multiples,
)
from vgcourse.plots.activations import activation_curves
from vgcourse.plots.layers import grad_histograms

_COLORS = {"sigmoid": "C0", "tanh": "C1", "relu": "C2"}
SMALL = 9  # smallest text in points that stays legible at the text column's width (issue 18)


def _color(activation: str, index: int) -> str:
    return _COLORS.get(activation, f"C{3 + index % 7}")


@checked
def derivative_maxima(result: DerivativeMaxima, *, ax: Axes | None = None) -> Figure:
    """Each activation and its derivative, the measured max of f' (dot) and its bound (dotted)."""
    check_result(result, DerivativeMaxima)
    fig, ax = figure_and_axes(ax)
    activation_curves(result.config.activations, derivative=True, ax=ax)
    for i, name in enumerate(result.config.activations):
        color = ax.get_lines()[2 * i].get_color()
        top, at = result.maximum.sel(activation=name), result.argmax.sel(activation=name)
        ax.axhline(result.bound.sel(activation=name), color=color, linestyle=":", linewidth=1)
        ax.plot([at], [top], "o", color=color)
        ax.annotate(
            f"max {name}' = {top:.4g} at x = {at + 0.0:.2g}",
            (at, top),
            textcoords="offset points",
            xytext=(8, 6 if i % 2 == 0 else -14),
            fontsize=SMALL,
            color=color,
        )
    ax.set_title("activations, derivatives (dashed) and the bounds on f' (dotted)")
    return fig


@checked
def gradient_profile(result: InitGradients, *, ax: Axes | None = None, legend: bool = True) -> Figure:
    """‖∂J/∂h_l‖ / ‖∂J/∂h_L‖ against l (log y), its bound ∏_{k>l} c·‖W_k‖₂ and ∏_{k>l} rms f'·‖W_k‖_F/√n."""
    check_result(result, InitGradients)
    fig, ax = figure_and_axes(ax)
    depth = result.config.depth
    layers = np.arange(depth + 1)
    typical = np.ones(depth + 1)
    typical[:-1] = np.cumprod(result.typical_factor[::-1])[::-1]
    name = result.config.activation
    c = {"sigmoid": "¼", "tanh": "1·", "relu": "1·"}.get(name, "c·")
    ax.plot(layers, result.envelope, "--", color="0.35", label=f"bound ∏ {c}‖W_k‖₂")
    ax.plot(layers, result.ratio, "o-", markersize=3, color=_color(name, 0), label="measured")
    ax.plot(layers, typical, ":", color="C3", linewidth=2, label="typical ∏ rms f'·‖W_k‖_F/√n")
    log_scale(ax, "y")
    ax.set_xlabel("hidden state h_l (0 = input)")
    ax.set_ylabel("‖∂J/∂h_l‖ / ‖∂J/∂h_L‖")
    ax.set_title(f"{name}, depth {depth}, {result.config.init}", fontsize=SMALL + 1)
    if legend:
        ax.legend(fontsize=SMALL)
    return fig


@checked
def profiles(results: Sequence[InitGradients], *, axes: Sequence[Axes] | None = None) -> Figure:
    """``gradient_profile`` of 1 to 6 networks side by side."""
    results = check_results(results, InitGradients)
    if len(results) > 6:
        raise ValueError(f"give 1 to 6 results; got {len(results)}")
    fig, axes, _ = small_multiples(axes, len(results), 2, (3.6, 3.0))
    for i, (r, a) in enumerate(zip(results, axes, strict=True)):
        gradient_profile(r, ax=a, legend=i == 0)
    fig.tight_layout()
    return fig


def _median_band(
    ax: Axes, x: np.ndarray, values: np.ndarray, color: str, label: str, style: str = "o-"
) -> None:
    """Median over the last axis with a min-max band."""
    ax.plot(x, np.median(values, axis=-1), style, color=color, label=label, markersize=4)
    if values.shape[-1] > 1:
        ax.fill_between(x, values.min(axis=-1), values.max(axis=-1), color=color, alpha=0.2, linewidth=0)


@checked
def depth_sweep(result: DepthSweep, *, axes: Sequence[Axes] | None = None) -> Figure:
    """Against depth L: ‖∂J/∂h_0‖ / ‖∂J/∂h_L‖ with the sigmoid's bound and (1/4)^L (left), the layer 1 /
    output weight-gradient ratio (right); medians over seeds, bands min to max."""
    check_result(result, DepthSweep)
    fig, (left, right), own = small_multiples(axes, 2, 2, (3.6, 3.8))
    depths = np.array(result.config.depths)
    for i, name in enumerate(result.config.activations):
        color = _color(name, i)
        _median_band(left, depths, result.decay.values[i], color, name)
        _median_band(right, depths, result.weight_ratio.values[i], color, name)
        if name == "sigmoid":
            _median_band(left, depths, result.envelope.values[i], "0.35", "sigmoid bound ∏ ¼‖W_l‖₂", "--")
            left.plot(depths, 0.25 ** depths.astype(float), ":", color="0.35", label="(1/4)^L")
    for a in (left, right):
        log_scale(a, "y")
        a.set_xlabel("depth L (hidden layers)")
    left.set_ylabel("‖∂J/∂h_0‖ / ‖∂J/∂h_L‖")
    right.set_ylabel("‖∂J/∂W_1‖ / ‖∂J/∂W_out‖")
    left.set_title("backward signal reaching the input", fontsize=SMALL + 1)
    right.set_title("layer 1 vs output weight gradient", fontsize=SMALL + 1)
    if not own:  # drawn into given axes
        left.legend(fontsize=SMALL)
        right.legend(fontsize=SMALL)
        fig.tight_layout()
        return fig
    # a new figure: one legend below both panels, where it covers no line
    legend_below(fig, left, 0.13, 3, fontsize=SMALL)
    return fig


@checked
def saturation(result: SaturationSweep, *, axes: Sequence[Axes] | None = None) -> Figure:
    """Against the weight scale, per input scale: saturated fraction (layer 1 dashed), mean f'(a), and the
    backward pass's per-layer factor (bound dashed)."""
    check_result(result, SaturationSweep)
    fig, (a1, a2, a3), _ = small_multiples(axes, 3, 2, (3.6, 3.0))
    scales = np.array(result.config.weight_scales)
    bound = 0.25 if result.config.activation == "sigmoid" else 1.0
    for i, input_scale in enumerate(result.config.input_scales):
        color = f"C{i}"
        label = f"input std {input_scale:g}"
        _median_band(a1, scales, result.saturated_frac.values[i], color, label)
        a1.plot(scales, np.median(result.first_layer_saturated_frac.values[i], axis=-1), "--", color=color)
        _median_band(a2, scales, result.mean_derivative.values[i], color, label)
        _median_band(a3, scales, result.per_layer_factor.values[i], color, label)
        a3.plot(scales, np.median(result.envelope_factor.values[i], axis=-1), "--", color=color)
    a2.axhline(bound, color="0.35", linestyle=":", label=f"sup f' = {bound:g}")
    a3.axhline(1.0, color="0.35", linestyle=":", linewidth=1)
    a1.set_ylabel("saturated fraction (dashed: layer 1)")
    a2.set_ylabel("mean f'(a)")
    a3.set_ylabel("per-layer factor (dashed: bound)")
    log_scale(a3, "y")
    for a, title in zip(
        (a1, a2, a3),
        ("saturated units", "average local derivative", "backward shrink per layer"),
        strict=True,
    ):
        log_scale(a, "x", base=2)
        a.set_xlabel("weight scale (× Xavier)" if result.config.init.startswith("xavier") else "weight scale")
        a.set_title(title, fontsize=SMALL + 1)
        a.legend(fontsize=SMALL)
    fig.tight_layout()
    return fig


@checked
def circles_accuracy(result: CirclesResult, *, ax: Axes | None = None) -> Figure:
    """Validation accuracy after each epoch, one line per activation (median over seeds, band min-max)."""
    check_result(result, CirclesResult)
    fig, ax = figure_and_axes(ax)
    accuracy = result.accuracy_by_epoch  # activation × seed × epoch
    for i, name in enumerate(result.config.activations):
        runs = accuracy.sel(activation=name).values  # seed × epoch
        _median_band(ax, np.array(accuracy.axes["epoch"]), runs.T, _color(name, i), name, "-")
    ax.axhline(0.5, color="0.6", linestyle=":", linewidth=1, label="chance")
    ax.set_ylim(0.3, 1.02)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"two circles, {result.config.depth} hidden layers of {result.config.width} units")
    ax.legend(fontsize=SMALL)
    return fig


@checked
def circles_statistics(
    result: CirclesResult, *, seed_index: int = 0, axes: Sequence[Axes] | None = None
) -> Figure:
    """Per activation (columns): weight mean/std and gradient mean/std (rows) by epoch, one line per layer,
    for the run of ``config.seeds[seed_index]``."""
    check_result(result, CirclesResult)
    check_int("seed_index", seed_index, -len(result.config.seeds), len(result.config.seeds) - 1)
    n_act = len(result.config.activations)
    fig, axes, own = small_multiples(axes, 4 * n_act, n_act, (7.2 / n_act, 2.1))
    cmap = plt.get_cmap("viridis")
    layer_names = result.weight_std.axes["layer"]
    n_layers, seed = len(layer_names), result.config.seeds[seed_index]
    columns = (
        ("weight mean", result.weight_mean, False),
        ("weight std", result.weight_std, False),
        ("gradient mean", result.grad_mean, False),
        ("gradient std", result.grad_std, True),
    )
    for a, name in enumerate(result.config.activations):
        for c, (title, grid, log) in enumerate(columns):
            panel = axes[n_act * c + a]
            series = grid.sel(activation=name, seed=seed).values  # epoch × layer
            for layer in range(n_layers):
                panel.plot(
                    np.array(grid.axes["epoch"]),
                    series[:, layer],
                    color=cmap(layer / max(n_layers - 1, 1) * 0.9),
                    label=layer_names[layer],
                    linewidth=1.2,
                )
            if log:
                log_scale(panel, "y")
            panel.set_title(f"{name}: {title}", fontsize=SMALL + 1)
            panel.tick_params(labelsize=SMALL)
            if c == len(columns) - 1:
                panel.set_xlabel("epoch", fontsize=SMALL)
    if not own:  # drawn into given axes
        axes[0].legend(fontsize=SMALL)
        return fig
    legend_below(fig, axes[0], 0.05, fontsize=SMALL)
    return fig


@checked
def mnist_histograms(
    result: MnistResult, *, when: str = "init", axes: Sequence[Axes] | None = None
) -> Figure:
    """Weight gradients of all layers in one histogram (left) and per layer as violins of log10 |g|
    (right), ``when`` "init" or "trained"."""
    check_result(result, MnistResult)
    check_choice("when", when, ("init", "trained"))
    fig, (left, right), _ = small_multiples(axes, 2, 2, (3.6, 3.4))
    values = result.grads_init if when == "init" else result.grads_trained
    grads = dict(zip(result.layer_names, values, strict=True))
    lumped = np.concatenate(list(grads.values()))
    top = float(np.abs(lumped).max()) or 1.0
    left.hist(lumped, bins=result.config.bins, range=(-top, top), color="0.45")
    log_scale(left, "y")
    left.set_xlabel("gradient value (all layers)")
    left.set_ylabel("count")
    left.set_title("lumped: all layers in one", fontsize=SMALL + 1)
    grad_histograms(grads, ax=right, log_abs=True)
    names = list(grads)  # short tick labels ("1", ..., "out"): full names overlap at this width
    short = [name.replace("layer ", "") if name.startswith("layer ") else name[:3] for name in names]
    right.set_xticks(np.arange(1, len(names) + 1), short, rotation=0)
    right.set_title("per layer: log10 |gradient|", fontsize=SMALL + 1)
    stage = "at initialization" if when == "init" else f"after {result.steps} steps"
    fig.suptitle(
        f"{result.config.activation} MLP 784→{result.width}×{result.config.depth}→10, {stage}",
        fontsize=SMALL + 1,
    )
    fig.tight_layout()
    return fig
