"""Shared helpers of the plot functions: axes handling, log axes and argument checks."""

from __future__ import annotations

import functools
import math
import os
import re
import threading
from collections.abc import Callable
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
"""How many figures of each plot function get the full check (with layout) per process; the rest are
checked without layout (series inside the axes, text sizes other than tick labels): see figure_check."""

_PlotFunction = TypeVar("_PlotFunction", bound=Callable[..., Any])
_nesting = threading.local()
_checked_counts: dict[str, int] = {}


def strict_figures() -> bool:
    """Whether ``VGCOURSE_STRICT_FIGURES=1`` is set: plot functions then check their figures."""
    return os.environ.get(STRICT_FIGURES_ENV, "") == "1"


def checked(function: _PlotFunction) -> _PlotFunction:
    """Decorator of the public plot functions: with ``VGCOURSE_STRICT_FIGURES=1``, pass the Figure the
    function returns to ``vgcourse.plots.figure_check.check_figure`` (ValueError naming the axes and item
    that break the book's figure limits). Only the outermost decorated call checks, so a grid function
    that calls a panel function checks the finished grid once. The first ``FULL_CHECKS`` figures of each
    function get the full check, later ones the check without layout (an explorer's page grid draws one
    figure per setting)."""

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
    axes: Any, n: int, new: Callable[[], tuple[Figure, Any]]
) -> tuple[Figure, list[Axes], bool]:
    """The figure and ``n`` axes a multi-panel plot function draws on, and whether it owns the figure.

    ``axes`` None: the figure ``new()`` makes (e.g. ``plt.subplots(...)``) and its first ``n`` axes, True
    (the function lays the figure out and may add a figure legend). Otherwise ``axes`` must hold exactly
    ``n`` matplotlib Axes (a list, or an array from ``plt.subplots``): their figure and the axes, False
    (the caller's figure: the function leaves its layout alone). A TypeError names the count needed.
    """
    if axes is None:
        fig, grid = new()
        return fig, list(np.ravel(np.asarray(grid, dtype=object)))[:n], True
    flat = list(np.ravel(np.asarray(axes, dtype=object)))
    if len(flat) != n or not all(isinstance(a, Axes) for a in flat):
        raise TypeError(f"axes must be {n} matplotlib Axes or None; got {len(flat)} object(s)")
    return flat[0].figure, flat, False


_SUPERSCRIPTS = str.maketrans("0123456789-−", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁻")
_MATHDEFAULT = re.compile(r"\$\\mathdefault\{(.*)\}\$")
_EXPONENT = re.compile(r"\^\{([^{}]*)\}")


class PlainLogFormatter(LogFormatterSciNotation):
    """Log-axis tick labels as plain text with Unicode superscripts (10⁻³, 2×10⁴) instead of mathtext.

    Same labels as matplotlib's default log formatter; plain text is measured and drawn several times
    faster, because matplotlib parses every mathtext label again for each new figure (about 7 ms a label
    here), which is most of the time an explorer update spends drawing.
    """

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
    """Minor ticks of a base-10 log axis: at 2, 3, ..., 9 × 10^k (matplotlib's) on an axis spanning up to
    two decades, and only at 2 and 5 × 10^k beyond, where eight per decade would be clutter, and each
    tick an artist that costs drawing time."""

    def __init__(self) -> None:
        super().__init__(10.0, subs=(2.0, 5.0))

    def tick_values(self, vmin: float, vmax: float) -> np.ndarray:
        low, high = sorted((vmin, vmax))
        narrow = low > 0 and math.log10(high / low) <= 2
        self._subs = np.arange(2.0, 10.0) if narrow else np.array([2.0, 5.0])
        return super().tick_values(vmin, vmax)


def log_scale(ax: Axes, axis: str = "y", base: float = 10) -> None:
    """Put ``axis`` ("x" or "y") of ``ax`` on a log scale of ``base`` labelled by ``PlainLogFormatter``
    (base 10: minor ticks from ``SparseMinorLogLocator``)."""
    check_choice("axis", axis, ("x", "y"))
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log", base=base)
    target = ax.xaxis if axis == "x" else ax.yaxis
    if base == 10:
        target.set_minor_locator(SparseMinorLogLocator())
    target.set_major_formatter(PlainLogFormatter(base))
    target.set_minor_formatter(PlainLogFormatter(base, labelOnlyBase=False))


def widen_log_limits(ax: Axes, min_decades: float = 1.0) -> None:
    """Make a log y axis span at least ``min_decades`` decades around its data (same geometric centre), so
    that float rounding on a flat line (norms of 1 ± 1e-7) is not stretched to fill the axes."""
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


def positive_only(values: np.ndarray) -> np.ndarray:
    """A copy with values <= 0 replaced by NaN, which log axes cannot show (e.g. an update below float
    precision gives update_ratio 0)."""
    return np.where(values > 0, values, np.nan)


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
