"""Every exercise: the solution passes, each typical mistake fails with its own hint, and the package
stores keys of the answers, never the answers."""

from __future__ import annotations

import math
import re

import ipywidgets as widgets
import pytest
import torch
from exercise_solutions import SOLUTIONS, he_init_reference, number_keys

import vgcourse.exercises as exercises_package
from vgcourse.exercises import EXERCISES, Exercise, Feedback, Mistake, check, exercise_widget, get
from vgcourse.exercises.initialization import BALANCED, tanh_backprop_ratio

IDS = sorted(EXERCISES)
MISTAKES = [(eid, i) for eid in IDS for i in range(len(EXERCISES[eid].mistakes))]


def test_every_chapter_so_far_has_exercises() -> None:
    chapters = {EXERCISES[eid].chapter for eid in IDS}
    assert {"linear_chain", "sigmoid_bound", "relu_dying_units", "initialization"} <= chapters
    assert set(SOLUTIONS) == set(EXERCISES)


@pytest.mark.parametrize("exercise_id", IDS)
def test_solution_passes(exercise_id: str) -> None:
    exercise = get(exercise_id)
    assert exercise.check(SOLUTIONS[exercise_id][0]()).correct
    assert len(exercise.mistakes) >= 3
    assert len(SOLUTIONS[exercise_id][1]) == len(exercise.mistakes)


@pytest.mark.parametrize("exercise_id", [eid for eid in IDS if EXERCISES[eid].kind == "number"])
def test_stored_keys_are_those_of_the_solution(exercise_id: str) -> None:
    keys, mistakes = number_keys(exercise_id)
    exercise = get(exercise_id)
    assert exercise.keys == keys
    assert tuple(m.keys for m in exercise.mistakes) == mistakes


@pytest.mark.parametrize(("exercise_id", "index"), MISTAKES)
def test_typical_mistake_fails_with_its_hint(exercise_id: str, index: int) -> None:
    exercise = get(exercise_id)
    feedback = exercise.check(SOLUTIONS[exercise_id][1][index]())
    assert not feedback.correct
    assert feedback.message == exercise.mistakes[index].hint


@pytest.mark.parametrize("exercise_id", [eid for eid in IDS if EXERCISES[eid].kind == "number"])
def test_feedback_never_reveals_the_solution(exercise_id: str) -> None:
    exercise = get(exercise_id)
    solution = float(SOLUTIONS[exercise_id][0]())
    texts = [exercise.hint, exercise.prompt] + [m.hint for m in exercise.mistakes]
    written = {f"{solution:.{d}f}" for d in (2, 3, 4)} | {f"{solution:.{d}g}" for d in (2, 3)}
    for text in texts:
        for form in written - {"0.00", "0.000"}:
            assert not re.search(rf"(?<![\d.]){re.escape(form)}(?!\d)", text), f"{exercise_id} says {form}"


def test_the_package_hands_out_no_answers() -> None:
    for exercise in EXERCISES.values():
        assert not hasattr(exercise, "reference") and not hasattr(exercise, "solution")
    names = {
        n for module in vars(exercises_package).values() if hasattr(module, "__file__") for n in vars(module)
    }
    assert not {n for n in names if n.endswith("_reference") or n.startswith("balanced_")}


def test_precision_and_rounding() -> None:
    assert check("initialization.he_std", 0.0625).message == "right, to the precision asked."
    assert check("initialization.he_std", 0.063).message.startswith(
        "close: right to the 2 significant digits"
    )
    assert "give 3 significant digits" in check("initialization.he_std", 0.063).message
    assert check("sigmoid_bound.ten_layer_bound", 9.54e-7).correct  # rounded
    assert check("sigmoid_bound.ten_layer_bound", 9.53e-7).correct  # cut off
    assert not check("sigmoid_bound.ten_layer_bound", 9.55e-7).correct
    assert get("initialization.he_std").precision == "3 significant digits"
    assert get("linear_chain.vanishing_depth").precision == "a whole number"


def test_off_by_one_hints_do_not_name_the_answer() -> None:
    for eid in ("linear_chain.vanishing_depth", "recurrent_networks.forget_gate_steps"):
        solution = SOLUTIONS[eid][0]()
        for wrong in (solution - 1,):
            message = check(eid, wrong).message
            assert "check the boundary" in message and str(solution) not in message


def test_blank_answers_are_not_attempted() -> None:
    for answer in (None, ...):
        assert check("initialization.he_std", answer).result == "not attempted"


def test_numbers_within_tolerance_pass_and_outside_fail() -> None:
    assert check("initialization.he_std", math.sqrt(2 / 512) * (1 + 1e-4)).correct
    assert not check("initialization.he_std", math.sqrt(2 / 512) * 1.01).correct
    assert check("linear_chain.vanishing_depth", 66).correct
    assert not check("linear_chain.vanishing_depth", 67).correct


def test_answers_that_cannot_be_measured_get_a_message_not_an_exception() -> None:
    assert check("initialization.he_std", "a lot").result == "error"
    assert "could not be checked" in check("initialization.he_std", "a lot").message
    assert "could not be checked" in check("initialization.he_init", 3).message
    transposed = lambda i, o, g: he_init_reference(i, o, g).T  # noqa: E731
    assert "shape (fan_out, fan_in)" in check("initialization.he_init", transposed).message
    not_tensor = lambda i, o, g: [[0.0]]  # noqa: E731
    assert "torch.Tensor" in check("initialization.he_init", not_tensor).message
    assert not check("sigmoid_bound.max_derivative", float("nan")).correct
    assert "could not be checked" in check("initialization.tanh_scale", -1.0).message


def test_a_learners_own_he_init_passes() -> None:
    def he_init(fan_in: int, fan_out: int, generator: torch.Generator) -> torch.Tensor:
        weights = torch.empty(fan_out, fan_in)
        return torch.nn.init.kaiming_normal_(weights, nonlinearity="relu", generator=generator)

    assert check("initialization.he_init", he_init).correct


def test_tanh_scale_accepts_the_balanced_window_over_other_seeds() -> None:
    # the accepted band is where the back-propagated ratio is within a factor 5 of balance
    assert BALANCED[0] <= tanh_backprop_ratio(1.2) <= BALANCED[1]
    assert tanh_backprop_ratio(0.5) < 1e-6 and tanh_backprop_ratio(3.0) > 1e3
    assert check("initialization.tanh_scale", 1.2).correct


def test_unknown_exercise_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"valid choices: .*initialization\.he_std"):
        check("initialization.lecun", 1.0)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"kind": "essay"}, ValueError),
        ({"id": "nochapter"}, ValueError),
        ({"mistakes": ()}, ValueError),
        ({"keys": ()}, ValueError),
        ({"kind": "setting"}, ValueError),
        ({"variable": "not a name"}, ValueError),
    ],
)
def test_exercise_definitions_are_validated(kwargs: dict, error: type[Exception]) -> None:
    base = dict(
        id="x.y",
        title="t",
        prompt="p",
        kind="number",
        keys=("k",),
        hint="h",
        mistakes=tuple(Mistake("m", keys=(str(v),)) for v in (2.0, 3.0, 4.0)),
    )
    with pytest.raises(error):
        Exercise(**{**base, **kwargs})


@pytest.mark.parametrize("exercise_id", [eid for eid in IDS if EXERCISES[eid].kind != "function"])
def test_widget_checks_at_defaults_and_extremes(exercise_id: str) -> None:
    box = exercise_widget(exercise_id)
    assert isinstance(box, widgets.VBox)
    control = box.control
    for value in (control.value, getattr(control, "min", 0.0), getattr(control, "max", 1e6)):
        control.value = value
        feedback = box.check()
        assert isinstance(feedback, Feedback)
    if get(exercise_id).kind == "setting":
        control.value = SOLUTIONS[exercise_id][0]()
        assert box.check().correct
    assert get(exercise_id).variable in box.children[-1].value  # says where to write the answer


@pytest.mark.parametrize("exercise_id", [eid for eid in IDS if EXERCISES[eid].kind == "setting"])
def test_setting_sliders_start_on_a_step_inside_the_range(exercise_id: str) -> None:
    # the browser snaps a slider to min + k * step (of the exponent, for a log slider) and shows that
    spec = EXERCISES[exercise_id].control
    for start in (None, spec["min"], spec["max"], math.sqrt(spec["min"] * spec["max"])):
        control = exercise_widget(exercise_id, value=start).control
        log = isinstance(control, widgets.FloatLogSlider)
        to_axis = math.log10 if log else float
        position = (to_axis(control.value) - control.min) / control.step
        assert position == pytest.approx(round(position), abs=1e-6), (exercise_id, start, control.value)
        low, high = (10**control.min, 10**control.max) if log else (control.min, control.max)
        assert spec["min"] * (1 - 1e-9) <= low <= control.value <= high <= spec["max"] * (1 + 1e-9)
    with pytest.raises(ValueError, match="range"):
        exercise_widget(exercise_id, value=spec["max"] * 2)


def test_widget_reports_the_verdict_in_html() -> None:
    box = exercise_widget("sigmoid_bound.max_derivative", value=0.25)
    assert box.check().correct
    assert "Correct" in box.children[-1].value


def test_function_exercises_have_no_widget() -> None:
    with pytest.raises(ValueError, match="answered in code"):
        exercise_widget("initialization.he_init")


def test_instructors_guide_lists_every_exercise() -> None:
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[1] / "book" / "instructors_guide.md").read_text()
    listed = set(re.findall(r"^\| `([a-z_]+\.[a-z_0-9]+)` \|", guide, flags=re.M))
    assert listed == set(EXERCISES)
