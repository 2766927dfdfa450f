"""Shared helpers of the plot functions: axes handling, log axes and argument checks."""

from __future__ import annotations

import functools
import math
import os
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatterSciNotation, LogLocator

from vgcourse._validation import check_choice
from vgcourse.config import check_config
from vgcourse.monitor import METRICS, MonitorRecord
from vgcourse.plots.figure_check import check_figure

STRICT_FIGURES_ENV = "VGCOURSE_STRICT_FIGURES"
"""Set to 1 (the book build does) and every public plot function checks the figure it returns."""

FULL_CHECKS = 3
"""Figures of each plot function per process that get the full check (with layout); later ones without."""

_PlotFunction = TypeVar("_PlotFunction", bound=Callable[..., Any])
_nesting = threading.local()
_checked_counts: dict[str, int] = {}


def strict_figures() -> bool:
    """Whether ``VGCOURSE_STRICT_FIGURES=1`` is set: plot functions then check their figures."""
    return os.environ.get(STRICT_FIGURES_ENV, "") == "1"


def checked(function: _PlotFunction) -> _PlotFunction:
    """Decorator of the public plot functions: with ``VGCOURSE_STRICT_FIGURES=1``, `check_figure` the Figure
    returned by the outermost decorated call (a grid once, not each panel)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not strict_figures():
            return function(*args, **kwargs)
        depth = getattr(_nesting, "depth", 0)
        _nesting.depth = depth + 1
        try:
            result = function(*args, **kwargs)
        finally:
            _nesting.depth = depth
        if depth == 0 and isinstance(result, Figure):
            name = f"{function.__module__}.{function.__qualname__}"
            count = _checked_counts[name] = _checked_counts.get(name, 0) + 1
            try:
                check_figure(result, layout=count <= FULL_CHECKS)
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        return result

    return wrapper  # type: ignore[return-value]


def figure_and_axes(ax: Axes | None, figsize: tuple[float, float] = (6.4, 4.0)) -> tuple[Figure, Axes]:
    """Return ``(ax.figure, ax)``, or a new figure with one axes when ``ax`` is None."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None; got {type(ax).__name__}")
    return ax.figure, ax


def figure_and_axes_grid(
    axes: Any, shape: tuple[int, int], figsize: tuple[float, float], *, n: int | None = None, **subplots: Any
) -> tuple[Figure, list[Axes], bool]:
    """(figure, the first ``n`` panels of a rows × cols ``shape`` in reading order (all by default), owned):
    a new ``figsize`` figure of ``plt.subplots(*shape, **subplots)`` with the panels past ``n`` hidden when
    ``axes`` is None (owned: the function may lay it out), else the ``n`` Axes given and their figure."""
    n = shape[0] * shape[1] if n is None else n
    if axes is None:
        fig, grid = plt.subplots(*shape, figsize=figsize, squeeze=False, **subplots)
        for ax in grid.flat[n:]:
            ax.set_visible(False)
        return fig, list(grid.flat[:n]), True
    flat = list(np.ravel(np.asarray(axes, dtype=object)))
    if len(flat) != n or not all(isinstance(a, Axes) for a in flat):
        raise TypeError(f"axes must be {n} matplotlib Axes or None; got {len(flat)} object(s)")
    return flat[0].figure, flat, False


def small_multiples(
    axes: Any, n: int, ncols: int, panel: tuple[float, float], *, width: float | None = None, **subplots: Any
) -> tuple[Figure, list[Axes], bool]:
    """`figure_and_axes_grid` of n panels in rows of ``ncols``, each ``panel`` (w, h) inches (the figure
    ``width`` wide if given)."""
    cols = min(ncols, n)
    rows = -(-n // cols)
    size = (panel[0] * cols if width is None else width, panel[1] * rows)
    return figure_and_axes_grid(axes, (rows, cols), size, n=n, **subplots)


def outer_labels_only(axes: Sequence[Axes], ncols: int) -> None:
    """Panels row by row in rows of ``ncols``: the first column keeps its y labels and the last ``ncols``
    panels their x labels; the others' are cleared (unlike ``Axes.label_outer``, tick labels stay)."""
    for k, ax in enumerate(axes):
        if k % ncols:
            ax.set_ylabel("")
        if k < len(axes) - ncols:
            ax.set_xlabel("")


def legend_below(fig: Figure, ax: Axes, bottom: float, ncols: int | None = None, **legend: Any) -> None:
    """``ax``'s legend under the panels in ``ncols`` columns (default one row), after a tight layout that
    keeps the panels above ``bottom`` (a fraction of the figure's height)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    options = {"fontsize": 9, "frameon": False} | legend
    fig.legend(handles, labels, loc="lower center", ncols=ncols or len(labels), **options)


_SUPERSCRIPTS = str.maketrans("0123456789-−", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁻")
_MATHDEFAULT = re.compile(r"\$\\mathdefault\{(.*)\}\$")
_EXPONENT = re.compile(r"\^\{([^{}]*)\}")


class PlainLogFormatter(LogFormatterSciNotation):
    """Log-axis tick labels as plain text with Unicode superscripts (10⁻³, 2×10⁴) instead of mathtext, which
    matplotlib parses again for every figure (most of an explorer update's drawing time)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        if not math.isfinite(x):  # a tick beyond float64 (axis limits near 1e±300): no label, no crash
            return ""
        label = super().__call__(x, pos)
        match = _MATHDEFAULT.fullmatch(label)
        if match is None:
            return label
        body = match.group(1).replace("\\times", "×")
        return _EXPONENT.sub(lambda m: m.group(1).translate(_SUPERSCRIPTS), body)


class SparseMinorLogLocator(LogLocator):
    """Minor log ticks at 2, 3, ..., 9 × 10^k over up to two decades, only at 2 and 5 × 10^k beyond."""

    def __init__(self) -> None:
        super().__init__(10.0, subs=(2.0, 5.0))

    def tick_values(self, vmin: float, vmax: float) -> np.ndarray:
        low, high = sorted((vmin, vmax))
        narrow = low > 0 and math.log10(high / low) <= 2
        self._subs = np.arange(2.0, 10.0) if narrow else np.array([2.0, 5.0])
        return super().tick_values(vmin, vmax)


def trailing_mean(values: Sequence[float] | np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(i, mean of values[i - window + 1 .. i]) for i = window - 1, ..., n - 1: a curve's moving average.
    A run shorter than the window is returned as it is, at i = 0, ..., n - 1."""
    if len(values) < window:
        return np.arange(len(values)), np.asarray(values)
    return np.arange(window - 1, len(values)), np.convolve(values, np.ones(window) / window, mode="valid")


def log_scale(ax: Axes, axis: str = "y", base: float = 10) -> None:
    """Put ``axis`` ("x" or "y") on a log scale labelled by ``PlainLogFormatter``."""
    check_choice("axis", axis, ("x", "y"))
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log", base=base)
    target = ax.xaxis if axis == "x" else ax.yaxis
    if base == 10:
        target.set_minor_locator(SparseMinorLogLocator())
    target.set_major_formatter(PlainLogFormatter(base))
    target.set_minor_formatter(PlainLogFormatter(base, labelOnlyBase=False))


def widen_log_limits(ax: Axes, min_decades: float = 1.0) -> None:
    """Make a log y axis span at least ``min_decades`` decades around its data, so that rounding on a flat
    line (1 ± 1e-7) is not stretched to fill the axes."""
    low, high = ax.dataLim.intervaly
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low <= high):
        return
    if math.log10(high / low) < min_decades:
        centre, half = math.sqrt(low * high), 10 ** (min_decades / 2)
        ax.set_ylim(centre / half, centre * half)


def check_record(record: Any, metric: str) -> np.ndarray:
    """Return the (S, L) values of ``metric`` after checking the record has at least one step."""
    if not isinstance(record, MonitorRecord):
        raise TypeError(f"record must be a MonitorRecord; got {type(record).__name__}")
    values = record.values(check_choice("metric", metric, METRICS))
    if values.size == 0:
        raise ValueError("the record is empty: no step was recorded")
    return values


def use_log_scale(values: np.ndarray, log: bool) -> bool:
    """Log scale only when asked for, no finite value is negative and at least one is positive."""
    finite = values[np.isfinite(values)]
    return bool(log) and bool(np.any(finite > 0)) and bool(np.all(finite >= 0))


def positive_only(values: Any, limit: float = math.inf) -> np.ndarray:
    """A float copy for a log axis: values <= 0, not finite or outside [1/limit, limit] become NaN (a line
    draws a NaN and an inf alike: a gap)."""
    values = np.asarray(values, dtype=np.float64)
    keep = (values > 0) & np.isfinite(values) & (1 / limit <= values) & (values <= limit)
    return np.where(keep, values, np.nan)


def set_layer_ticks(ax: Axes, names: list[str], axis: str = "x", max_labels: int = 12) -> None:
    """Label layer positions 1..L with their names (every k-th name when there are many)."""
    stride = max(1, -(-len(names) // max_labels))
    positions = np.arange(1, len(names) + 1)[::stride]
    labels = names[::stride]
    if axis == "x":
        ax.set_xticks(
            positions,
            labels,
            rotation=45 if len(names) > 6 else 0,
            ha="right" if len(names) > 6 else "center",
        )
    else:
        ax.set_yticks(positions, labels)


def check_result(result: Any, cls: type, name: str = "result") -> None:
    """TypeError unless ``result`` is a ``cls`` (a plot function's first check), naming both."""
    check_config(result, cls, name)


def check_results(results: Any, cls: type) -> list:
    """The non-empty sequence ``results`` as a list, after `check_result` of each item."""
    if isinstance(results, (str, bytes)) or not isinstance(results, Sequence) or not results:
        raise TypeError(f"results must be a non-empty sequence of {cls.__name__}")
    for result in results:
        check_result(result, cls, "each result")
    return list(results)
