"""Per-layer pictures: a ``MonitorRecord``'s layers over time, gradient distributions per layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
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
