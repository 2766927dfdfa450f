"""Figures of a ``DiagnosisReport``: gradient ratios, update:data ratios and unit fractions per layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vgcourse.diagnose import UPDATE_RATIO_GUIDE, DiagnosisReport, Thresholds
from vgcourse.monitor import MonitorRecord
from vgcourse.plots._common import (
    check_record,
    check_result,
    checked,
    figure_and_axes,
    log_scale,
    positive_only,
    set_layer_ticks,
)
from vgcourse.plots.layers import metric_over_training

_OK, _BAD, _OFF, _BAND = "tab:blue", "#c0392b", "0.6", "#2e8b57"


def _line_label(ax: Axes, y: float, text: str, color: str) -> None:
    """Label a horizontal line at its right end, just above it (cheaper and less in the way than a legend)."""
    ax.text(
        0.99, y, text, color=color, fontsize=9, ha="right", va="bottom", transform=ax.get_yaxis_transform()
    )


def _band(ax: Axes, low: float, high: float, labels: tuple[str, str]) -> None:
    """The unflagged band [low, high] shaded, its edges dashed and labelled "<labels[0]> low" etc."""
    ax.axhspan(low, high, color=_BAND, alpha=0.08, zorder=0)
    ax.axhline(low, color=_BAND, linestyle="--", linewidth=1)
    ax.axhline(high, color=_BAD, linestyle="--", linewidth=1)
    _line_label(ax, low, f"{labels[0]} {low:g}", _BAND)
    _line_label(ax, high, f"{labels[1]} {high:g}", _BAD)


def _zero_marks(ax: Axes, x: np.ndarray, colors: Any, label: str, **style: Any) -> None:
    """Values of exactly 0, which a log axis cannot show (an update below float32 resolution: W + ΔW == W):
    a ▼ at the bottom of the axes at each ``x``, and a key labelled ``label``."""
    ax.scatter(x, np.full(len(x), 0.03), marker="v", c=colors, transform=ax.get_xaxis_transform(), **style)
    ax.text(0.01, 0.06, f"▼ {label}", fontsize=9, transform=ax.transAxes)


def _log_points(ax: Axes, report: DiagnosisReport, values: np.ndarray, kinds: tuple[str, ...]) -> None:
    """One marker per layer (for a log axis, which the caller sets): red when flagged for one of ``kinds``,
    grey when not judged; the layer ticks and label."""
    x = np.arange(1, len(values) + 1)
    shown = positive_only(values)
    colors = [
        _BAD if set(kinds) & set(layer.flags) else (_OK if layer.status == "ok" else _OFF)
        for layer in report.layers
    ]
    ax.plot(x, shown, color=_OK, linewidth=1, zorder=2)
    finite = np.isfinite(shown)
    if finite.any():
        ax.scatter(
            x[finite], shown[finite], c=[c for c, f in zip(colors, finite, strict=True) if f], zorder=3
        )
    zero = np.flatnonzero(values == 0)
    if len(zero):
        _zero_marks(ax, x[zero], [colors[i] for i in zero], "exactly 0", zorder=3)
    for i, layer in enumerate(report.layers):
        if not finite[i] and layer.status == "non-finite":
            ax.annotate(
                "NaN/inf",
                (x[i], 0.5),
                xycoords=("data", "axes fraction"),
                color=_BAD,
                ha="center",
                rotation=90,
                fontsize="small",
            )
    set_layer_ticks(ax, report.layer_names)
    ax.set_xlabel("layer (input → output)")


@checked
def gradient_ratios(report: DiagnosisReport, *, ax: Axes | None = None) -> Figure:
    """rms(g_l) / rms(g_output) per layer on a log axis, with the vanishing and exploding thresholds.

    The shaded band is where a layer is not flagged; red markers are flagged layers, grey ones frozen
    or without a gradient.
    """
    check_result(report, DiagnosisReport, "report")
    fig, ax = figure_and_axes(ax)
    limits = report.thresholds
    _band(ax, limits.vanishing, limits.exploding, ("vanishing below", "exploding above"))
    _log_points(ax, report, report.columns["ratio"], ("vanishing", "exploding"))
    log_scale(ax, "y")
    ax.set_ylabel("gradient per weight ÷ output layer's")
    ax.set_title("gradient ratio to the output layer")
    return fig


@checked
def signals(report: DiagnosisReport, *, ax: Axes | None = None) -> Figure:
    """The forward and backward signals per layer on a log axis: mean(h_l²)/mean(x²), the forward gain,
    with the collapse and blow-up thresholds (red markers: flagged layers), and rms(∂L/∂h_l) ÷ the output
    layer's, the backward signal (hollow markers).
    """
    check_result(report, DiagnosisReport, "report")
    fig, ax = figure_and_axes(ax)
    limits = report.thresholds
    _band(ax, limits.forward_low, limits.forward_high, ("collapse below", "blow-up above"))
    _log_points(ax, report, report.columns["forward_gain"], ("forward_collapse", "forward_blowup"))
    x = np.arange(1, len(report.layers) + 1)
    backward = positive_only(report.columns["backward_ratio"])
    ax.plot(x, backward, color="tab:orange", linewidth=1, marker="o", markerfacecolor="none", zorder=2)
    ax.plot([], [], color=_OK, marker="o", label="forward: mean(h²) ÷ input's")
    ax.plot(
        [], [], color="tab:orange", marker="o", markerfacecolor="none", label="backward: rms ∂L/∂h ÷ output's"
    )
    ax.legend(fontsize=9, loc="upper center", ncol=2)
    log_scale(ax, "y")
    ax.set_ylabel("signal ÷ reference")
    ax.set_title("forward and backward signals")
    return fig


@checked
def update_ratios(report: DiagnosisReport, *, ax: Axes | None = None) -> Figure:
    """The update:data ratio std(ΔW)/std(W) of the step per layer, with the 1e-3 guide and the flags."""
    check_result(report, DiagnosisReport, "report")
    fig, ax = figure_and_axes(ax)
    _guide_lines(ax, report.thresholds)
    _log_points(ax, report, report.columns["update_ratio"], ("update_too_large", "update_too_small"))
    log_scale(ax, "y")
    ax.set_ylabel("update : data  (std ΔW / std W)")
    ax.set_title(f"one step of {report.optimizer}")
    return fig


@checked
def unit_fractions(report: DiagnosisReport, *, ax: Axes | None = None) -> Figure:
    """Dead (ReLU family) and saturated (sigmoid/tanh) unit fractions per layer, with their thresholds."""
    check_result(report, DiagnosisReport, "report")
    fig, ax = figure_and_axes(ax)
    x = np.arange(1, len(report.layers) + 1)
    dead, saturated = report.columns["dead_frac"], report.columns["saturated_frac"]
    limits = report.thresholds
    # vlines draw all bars as one collection (many Rectangle patches are slow to create)
    ax.vlines(x - 0.15, 0, np.nan_to_num(dead), color="tab:purple", linewidth=4, label="dead")
    ax.vlines(x + 0.15, 0, np.nan_to_num(saturated), color="tab:orange", linewidth=4, label="saturated")
    ax.axhline(limits.dead, color="tab:purple", linestyle="--", linewidth=1, label=f"dead > {limits.dead:g}")
    ax.axhline(
        limits.saturated,
        color="tab:orange",
        linestyle=":",
        linewidth=1,
        label=f"saturated > {limits.saturated:g}",
    )
    ax.set_ylim(0, 1.3)  # headroom above 1 for the legend
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    set_layer_ticks(ax, report.layer_names)
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel("fraction of units")
    ax.set_title("dead and saturated units")
    ax.legend(fontsize=9, loc="upper center", ncol=4)
    return fig


@checked
def diagnosis(
    report: DiagnosisReport, *, axes: Sequence[Axes] | None = None, title: str | None = None
) -> Figure:
    """The whole report in four panels: forward and backward signals, gradient ratios, update:data
    ratios, dead/saturated units (three axes given: the last three only).

    A new figure stacks the four panels at the text column's width (7.2 in). The title gives the verdict
    about ``title`` (default: the model's class name): the finding kinds, red when something was not finite.
    """
    check_result(report, DiagnosisReport, "report")
    if axes is None:
        fig, grid = plt.subplots(4, 1, figsize=(7.2, 12))
        axes = list(grid.flat)
        # fixed margins: tight_layout would measure every tick label and triple the drawing time
        fig.subplots_adjust(left=0.12, right=0.98, bottom=0.08, top=0.94, hspace=0.75)
    else:
        axes = list(axes)
        if len(axes) not in (3, 4) or not all(isinstance(a, Axes) for a in axes):
            raise TypeError("axes must be four (or three) matplotlib Axes or None")
        fig = axes[0].figure
    panels = [signals, gradient_ratios, update_ratios, unit_fractions][-len(axes) :]
    for draw, ax in zip(panels, axes, strict=True):
        draw(report, ax=ax)
    kinds = [f.kind.replace("_", " ") for f in report.problems]
    verdict = "healthy" if not kinds else "flags: " + ", ".join(kinds)
    color = _BAD if report.non_finite else ("black" if not kinds else "#8b0000")
    fig.suptitle(f"{report.model_name if title is None else title}: {verdict}", color=color)
    return fig


def _guide_lines(ax: Axes, limits: Thresholds) -> None:
    """The 1e-3 guide and the two flag lines of the update:data ratio, labelled."""
    ax.axhspan(limits.update_low, limits.update_high, color=_BAND, alpha=0.08, zorder=0)
    ax.axhline(UPDATE_RATIO_GUIDE, color="black", linestyle="--", linewidth=1.2)
    ax.axhline(limits.update_low, color=_OFF, linestyle=":", linewidth=1)
    ax.axhline(limits.update_high, color=_BAD, linestyle=":", linewidth=1)
    _line_label(ax, UPDATE_RATIO_GUIDE, f"guide {UPDATE_RATIO_GUIDE:g}", "black")
    _line_label(ax, limits.update_low, f"too small below {limits.update_low:g}", "0.4")
    _line_label(ax, limits.update_high, f"too large above {limits.update_high:g}", _BAD)


@checked
def update_ratio_over_training(
    record: MonitorRecord, *, ax: Axes | None = None, thresholds: Thresholds | None = None
) -> Figure:
    """log-scale update:data ratio of every layer against the step, with the 1e-3 guide (Karpathy's view:
    healthy layers settle near it); ``record`` needs update ratios, ``thresholds`` places the flag lines."""
    values = check_record(record, "update_ratio")
    if not np.any(np.isfinite(values)):
        raise ValueError(
            "the record has no update ratios: attach the monitor to the optimizer, "
            "GradientMonitor(model, optimizer), or call after_update() after each optimizer step"
        )
    limits = Thresholds() if thresholds is None else thresholds
    check_result(limits, Thresholds, "thresholds")
    fig, ax = figure_and_axes(ax)
    metric_over_training(record, "update_ratio", ax=ax, log=True)
    _guide_lines(ax, limits)
    steps, layers = np.nonzero(values == 0)
    if len(steps):
        colors = plt.get_cmap("viridis")(np.linspace(0, 1, max(len(record.layer_names), 2)))
        _zero_marks(ax, record.steps[steps], colors[layers], "update exactly 0", s=12)
    ax.set_ylabel("update : data  (std ΔW / std W)")
    ax.set_title("update:data ratio per layer during training")
    return fig
