"""Exercises: a task, an answer variable, typical mistakes with hints, and a checker that holds no answer.

The student assigns an answer variable (``answer_he_std = 0.0625``) and the cell checks it; the package
stores no solution. A **number** is compared by key: the SHA-256 of the answer at ``d`` significant digits
(``f"{x:.{d-1}e}"``), keys made from the two d-digit numbers bracketing the solution (so rounded or cut off
is right) and at fewer digits k ("close"); typical mistakes are keys too. A **setting** or **function** is
measured and accepted in an interval the prompt states.
"""

from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from vgcourse._validation import check_choice

KINDS = ("number", "setting", "function")
RESULTS = ("correct", "incorrect", "not attempted", "error")


def canonical(value: float, digits: int | None) -> str:
    """``value`` written to ``digits`` significant digits (``None``: a whole number, exactly)."""
    if digits is None:
        if not float(value).is_integer():
            raise ValueError(f"a whole number is asked for; got {value!r}")
        return str(int(value))
    return f"{float(value):.{digits - 1}e}"


def answer_key(exercise_id: str, text: str, digits: int | None) -> str:
    """The stored form of one answer text: sha256("vgcourse/<id>/<digits>/<text>"), 24 hex digits."""
    return hashlib.sha256(f"vgcourse/{exercise_id}/{digits}/{text}".encode()).hexdigest()[:24]


def bracket(value: float, digits: int) -> tuple[str, str]:
    """The two ``digits``-significant-digit numbers below and above ``value`` (equal if it has so few)."""
    if value == 0:
        return canonical(0.0, digits), canonical(0.0, digits)
    exact = Decimal(repr(float(value)))
    quantum = Decimal(1).scaleb(math.floor(math.log10(abs(value))) - digits + 1)
    low = (exact / quantum).to_integral_value(ROUND_FLOOR) * quantum
    high = (exact / quantum).to_integral_value(ROUND_CEILING) * quantum
    return canonical(float(low), digits), canonical(float(high), digits)


def significant_digits(value: float) -> int:
    """The fewest significant digits that write ``value`` exactly (0.063 -> 2)."""
    for digits in range(1, 18):
        if float(f"{value:.{digits - 1}e}") == value:
            return digits
    return 17


def keys_for(exercise_id: str, value: float, digits: int | None) -> tuple[str, ...]:
    """The keys of a value: exact whole number, or its brackets at 1..``digits`` significant digits."""
    if digits is None:
        return (answer_key(exercise_id, canonical(value, None), None),)
    return tuple(
        sorted({answer_key(exercise_id, text, k) for k in range(1, digits + 1) for text in bracket(value, k)})
    )


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer and the hint it earns (giving neither the solution nor its own value away)."""

    hint: str
    keys: tuple[str, ...] = ()  # number exercises: `keys_for` of the wrong value at the exercise's digits
    applies: Callable[[float], bool] | None = None  # settings and functions: predicate on the measurement

    def __post_init__(self) -> None:
        if not self.keys and self.applies is None:
            raise ValueError("a mistake needs keys (number exercises) or an applies predicate")


@dataclass(frozen=True)
class Feedback:
    """The checker's verdict on one answer: ``result`` is one of `RESULTS`."""

    exercise: str
    result: str
    message: str

    @property
    def correct(self) -> bool:
        return self.result == "correct"

    def __str__(self) -> str:
        if self._on_static_page():
            return self._static_task() + _STATIC_PAGE
        return f"{_VERDICTS[self.result][1]}: {self.message}"

    def _repr_html_(self) -> str:
        if self._on_static_page():
            return f"<p>{html.escape(self._static_task())}<i>{_STATIC_PAGE}</i></p>"
        colour, verdict = _VERDICTS[self.result]
        return f'<p style="color:{colour}"><b>{verdict}</b>: {self.message}</p>'

    def _on_static_page(self) -> bool:
        """On the static site a reader cannot check: an unanswered template says where to check instead."""
        from vgcourse.widgets import site_build

        return site_build() and not self.correct

    def _static_task(self) -> str:
        """The task of an unanswered exercise (its message minus the instruction to run the cell)."""
        if self.result != "not attempted":
            return ""
        return self.message.split(_ASSIGN, 1)[0].strip() + " "


_STATIC_PAGE = "Check in Colab or Jupyter: run this cell there with your answer to see the verdict."
_ASSIGN = "Assign your answer to"


_VERDICTS = {
    "correct": ("#1b7a1b", "✔ Correct"),
    "incorrect": ("#a11", "✘ Not yet"),
    "not attempted": ("#555", "… Not attempted"),
    "error": ("#a11", "✘ Could not check"),
}


@dataclass(frozen=True, eq=False)
class Exercise:
    """One checked task of a chapter."""

    id: str  # "<chapter>.<name>", unique
    title: str
    prompt: str  # the task as the learner reads it
    kind: str  # "number" (typed in), "setting" (a value to find, e.g. with a slider) or "function" (code)
    hint: str  # for a wrong answer that matches no typical mistake
    mistakes: tuple[Mistake, ...]  # at least three
    variable: str = ""  # the answer's name in the notebook (default answer_<name>)
    digits: int | None = 3  # number kind: significant digits asked for (None: an exact whole number)
    keys: tuple[str, ...] = ()  # number kind: `keys_for` of the solution at digits
    measure: Callable[[Any], float] | None = None  # setting/function: answer -> number (may raise)
    accept: tuple[float, float] | None = None  # setting/function: closed interval for the measurement
    # a setting's slider: min, max, step, log, label; min, max (and step) written as ints: whole numbers
    control: dict[str, float | bool | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, KINDS)
        if "." not in self.id:
            raise ValueError(f"exercise id must read '<chapter>.<name>'; got {self.id!r}")
        if len(self.mistakes) < 3:
            raise ValueError(f"exercise {self.id!r} needs at least three typical mistakes")
        if not self.variable:
            object.__setattr__(self, "variable", "answer_" + self.id.split(".", 1)[1])
        if not self.variable.isidentifier():
            raise ValueError(f"exercise {self.id!r}: variable {self.variable!r} is not a Python name")
        if self.kind == "number" and not self.keys:
            raise ValueError(f"number exercise {self.id!r} needs keys (tests/exercise_solutions.py)")
        if self.kind != "number" and (self.measure is None or self.accept is None):
            raise ValueError(f"{self.kind} exercise {self.id!r} needs measure and accept")
        if self.digits is not None and self.digits < 1:
            raise ValueError(f"digits must be >= 1 or None; got {self.digits}")

    @property
    def chapter(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def whole(self) -> bool:
        """Whether the setting takes whole numbers: a linear slider, min, max and step (default 1) ints."""
        numbers = (self.control.get("min"), self.control.get("max"), self.control.get("step", 1))
        return self.kind == "setting" and not self.control.get("log") and all(type(n) is int for n in numbers)

    @property
    def asked(self) -> str:
        """The precision asked for, as an instruction ("Give 3 significant digits.")."""
        if self.kind != "number":
            return f"Accepted: {self.precision}."
        return f"Give {'a whole number' if self.digits is None else self.precision}."

    @property
    def precision(self) -> str:
        """The precision the answer is checked to, in words."""
        if self.kind != "number":
            return f"any value whose measurement lies in [{self.accept[0]:g}, {self.accept[1]:g}]"  # type: ignore[index]
        if self.digits is None:
            return "a whole number"
        return f"{self.digits} significant digits"

    def check(self, answer: Any) -> Feedback:
        """Right, not attempted (``None``, ``...``, a function stub raising NotImplementedError, with the
        task), wrong with a hint, or not checkable; never the solution."""
        if answer is None or answer is Ellipsis:
            return self._not_attempted()
        if self.kind == "number":
            if isinstance(answer, bool) or not isinstance(answer, (int, float)):
                try:
                    answer = float(answer)  # numpy and torch scalars
                except (TypeError, ValueError) as error:
                    return Feedback(self.id, "error", f"this answer could not be checked: {error}")
            return self.verdict(float(answer))
        if self.whole and isinstance(answer, float) and answer.is_integer():
            answer = int(answer)  # 15.0 for 15: the measurement takes an int
        try:
            measured = float(self.measure(answer))  # type: ignore[misc]
        except NotImplementedError:  # the handout's stub, as instructor.grade counts it too
            return self._not_attempted()
        except (TypeError, ValueError, RuntimeError) as error:
            return Feedback(self.id, "error", f"this answer could not be checked: {error}")
        return self.verdict(measured)

    def _not_attempted(self) -> Feedback:
        return Feedback(
            self.id,
            "not attempted",
            f"{self.prompt} {self.asked} {_ASSIGN} {self.variable} and run the cell again.",
        )

    def verdict(self, value: float) -> Feedback:
        """The verdict on a number answer, or on the measurement of a setting or function."""
        if not math.isfinite(value):  # a setting or function is finite itself: what it gives was measured
            what = (
                "the answer is" if self.kind == "number" else f"this {self.kind} gives a measurement that is"
            )
            return Feedback(self.id, "incorrect", f"{what} NaN or infinite; " + self.hint)
        if self.kind != "number":
            low, high = self.accept  # type: ignore[misc]
            if low <= value <= high:
                return Feedback(self.id, "correct", "well done.")
            return Feedback(self.id, "incorrect", self._mistake_hint(value=value))
        if self.digits is None:
            if not value.is_integer():
                return Feedback(self.id, "incorrect", "a whole number is asked for. " + self.hint)
            if self._has(canonical(value, None), None):
                return Feedback(self.id, "correct", "well done.")
            return Feedback(self.id, "incorrect", self._mistake_hint(text=canonical(value, None)))
        if self._has(canonical(value, self.digits), self.digits):
            return Feedback(self.id, "correct", "right, to the precision asked.")
        given = significant_digits(value)
        if given < self.digits and self._has(canonical(value, given), given):
            return Feedback(
                self.id,
                "incorrect",
                f"close: right to the {given} significant digit{'s' * (given > 1)} you gave; "
                f"give {self.digits} significant digits.",
            )
        return Feedback(self.id, "incorrect", self._mistake_hint(text=canonical(value, self.digits)))

    def _has(self, text: str, digits: int | None) -> bool:
        return answer_key(self.id, text, digits) in self.keys

    def _mistake_hint(self, value: float | None = None, text: str | None = None) -> str:
        for mistake in self.mistakes:
            if mistake.applies is not None and value is not None and mistake.applies(value):
                return mistake.hint
            if text is not None and answer_key(self.id, text, self.digits) in mistake.keys:
                return mistake.hint
        return self.hint


EXERCISES: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    """Add an exercise to the registry (ids and answer variables are unique)."""
    if exercise.id in EXERCISES:
        raise ValueError(f"exercise {exercise.id!r} is already registered")
    if any(other.variable == exercise.variable for other in EXERCISES.values()):
        raise ValueError(f"answer variable {exercise.variable!r} is already used")
    EXERCISES[exercise.id] = exercise
    return exercise


def get(exercise_id: str) -> Exercise:
    """The registered exercise with this id."""
    return EXERCISES[check_choice("exercise_id", exercise_id, sorted(EXERCISES))]


def check(exercise_id: str, answer: Any) -> Feedback:
    """Check ``answer`` against exercise ``exercise_id`` (what the exercise cell calls)."""
    return get(exercise_id).check(answer)


def chapter_exercises(chapter: str) -> list[Exercise]:
    """The exercises of one chapter, in registration (reading) order."""
    chapters = sorted({e.chapter for e in EXERCISES.values()})
    check_choice("chapter", chapter, chapters)
    return [e for e in EXERCISES.values() if e.chapter == chapter]
