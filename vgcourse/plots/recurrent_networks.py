"""Figures of the recurrent-networks chapter; each takes a result of ``experiments.recurrent_networks``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vgcourse._validation import check_int
from vgcourse.experiments.recurrent_networks import (
    CliffResult,
    ClippingResult,
    ForgetGateResult,
    LagProfileResult,
    LongRangeResult,
    SpectralSweepResult,
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
from vgcourse.plots.figure_check import allow_clipping

ARCH_COLORS = {"rnn": "C0", "gru": "C1", "lstm": "C2"}
"""One colour per architecture, the same in every figure of the chapter."""
_METHOD_COLORS = {"none": "C3", "norm": "C0", "value": "C4"}
_LABELS = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}


def _log_limits(values: np.ndarray) -> tuple[float, float]:
    """y limits (log scale) that hold every positive finite value with a decade to spare."""
    finite = values[np.isfinite(values) & (values > 0)]
    if finite.size == 0:
        return 1e-3, 1e3
    return float(min(finite.min(), 1.0)) / 10, float(max(finite.max(), 1.0)) * 10


@checked
def lag_profile(result: LagProfileResult, *, ax: Axes | None = None, legend: bool = True) -> Figure:
    """‖∂L/∂x_{T-k}‖ / ‖∂L/∂x_T‖ against the lag k (log y), one line per architecture; when W_hh was
    rescaled to a spectral radius ρ, the dashed line is ρ^k, the linear prediction."""
    check_result(result, LagProfileResult)
    fig, ax = figure_and_axes(ax)
    relative, lags = result.relative.values, np.arange(result.config.seq_len)
    for arch, row in zip(result.config.archs, relative, strict=True):
        ax.plot(lags, row, color=ARCH_COLORS[arch], label=_LABELS[arch])
    radius = result.config.spectral_radius
    bottom, top = _log_limits(relative)
    if radius is not None:
        # the linear prediction ρ^k leaves the axes where ρ > 1 (3^59 ≈ 1e28): clipped on purpose
        allow_clipping(*ax.plot(lags, radius ** lags.astype(float), "k--", lw=0.8, label="ρᵏ"))
    ax.axhline(1.0, color="0.6", lw=0.6)
    log_scale(ax, "y")
    ax.set_ylim(bottom, top)
    ax.set_xlabel("lag k = T − t")
    ax.set_ylabel(r"$\|\partial L/\partial x_{T-k}\| \,/\, \|\partial L/\partial x_T\|$")
    scale = "default scale" if radius is None else f"ρ(Wₕₕ) = {radius:g}"
    ax.set_title(f"{scale}, T = {result.config.seq_len}")
    if legend:
        ax.legend(fontsize=9)
    return fig


@checked
def lag_profile_grid(results: Sequence[LagProfileResult], *, ncols: int = 2, axes: Any = None) -> Figure:
    """Small multiples of ``lag_profile`` (shared log y axis), e.g. one panel per spectral radius ρ."""
    results = check_results(results, LagProfileResult)
    ncols = min(check_int("ncols", ncols, minimum=1), len(results))
    fig, flat, own = small_multiples(axes, len(results), ncols, (3.6, 2.9), sharey=True)
    limits = np.array([_log_limits(r.relative.values) for r in results])
    for k, (result, ax) in enumerate(zip(results, flat, strict=False)):
        lag_profile(result, ax=ax, legend=False)
        if k % ncols:
            ax.set_ylabel("")
    for ax in flat:  # one y range (a new figure's panels share y anyway)
        ax.set_ylim(limits[:, 0].min(), limits[:, 1].max())
    if not own:
        flat[0].legend(fontsize=9)
        return fig
    legend_below(fig, flat[0], 0.06)
    return fig


@checked
def decay_rates(result: SpectralSweepResult, *, ax: Axes | None = None) -> Figure:
    """The fitted per-step factor of ‖∂L/∂x_{T-k}‖ against ρ(W_hh) per architecture; dashed: ρ (tanh' ≈ 1);
    open markers: PyTorch's default scale at its measured ρ."""
    check_result(result, SpectralSweepResult)
    fig, ax = figure_and_axes(ax)
    radii = np.array(result.config.radii)
    default = result.default
    for arch, rates in zip(result.config.archs, result.rate.values.T, strict=True):
        color = ARCH_COLORS[arch]
        ax.plot(radii, rates, "o-", color=color, ms=4, label=_LABELS[arch])
        point = [default.radius.sel(arch=arch)], [default.rate.sel(arch=arch)]
        ax.plot(*point, "o", mfc="none", color=color, ms=8)
    ax.plot([], [], "o", mfc="none", color="0.3", label="default scale")
    top = max(1.5, float(np.nanmax(result.rate.values)) * 1.1)
    line = np.linspace(0, min(radii.max(), top), 2)
    ax.plot(line, line, "k--", lw=0.8, label="factor = ρ")
    ax.axhline(1.0, color="0.6", lw=0.6)
    ax.set_xlim(0, radii.max() * 1.05)
    ax.set_ylim(0, top)
    ax.set_xlabel(r"spectral radius $\rho(W_{hh})$")
    ax.set_ylabel("gradient factor per step")
    ax.set_title(f"fitted over lags 1..{result.config.seq_len - 1}")
    ax.legend(fontsize=9)
    return fig


@checked
def forget_gate(result: ForgetGateResult, *, axes: Sequence[Axes] | None = None) -> Figure:
    """Left: the cell path ∏ f against the lag, with σ(b_f)^k dashed. Right: ‖∂L/∂x_{T-k}‖ / ‖∂L/∂x_T‖."""
    check_result(result, ForgetGateResult)
    fig, (left, right), _ = small_multiples(axes, 2, 2, (3.6, 3.2))
    lags = np.arange(result.config.seq_len)
    for k, bias in enumerate(result.config.biases):
        color = f"C{k}"
        name = "default $b_f$" if bias is None else f"$b_f$ = {bias:g}"
        left.plot(lags, result.cell_path.values[k], color=color, label=name)
        sigma = 0.5 if bias is None else 1 / (1 + np.exp(-bias))
        left.plot(lags, sigma ** lags.astype(float), "--", color=color, lw=0.8)
        right.plot(lags, result.profiles[bias].relative.values[0], color=color, label=name)
    left.plot([], [], "k--", lw=0.8, label=r"$\sigma(b_f)^k$")
    for ax_, title in (
        (left, r"cell path: typical $\prod f$"),
        (right, r"every path: relative $\|\partial L/\partial x_{T-k}\|$"),
    ):
        log_scale(ax_, "y")
        ax_.axhline(1.0, color="0.6", lw=0.6)
        ax_.set_xlabel("lag k")
        ax_.set_title(title, fontsize=10)
    left.legend(fontsize=9)
    fig.tight_layout()
    return fig


@checked
def long_range(result: LongRangeResult, *, axes: Sequence[Axes] | None = None) -> Figure:
    """Left: validation MSE over training, with the baseline. Right: gradient against lag, init/trained."""
    check_result(result, LongRangeResult)
    fig, (left, right), _ = small_multiples(axes, 2, 2, (3.6, 3.2))
    lags = np.arange(result.config.seq_len)
    for run in result.runs.values():
        color = ARCH_COLORS[run.arch]
        left.plot(
            run.history.eval_steps + 1, run.history.val_loss, "o-", ms=3, color=color, label=_LABELS[run.arch]
        )
        right.plot(lags, run.profile_init / run.profile_init[0], "--", color=color)
        right.plot(lags, run.profile_trained / run.profile_trained[0], color=color, label=_LABELS[run.arch])
    left.axhline(result.baseline, color="k", ls=":", lw=1, label="predict the mean")
    log_scale(left, "y")
    left.set_xlabel("training step")
    left.set_ylabel("validation MSE")
    left.set_title(f"adding problem, T = {result.config.seq_len}", fontsize=10)
    left.legend(fontsize=9)
    right.plot([], [], "k--", lw=1, label="at initialization")
    right.plot([], [], "k-", lw=1, label="after training")
    right.axhline(1.0, color="0.6", lw=0.6)
    right.axvspan(result.config.seq_len // 2, result.config.seq_len - 1, color="0.93", lw=0)
    log_scale(right, "y")
    right.set_xlabel("lag k (shaded: first marked value)")
    right.set_ylabel(r"$\|\partial L/\partial x_{T-k}\| \,/\, \|\partial L/\partial x_T\|$")
    right.set_title("gradient k steps back", fontsize=10)
    right.legend(fontsize=9)
    fig.tight_layout()
    return fig


@checked
def clipping(result: ClippingResult, *, axes: Sequence[Axes] | None = None) -> Figure:
    """Training loss (left) and gradient norm before clipping with the threshold (right) per step, per method
    and the control run (log axes); a diverging run leaves the top, a dotted line at its inf/NaN step."""
    check_result(result, ClippingResult)
    fig, (left, right), _ = small_multiples(axes, 2, 2, (3.6, 3.4))
    runs = [
        (method, history, _METHOD_COLORS[method], "no clipping" if method == "none" else f"{method} clipping")
        for method, history in result.histories.items()
    ]
    if result.control is not None:
        runs.append(("control", result.control, "0.55", f"none, default ρ = {result.default_radius:.2f}"))
    tops = {left: 1e3, right: 1e5}
    for method, history, color, label in runs:
        steps = np.arange(1, history.steps_run + 1)
        loss = np.where(np.isfinite(history.loss), history.loss, np.nan)
        grad = np.where(np.isfinite(history.grad_norm_total), history.grad_norm_total, np.nan)
        (line,) = left.plot(steps, loss, color=color, lw=1, label=label)
        lines = [line]
        if method != "control":
            lines += right.plot(steps, grad, color=color, lw=1, label=label)
        if history.diverged:
            allow_clipping(*lines)
            for ax_ in (left, right):
                ax_.axvline(history.diverged_step + 1, color=color, ls=":", lw=1)
    left.axhline(result.baseline, color="k", ls=":", lw=1, label="predict the mean")
    right.axhline(result.config.clip_norm, color="0.4", ls="--", lw=0.8, label="threshold τ")
    for ax_, label in ((left, "training loss (MSE)"), (right, "gradient norm before clipping")):
        log_scale(ax_, "y")
        ax_.set_xscale("log")
        values = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax_.get_lines()])
        ax_.set_ylim(float(np.nanmin(values[values > 0])) / 3, tops[ax_])
        ax_.set_xlim(1, result.config.steps * 1.05)
        ax_.set_xlabel("training step")
        ax_.set_ylabel(label)
    left.legend(fontsize=9, loc="upper right")
    right.legend(fontsize=9, loc="lower left")
    cfg = result.config
    left.set_title(rf"RNN, $\rho(W_{{hh}})$ = {cfg.spectral_radius:g}", fontsize=10)
    right.set_title(f"SGD ({cfg.optimizer}), lr {cfg.lr:g}", fontsize=10)
    fig.tight_layout()
    return fig


@checked
def cliff(result: CliffResult, *, axes: Sequence[Axes] | None = None) -> Figure:
    """Loss (left) and gradient norm (right) along the line from θ_0 to where the unclipped steps went,
    against the distance; dotted: how far the norm-clipped run went in as many steps."""
    check_result(result, CliffResult)
    fig, (left, right), _ = small_multiples(axes, 2, 2, (3.6, 3.0))
    k = result.config.unclipped_steps
    for ax_, values, label in (
        (left, result.loss, "validation loss (MSE)"),
        (right, result.grad_norm, "gradient norm"),
    ):
        ax_.plot(
            result.distance, values, "o-", ms=3, color=_METHOD_COLORS["none"], label=f"{k} unclipped steps"
        )
        ax_.axvline(result.clipped_distance, color=_METHOD_COLORS["norm"], ls=":", lw=1.5)
        log_scale(ax_, "y")
        ax_.set_ylim(float(values.min()) / 3, float(values.max()) * 3)
        ax_.set_xlabel(r"distance from $\theta_0$")
        ax_.set_ylabel(label)
    left.plot([], [], ls=":", color=_METHOD_COLORS["norm"], label=f"clipped run, {k} steps")
    left.legend(fontsize=9, loc="lower right")
    left.set_title("loss along the line", fontsize=10)
    right.set_title("gradient norm along the line", fontsize=10)
    fig.tight_layout()
    return fig
