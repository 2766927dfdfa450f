"""Figures of the chapter on detecting and fixing vanishing gradients; each takes a result of
``experiments.detecting_and_fixing`` and draws on ``ax`` (one panel) or ``axes`` (several) when given,
else on a new figure."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vgcourse._validation import check_choice
from vgcourse.diagnose import EXPLODING_RATIO, SATURATION, VANISHING_RATIO
from vgcourse.experiments.detecting_and_fixing import (
    BASELINE,
    CASES,
    SANITY_CASES,
    CalibrationResult,
    MonitoredRemediesResult,
    Remedy,
    RemedyDiagnosisResult,
    RobustRemediesResult,
    SanityResult,
    WarningSignsResult,
)
from vgcourse.plots import diagnose as diagnose_plots
from vgcourse.plots._common import (
    check_result,
    check_results,
    checked,
    figure_and_axes,
    figure_and_axes_grid,
    log_scale,
    positive_only,
    small_multiples,
)
from vgcourse.plots.layers import metric_over_training

_CASE_STYLE = {
    "he_relu": ("He ReLU, width w", "tab:blue"),
    "he_relu_wide": ("He ReLU, width 4w", "tab:cyan"),
    "xavier_tanh": ("Xavier tanh", "tab:green"),
    "default_sigmoid": ("default sigmoid", "tab:red"),
}
_SIGN_COLORS = {
    "healthy": "tab:blue",
    "vanishing": "tab:red",
    "dead": "tab:purple",
    "saturated": "tab:orange",
    "exploding": "black",
    "exploding_clipped": "tab:gray",
}


def _threshold_band(ax: Axes, axis: str = "y") -> None:
    """Shade the band between diagnose's vanishing and exploding thresholds (log10 units) on ``axis``."""
    low, high = np.log10(VANISHING_RATIO), np.log10(EXPLODING_RATIO)
    span, line = (ax.axhspan, ax.axhline) if axis == "y" else (ax.axvspan, ax.axvline)
    span(low, high, color="#2e8b57", alpha=0.08, zorder=0)
    line(low, color="#2e8b57", linestyle="--", linewidth=1)
    line(high, color="#c0392b", linestyle="--", linewidth=1)


@checked
def calibration(result: CalibrationResult, *, ax: Axes | None = None) -> Figure:
    """log10 rms(g_l)/rms(g_output) against the layer, one line per case (seed 0) and its seed range.

    The dashed lines are ``diagnose``'s thresholds, three decades either side of the output layer."""
    check_result(result, CalibrationResult)
    fig, ax = figure_and_axes(ax, figsize=(7.0, 4.2))
    _threshold_band(ax)
    for case in CASES:
        values = result.log_ratio.sel(case=case).values
        x = np.arange(1, values.shape[1] + 1)
        label, color = _CASE_STYLE[case]
        ax.fill_between(x, values.min(0), values.max(0), color=color, alpha=0.2, linewidth=0)
        ax.plot(x, values[0], marker="o", markersize=3, color=color, label=label)
    depth = result.config.depth
    ax.set_xticks([1, depth // 2, depth, depth + 1], ["1", str(depth // 2), str(depth), "output"])
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel("log10 (gradient per weight ÷ output layer's)")
    ax.set_title("where diagnose draws the line")
    ax.legend(fontsize="small", loc="lower right")
    return fig


@checked
def warning_signs(result: WarningSignsResult, *, axes: Sequence[Axes] | None = None) -> Figure:
    """Top: the training loss of every run (×: where a run diverged). Bottom: how far each layer's
    weights moved during training, ‖W_T − W_0‖/‖W_0‖."""
    check_result(result, WarningSignsResult)
    fig, (left, right), _ = figure_and_axes_grid(axes, (2, 1), (7.2, 7.0))
    for run in result.runs.values():
        color = _SIGN_COLORS[run.name]
        loss = np.asarray(run.history.loss, dtype=np.float64)
        shown = np.where(np.isfinite(loss) & (loss < 1e6), loss, np.nan)
        left.plot(np.arange(len(loss)), shown, color=color, linewidth=1, label=run.name.replace("_", " "))
        if run.history.diverged:
            step = run.history.diverged_step
            finite = shown[np.isfinite(shown)]
            left.plot(step, finite.max() if finite.size else 1.0, "x", color=color, markersize=10, mew=2)
        moved = positive_only(run.weight_change)
        right.plot(np.arange(1, len(moved) + 1), moved, marker="o", markersize=3, color=color)
    log_scale(left, "y")
    left.set_xlabel("step")
    left.set_ylabel("training loss")
    left.set_title("the loss curve (× = NaN/inf)")
    left.legend(fontsize=9, ncol=3)
    log_scale(right, "y")
    n = len(next(iter(result.runs.values())).weight_change)
    right.set_xticks([1, n // 2, n], ["1", str(n // 2), "output"])
    right.set_xlabel("layer (input → output)")
    right.set_ylabel("‖W_T − W_0‖ / ‖W_0‖")
    right.set_title("how far each layer moved")
    fig.tight_layout()
    return fig


def _cell_color(remedy: Remedy) -> str:
    """Red: the baseline; blue: one factor changed; purple: several."""
    changed = len(remedy.changes(BASELINE))
    return "tab:red" if changed == 0 else ("tab:blue" if changed == 1 else "tab:purple")


@checked
def robust_remedies(result: RobustRemediesResult, *, axes: Sequence[Axes] | None = None) -> Figure:
    """One row per cell of the robust grid, two panels. Left: the first layer's gradient ratio at
    initialization (log10, one dot per seed, with ``diagnose``'s thresholds). Right: the final validation
    accuracy, mean over seeds, at every learning rate (the best one boxed; "NaN k" where k seeds diverged)."""
    check_result(result, RobustRemediesResult)
    cells = list(result.cells.values())
    n, lrs = len(cells), result.config.lrs
    fig, (ratio_ax, acc_ax), _ = figure_and_axes_grid(axes, (1, 2), (7.3, 0.3 * n + 1.6))
    y = np.arange(n)[::-1]
    ratios = [np.log10(np.clip(cell.grad_ratio, 1e-30, None)) for cell in cells]
    _threshold_band(ratio_ax, axis="x")
    for yi, cell, values in zip(y, cells, ratios, strict=True):
        ratio_ax.scatter(values, np.full(len(values), yi), s=12, color=_cell_color(cell.remedy), zorder=3)
    ratio_ax.set_yticks(y, [cell.remedy.label for cell in cells], fontsize=9)
    low = min(float(np.min(v)) for v in ratios)
    ratio_ax.set_xlim(min(low, -3.0) - 1.0, 4.0)
    ratio_ax.set_ylim(-0.6, n - 0.4)
    ratio_ax.set_xlabel("log10 (layer 1 ÷ output)")
    ratio_ax.set_title("gradient ratio at init", fontsize=10)

    mean = np.array([np.nan_to_num(cell.accuracy, nan=0.0).mean(axis=1) for cell in cells])
    acc_ax.imshow(mean[::-1], cmap="Greens", vmin=0.0, vmax=1.0, aspect="auto", origin="lower")
    for row, cell in enumerate(cells):
        yi = y[row]
        for col in range(len(lrs)):
            diverged = cell.diverged[col]
            text = f"{mean[row, col]:.2f}" if not diverged else f"NaN {diverged}"
            color = "white" if mean[row, col] > 0.6 else "black"
            acc_ax.text(col, yi, text, ha="center", va="center", fontsize=9, color=color)
        acc_ax.add_patch(
            plt.Rectangle(
                (lrs.index(cell.best_lr) - 0.5, yi - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.5
            )
        )
    acc_ax.set_xticks(range(len(lrs)), [f"{lr:g}" for lr in lrs], fontsize=9)
    acc_ax.set_yticks(y, [])
    acc_ax.set_xlabel("learning rate")
    acc_ax.set_title(f"val accuracy, mean of {len(result.config.seeds)} seeds", fontsize=10)
    fig.tight_layout()
    return fig


@checked
def training_views(
    result: MonitoredRemediesResult,
    cells: Sequence[Remedy] = (BASELINE,),
    *,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """Per cell, two views over training: the update:data ratio of every layer (log, with the 1e-3
    guide) and the gradient norm of every layer. Rows are ``cells`` (two axes each, each a cell of the
    result: the default is the baseline), input layers dark, output yellow.
    """
    check_result(result, MonitoredRemediesResult)
    cells = list(cells)
    if not cells:
        raise ValueError("cells must name at least one cell of the grid")
    missing = [cell for cell in cells if cell not in result.runs]
    if missing:
        names = [cell.label if isinstance(cell, Remedy) else repr(cell) for cell in missing]
        raise ValueError(
            f"cells must be cells of the result; not in it: {', '.join(names)} "
            f"(the result has: {', '.join(remedy.label for remedy in result.runs)})"
        )
    fig, grid, _ = figure_and_axes_grid(axes, (len(cells), 2), (7.2, 3.3 * len(cells)))
    for row, remedy in enumerate(cells):
        record = result.runs[remedy].history.monitor
        left, right = grid[2 * row], grid[2 * row + 1]
        diagnose_plots.update_ratio_over_training(record, ax=left)
        metric_over_training(record, "grad_norm", ax=right)
        left.set_title(f"{remedy.label}:\nupdate:data ratio", fontsize=10)
        right.set_title(f"{remedy.label}:\ngradient norm per layer", fontsize=10)
    fig.tight_layout()
    return fig


REMEDY_PANELS = {  # the three panels of ``plots.diagnose.diagnosis``, by name
    "gradient ratios": diagnose_plots.gradient_ratios,
    "update ratios": diagnose_plots.update_ratios,
    "unit fractions": diagnose_plots.unit_fractions,
}


@checked
def remedy_panel(
    result: RemedyDiagnosisResult, panel: str = "gradient ratios", *, ax: Axes | None = None
) -> Figure:
    """The explorer's view: one panel of ``plots.diagnose.diagnosis`` of one cell at initialization, titled
    with the cell and what ``diagnose`` flagged (one panel draws in a third of the time of three);
    ``panel``: one of ``REMEDY_PANELS``.
    """
    check_result(result, RemedyDiagnosisResult)
    draw = REMEDY_PANELS[check_choice("panel", panel, tuple(REMEDY_PANELS))]
    fig = draw(result.report, ax=ax)
    ax = fig.axes[0] if ax is None else ax
    kinds = sorted({f.kind.replace("_", " ") for f in result.report.problems})
    ax.set_title(
        f"{result.config.remedy.label}, {2 * result.config.blocks} hidden layers: "
        f"{', '.join(kinds) or 'healthy'}\n{ax.get_title()}",
        fontsize="medium",
    )
    return fig


@checked
def remedy_small_multiples(
    results: Sequence[RemedyDiagnosisResult], *, axes: Sequence[Axes] | None = None
) -> Figure:
    """The gradient-ratio panel of one to six cells, one axes each (new: two columns, unused axes hidden):
    the explorer's main effect, for a static page."""
    results = check_results(results, RemedyDiagnosisResult)
    if len(results) > 6:
        raise ValueError(f"results must be 1 to 6 RemedyDiagnosisResult; got {len(results)}")
    fig, grid, _ = small_multiples(axes, len(results), 2, (3.6, 3.4), width=7.2)
    for ax, result in zip(grid, results, strict=False):
        diagnose_plots.gradient_ratios(result.report, ax=ax)
        kinds = sorted({f.kind.replace("_", " ") for f in result.report.problems})
        ax.set_title(f"{result.config.remedy.label}\n{', '.join(kinds) or 'healthy'}", fontsize="medium")
        ax.set_ylim(1e-14, 1e4)
        ax.set_xticks([])
        ax.set_xlabel("layer (input → output)")
    for ax in grid[1::2]:
        ax.set_ylabel("")
    fig.tight_layout()
    return fig


@checked
def activation_histograms(result: SanityResult, *, axes: Sequence[Axes] | None = None) -> Figure:
    """Karpathy's view of a tanh network at initialization: per hidden layer, the histogram of its
    outputs on the batch (one line per layer, input dark to output yellow), one panel per case of
    ``SANITY_CASES`` (new: stacked), titled with the saturated fraction (|u| > ``SATURATION``) of every
    layer.
    """
    check_result(result, SanityResult)
    fig, grid, _ = figure_and_axes_grid(axes, (len(SANITY_CASES), 1), (7.2, 3.0 * len(SANITY_CASES)))
    titles = {"xavier_tanh": "tanh, Xavier weights", "saturated": "tanh, weights N(0, 1)"}
    edges = np.linspace(-1.0, 1.0, 41)
    for ax, case in zip(grid, SANITY_CASES, strict=True):
        values = result.activations[case]
        colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(values)))
        for layer, (row, color) in enumerate(zip(values, colors, strict=True)):
            density, _ = np.histogram(row, bins=edges, density=True)
            ax.plot(0.5 * (edges[1:] + edges[:-1]), density, color=color, label=f"layer {layer + 1}")
        for x in (-SATURATION, SATURATION):
            ax.axvline(x, color="0.4", linestyle=":", linewidth=1)
        saturated = result.saturated[case]
        ax.set_title(
            f"{titles[case]}: {saturated.min():.0%} to {saturated.max():.0%} of each layer saturated",
            fontsize=10,
        )
        ax.set_xlim(-1.0, 1.0)
        ax.set_ylim(0.0, 1.5 * ax.get_ylim()[1])  # room for the legend above the curves
        ax.set_ylabel("density")
    grid[-1].set_xlabel(
        "tanh output u (dotted: the saturation lines |u| = SATURATION)".replace(
            "SATURATION", f"{SATURATION:g}"
        )
    )
    grid[0].legend(fontsize=9, ncol=4, loc="upper center")
    fig.tight_layout()
    return fig
