"""Figures of the linear-chain chapter, from results of ``vgcourse.experiments.linear_chain``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vgcourse._validation import check_choice, check_int
from vgcourse.experiments.linear_chain import (
    ChainDepthSweepResult,
    FloatLimitsResult,
    GeometricResult,
    LayerProfileResult,
    ProductSpectrumResult,
    WidthSweepResult,
    float_format,
)
from vgcourse.plots._common import (
    check_result,
    check_results,
    checked,
    figure_and_axes,
    log_scale,
    outer_labels_only,
    small_multiples,
    widen_log_limits,
)

FIGURE_WIDTH = 7.2  # inches: the book's text column holds 7.57 in (vgcourse.plots.figure_check)


def _grid(axes: Any, n: int, ncols: int, height: float, sharey: bool) -> tuple[Figure, list[Axes], bool]:
    """n panels ``height`` in tall in rows of ``ncols`` on a new figure ``FIGURE_WIDTH`` wide, or ``axes``."""
    return small_multiples(axes, n, ncols, (FIGURE_WIDTH / ncols, height), width=FIGURE_WIDTH, sharey=sharey)


def _figure_legend(fig: Figure, ax: Axes, own: bool = True) -> None:
    """One legend of ``ax``'s lines under the panels (``own``), else inside ``ax``."""
    if not own:
        ax.legend(fontsize=9)
        return
    handles, labels = ax.get_legend_handles_labels()
    rows = 1 if len(labels) <= 4 else 2
    fig.tight_layout(rect=(0, 0.3 * rows / fig.get_figheight(), 1, 1))
    fig.legend(handles, labels, loc="lower center", ncols=-(-len(labels) // rows), fontsize=9, frameon=False)


@checked
def geometric(result: GeometricResult, *, ax: Axes | None = None) -> Figure:
    """s^L against L (log y) for each factor s, the table's depths marked."""
    check_result(result, GeometricResult)
    depths = np.array(result.config.depths)
    fig, ax = figure_and_axes(ax)
    grid = np.arange(0, int(depths.max()) + 1)
    for j, s in enumerate(result.config.factors):
        (line,) = ax.plot(grid, s**grid, label=f"s = {s:g}")
        ax.plot(depths, result.powers.values[:, j], "o", color=line.get_color())
    ax.axhline(1.0, color="0.5", lw=0.8)
    log_scale(ax, "y")
    ax.set_xlabel("depth L")
    ax.set_ylabel("$s^L$")
    ax.set_title("A product of L equal factors")
    ax.legend()
    return fig


@checked
def depth_sweep(result: ChainDepthSweepResult, *, ax: Axes | None = None) -> Figure:
    """‖∂J/∂W_1‖ against depth L (log y): median over networks, 10–90% band, s^(L-1) dashed."""
    check_result(result, ChainDepthSweepResult)
    fig, ax = figure_and_axes(ax)
    median, low, high = (result.quantiles.sel(q=q).values for q in (0.5, 0.1, 0.9))
    predicted, depths = result.predicted_norm.values, result.predicted_norm.axes["depth"]
    for i, s in enumerate(result.config.scales):
        (line,) = ax.plot(depths, median[i], label=f"s = {s:g}")
        if result.config.n_seeds > 1:
            ax.fill_between(depths, low[i], high[i], color=line.get_color(), alpha=0.2, lw=0)
        ax.plot(depths, predicted[i], "--", color="k", lw=0.8)
    ax.plot([], [], "--", color="k", lw=0.8, label="$s^{L-1}$")
    log_scale(ax, "y")
    ax.set_xlabel("depth L")
    ax.set_ylabel(r"$\|\partial J/\partial W_1\|$")
    what = "scaled orthogonal" if result.config.init == "orthogonal" else r"Gaussian $N(0, s^2/n)$"
    ax.set_title(f"{what} weights, n = {result.config.width}")
    ax.legend()
    return fig


def _stacked(draw: Any, results: Sequence[Any], kind: type, axes: Any) -> Figure:
    """``draw`` of each result in its own panel, one above the other, sharing the y axis."""
    results = check_results(results, kind)
    fig, axes, own = _grid(axes, len(results), 1, 3.4, sharey=True)
    for result, ax in zip(results, axes, strict=True):
        draw(result, ax=ax)
    if own:
        fig.tight_layout()
    return fig


@checked
def depth_sweeps(results: Sequence[ChainDepthSweepResult], *, axes: Any = None) -> Figure:
    """``depth_sweep`` of several results in a column."""
    return _stacked(depth_sweep, results, ChainDepthSweepResult, axes)


@checked
def width_sweep(result: WidthSweepResult, *, ax: Axes | None = None) -> Figure:
    """Geometric mean of ‖∂J/∂W_1‖ ± one std of its log per width; predicted exp((L-1)(ln s + c_n)) dashed."""
    check_result(result, WidthSweepResult)
    fig, ax = figure_and_axes(ax)
    mean, std, depths = result.log_mean.values, result.log_std.values, result.log_mean.axes["depth"]
    for k, n in enumerate(result.config.widths):
        (line,) = ax.plot(depths, np.exp(mean[k]), label=f"n = {n}")
        color = line.get_color()
        ax.fill_between(
            depths, np.exp(mean[k] - std[k]), np.exp(mean[k] + std[k]), color=color, alpha=0.2, lw=0
        )
        mu, sigma = result.predicted_log_mean.values[k], result.predicted_log_std.values[k]
        ax.plot(depths, np.exp(mu), "--", color=color, lw=1)
        ax.plot(depths, np.exp(mu - sigma), ":", color=color, lw=1)
        ax.plot(depths, np.exp(mu + sigma), ":", color=color, lw=1)
    ax.plot([], [], "--", color="k", lw=1, label="predicted typical")
    ax.plot([], [], ":", color="k", lw=1, label="predicted ±1 std")
    ax.axhline(1.0, color="0.5", lw=0.8)
    log_scale(ax, "y")
    ax.set_xlabel("depth L")
    ax.set_ylabel(r"$\|\partial J/\partial W_1\|$ (geometric mean)")
    ax.set_title(f"Gaussian weights, s = {result.config.scale:g}: typical value and spread")
    ax.legend()
    return fig


@checked
def product_spectrum(result: ProductSpectrumResult, *, ax: Axes | None = None) -> Figure:
    """σ_max, σ_min (while float64 resolves it) of P_L = W_L⋯W_1 and ‖∂J/∂h_0‖ = ‖P_L^T g‖ against L."""
    check_result(result, ProductSpectrumResult)
    fig, ax = figure_and_axes(ax)
    resolved = result.resolved
    ax.fill_between(
        result.depths, result.sigma_min, result.sigma_max, where=resolved, color="C0", alpha=0.12, lw=0
    )
    ax.plot(result.depths, result.sigma_max, color="C0", label=r"$\sigma_{\max}(P_L)$")
    ax.plot(
        result.depths, np.where(resolved, result.sigma_min, np.nan), color="C1", label=r"$\sigma_{\min}(P_L)$"
    )
    ax.plot(result.depths, result.grad_norm, "k.", ms=3, label=r"$\|\partial J/\partial h_0\|$")
    depth = result.unresolved_depth
    if depth is not None:
        ax.axvline(depth, color="0.5", ls=":", lw=1)
        ax.annotate(
            r"$\sigma_{\min}$ below float64" + "\nresolution from here",
            (depth, 0.02),
            xycoords=("data", "axes fraction"),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=9,
            color="0.3",
        )
    log_scale(ax, "y")
    ax.set_xlabel("depth L")
    ax.set_ylabel("singular value / gradient norm")
    what = "scaled orthogonal" if result.config.init == "orthogonal" else "Gaussian"
    ax.set_title(f"{what}, s = {result.config.scale:g}, n = {result.config.width}")
    ax.legend(loc="center right")
    return fig


@checked
def product_spectra(results: Sequence[ProductSpectrumResult], *, axes: Any = None) -> Figure:
    """``product_spectrum`` of several results in a column."""
    return _stacked(product_spectrum, results, ProductSpectrumResult, axes)


@checked
def float_limits(
    result: FloatLimitsResult, dtype: str = "float16", *, ax: Axes | None = None, legend: bool = True
) -> Figure:
    """log₂|∂J/∂w_1| = log₂ f^(L-1) as ``dtype`` computed it against L; subnormals shaded, 0 ▼, inf ▲."""
    check_result(result, FloatLimitsResult)
    check_choice("dtype", dtype, result.config.dtypes)
    fig, ax = figure_and_axes(ax)
    info = {key: np.log2(value) for key, value in float_format(dtype).items()}
    limits = [limit for limit in result.limits.values() if limit.dtype == dtype]
    events = [d for limit in limits for d in (limit.measured_depth, limit.floor_depth) if d is not None]
    last = min(result.config.max_depth, int(1.15 * max(events, default=result.config.max_depth)) + 5)
    depths = np.arange(1, last + 1)
    pad = 0.08 * (info["largest finite"] - info["smallest subnormal"])
    bottom, top = info["smallest subnormal"] - pad, info["largest finite"] + pad
    stacked = {"zero": 0, "inf": 0}  # labels already on each edge: the next one goes one line further in
    for limit in limits:
        trace = limit.trace[:last]
        with np.errstate(divide="ignore"):
            exponent = np.where((trace > 0) & np.isfinite(trace), np.log2(trace), np.nan)
        (line,) = ax.plot(depths, exponent, label=f"f = {limit.factor:g}")
        if limit.measured_depth is not None and limit.measured_depth <= last:
            zero = limit.event == "zero"
            edge = bottom if zero else top
            marker = "v" if zero else "^"
            ax.plot([limit.measured_depth], [edge], marker, color=line.get_color(), ms=8, clip_on=False)
            right_half = limit.measured_depth > 0.5 * last  # label on the side with room for it
            offset = 12 * stacked[limit.event]
            stacked[limit.event] += 1
            ax.annotate(
                f"{'0' if zero else 'inf'} at L = {limit.measured_depth}",
                (limit.measured_depth, edge),
                xytext=(-7 if right_half else 7, 2 + offset if zero else -11 - offset),
                textcoords="offset points",
                ha="right" if right_half else "left",
                fontsize=9,
                color=line.get_color(),
            )
    ax.axhspan(
        info["smallest subnormal"], info["smallest normal"], color="0.85", lw=0, label="subnormal range"
    )
    ax.axhline(info["largest finite"], color="0.4", lw=0.8, ls="--", label="largest finite")
    ax.axhline(0.0, color="0.6", lw=0.6)
    ax.set_ylim(bottom, top)
    ax.set_xlim(0, last + 1)
    ax.set_xlabel("depth L")
    ax.set_ylabel(r"$\log_2 |\partial J/\partial w_1|$")
    ax.set_title(dtype)
    if legend:
        ax.legend(fontsize=9, loc="lower left", bbox_to_anchor=(0.0, 0.08))
    return fig


@checked
def float_limits_grid(result: FloatLimitsResult, *, axes: Any = None) -> Figure:
    """``float_limits`` for every format of the result, one panel each, in two columns."""
    check_result(result, FloatLimitsResult)
    dtypes = result.config.dtypes
    fig, axes, own = _grid(axes, len(dtypes), 2, 3.0, sharey=False)
    for dtype, ax in zip(dtypes, axes, strict=True):
        float_limits(result, dtype, ax=ax, legend=False)
    _figure_legend(fig, axes[0], own)
    return fig


@checked
def layer_profile(result: LayerProfileResult, *, ax: Axes | None = None, legend: bool = True) -> Figure:
    """Per layer l: ‖δ_l‖ (backward), ‖h_{l-1}‖ (forward) and their product ‖∂J/∂W_l‖ (log y)."""
    check_result(result, LayerProfileResult)
    fig, ax = figure_and_axes(ax)
    marker = "o" if len(result.layers) <= 40 else None
    ax.plot(result.layers, result.backward_norm, marker=marker, ms=3, label="backward ‖δₗ‖")
    ax.plot(result.layers, result.input_norm, marker=marker, ms=3, label="forward ‖hₗ₋₁‖")
    ax.plot(result.layers, result.weight_grad_norm, marker=marker, ms=4, lw=2, label="‖∂J/∂Wₗ‖")
    # a data line, not axhline, so that the y limits include s^(L-1)
    predicted = np.full(len(result.layers), result.predicted_weight_grad_norm)
    ax.plot(result.layers, predicted, color="k", ls="--", lw=0.8, label="sᴸ⁻¹")
    log_scale(ax, "y")
    widen_log_limits(ax)
    ax.set_xlabel("layer l (input → output)")
    ax.set_ylabel("norm")
    cfg = result.config
    ax.set_title(f"s = {cfg.scale:.3g}, L = {cfg.depth}, {cfg.init}")
    if legend:
        ax.legend(fontsize=9)
    return fig


@checked
def layer_profile_grid(results: Sequence[LayerProfileResult], *, ncols: int = 2, axes: Any = None) -> Figure:
    """Small multiples of ``layer_profile``, each with its own y axis (norms lie decades apart)."""
    results = check_results(results, LayerProfileResult)
    ncols = check_int("ncols", ncols, minimum=1)
    fig, axes, own = _grid(axes, len(results), ncols, 2.5, sharey=False)
    for result, ax in zip(results, axes, strict=True):
        layer_profile(result, ax=ax, legend=False)
    outer_labels_only(axes, ncols)
    _figure_legend(fig, axes[0], own)
    return fig
