"""Plots of the course: each takes results and ``ax=None`` and returns a matplotlib Figure.

Pass ``ax`` to draw into an existing figure (the function then returns ``ax.figure``). Nothing here
calls ``plt.show()``.
"""

from vgcourse.plots.activations import activation_curves
from vgcourse.plots.layers import grad_histograms, grad_norms_by_layer, metric_heatmap, metric_over_training
from vgcourse.plots.training import training_curves

__all__ = [
    "activation_curves",
    "grad_histograms",
    "grad_norms_by_layer",
    "metric_heatmap",
    "metric_over_training",
    "training_curves",
]
