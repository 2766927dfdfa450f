"""A Check button for number and setting exercises (ipywidgets 7.7 and 8)."""

from __future__ import annotations

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
    if exercise.kind == "setting" and spec.get("log"):
        import math

        control = widgets.FloatLogSlider(
            value=value if value is not None else 1.0,
            base=10,
            min=math.log10(float(spec["min"])),
            max=math.log10(float(spec["max"])),
            step=0.01,
            description=str(spec.get("label", "value")),
            continuous_update=False,
        )
    elif exercise.kind == "setting":
        control = widgets.FloatSlider(
            value=value if value is not None else float(spec["min"]),
            min=float(spec["min"]),
            max=float(spec["max"]),
            step=float(spec.get("step", 0.01)),
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
