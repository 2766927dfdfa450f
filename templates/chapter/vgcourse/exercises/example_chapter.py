"""Exercises of the example chapter (a template, see CONTRIBUTING.md).

A "setting" exercise is measured: the checker runs the experiment at the student's value and accepts it
inside an interval the prompt states; its ``control`` is the notebook widget's slider, and a control whose
min, max and step are written as ints (``{"min": 2, "max": 100, "step": 1}``) takes whole numbers: an
IntSlider, and the measure gets an int (also for ``15.0`` typed in a cell). A "number" exercise stores
keys of the answer instead, made by tests/exercise_solutions.py (see vgcourse/exercises/core.py and
vgcourse/exercises/residual_networks.py).
"""

from __future__ import annotations

import functools

from vgcourse._validation import check_int
from vgcourse.exercises.core import Exercise, Mistake, register
from vgcourse.experiments.example_chapter import GainConfig, run_gain

__all__ = ["VANISHED", "sigmoid_ratio"]

VANISHED = (0.0, 1e-12)
"""Accepted ‖∂J/∂W_1‖ / ‖∂J/∂W_L‖: the first layer's gradient a trillionth of the last's, or less."""


@functools.lru_cache(maxsize=64)
def sigmoid_ratio(depth: int) -> float:
    """‖∂J/∂W_1‖ / ‖∂J/∂W_L‖ of the sigmoid MLP of ``depth`` layers of the chapter (seed 0).

    Args:
        depth: hidden layers L, 2 to 100.
    """
    return run_gain(GainConfig(depth=check_int("depth", depth, minimum=2, maximum=100))).ratio


register(
    Exercise(
        id="example_chapter.depth_to_vanish",
        title="Find where the gradient vanishes",
        prompt=(
            "Choose a depth L (2 to 100) at which the first layer's weight gradient of the chapter's "
            "sigmoid MLP is at most a trillionth of the last layer's, ‖∂J/∂W_1‖ / ‖∂J/∂W_L‖ <= 1e-12."
        ),
        kind="setting",
        measure=sigmoid_ratio,
        accept=VANISHED,
        hint="each layer multiplies the backward signal by a factor well below 1: look at the explorer.",
        # each one is what a typical wrong answer of SOLUTIONS in tests/exercise_solutions.py gets
        mistakes=(
            Mistake("far too shallow: a few layers lose a few decades.", applies=lambda r: r > 1e-3),
            Mistake("halfway: every layer divides the ratio again.", applies=lambda r: 1e-6 < r <= 1e-3),
            Mistake("close: add a few layers.", applies=lambda r: 1e-12 < r <= 1e-6),
        ),
        control={"min": 2, "max": 100, "step": 1, "label": "depth L"},
    )
)
