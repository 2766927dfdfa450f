"""Loss curves of a training run."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vgcourse.plots._common import checked, figure_and_axes, log_scale

__all__ = ["training_curves"]


@checked
def training_curves(history: Any, *, ax: Axes | None = None) -> Figure:
    """Training loss per step, validation loss at the evaluations, and validation accuracy (right axis).

    A dashed red line marks the step where the run diverged. The loss axis is logarithmic when all
    losses are positive and span at least a factor of 10.

    Args:
        history: a ``vgcourse.training.History`` (anything with ``loss`` and, optionally, ``eval_steps``,
            ``val_loss``, ``val_accuracy`` and ``diverged_step``).
        ax: axes to draw on; a new figure when None.
    """
    if not hasattr(history, "loss"):
        raise TypeError(f"history must be a History with a loss array; got {type(history).__name__}")
    loss = np.asarray(history.loss, dtype=np.float64).reshape(-1)
    eval_steps = np.asarray(getattr(history, "eval_steps", []), dtype=np.float64).reshape(-1)
    val_loss = np.asarray(getattr(history, "val_loss", []), dtype=np.float64).reshape(-1)
    val_accuracy = np.asarray(getattr(history, "val_accuracy", []), dtype=np.float64).reshape(-1)
    if len(val_loss) != len(eval_steps) or len(val_accuracy) not in (0, len(eval_steps)):
        raise ValueError("history.eval_steps, val_loss and val_accuracy must have the same length")

    fig, ax = figure_and_axes(ax)
    handles = ax.plot(np.arange(len(loss)), loss, linewidth=1, label="train loss")
    if len(val_loss):
        handles += ax.plot(eval_steps, val_loss, marker="o", label="val loss")
    losses = np.concatenate([loss, val_loss])
    losses = losses[np.isfinite(losses)]
    if losses.size and losses.min() > 0 and losses.max() >= 10 * losses.min():
        log_scale(ax, "y")
    diverged_step = getattr(history, "diverged_step", None)
    if diverged_step is not None:
        handles.append(
            ax.axvline(diverged_step, color="red", linestyle="--", label=f"diverged (step {diverged_step})")
        )
    if np.isfinite(val_accuracy).any():
        right = ax.twinx()
        handles += right.plot(eval_steps, val_accuracy, color="tab:green", marker="s", label="val accuracy")
        right.set_ylabel("validation accuracy")
        right.set_ylim(0, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training curves")
    ax.legend(handles=handles, fontsize="small")
    return fig
