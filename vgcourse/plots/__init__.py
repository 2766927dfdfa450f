"""Plots of the course: each takes results and ``ax=None`` and returns a matplotlib Figure.

Pass ``ax`` to draw into an existing figure (the function then returns ``ax.figure``). Nothing here
calls ``plt.show()``.
"""

from vgcourse.plots.activations import activation_curves
from vgcourse.plots.layers import grad_histograms, metric_over_training

__all__ = ["activation_curves", "grad_histograms", "metric_over_training"]
