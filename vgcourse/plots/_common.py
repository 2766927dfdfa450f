"""Shared helpers of the plot functions: axes handling and argument checks."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vgcourse._validation import check_choice
from vgcourse.monitor import METRICS, MonitorRecord


def figure_and_axes(ax: Axes | None, figsize: tuple[float, float] = (6.4, 4.0)) -> tuple[Figure, Axes]:
    """Return ``(ax.figure, ax)``, or a new figure with one axes when ``ax`` is None."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None; got {type(ax).__name__}")
    return ax.figure, ax


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


def set_layer_ticks(ax: Axes, names: list[str], axis: str = "x", max_labels: int = 20) -> None:
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
