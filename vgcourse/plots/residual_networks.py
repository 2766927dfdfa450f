"""Figures of the residual-networks chapter; each takes a result of ``experiments.residual_networks``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vgcourse._validation import check_choice, check_int
from vgcourse.experiments.residual_networks import (
    BlockProfileResult,
    DegradationResult,
    ForwardVarianceResult,
    NetworkSpec,
    PathExpansionResult,
    PlacementResult,
    ShatteredResult,
    StreamDepthSweepResult,
)
from vgcourse.plots._common import (
    check_result,
    check_results,
    checked,
    figure_and_axes,
    figure_and_axes_grid,
    legend_below,
    log_scale,
    outer_labels_only,
    positive_only,
    small_multiples,
    trailing_mean,
)

_METRIC_LABELS = {
    "grad_ratio": r"$\|\partial J/\partial x_0\| \,/\, \|\partial J/\partial x_L\|$",
    "variance_ratio": r"$\mathbb{E}[x_L^2] \,/\, \mathbb{E}[x_0^2]$",
}


def _select(networks: tuple[NetworkSpec, ...], chosen: Sequence[NetworkSpec] | None) -> list[int]:
    if chosen is None:
        return list(range(len(networks)))
    if isinstance(chosen, NetworkSpec) or not isinstance(chosen, Sequence) or not chosen:
        raise TypeError("networks must be a non-empty sequence of NetworkSpec (or None for all)")
    missing = [spec.label for spec in chosen if spec not in networks]
    if missing:
        raise ValueError(f"not in the result: {', '.join(missing)}; measured: {[s.label for s in networks]}")
    return [networks.index(spec) for spec in chosen]


@checked
def path_expansion(result: PathExpansionResult, *, ax: Axes | None = None) -> Figure:
    """‖P_k‖_F/√n against the path length k (log y): measured (markers) and the RMS prediction (dashed)."""
    check_result(result, PathExpansionResult)
    fig, ax = figure_and_axes(ax)
    k = np.arange(result.config.depth + 1)
    gain, predicted = result.path_gain.values, result.predicted_gain.values
    for i, spec in enumerate(result.config.networks):
        (line,) = ax.plot(k, positive_only(gain[i]), "o", ms=4, label=spec.label)
        ax.plot(k, positive_only(predicted[i]), "--", color=line.get_color(), lw=1)
    ax.plot([], [], "--", color="k", lw=1, label=r"RMS prediction $\sqrt{\binom{L}{k}}\,\alpha^k$")
    log_scale(ax, "y")
    ax.set_xlabel("path length k (branches the path goes through)")
    ax.set_ylabel(r"$\|P_k\|_F / \sqrt{n}$")
    ax.set_title(rf"$\partial x_L/\partial x_0 = \sum_k P_k$, L = {result.config.depth}")
    ax.legend(fontsize=9)
    return fig


@checked
def forward_variance(
    result: ForwardVarianceResult, *, ax: Axes | None = None, networks: Sequence[NetworkSpec] | None = None
) -> Figure:
    """E[x_l²]/E[x_0²] against the block l (log y) of ``networks`` (default: all the result's specs): measured
    (geometric mean over networks, solid) and predicted (dashed)."""
    check_result(result, ForwardVarianceResult)
    chosen = _select(result.config.networks, networks)
    fig, ax = figure_and_axes(ax)
    ratio, predicted = result.ratio.mean("seed", geometric=True).values, result.predicted.values
    blocks = np.arange(result.config.depth + 1)
    for i in chosen:
        (line,) = ax.plot(blocks, ratio[i], lw=2, label=result.config.networks[i].label)
        ax.plot(blocks, predicted[i], "--", color=line.get_color(), lw=1)
    ax.plot([], [], "--", color="k", lw=1, label="predicted")
    log_scale(ax, "y")
    ax.set_xlabel("block l")
    ax.set_ylabel(r"$\mathbb{E}[x_l^2] \,/\, \mathbb{E}[x_0^2]$")
    ax.set_title(f"forward signal at initialization (width {result.config.width})")
    ax.legend(fontsize=9)
    return fig


@checked
def forward_variance_panels(result: ForwardVarianceResult, *, axes: Any = None) -> Figure:
    """``forward_variance`` of the specs whose growth is exponential above those of the others, each panel
    with its own y range."""
    check_result(result, ForwardVarianceResult)
    depth = result.config.depth
    fast = [s for s in result.config.networks if (s.growth_per_block(depth) or 1.0) > 1.5]
    slow = [s for s in result.config.networks if s not in fast]
    groups = [g for g in (fast, slow) if g]
    fig, axes, own = figure_and_axes_grid(axes, (len(groups), 1), (6.4, 3.6 * len(groups)))
    for group, ax in zip(groups, axes, strict=True):
        forward_variance(result, ax=ax, networks=list(group))
    if own:
        fig.tight_layout()
    return fig


@checked
def depth_sweep(
    result: StreamDepthSweepResult,
    metric: str = "grad_ratio",
    *,
    ax: Axes | None = None,
    legend: bool = True,
) -> Figure:
    """``metric`` ("grad_ratio" ‖∂J/∂x_0‖/‖∂J/∂x_L‖ or "variance_ratio" E[x_L²]/E[x_0²]) against depth L
    (log-log), geometric mean over networks; the gradient ratio's prediction (1 + α² g)^(L/2) dashed."""
    check_result(result, StreamDepthSweepResult)
    check_choice("metric", metric, tuple(_METRIC_LABELS))
    fig, ax = figure_and_axes(ax)
    typical = getattr(result, metric).mean("seed", geometric=True).values
    predicted = result.predicted_grad_ratio.values if metric == "grad_ratio" else None
    depths = np.array(result.config.depths)
    for i, spec in enumerate(result.config.networks):
        (line,) = ax.plot(depths, positive_only(typical[i]), "o-", ms=4, label=spec.label)
        if predicted is not None and np.isfinite(predicted[i]).any():
            ax.plot(depths, predicted[i], "--", color=line.get_color(), lw=1)
    if predicted is not None:
        ax.plot([], [], "--", color="k", lw=1, label=r"predicted $(1+\alpha^2)^{L/2}$")
    ax.axhline(1.0, color="0.5", lw=0.8)
    log_scale(ax, "x")
    log_scale(ax, "y")
    ax.set_xlabel("depth L (blocks)")
    ax.set_ylabel(_METRIC_LABELS[metric])
    ax.set_title("backward: gradient ratio" if metric == "grad_ratio" else "forward: signal growth")
    if legend:
        ax.legend(fontsize=9)
    return fig


@checked
def depth_sweep_panels(result: StreamDepthSweepResult, *, axes: Any = None) -> Figure:
    """``depth_sweep`` of the gradient ratio and of the forward growth side by side, one shared legend."""
    check_result(result, StreamDepthSweepResult)
    fig, axes, own = figure_and_axes_grid(axes, (1, 2), (7.4, 5.0))
    depth_sweep(result, "grad_ratio", ax=axes[0], legend=not own)
    depth_sweep(result, "variance_ratio", ax=axes[1], legend=False)
    if not own:
        return fig
    legend_below(fig, axes[0], 0.22, 2)
    return fig


@checked
def degradation(result: DegradationResult, *, ax: Axes | None = None, window: int = 10) -> Figure:
    """Training loss per step (moving average over ``window`` minibatches, log y) of the three networks."""
    check_result(result, DegradationResult)
    window = check_int("window", window, minimum=1)
    fig, ax = figure_and_axes(ax)
    for run in result.runs:
        steps, smooth = trailing_mean(np.asarray(run.history.loss, dtype=np.float64), window)
        ls = "-" if run.spec.skip else ("--" if run.depth == result.config.deep_depth else ":")
        label = f"{run.name} (final train loss {run.train_loss:.3g})"
        ax.plot(steps, positive_only(smooth), ls, lw=2, label=label)
    log_scale(ax, "y")
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss (mean of {window} minibatches)" if window > 1 else "training loss")
    norm = {None: "no norm", "batch": "BatchNorm", "layer": "LayerNorm"}[result.config.norm]
    ax.set_title(f"{result.config.dataset}, width {result.config.width}, {norm}")
    ax.legend(fontsize=9)
    return fig


@checked
def layer_profile(result: BlockProfileResult, *, ax: Axes | None = None, legend: bool = True) -> Figure:
    """Block by block (log y): the backward signal ‖∂J/∂x_l‖, the forward signal √E[x_l²] and the weight
    gradients ‖∂J/∂W‖ of each block's two Linear layers (exact zeros are left out)."""
    check_result(result, BlockProfileResult)
    fig, ax = figure_and_axes(ax)
    stream, blocks = result.stream, np.arange(result.config.depth + 1)
    marker = "o" if result.config.depth <= 40 else None
    ax.plot(blocks, positive_only(stream.stream_grad), lw=2, label="backward ‖∂J/∂xₗ‖")
    ax.plot(blocks, positive_only(np.sqrt(stream.second_moment)), lw=1.5, ls="--", label="forward √E[xₗ²]")
    for name, grad in (("fc1", result.fc1_grad), ("fc2", result.fc2_grad)):
        ax.plot(blocks[1:], positive_only(grad), marker=marker, ms=3, lw=0.8, label=f"‖∂J/∂W‖ {name}")
    log_scale(ax, "y")
    ax.set_xlabel("block l (input → output)")
    ax.set_ylabel("norm")
    ax.set_title(f"{result.config.network.label}, L = {result.config.depth}", fontsize=10)
    if legend:
        ax.legend(fontsize=9)
    return fig


@checked
def layer_profile_grid(results: Sequence[BlockProfileResult], *, ncols: int = 2, axes: Any = None) -> Figure:
    """Small multiples of ``layer_profile`` (each panel with its own y range), one legend below."""
    results = check_results(results, BlockProfileResult)
    ncols = min(check_int("ncols", ncols, minimum=1), len(results))
    fig, axes, own = small_multiples(axes, len(results), ncols, (3.6, 2.9))
    for k, (result, ax) in enumerate(zip(results, axes, strict=True)):
        layer_profile(result, ax=ax, legend=not own and k == 0)
    outer_labels_only(axes, ncols)
    if not own:
        return fig
    legend_below(fig, axes[0], 0.5 / fig.get_figheight(), 2)  # room for two rows of legend
    return fig


@checked
def relu_placement(result: PlacementResult, *, axes: Any = None) -> Figure:
    """Against block l: ‖∂J/∂x_l‖ / ‖∂J/∂x_L‖ (left, log y) and the share of entries the identity path alone
    carries from x_L to x_l (right); ReLU after the addition dashed, one colour per norm."""
    check_result(result, PlacementResult)
    fig, axes, own = figure_and_axes_grid(axes, (1, 2), (7.4, 4.0))
    grads = result.stream_grad.mean("seed", geometric=True).values
    share, blocks = result.identity_share.mean("seed").values, np.arange(result.config.depth + 1)
    norms: list[str | None] = []
    for i, spec in enumerate(result.config.networks):
        if spec.norm not in norms:
            norms.append(spec.norm)
        style = {"color": f"C{norms.index(spec.norm)}", "ls": "--" if spec.post_activation else "-", "lw": 2}
        axes[0].plot(blocks, positive_only(grads[i]), label=spec.label, **style)
        axes[1].plot(blocks, share[i], **style)
    log_scale(axes[0], "y")
    axes[0].set_ylabel(r"$\|\partial J/\partial x_l\| \,/\, \|\partial J/\partial x_L\|$")
    axes[0].set_title("backward signal", fontsize=10)
    axes[1].set_ylim(-0.03, 1.05)
    axes[1].set_ylabel("share of entries kept")
    axes[1].set_title("identity path from $x_L$ to $x_l$", fontsize=10)
    for ax in axes:
        ax.set_xlabel(f"block l (L = {result.config.depth})")
    if not own:
        axes[0].legend(fontsize=9)
        return fig
    legend_below(fig, axes[0], 0.13, 2)
    return fig


@checked
def shattered_gradients(result: ShatteredResult, *, axes: Any = None) -> Figure:
    """df/dx over the inputs of each spec's deepest network, standardized and shifted apart (left); the lag-1
    autocorrelation of df/dx against depth (right, log x; mean line, a marker per network)."""
    check_result(result, ShatteredResult)
    fig, axes, own = figure_and_axes_grid(axes, (1, 2), (7.4, 3.8))
    deepest = result.config.depths[-1]
    offsets, depths = [], np.array(result.config.depths)
    points, mean = np.array(result.gradient.axes["x"]), result.autocorrelation.mean("seed").values
    for i, spec in enumerate(result.config.networks):
        g = result.gradient.values[i]
        spread = g.std()
        z = (g - g.mean()) / spread if spread > 0 else g - g.mean()
        offset = -5.0 * i
        offsets.append(offset)
        axes[0].plot(points, z + offset, lw=0.9, color=f"C{i}")
        (line,) = axes[1].plot(depths, mean[i], "o-", color=f"C{i}", ms=4, label=spec.label)
        axes[1].plot(depths, result.autocorrelation.values[i].T, ".", color=line.get_color(), ms=3)
    axes[0].set_yticks(offsets, [spec.label for spec in result.config.networks], fontsize=9)
    axes[0].set_xlabel("input x")
    axes[0].set_title(f"df/dx, L = {deepest} (standardized)", fontsize=10)
    axes[1].axhline(0.0, color="0.5", lw=0.8)
    log_scale(axes[1], "x")
    axes[1].set_ylim(-0.35, 1.05)
    axes[1].set_xlabel("depth L (blocks)")
    axes[1].set_ylabel("lag-1 autocorrelation of df/dx")
    axes[1].set_title("1: smooth; 0: white noise", fontsize=10)
    axes[1].legend(fontsize=9, loc="lower left")
    if own:
        fig.tight_layout()
    return fig
