"""A Check button for number and setting exercises (ipywidgets 7.7 and 8)."""

from __future__ import annotations

import math

import ipywidgets as widgets

from vgcourse.exercises.core import Feedback, check, get


def exercise_widget(exercise_id: str, value: float | None = None) -> widgets.VBox:
    """The exercise's prompt, an input (a text box for numbers, a slider for settings), Check, feedback.

    Args:
        exercise_id: a registered exercise of kind "number" or "setting".
        value: the input's starting value (default: the control's minimum, or 1 for log sliders).
    """
    exercise = get(exercise_id)
    if exercise.kind == "function":
        raise ValueError(f"{exercise_id!r} is answered in code: call check({exercise_id!r}, your_function)")
    spec = exercise.control
    step = float(spec.get("step", 0.01))
    if exercise.kind == "setting" and spec.get("log"):
        start = value if value is not None else 1.0
        low, high = _grid_through(math.log10(start), math.log10(spec["min"]), math.log10(spec["max"]), step)
        control = widgets.FloatLogSlider(
            value=start,
            base=10,
            min=low,
            max=high,
            step=step,
            description=str(spec.get("label", "value")),
            continuous_update=False,
        )
    elif exercise.kind == "setting":
        start = value if value is not None else float(spec["min"])
        low, high = _grid_through(start, float(spec["min"]), float(spec["max"]), step)
        control = widgets.FloatSlider(
            value=start,
            min=low,
            max=high,
            step=step,
            description=str(spec.get("label", "value")),
            continuous_update=False,
        )
    else:
        control = widgets.FloatText(value=value if value is not None else 0.0, description="answer")
    button = widgets.Button(description="Check", button_style="primary")
    verdict = widgets.HTML()

    def on_click(_button: widgets.Button | None = None) -> Feedback:
        feedback = check(exercise_id, control.value)
        verdict.value = feedback._repr_html_()
        return feedback

    button.on_click(on_click)
    box = widgets.VBox(
        [
            widgets.HTML(f"<b>{exercise.title.rstrip('.?!')}.</b> {exercise.prompt}"),
            widgets.HBox([control, button]),
            verdict,
        ]
    )
    box.check = on_click  # type: ignore[attr-defined]  # lets tests and graders press the button
    box.control = control  # type: ignore[attr-defined]
    return box


def _grid_through(start: float, low: float, high: float, step: float) -> tuple[float, float]:
    """The slider range inside [low, high] whose steps (min + k * step) pass through ``start``: the
    browser snaps a slider to its steps, and would otherwise show a value next to the true start."""
    if not low <= start <= high:
        raise ValueError(
            f"the starting value must lie in the control's range [{low:g}, {high:g}]; got {start:g}"
        )
    steps_below = math.floor((start - low) / step + 1e-9)
    steps_above = math.floor((high - start) / step + 1e-9)
    return start - steps_below * step, start + steps_above * step
