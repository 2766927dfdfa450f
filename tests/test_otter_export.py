"""The Otter-Grader export: one question per exercise, graded by Otter's own commands (local mode).

`otter assign` builds the assignment from the exported master; `otter run` (Otter's non-container
grading) grades a right and a wrong submission made from the student notebook it writes. The right
one scores every point; the wrong one scores none, and each failed hidden test shows the course's hint.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from exercise_solutions import SOLUTIONS

from vgcourse.cli import main
from vgcourse.exercises import EXERCISES, chapter_exercises, get
from vgcourse.otter_export import POINTS_PER_EXERCISE, otter_master

CHAPTER = "residual_networks"


@pytest.mark.parametrize("chapter", sorted({e.chapter for e in EXERCISES.values()}))
def test_master_has_one_question_per_exercise_with_a_hidden_checker_test(chapter: str) -> None:
    cells = otter_master(chapter).cells
    assert cells[0].cell_type == "raw" and cells[0].source.startswith("# ASSIGNMENT CONFIG")
    questions = [c.source for c in cells if c.source.startswith("# BEGIN QUESTION")]
    tests = [c.source for c in cells if c.cell_type == "code" and "BEGIN TEST CONFIG" in c.source]
    exercises = chapter_exercises(chapter)
    assert len(questions) == len(tests) == len(exercises)
    for exercise, question, test in zip(exercises, questions, tests, strict=True):
        assert f"name: {exercise.id.split('.', 1)[1]}" in question
        assert "hidden: true" in test
        assert f'get("{exercise.id}").check({exercise.variable})' in test
    # the master holds no solution: every answer cell leaves the answer to the student
    answers = [
        c.source for c in cells if c.cell_type == "code" and "check(" in c.source and "BEGIN" not in c.source
    ]
    assert all("= ..." in a or "NotImplementedError" in a for a in answers)


def test_unknown_chapter_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["export-otter", "--chapter", "no_such_chapter", "--out", str(tmp_path), "--no-assign"])
    assert exited.value.code == 2
    assert "residual_networks" in capsys.readouterr().err


def submission(student: Path, answers: dict[str, object], out: Path) -> Path:
    """The student notebook with ``answer_x = ...`` replaced by ``answer_x = <value>``."""
    notebook = nbformat.read(student, as_version=4)
    for cell in notebook.cells:
        for variable, value in answers.items():
            cell.source = cell.source.replace(f"{variable} = ...", f"{variable} = {value!r}")
    nbformat.write(notebook, out)
    return out


def test_otter_assign_and_otter_run_grade_right_and_wrong_submissions(tmp_path: Path) -> None:
    out = tmp_path / "otter"
    assert main(["export-otter", "--chapter", CHAPTER, "--out", str(out)]) == 0
    student = out / "dist" / "student" / f"{CHAPTER}.ipynb"
    (autograder,) = (out / "dist" / "autograder").glob("*.zip")
    exercises = chapter_exercises(CHAPTER)
    right = {e.variable: SOLUTIONS[e.id][0]() for e in exercises}
    wrong = {e.variable: SOLUTIONS[e.id][1][0]() for e in exercises}  # each exercise's first typical mistake
    runs = {}
    for name, answers in (("right", right), ("wrong", wrong)):
        (tmp_path / name).mkdir()
        path = submission(student, answers, tmp_path / f"{name}.ipynb")
        runs[name] = subprocess.Popen(  # the two gradings run at once
            [
                sys.executable,
                "-m",
                "otter",
                "run",
                "--no-logo",
                "-a",
                str(autograder),
                "-o",
                str(tmp_path / name),
                str(path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    results = {}
    for name, run in runs.items():
        output, _ = run.communicate(timeout=300)
        assert run.returncode == 0, output
        tests = json.loads((tmp_path / name / "results.json").read_text())["tests"]
        results[name] = {t["name"]: t for t in tests if "score" in t}
    for exercise in exercises:
        name = exercise.id.split(".", 1)[1]
        assert results["right"][name]["score"] == POINTS_PER_EXERCISE
        assert results["right"][name]["visibility"] == "hidden"
        assert results["wrong"][name]["score"] == 0
        hint = get(exercise.id).check(wrong[exercise.variable]).message
        assert hint == exercise.mistakes[0].hint
        assert hint in results["wrong"][name]["output"]
