"""Plots of the example chapter (a template, see CONTRIBUTING.md): ``view(result, *, ax=None) -> Figure``."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vgcourse.experiments.example_chapter import GainResult
from vgcourse.plots._common import check_result, checked, figure_and_axes, log_scale

__all__ = ["gradient_profile"]


@checked
def gradient_profile(result: GainResult, *, ax: Axes | None = None) -> Figure:
    """‖∂J/∂W_l‖ against the layer l (log y), input to output.

    Args:
        result: from ``run_gain``.
        ax: axes to draw on; a new figure when None.
    """
    check_result(result, GainResult)  # a TypeError naming both types
    fig, ax = figure_and_axes(ax, figsize=(6.4, 3.6))
    c = result.config
    ax.plot(result.layers, result.grad_norms, "o-", ms=4, label=f"{c.activation}, width {c.width}")
    log_scale(ax, "y")
    ax.set_xlabel("layer l (input → output)")
    ax.set_ylabel(r"$\|\partial J/\partial W_l\|$")
    ax.set_title(f"gradient norm per layer at initialization, L = {c.depth}")
    ax.legend(fontsize=9)
    return fig
