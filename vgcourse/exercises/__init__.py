"""Checked exercises, one module per chapter; importing this package registers them all.

from vgcourse.exercises import check, exercise_widget
check("initialization.he_std", 0.0625)       # -> Feedback(correct=True, ...)
exercise_widget("initialization.tanh_scale")  # slider + Check button
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
    Exercise,
    Feedback,
    Mistake,
    attempts,
    attempts_json,
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
    "Mistake",
    "attempts",
    "attempts_json",
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
