"""Export a chapter's exercises as an Otter-Grader assignment.

`otter_master` builds an Otter Assign (v1) master: one question per exercise, its answer cell as in the
chapter and a hidden test that calls the package's checker (a failure shows the course's hint). The
package holds no solutions, so neither does the master (``run_tests: false``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat

from vgcourse.exercises import Exercise, chapter_exercises

POINTS_PER_EXERCISE = 1


def _raw(source: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_raw_cell(source)


def _answer_cell(exercise: Exercise) -> str:
    """The student's cell, as in the chapter: the answer variable, then the Check call."""
    if exercise.kind == "function":
        found = re.search(rf"\b{re.escape(exercise.variable)}\(([^)]*)\)", exercise.prompt)
        parameters = found.group(1) if found else "*args"
        return (
            f"def {exercise.variable}({parameters}):\n"
            "    raise NotImplementedError  # replace this line with your code\n\n\n"
            f'check("{exercise.id}", {exercise.variable})'
        )
    if exercise.kind == "setting":
        return (
            f"{exercise.variable} = ...  # your setting: find it with the slider, then write it here\n"
            f'exercise_widget("{exercise.id}", {exercise.variable})'
        )
    precision = "a whole number" if exercise.digits is None else f"to {exercise.precision}"
    return (
        f'{exercise.variable} = ...  # your answer: {precision}\ncheck("{exercise.id}", {exercise.variable})'
    )


def _test_cell(exercise: Exercise) -> str:
    """Otter's exception-based test: the argument is filled from the submission's global variables."""
    name = exercise.id.split(".", 1)[1]
    return (
        '""" # BEGIN TEST CONFIG\n'
        f"hidden: true\npoints: {POINTS_PER_EXERCISE}\n"
        '""" # END TEST CONFIG\n'
        f"def test_{name}({exercise.variable}):\n"
        "    from vgcourse.exercises import get\n\n"
        f'    feedback = get("{exercise.id}").check({exercise.variable})\n'
        "    assert feedback.correct, str(feedback)\n"
    )


def otter_master(chapter: str, requirements: str = "requirements.txt") -> nbformat.NotebookNode:
    """The Otter Assign master notebook of ``chapter``'s exercises: one question per exercise, worth
    `POINTS_PER_EXERCISE`, whose hidden test passes exactly when the package's checker says correct."""
    exercises = chapter_exercises(chapter)
    config = (
        "# ASSIGNMENT CONFIG\n"
        f"name: vgcourse-{chapter}\n"
        f"requirements: {requirements}\n"
        "init_cell: false\n"
        "check_all_cell: false\n"
        "export_cell: false\n"
        "run_tests: false\n"
        "solutions_pdf: false\n"
        "tests:\n"
        "  ok_format: false\n"
    )
    cells = [
        _raw(config),
        nbformat.v4.new_markdown_cell(
            f"# Exercises: {chapter.replace('_', ' ')}\n\n"
            "Assign each answer to its variable in the cell below the question and run the cell: "
            "**Check** says right or gives a hint. Grading reads the variables, so every answer must be "
            "in the notebook's source (a slider's value counts only once written back)."
        ),
        nbformat.v4.new_code_cell(
            f"import vgcourse.exercises.{chapter}  # noqa: F401 (registers the chapter's exercises)\n"
            "from vgcourse.exercises import check, exercise_widget"
        ),
    ]
    for exercise in exercises:
        name = exercise.id.split(".", 1)[1]
        title = exercise.title if exercise.title[-1] in ".?!" else exercise.title + "."
        if exercise.kind != "number":
            precision = f"accepted: {exercise.precision}"
        elif exercise.digits is None:
            precision = "it must be a whole number"
        else:
            precision = f"it is checked to {exercise.precision}"
        cells += [
            _raw(f"# BEGIN QUESTION\nname: {name}\npoints: {POINTS_PER_EXERCISE}"),
            nbformat.v4.new_markdown_cell(
                f"**{title}** {exercise.prompt}\n\nAssign your answer to `{exercise.variable}`; {precision}."
            ),
            nbformat.v4.new_code_cell(_answer_cell(exercise)),
            _raw("# BEGIN TESTS"),
            nbformat.v4.new_code_cell(_test_cell(exercise)),
            _raw("# END TESTS"),
            _raw("# END QUESTION"),
        ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def export_otter(chapter: str, out_dir: str | Path, assign: bool = True) -> Path:
    """Write the master ``OUT/<chapter>.ipynb`` (returned) and ``OUT/requirements.txt``; with ``assign``, run
    ``otter assign`` into ``OUT/dist``."""
    from vgcourse import __version__

    master = otter_master(chapter)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "requirements.txt").write_text(f"vgcourse=={__version__}\n")
    path = out / f"{chapter}.ipynb"
    nbformat.write(master, path)
    if assign:
        try:
            import otter  # noqa: F401
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "otter assign needs Otter-Grader: pip install 'vgcourse[grading]' (or pass --no-assign)"
            ) from None
        done = subprocess.run(
            [sys.executable, "-m", "otter", "assign", "--no-pdfs", path.name, "dist"],
            cwd=out,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"otter assign failed:\n{done.stdout}\n{done.stderr}")
    return path
