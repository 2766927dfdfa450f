"""Checked exercises, one module per chapter; importing this package registers them all.

from vgcourse.exercises import check, exercise_widget
answer_he_std = 0.0625                        # the answer is a variable in the notebook's source
check("initialization.he_std", answer_he_std)  # -> Feedback(result="correct", ...)
answer_tanh_scale = 1.2                       # a setting: the slider starts here
exercise_widget("initialization.tanh_scale", answer_tanh_scale)

The package stores keys of the answers, not the answers (see `vgcourse.exercises.core`).
"""

from vgcourse.exercises import (
    detecting_and_fixing,
    initialization,
    linear_chain,
    recurrent_networks,
    relu_dying_units,
    residual_networks,
    sigmoid_bound,
)
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

__all__ = [
    "EXERCISES",
    "KINDS",
    "Exercise",
    "Feedback",
    "RESULTS",
    "Mistake",
    "chapter_exercises",
    "check",
    "detecting_and_fixing",
    "exercise_widget",
    "get",
    "initialization",
    "linear_chain",
    "recurrent_networks",
    "register",
    "relu_dying_units",
    "residual_networks",
    "sigmoid_bound",
]
