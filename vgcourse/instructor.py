"""Instructor tooling: student copies of the chapters, and grading of submitted notebooks.

Solutions live in cells tagged ``solution``. A student copy is made from a chapter's reader notebook
(`vgcourse.reader_notebooks`, written by ``make book`` to ``_build/colab``: the book's numbers are in
its prose, not ``{glue:text}`` roles); it drops the solution cells with nbconvert's
``TagRemovePreprocessor`` and clears every output. Grading executes each submission in a fresh
kernel with a time limit per cell, then asks that kernel which exercises were checked and with what
verdict (`vgcourse.exercises.attempts_json`); errors and time-outs are reported, never raised.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from vgcourse._validation import check_float

SOLUTION_TAG = "solution"
GLUE_ROLE = re.compile(r"\{glue(:[a-z]*)?\}`")
RESULT_MARKER = "VGCOURSE-GRADES:"
COLLECT_SOURCE = f"import vgcourse.exercises as _vx\nprint({RESULT_MARKER!r} + _vx.attempts_json())"
STATUSES = ("ok", "errors", "timeout", "unreadable")


def student_notebooks(book_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write every ``*.ipynb`` of ``book_dir`` to ``out_dir`` without solution cells and outputs.

    Args:
        book_dir: folder of the reader notebooks (``_build/colab`` after ``make book``).
        out_dir: destination folder, created if needed.

    Raises:
        FileNotFoundError: ``book_dir`` has no notebooks.
        ValueError: a notebook's prose still holds glue roles (a MyST source such as ``book/``).
    """
    from nbconvert.exporters import NotebookExporter
    from nbconvert.preprocessors import ClearOutputPreprocessor, TagRemovePreprocessor
    from traitlets.config import Config

    book, out = Path(book_dir), Path(out_dir)
    notebooks = sorted(book.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no .ipynb notebooks in {book}; pass the course's book/ folder")
    out.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.TagRemovePreprocessor.remove_cell_tags = {SOLUTION_TAG}
    config.TagRemovePreprocessor.enabled = True
    config.ClearOutputPreprocessor.enabled = True
    exporter = NotebookExporter(config=config)
    exporter.register_preprocessor(TagRemovePreprocessor(config=config), enabled=True)
    exporter.register_preprocessor(ClearOutputPreprocessor(config=config), enabled=True)
    written = []
    for path in notebooks:
        prose = "".join(
            c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"
        )
        if GLUE_ROLE.search(prose):
            raise ValueError(
                f"{path} has glue roles in its prose (a MyST source): pass the reader notebooks that "
                "`make book` writes to _build/colab"
            )
        body, _ = exporter.from_filename(str(path))
        target = out / path.name
        target.write_text(body)
        written.append(target)
    return written


@dataclass(frozen=True)
class GradeRow:
    """One student's result on one exercise (``result``: correct, incorrect or not attempted)."""

    student: str
    notebook: str
    exercise: str
    result: str
    feedback: str


@dataclass
class Submission:
    """What grading one notebook found: its status (`STATUSES`), a note, and its rows."""

    student: str
    notebook: str
    status: str
    note: str = ""
    rows: list[GradeRow] = field(default_factory=list)

    @property
    def score(self) -> int:
        return sum(row.result == "correct" for row in self.rows)


def grade_notebook(path: str | Path, timeout: float = 120.0, kernel_name: str = "python3") -> Submission:
    """Execute one submission in a fresh kernel and collect its checked exercises.

    Args:
        path: the submitted ``.ipynb``.
        timeout: seconds allowed per cell; a cell over it is interrupted and reported.
        kernel_name: the Jupyter kernel to run it with (one that has vgcourse installed).
    """
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from vgcourse.notebook_execution import SlicedWaitClient  # no wait on the kernel stalls to the timeout

    timeout = check_float("timeout", timeout, minimum=0.0, strict_minimum=True)
    path = Path(path)
    student = path.stem
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception as error:  # a corrupt upload is a result, not a crash
        return Submission(student, path.name, "unreadable", f"{type(error).__name__}: {error}")
    student = str(notebook.metadata.get("vgcourse", {}).get("student", student))
    exercise_ids = _exercises_in(notebook)
    notebook.cells.append(nbformat.v4.new_code_cell(COLLECT_SOURCE))
    client = SlicedWaitClient(
        notebook,
        timeout=int(timeout),
        kernel_name=kernel_name,
        allow_errors=True,
        interrupt_on_timeout=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    status, note = "ok", ""
    try:
        client.execute()
    except (CellTimeoutError, DeadKernelError, RuntimeError) as error:
        status, note = (
            "timeout" if isinstance(error, CellTimeoutError) else "errors",
            str(error).splitlines()[0],
        )
    errors = [
        o
        for c in notebook.cells[:-1]
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    timed_out = any(o.get("ename") == "KeyboardInterrupt" for o in errors)
    if status == "ok" and errors:
        status = "timeout" if timed_out else "errors"
        note = "; ".join(f"{o['ename']}: {o['evalue']}"[:120] for o in errors[:3])
    verdicts = _collected(notebook.cells[-1])
    rows = [
        GradeRow(
            student,
            path.name,
            exercise,
            ("correct" if verdicts[exercise]["correct"] else "incorrect")
            if exercise in verdicts
            else "not attempted",
            verdicts.get(exercise, {}).get("message", ""),
        )
        for exercise in sorted(set(exercise_ids) | set(verdicts))
    ]
    return Submission(student, path.name, status, note, rows)


def _exercises_in(notebook: nbformat.NotebookNode) -> list[str]:
    """Exercise ids the notebook refers to, so unattempted ones still get a row."""
    from vgcourse.exercises import EXERCISES

    text = "\n".join(cell.source for cell in notebook.cells)
    return [exercise_id for exercise_id in EXERCISES if exercise_id in text]


def _collected(cell: nbformat.NotebookNode) -> dict[str, dict]:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and RESULT_MARKER in output.get("text", ""):
            line = next(row for row in output["text"].splitlines() if row.startswith(RESULT_MARKER))
            return json.loads(line[len(RESULT_MARKER) :])
    return {}


def grade(
    paths: list[str | Path],
    out_csv: str | Path = "grades.csv",
    timeout: float = 120.0,
    kernel_name: str = "python3",
) -> list[Submission]:
    """Grade every submission, write one CSV row per student and exercise, return the submissions.

    Args:
        paths: submitted notebooks.
        out_csv: where to write the CSV (columns: student, notebook, exercise, result, feedback, status).
        timeout: seconds allowed per cell.
        kernel_name: the Jupyter kernel to execute them with.
    """
    if not paths:
        raise ValueError("give at least one submitted notebook to grade")
    submissions = [grade_notebook(p, timeout=timeout, kernel_name=kernel_name) for p in paths]
    with Path(out_csv).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "notebook", "exercise", "result", "feedback", "status"])
        for sub in submissions:
            if not sub.rows:
                writer.writerow([sub.student, sub.notebook, "", "not graded", sub.note, sub.status])
            for row in sub.rows:
                writer.writerow(
                    [row.student, row.notebook, row.exercise, row.result, row.feedback, sub.status]
                )
    return submissions


def summary(submissions: list[Submission]) -> str:
    """One line per submission: score, status and a note for errors or time-outs."""
    lines = []
    for sub in submissions:
        attempted = sum(row.result != "not attempted" for row in sub.rows)
        line = (
            f"{sub.student:<24} {sub.score}/{len(sub.rows)} correct ({attempted} attempted)  [{sub.status}]"
        )
        lines.append(line + (f"  {sub.note}" if sub.note else ""))
    return "\n".join(lines)
