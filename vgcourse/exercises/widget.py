"""A slider and Check button for setting exercises, a Check button for numbers (ipywidgets 7.7 and 8).

The widget starts at the answer variable's value in the source; Check sets the variable in the kernel and
says so when it differs from the source. On the static site Check is disabled, with a link to Colab.
"""

from __future__ import annotations

import math
from typing import Any

import ipywidgets as widgets

from vgcourse.exercises.core import Feedback, get
from vgcourse.widgets import colab_link, site_build


def exercise_widget(exercise_id: str, value: Any = None) -> widgets.VBox:
    """The prompt, an input (a slider for settings, a text box for numbers), Check and feedback; an
    unanswered (``None``/``...``) slider starts at its minimum (at 1 when logarithmic). A setting of whole
    numbers (`Exercise.whole`) gets an IntSlider, so Check and the answer variable get an int."""
    exercise = get(exercise_id)
    if exercise.kind == "function":
        raise ValueError(f"{exercise_id!r} is answered in code: call check({exercise_id!r}, your_function)")
    answered = value is not None and value is not Ellipsis
    spec = exercise.control
    if exercise.kind == "setting":
        log, whole = bool(spec.get("log")), exercise.whole
        if whole and answered and not float(value).is_integer():
            raise ValueError(f"{exercise.variable} must be a whole number; got {value!r}")
        number = int if whole else float
        step = number(spec.get("step", 1 if whole else 0.01))
        start = number(value) if answered else (1.0 if log else number(spec["min"]))
        scale = math.log10 if log else number
        low, high = _grid_through(scale(start), scale(spec["min"]), scale(spec["max"]), step)
        slider = widgets.FloatLogSlider if log else widgets.IntSlider if whole else widgets.FloatSlider
        base = {"base": 10} if log else {}
        label = str(spec.get("label", "value"))
        control = slider(
            value=start, min=low, max=high, step=step, description=label, continuous_update=False, **base
        )
    else:
        control = widgets.FloatText(value=float(value) if answered else 0.0, description="answer")
    button = widgets.Button(description="Check", button_style="primary")
    verdict = widgets.HTML()

    def on_click(_button: widgets.Button | None = None) -> Feedback:
        checked = control.value
        feedback = exercise.check(checked)
        _set_in_kernel(exercise.variable, checked)
        note = ""
        if not answered or float(value) != checked:
            note = (
                f"<br>To have this answer graded, write <code>{exercise.variable} = {checked!r}</code> "
                "in the cell above the widget: grading re-runs the notebook's code, not its clicks."
            )
        verdict.value = feedback._repr_html_() + note
        return feedback

    button.on_click(on_click)
    if site_build():  # the static page has no Python to check with: say where to check
        button.disabled = True
        button.description = "Check in Colab"
        button.button_style = ""
        verdict.value = (
            f"<small>Checking needs Python: open this chapter {colab_link(exercise.chapter)} "
            "(or in Jupyter) and press Check there.</small>"
        )
    box = widgets.VBox(
        [
            widgets.HTML(
                f"<b>{exercise.title.rstrip('.?!')}.</b> {exercise.prompt} "
                f"<i>Checked to: {exercise.precision}.</i>"
            ),
            widgets.HBox([control, button]),
            verdict,
        ]
    )
    box.check = on_click  # type: ignore[attr-defined]  # lets tests press the button
    box.control = control  # type: ignore[attr-defined]
    return box


def _set_in_kernel(name: str, value: float) -> None:
    """Set the answer variable in the user's namespace, when running under IPython."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipywidgets needs IPython
        return
    shell = get_ipython()
    if shell is not None:
        shell.user_ns[name] = value


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
