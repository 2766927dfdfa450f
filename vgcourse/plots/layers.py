"""Per-layer pictures of a ``MonitorRecord``: one step across layers, step x layer maps, layers over time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from torch import Tensor, nn

from vgcourse._validation import check_int
from vgcourse.monitor import MonitorRecord
from vgcourse.plots._common import (
    check_record,
    checked,
    figure_and_axes,
    log_scale,
    positive_only,
    set_layer_ticks,
    use_log_scale,
)


@checked
def grad_norms_by_layer(
    record: MonitorRecord,
    *,
    step: int = -1,
    ax: Axes | None = None,
    label: str | None = None,
    metric: str = "grad_norm",
) -> Figure:
    """Plot one recorded step's ``metric`` (default ||dL/dW_l||) against layer l = 1..L, log y.

    A straight falling line on the log axis from output to input is the signature of vanishing gradients.
    ``step`` indexes ``record.steps``; call again with the same ``ax`` and a ``label`` to compare runs.
    The y axis is logarithmic (values <= 0 not drawn) unless a value is negative.
    """
    values = check_record(record, metric)
    check_int("step", step, minimum=-len(values), maximum=len(values) - 1)
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label must be a string or None; got {type(label).__name__}")
    fig, ax = figure_and_axes(ax)
    row = values[step]
    log = use_log_scale(row, True)
    label = f"step {int(record.steps[step])}" if label is None else label
    ax.plot(np.arange(1, len(row) + 1), positive_only(row) if log else row, marker="o", label=label)
    if log:
        log_scale(ax, "y")
    set_layer_ticks(ax, record.layer_names)
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by layer")
    ax.legend()
    return fig


def _edges(steps: np.ndarray) -> np.ndarray:
    """Cell edges around each recorded step for pcolormesh (midpoints, ends extended by half a gap)."""
    steps = steps.astype(np.float64)
    if len(steps) == 1:
        return np.array([steps[0] - 0.5, steps[0] + 0.5])
    mid = (steps[1:] + steps[:-1]) / 2
    return np.concatenate([[2 * steps[0] - mid[0]], mid, [2 * steps[-1] - mid[-1]]])


@checked
def metric_heatmap(
    record: MonitorRecord, metric: str = "grad_norm", *, ax: Axes | None = None, log: bool = True
) -> Figure:
    """Color map of ``metric`` with the recorded steps across and the layers (input at the bottom) up;
    ``log`` colors unless a value is negative. NaN cells (and cells <= 0 on the log scale) stay blank."""
    values = check_record(record, metric)
    if not isinstance(log, bool):
        raise TypeError(f"log must be a bool; got {type(log).__name__}")
    fig, ax = figure_and_axes(ax, figsize=(7.0, 4.0))
    if use_log_scale(values, log):
        values = positive_only(values)
        finite = values[np.isfinite(values)]
        norm: Normalize = LogNorm(vmin=finite.min(), vmax=finite.max())
    else:
        finite = values[np.isfinite(values)]
        norm = Normalize(*(finite.min(), finite.max()) if finite.size else (0.0, 1.0))
    n_layers = values.shape[1]
    cells = np.ma.masked_invalid(values.T)
    mesh = ax.pcolormesh(_edges(record.steps), np.arange(0.5, n_layers + 1), cells, norm=norm, cmap="viridis")
    fig.colorbar(mesh, ax=ax, label=metric)
    set_layer_ticks(ax, record.layer_names, axis="y")
    ax.set_xlabel("step")
    ax.set_ylabel("layer")
    ax.set_title(f"{metric} per layer and step")
    return fig


@checked
def metric_over_training(
    record: MonitorRecord, metric: str = "grad_norm", *, ax: Axes | None = None, log: bool = True
) -> Figure:
    """One line per layer: ``metric`` against the recorded steps, colored from input (dark) to output;
    ``log`` y axis unless a value is negative (values <= 0 are then not drawn)."""
    values = check_record(record, metric)
    if not isinstance(log, bool):
        raise TypeError(f"log must be a bool; got {type(log).__name__}")
    fig, ax = figure_and_axes(ax)
    n_layers = values.shape[1]
    cmap = mpl.colormaps["viridis"]
    norm = Normalize(1, max(n_layers, 2))
    log = use_log_scale(values, log)
    shown = positive_only(values) if log else values
    for layer in range(n_layers):
        ax.plot(record.steps, shown[:, layer], color=cmap(norm(layer + 1)), label=record.layer_names[layer])
    if log:
        log_scale(ax, "y")
    if n_layers <= 10:
        ax.legend(fontsize="small")
    else:
        fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="layer (1 = input)")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} during training")
    return fig


def _gradient_arrays(grads: Any) -> list[tuple[str, np.ndarray]]:
    """(name, flat values) pairs from a dict, a list of pairs, or a model's layer weight gradients."""
    if isinstance(grads, nn.Module):
        from vgcourse.models import named_layers

        pairs = []
        for name, module in named_layers(grads):
            params = [p for n, p in module.named_parameters(recurse=False) if n.startswith("weight")]
            values = [p.grad.detach().cpu().reshape(-1).numpy() for p in params if p.grad is not None]
            pairs.append((name, np.concatenate(values) if values else np.empty(0)))
        if all(values.size == 0 for _, values in pairs):
            raise ValueError("the model has no gradients yet: run loss.backward() (or snapshot) first")
        return pairs
    if isinstance(grads, Mapping):
        items = list(grads.items())
    elif isinstance(grads, Sequence) and not isinstance(grads, str):
        items = list(grads)
    else:
        raise TypeError(
            "grads must be a dict name -> array, a list of (name, array) or an nn.Module; "
            f"got {type(grads).__name__}"
        )
    pairs = []
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise TypeError(f"each entry must be a (name, array) pair; got {item!r:.60}")
        name, values = item
        if isinstance(values, Tensor):
            values = values.detach().cpu().numpy()
        pairs.append((name, np.asarray(values, dtype=np.float64).reshape(-1)))
    if not pairs:
        raise ValueError("grads is empty: give at least one layer")
    return pairs


@checked
def grad_histograms(
    grads: Mapping[str, Any] | Sequence[tuple[str, Any]] | nn.Module,
    *,
    ax: Axes | None = None,
    log_abs: bool = False,
    max_points: int = 5000,
) -> Figure:
    """Violin plot of each layer's gradient values at one step, layers input to output.

    ``grads``: a dict name -> array, a list of (name, array), or a model whose layers hold ``.grad``.
    ``log_abs`` plots log10 |g| (zeros dropped); at most ``max_points`` evenly spaced values per violin.
    """
    pairs = _gradient_arrays(grads)
    if not isinstance(log_abs, bool):
        raise TypeError(f"log_abs must be a bool; got {type(log_abs).__name__}")
    check_int("max_points", max_points, minimum=2)
    fig, ax = figure_and_axes(ax)
    data, positions = [], []
    for position, (_, values) in enumerate(pairs, start=1):
        values = values[np.isfinite(values)]
        if log_abs:
            values = np.log10(np.abs(values[values != 0]))
        if len(values) > max_points:
            values = values[np.linspace(0, len(values) - 1, max_points).astype(np.int64)]
        if len(values):
            data.append(values)
            positions.append(position)
    if data:
        ax.violinplot(data, positions=positions, showmedians=True, widths=0.8)
    set_layer_ticks(ax, [name for name, _ in pairs])
    ax.set_xlim(0.4, len(pairs) + 0.6)
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel("log10 |gradient|" if log_abs else "gradient value")
    ax.set_title("gradient distribution per layer")
    return fig
