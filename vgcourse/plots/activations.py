"""Activation functions and their derivatives: why sigmoid shrinks gradients and relu does not."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vgcourse._validation import check_choice, check_float
from vgcourse.plots._common import checked, figure_and_axes

__all__ = ["activation_curves"]


@checked
def activation_curves(
    activations: str | Sequence[str] = ("sigmoid", "tanh", "relu"),
    *,
    derivative: bool = True,
    ax: Axes | None = None,
    x_range: tuple[float, float] = (-6.0, 6.0),
) -> Figure:
    """f(x) (solid) and, with ``derivative``, f'(x) (dashed), the factor a layer multiplies the backward
    gradient by, for each activation over ``x_range``."""
    from vgcourse import activations as acts

    names = [activations] if isinstance(activations, str) else activations
    if not isinstance(names, Sequence) or not names:
        raise TypeError(f"activations must be a name or a non-empty sequence of names; got {activations!r}")
    for name in names:
        check_choice("activation", name, acts.ACTIVATIONS)
    if not isinstance(derivative, bool):
        raise TypeError(f"derivative must be a bool; got {type(derivative).__name__}")
    if not (isinstance(x_range, (tuple, list)) and len(x_range) == 2):
        raise TypeError(f"x_range must be a (low, high) pair; got {x_range!r}")
    low, high = check_float("x_range[0]", x_range[0]), check_float("x_range[1]", x_range[1])
    if low >= high:
        raise ValueError(f"x_range must have low < high; got {x_range!r}")

    fig, ax = figure_and_axes(ax)
    x = torch.linspace(low, high, 601)
    with torch.no_grad():
        for name in names:
            (line,) = ax.plot(x, acts.make_activation(name)(x), label=name)
            if derivative:
                ax.plot(x, acts.derivative(name, x), linestyle="--", color=line.get_color(), label=f"{name}'")
    ax.axhline(0, color="0.7", linewidth=0.8)
    ax.axvline(0, color="0.7", linewidth=0.8)
    ax.set_xlabel("x")
    ax.set_ylabel("f(x), f'(x) dashed" if derivative else "f(x)")
    ax.set_title("activation functions" + (" and their derivatives" if derivative else ""))
    ax.legend(fontsize="small")
    return fig
