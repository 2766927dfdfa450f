"""Checked exercises, one module per chapter; importing this package registers them all.

from vgcourse.exercises import check, exercise_widget
answer_he_std = 0.0625                        # the answer is a variable in the notebook's source
check("initialization.he_std", answer_he_std)  # -> Feedback(result="correct", ...)
answer_tanh_scale = 1.2                       # a setting: the slider starts here
exercise_widget("initialization.tanh_scale", answer_tanh_scale)

Each registered chapter's ``vgcourse.exercises.<id>`` (`vgcourse.chapters`) is imported in reading order.
"""

import importlib

from vgcourse.chapters import CHAPTERS, has_module
from vgcourse.exercises.core import (
    EXERCISES,
    KINDS,
    RESULTS,
    Exercise,
    Feedback,
    Mistake,
    chapter_exercises,
    check,
    get,
    register,
)
from vgcourse.exercises.widget import exercise_widget

CHAPTER_MODULES = tuple(c.id for c in CHAPTERS if has_module(c.id, "exercises"))
"""The chapters whose exercise modules this package imported (registered), in reading order."""
for _chapter_id in CHAPTER_MODULES:
    importlib.import_module(f"{__name__}.{_chapter_id}")

__all__ = [
    "CHAPTER_MODULES",
    "EXERCISES",
    "KINDS",
    "Exercise",
    "Feedback",
    "RESULTS",
    "Mistake",
    "chapter_exercises",
    "check",
    "exercise_widget",
    "get",
    "register",
    *CHAPTER_MODULES,
]
