"""Every exercise: the solution passes, each typical mistake fails with its own hint, and the package
stores keys of the answers, never the answers."""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import exercise_solutions
import ipywidgets as widgets
import pytest
import torch
from exercise_solutions import SOLUTIONS, he_init_reference, number_keys

import vgcourse.exercises as exercises_package
from vgcourse.exercises import EXERCISES, Exercise, Feedback, Mistake, check, exercise_widget, get
from vgcourse.exercises.initialization import BALANCED, tanh_backprop_ratio
from vgcourse.exercises.residual_networks import SCALE_DEPTH, TAMED, forward_growth
from vgcourse.instructor import REFERENCE_HELPERS, verdicts

IDS = sorted(EXERCISES)
MISTAKES = [(eid, i) for eid in IDS for i in range(len(EXERCISES[eid].mistakes))]


def test_every_exercise_has_a_solution_and_every_solution_an_exercise() -> None:
    # every chapter registering its exercises is a contract: tests/test_contracts.py
    assert set(SOLUTIONS) == set(EXERCISES)


@pytest.mark.parametrize("exercise_id", IDS)
def test_solution_passes(exercise_id: str) -> None:
    exercise = get(exercise_id)
    assert exercise.check(SOLUTIONS[exercise_id][0]()).correct
    if exercise.whole:  # 50.0 for 50: typed so in a cell, and as the instructor's grader collects answers
        typed = float(SOLUTIONS[exercise_id][0]())
        assert exercise.check(typed).correct
        graded = verdicts([exercise], {exercise.variable: {"value": typed}})
        assert graded == [(exercise_id, "correct", "well done.")]
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
    # helpers that returned an exercise's answer with their defaults live in tests/exercise_solutions.py
    assert not names & set(REFERENCE_HELPERS)
    assert {n for n in REFERENCE_HELPERS if callable(getattr(exercise_solutions, n, None))} == set(
        REFERENCE_HELPERS
    )


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


NUMBERS = [eid for eid in IDS if EXERCISES[eid].kind == "number"]


@pytest.mark.parametrize("exercise_id", NUMBERS)
def test_a_rounded_answer_is_right_and_an_under_precise_one_is_close(exercise_id: str) -> None:
    exercise = get(exercise_id)
    solution = float(SOLUTIONS[exercise_id][0]())
    if exercise.digits is None:
        assert check(exercise_id, solution).message == "well done."
        assert not check(exercise_id, solution + 0.5).correct
        return
    rounded = float(f"{solution:.{exercise.digits - 1}e}")
    assert check(exercise_id, rounded).message == "right, to the precision asked."
    assert check(exercise_id, solution).message == "right, to the precision asked."
    fewer = float(f"{solution:.{exercise.digits - 2}e}")
    if exercise.digits > 1 and fewer != rounded:  # (10 for 9.9992 is 10.0: right)
        feedback = check(exercise_id, fewer)
        assert not feedback.correct
        assert feedback.message.startswith("close: right to the")
        assert feedback.message.endswith(f"give {exercise.digits} significant digits.")


@pytest.mark.parametrize("exercise_id", [eid for eid in NUMBERS if EXERCISES[eid].digits is None])
def test_off_by_one_hints_do_not_name_the_answer(exercise_id: str) -> None:
    solution = int(SOLUTIONS[exercise_id][0]())
    for wrong in (solution - 1, solution + 1):
        feedback = check(exercise_id, wrong)
        assert not feedback.correct
        assert not re.search(rf"(?<!\d){solution}(?!\d)", feedback.message), (exercise_id, wrong)
    boundary = [m.hint for m in get(exercise_id).mistakes if m.hint.startswith("check the boundary")]
    if boundary:  # the hint points at the boundary, not at the answer
        assert check(exercise_id, solution - 1).message in boundary


@pytest.mark.parametrize("exercise_id", IDS)
def test_an_unanswered_cell_states_the_task_and_the_precision(exercise_id: str) -> None:
    exercise = get(exercise_id)
    feedback = check(exercise_id, ...)
    assert feedback.result == "not attempted"
    assert exercise.prompt in feedback.message and exercise.variable in feedback.message
    expected = {None: "Give a whole number."}.get(
        exercise.digits, f"Give {exercise.digits} significant digits."
    )
    assert (
        expected if exercise.kind == "number" else "Accepted: any value whose measurement"
    ) in feedback.message


def test_each_answer_cell_of_the_book_states_the_precision() -> None:
    """The answer line of every number exercise in book/*.ipynb says the precision the checker uses."""
    from pathlib import Path

    book = Path(__file__).resolve().parents[1] / "book"
    seen = set()
    for path in sorted(book.glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] != "code" or "solution" in cell.get("metadata", {}).get("tags", []):
                continue
            for eid in NUMBERS:
                exercise = EXERCISES[eid]
                line = re.search(rf"^{exercise.variable}\s*=\s*\.\.\.(.*)$", source, re.M)
                if line:
                    words = (
                        "a whole number"
                        if exercise.digits is None
                        else f"{exercise.digits} significant digits"
                    )
                    assert words in line.group(1), f"{path.name}: {line.group(0)!r} does not say {words!r}"
                    seen.add(eid)
    assert seen == set(NUMBERS)


def test_the_static_page_shows_the_task_of_an_unanswered_exercise(monkeypatch: pytest.MonkeyPatch) -> None:
    import vgcourse.widgets

    monkeypatch.setattr(vgcourse.widgets, "site_build", lambda: True)
    text = str(check("sigmoid_bound.max_derivative", ...))
    assert get("sigmoid_bound.max_derivative").prompt in text and "Check in Colab" in text
    assert "Assign your answer" not in text
    assert "Not yet" not in str(check("sigmoid_bound.max_derivative", 0.3))


def test_blank_answers_are_not_attempted() -> None:
    for answer in (None, ...):
        assert check("initialization.he_std", answer).result == "not attempted"


def test_the_chapters_function_stub_is_not_attempted() -> None:
    # the chapter's (and the handout's) cell: the stub raising NotImplementedError, checked as it stands.
    # It read "Could not check: this answer could not be checked: " (an empty reason) while grading the
    # same cell gives "not attempted"
    def he_init(fan_in: int, fan_out: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError  # replace this line with your code

    feedback = check("initialization.he_init", he_init)
    assert feedback.result == "not attempted"
    assert get("initialization.he_init").prompt in feedback.message and "he_init" in feedback.message
    graded = verdicts([get("initialization.he_init")], {"he_init": {"source": _source_of_stub()}})
    assert graded[0][1] == feedback.result

    def broken(fan_in: int, fan_out: int, generator: torch.Generator) -> torch.Tensor:
        raise RuntimeError("my bug")  # any other failure is still an error, with its reason

    assert check("initialization.he_init", broken).result == "error"
    assert "my bug" in check("initialization.he_init", broken).message


def _source_of_stub() -> str:
    return "def he_init(fan_in, fan_out, generator):\n    raise NotImplementedError\n"


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
    assert "the answer is NaN" in check("sigmoid_bound.max_derivative", float("nan")).message
    nan_weights = lambda i, o, g: torch.full((o, i), float("nan"))  # noqa: E731
    feedback = check("initialization.he_init", nan_weights)  # the function is no number: its weights are NaN
    assert (
        feedback.result == "incorrect" and "this function gives a measurement that is NaN" in feedback.message
    )
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


def test_branch_scale_asks_for_less_growth_than_the_chapters_scale() -> None:
    # the chapter derives α = 1/√L (growth → e); the exercise's window needs a computed α
    solution = SOLUTIONS["residual_networks.branch_scale"][0]()
    assert TAMED[0] + 0.1 < forward_growth(solution) < TAMED[1] - 0.1  # well inside the accepted band
    chapter_scale = check("residual_networks.branch_scale", 1 / math.sqrt(SCALE_DEPTH))
    assert not chapter_scale.correct and "1/√L" in chapter_scale.message


def test_unknown_exercise_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"valid choices: .*initialization\.he_std"):
        check("initialization.lecun", 1.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"kind": "essay"}, ValueError, "unknown kind 'essay'; valid choices: number, setting, function"),
        ({"id": "nochapter"}, ValueError, "exercise id must read '<chapter>.<name>'"),
        ({"mistakes": ()}, ValueError, "needs at least three typical mistakes"),
        ({"keys": ()}, ValueError, "number exercise 'x.y' needs keys"),
        ({"kind": "setting"}, ValueError, "setting exercise 'x.y' needs measure and accept"),
        ({"variable": "not a name"}, ValueError, "variable 'not a name' is not a Python name"),
    ],
)
def test_exercise_definitions_are_validated(kwargs: dict, error: type[Exception], message: str) -> None:
    # each refusal by its own message: without the kind check, kind='essay' was still refused, for
    # lacking measure and accept
    base = dict(
        id="x.y",
        title="t",
        prompt="p",
        kind="number",
        keys=("k",),
        hint="h",
        mistakes=tuple(Mistake("m", keys=(str(v),)) for v in (2.0, 3.0, 4.0)),
    )
    with pytest.raises(error, match=re.escape(message)):
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
    middle = math.sqrt(spec["min"] * spec["max"])
    for start in (None, spec["min"], spec["max"], round(middle) if get(exercise_id).whole else middle):
        control = exercise_widget(exercise_id, value=start).control
        log = isinstance(control, widgets.FloatLogSlider)
        to_axis = math.log10 if log else float
        position = (to_axis(control.value) - control.min) / control.step
        assert position == pytest.approx(round(position), abs=1e-6), (exercise_id, start, control.value)
        low, high = (10**control.min, 10**control.max) if log else (control.min, control.max)
        assert spec["min"] * (1 - 1e-9) <= low <= control.value <= high <= spec["max"] * (1 + 1e-9)
    with pytest.raises(ValueError, match="range"):
        exercise_widget(exercise_id, value=spec["max"] * 2)


def _setting(monkeypatch: pytest.MonkeyPatch, control: dict, seen: list) -> str:
    """Register (for this test) a setting exercise with ``control`` whose measure records each answer."""

    def measure(answer: object) -> float:
        seen.append(answer)
        return float(answer)  # type: ignore[arg-type]

    exercise = Exercise(
        id="x.knob",
        title="t",
        prompt="p",
        kind="setting",
        hint="h",
        mistakes=tuple(Mistake(str(k), applies=lambda v: False) for k in range(3)),
        measure=measure,
        accept=(50.0, 60.0),
        control=control,
    )
    monkeypatch.setitem(EXERCISES, exercise.id, exercise)
    return exercise.id


@pytest.mark.parametrize(
    ("control", "slider"),
    [
        ({"min": 2, "max": 100, "step": 5}, widgets.IntSlider),
        ({"min": 2, "max": 100}, widgets.IntSlider),  # ints: steps of 1, as ipywidgets' interact does
        ({"min": 2.0, "max": 100, "step": 5}, widgets.FloatSlider),
        ({"min": 0, "max": 100, "step": 0.5}, widgets.FloatSlider),
        ({"min": 1, "max": 100, "step": 1, "log": True}, widgets.FloatLogSlider),
    ],
)
def test_whole_number_controls_get_an_int_slider_and_check_ints(
    monkeypatch: pytest.MonkeyPatch, control: dict, slider: type
) -> None:
    import IPython

    seen: list = []
    exercise_id = _setting(monkeypatch, control, seen)
    shell = SimpleNamespace(user_ns={})  # the kernel, where Check sets the answer variable
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    whole = slider is widgets.IntSlider
    box = exercise_widget(exercise_id, 52)
    assert type(box.control) is slider and box.control.value == pytest.approx(52)
    assert get(exercise_id).whole == whole
    assert box.check().correct and type(seen[-1]) is (int if whole else float)
    assert type(shell.user_ns["answer_knob"]) is (int if whole else float)
    assert check(exercise_id, 55.0).correct  # typed in a cell as 55.0: the same verdict as 55
    assert type(seen[-1]) is (int if whole else float)
    assert exercise_widget(exercise_id, 55.0).control.value == pytest.approx(55)
    if whole:
        box.control.value = 57
        assert box.check().correct and seen[-1] == 57 and type(seen[-1]) is int
        assert "answer_knob = 57</code>" in box.children[-1].value  # the note writes 57, not 57.0
        assert type(exercise_widget(exercise_id).control.value) is int  # unanswered: at the minimum
        with pytest.raises(ValueError, match="whole number"):
            exercise_widget(exercise_id, 52.5)


@pytest.mark.parametrize("exercise_id", [eid for eid in IDS if EXERCISES[eid].kind == "setting"])
def test_the_books_settings_take_whole_numbers_exactly_when_their_controls_are_ints(exercise_id: str) -> None:
    exercise = get(exercise_id)
    control = exercise_widget(exercise_id).control
    assert isinstance(control, widgets.IntSlider) == exercise.whole
    assert exercise.whole == all(type(exercise.control.get(k, 1)) is int for k in ("min", "max", "step"))


def test_widget_reports_the_verdict_in_html() -> None:
    box = exercise_widget("sigmoid_bound.max_derivative", value=0.105)
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


@pytest.mark.parametrize("alpha", [1e10, 1e200])
def test_a_branch_scale_too_large_to_measure_names_the_range(alpha: float) -> None:
    # the stack's float64 stream overflows from about α = 1e4 (growth (1 + α²)^50): 1e10 was measured as NaN
    # and told "the answer is NaN or infinite", 1e200 crashed check() with an OverflowError
    feedback = check("residual_networks.branch_scale", alpha)
    assert feedback.result == "error" and "(0, 100]" in feedback.message, feedback
    with pytest.raises(ValueError, match=r"\(0, 100\]"):
        forward_growth(alpha)
    assert math.isfinite(forward_growth(100.0))  # the range's end is measured
