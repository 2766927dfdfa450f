"""Exercises: a task, a computed solution, typical mistakes with hints, and a checker that never reveals.

``check(exercise_id, answer)`` measures the answer (a number, a widget setting or a function), compares
it with the measured solution and answers right or wrong; when wrong it gives the hint of the typical
mistake the answer matches, else the exercise's general hint. Every attempt is remembered in the
kernel so that ``vgcourse grade`` can collect the results of a submitted notebook.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from vgcourse._validation import check_choice

KINDS = ("number", "setting", "function")


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer and the hint it earns.

    Args:
        example: builds the wrong answer (tests check it fails; by default answers that measure
            close to it get this hint).
        hint: what to reconsider, without giving the solution away.
        applies: optional predicate on the measured answer that recognises the mistake instead.
    """

    example: Callable[[], Any]
    hint: str
    applies: Callable[[float], bool] | None = None


@dataclass(frozen=True)
class Feedback:
    """The checker's verdict on one answer."""

    exercise: str
    correct: bool
    message: str

    def __str__(self) -> str:
        return f"{'✔ Correct' if self.correct else '✘ Not yet'}: {self.message}"

    def _repr_html_(self) -> str:
        colour, verdict = ("#1b7a1b", "✔ Correct") if self.correct else ("#a11", "✘ Not yet")
        return f'<p style="color:{colour}"><b>{verdict}</b>: {self.message}</p>'


@dataclass(frozen=True, eq=False)
class Exercise:
    """One checked task of a chapter.

    An answer is correct when ``accept(measure(answer), measure(solution()))`` holds (by default: the two
    measurements agree to ``rel_tol``).

    Args:
        id: ``"<chapter>.<name>"``, unique.
        title: a few words.
        prompt: the task as the learner reads it.
        kind: ``"number"`` (typed in), ``"setting"`` (a widget control's value) or ``"function"`` (code).
        solution: computes the reference answer (never typed in).
        hint: the general hint for a wrong answer that matches no typical mistake.
        mistakes: typical wrong answers (at least three) with their hints.
        measure: turns an answer into a number (default ``float``); may raise TypeError/ValueError.
        rel_tol: relative tolerance of the default ``accept``.
        accept: optional ``accept(measured_answer, measured_solution) -> bool``.
        control: for number/setting kinds, widget hints: ``min``, ``max``, ``step``, ``log``, ``label``.
    """

    id: str
    title: str
    prompt: str
    kind: str
    solution: Callable[[], Any]
    hint: str
    mistakes: tuple[Mistake, ...]
    measure: Callable[[Any], float] = float
    rel_tol: float = 1e-3
    accept: Callable[[float, float], bool] | None = None
    control: dict[str, float | bool | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, KINDS)
        if "." not in self.id:
            raise ValueError(f"exercise id must read '<chapter>.<name>'; got {self.id!r}")
        if len(self.mistakes) < 3:
            raise ValueError(f"exercise {self.id!r} needs at least three typical mistakes")

    @property
    def chapter(self) -> str:
        return self.id.split(".", 1)[0]

    def reference(self) -> float:
        """The measured solution (cached per exercise)."""
        return _measured_solution(self)

    def check(self, answer: Any) -> Feedback:
        """Right or wrong, with a hint when wrong; never the solution."""
        try:
            measured = float(self.measure(answer))
        except (TypeError, ValueError, RuntimeError) as error:
            return Feedback(self.id, False, f"this answer could not be checked: {error}")
        if not math.isfinite(measured):
            return Feedback(self.id, False, "the answer measures as NaN or infinite; " + self.hint)
        if self._accepts(measured, self.reference()):
            return Feedback(self.id, True, "well done.")
        for mistake in self.mistakes:
            if mistake.applies is not None:
                matched = mistake.applies(measured)
            else:
                matched = math.isclose(measured, float(self.measure(mistake.example())), rel_tol=self.rel_tol)
            if matched:
                return Feedback(self.id, False, mistake.hint)
        return Feedback(self.id, False, self.hint)

    def _accepts(self, measured: float, reference: float) -> bool:
        if self.accept is not None:
            return bool(self.accept(measured, reference))
        return math.isclose(measured, reference, rel_tol=self.rel_tol)


@cache
def _measured_solution(exercise: Exercise) -> float:
    return float(exercise.measure(exercise.solution()))


EXERCISES: dict[str, Exercise] = {}
_ATTEMPTS: dict[str, Feedback] = {}


def register(exercise: Exercise) -> Exercise:
    """Add an exercise to the registry (ids are unique)."""
    if exercise.id in EXERCISES:
        raise ValueError(f"exercise {exercise.id!r} is already registered")
    EXERCISES[exercise.id] = exercise
    return exercise


def get(exercise_id: str) -> Exercise:
    """The registered exercise with this id."""
    return EXERCISES[check_choice("exercise_id", exercise_id, sorted(EXERCISES))]


def check(exercise_id: str, answer: Any) -> Feedback:
    """Check ``answer`` against exercise ``exercise_id`` and remember the verdict for grading."""
    feedback = get(exercise_id).check(answer)
    _ATTEMPTS[exercise_id] = feedback
    return feedback


def attempts() -> dict[str, Feedback]:
    """The last verdict per exercise checked in this Python session."""
    return dict(_ATTEMPTS)


def attempts_json() -> str:
    """`attempts` as JSON (what the grader reads back from a submitted notebook's kernel)."""
    return json.dumps({k: {"correct": f.correct, "message": f.message} for k, f in _ATTEMPTS.items()})
