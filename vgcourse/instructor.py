"""Instructor tooling: student copies of the chapters, and grading of submitted notebooks.

A student copy is a reader notebook (``_build/colab``) without its ``solution``-tagged cells and outputs.
`grade` runs each submission in its own worker process and kernel in a temporary folder, with a hard time
limit; the kernel reports only the answers, the verdicts are computed here. Failures are reported, not raised.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from vgcourse._validation import check_float
from vgcourse.exercises import EXERCISES, Exercise, Feedback, chapter_exercises, get

SOLUTION_TAG = "solution"
GLUE_ROLE = re.compile(r"\{glue(:[a-z]*)?\}`")


def student_notebooks(book_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write every reader notebook of ``book_dir`` to ``out_dir`` without solution cells and outputs."""
    from nbconvert.exporters import NotebookExporter
    from traitlets.config import Config

    book, out = Path(book_dir), Path(out_dir)
    notebooks = sorted(book.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no .ipynb notebooks in {book}; pass the course's book/ folder")
    out.mkdir(parents=True, exist_ok=True)
    # Two of the exporter's default preprocessors, switched on: drop the solution cells, clear outputs.
    config = Config(
        TagRemovePreprocessor={"enabled": True, "remove_cell_tags": {SOLUTION_TAG}},
        ClearOutputPreprocessor={"enabled": True},
    )
    exporter = NotebookExporter(config=config)
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


# ---------------------------------------------------------------- grading

# Reference computations (tests/exercise_solutions.py): a submission calling one is flagged; an exercise
# id or answer variable that contains the name is not a call.
REFERENCE_HELPERS = tuple(
    "forget_gate_steps guide_lr per_weight_ratio predicted_second_moment steps_below".split()
)
REFERENCE_CALLS = re.compile(
    r"\.reference\(|\.solution\(|_reference\b|balanced_tanh_scale|balanced_radius|"
    rf"(?<![\w.])(?:{'|'.join(REFERENCE_HELPERS)})\b|\.(?:{'|'.join(REFERENCE_HELPERS)})\s*\(|"
    r"exercise_solutions|\b_KEYS\b|\b_MISTAKES\b"
)
OUTPUT_CAP = 2_000_000  # bytes of output a submission may produce; the rest is dropped (the run goes on)
FUNCTION_TIMEOUT = 60.0  # seconds to measure one function answer on its own
# Seconds past the notebook's limit before its worker and kernel are killed (the cell limit, the same
# number, interrupts first when the kernel lets it).
GRACE = 15.0
READ_GRACE = 10.0  # seconds to read what a finished worker wrote before it ended (its pipe is closed then)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class GradeRow:
    """One student's result on one exercise (``result``: one of `vgcourse.exercises.RESULTS`)."""

    student: str
    notebook: str
    exercise: str
    result: str
    feedback: str


@dataclass
class Submission:
    """What grading one notebook found: its status, a note, flags, and one row per exercise."""

    student: str
    notebook: str
    status: str  # "ok", "errors", "timeout", "killed" or "unreadable"
    note: str = ""
    flags: list[str] = field(default_factory=list)
    rows: list[GradeRow] = field(default_factory=list)

    @property
    def score(self) -> int:
        return sum(row.result == "correct" for row in self.rows)


def collect_source(variables: list[str], marker: str) -> str:
    """The cell appended after each answer cell: print the answers' values (or functions' source) after
    ``marker``. Student code can change only the reported answers, which the student controls anyway."""
    return (
        "def _vgcourse_collect(names, marker):\n"
        "    import inspect, json\n"
        "    found = {}\n"
        "    for name in names:\n"
        "        value = globals().get(name)\n"
        "        if value is None or value is Ellipsis:\n"
        "            continue\n"
        "        try:\n"
        "            if callable(value):\n"
        "                found[name] = {'source': inspect.getsource(value)}\n"
        "            elif isinstance(value, bool):\n"
        "                found[name] = {'error': 'True/False is not a number'}\n"
        "            else:\n"
        "                found[name] = {'value': float(value)}\n"
        "        except Exception as error:\n"
        "            found[name] = {'error': f'{type(error).__name__}: {error}'[:200]}\n"
        "    print(marker + json.dumps(found))\n"
        f"_vgcourse_collect({variables!r}, {marker!r})\n"
        "del _vgcourse_collect\n"
    )


def _prepare(
    text: str, exercises: list[Exercise] | None, marker: str
) -> tuple[nbformat.NotebookNode | None, list[Exercise], list[str], str]:
    """Parse a submission, drop solution cells, flag what needs a look, add the collection cells."""
    try:
        notebook = nbformat.reads(text, as_version=4)
        nbformat.validate(notebook)
    except Exception as error:  # a corrupt upload is a result, not a crash
        return None, exercises or [], [], f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
    flags = []
    kept = [c for c in notebook.cells if SOLUTION_TAG not in c.get("metadata", {}).get("tags", [])]
    if len(kept) < len(notebook.cells):
        flags.append("contains solution cells (dropped before grading)")
    source = "\n".join(c.source for c in kept if c.cell_type == "code")
    if REFERENCE_CALLS.search(source):
        flags.append("calls solution helpers: " + ", ".join(sorted(set(REFERENCE_CALLS.findall(source)))))
    if exercises is None:
        named = {e.chapter for e in EXERCISES.values() if e.id in source or e.variable in source}
        exercises = [e for chapter in sorted(named) for e in chapter_exercises(chapter)]
    variables = [e.variable for e in exercises]
    cells = []
    for cell in kept:
        cells.append(cell)
        if cell.cell_type == "code" and any(v in cell.source for v in variables):
            cells.append(nbformat.v4.new_code_cell(collect_source(variables, marker)))
    cells.append(nbformat.v4.new_code_cell(collect_source(variables, marker)))
    notebook.cells = cells
    return notebook, exercises, flags, ""


@functools.lru_cache(maxsize=256)
def _measured_source(exercise_id: str, source: str) -> float | None:
    """A function answer measured in an isolated Python process (once per distinct source: it runs alone,
    so equal sources measure equal); ``None`` for the handout's stub."""
    exercise = get(exercise_id)
    harness = (
        "import json, math, sys\nimport numpy as np\nimport torch\nfrom torch import nn\n"
        "namespace = {'math': math, 'np': np, 'torch': torch, 'nn': nn}\n"
        "exec(sys.stdin.read(), namespace)\n"
        "from vgcourse.exercises import get\n"
        f"exercise = get({exercise.id!r})\n"
        "try:\n"
        f"    measured = float(exercise.measure(namespace[{exercise.variable!r}]))\n"
        "except NotImplementedError:\n"
        "    print('NOT-ATTEMPTED')\n"
        "    sys.exit(0)\n"
        "print('MEASURED', json.dumps(measured))\n"
    )
    with tempfile.TemporaryDirectory(prefix="vgcourse-measure-") as work:
        run = subprocess.run(
            [sys.executable, "-I", "-c", harness],
            input=source,
            capture_output=True,
            text=True,
            cwd=work,
            timeout=FUNCTION_TIMEOUT,
        )
    if run.returncode == 0 and "NOT-ATTEMPTED" in run.stdout.splitlines():
        return None
    lines = [line for line in run.stdout.splitlines() if line.startswith("MEASURED ")]
    if run.returncode != 0 or not lines:
        last = (run.stderr.strip().splitlines() or ["no result"])[-1]
        raise ValueError(f"{exercise.variable} could not be measured on its own ({last[:160]})")
    return float(json.loads(lines[-1].split(" ", 1)[1]))


def verdicts(exercises: list[Exercise], answers: dict[str, dict]) -> list[tuple[str, str, str]]:
    """(exercise id, result, feedback) per exercise, computed here from the collected answers."""
    out = []
    for exercise in exercises:
        answer = answers.get(exercise.variable)
        if answer is None:
            feedback = _not_attempted(exercise)
        elif "error" in answer:
            feedback = Feedback(exercise.id, "error", f"{exercise.variable}: {answer['error']}")
        elif exercise.kind == "function" and "source" not in answer:
            feedback = Feedback(exercise.id, "error", f"{exercise.variable} must be a function")
        elif exercise.kind == "function":
            try:
                measured = _measured_source(exercise.id, answer["source"])
                feedback = _not_attempted(exercise) if measured is None else exercise.verdict(measured)
            except Exception as error:  # the student's code failed: a result
                feedback = Feedback(exercise.id, "error", str(error)[:240])
        elif "value" not in answer:
            feedback = Feedback(exercise.id, "error", f"{exercise.variable} must be a number")
        else:
            feedback = _cached_check(exercise.id, float(answer["value"]))
        out.append((exercise.id, feedback.result, feedback.message))
    return out


def _not_attempted(exercise: Exercise) -> Feedback:
    return Feedback(exercise.id, "not attempted", f"no answer in {exercise.variable}")


@functools.lru_cache(maxsize=4096)
def _cached_check(exercise_id: str, value: float) -> Feedback:
    return get(exercise_id).check(value)


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _kill(pids: set[int]) -> None:
    import psutil

    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


@dataclass
class _Run:
    index: int
    path: Path
    student: str
    notebook: nbformat.NotebookNode
    exercises: list[Exercise]
    flags: list[str]
    process: Any = None
    started: float = 0.0
    lines: list[str] = field(default_factory=list)
    family: set[int] = field(default_factory=set)
    channel: str = ""
    reader: threading.Thread | None = None  # reads the worker's channel into ``lines``
    scratch: str = ""  # the worker's and its kernel's temporary folder (TMPDIR), removed by grade


def identities(paths: list[Path], roster: dict[str, str] | None = None) -> list[str]:
    """Each file's student: ``roster[file name]``, else the file's stem (never the notebook's metadata)."""
    if roster is None:
        return [p.stem for p in paths]
    missing = [p.name for p in paths if p.name not in roster]
    if missing:
        raise ValueError(f"not on the roster: {', '.join(missing)}; roster files: {sorted(roster)[:5]}...")
    return [roster[p.name] for p in paths]


def read_roster(path: str | Path) -> dict[str, str]:
    """A roster CSV with columns ``file`` and ``student``."""
    with Path(path).open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"file", "student"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: a roster needs the columns file,student; got {reader.fieldnames}")
        return {row["file"]: row["student"] for row in reader}


def spreadsheet_safe(value: object) -> str:
    """A CSV cell a spreadsheet will not run as a formula (a leading = + - @ gets a ')."""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def grade(
    paths: list[str | Path],
    out_csv: str | Path = "grades.csv",
    timeout: float = 600.0,
    kernel_name: str = "python3",
    jobs: int = 1,
    chapter: str | None = None,
    roster: dict[str, str] | None = None,
    output_cap: int = OUTPUT_CAP,
) -> list[Submission]:
    """Grade every submission, ``jobs`` at once, writing its CSV rows as soon as it is graded.

    ``timeout``: seconds for a whole notebook (then it is killed; answers so far count). ``chapter``: grade
    that chapter's exercises (default: the chapters a notebook names); ``roster``: file name -> student.
    """
    if not paths:
        raise ValueError("give at least one submitted notebook to grade")
    timeout = check_float("timeout", timeout, minimum=0.0, strict_minimum=True)
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer; got {jobs!r}")
    fixed = chapter_exercises(chapter) if chapter is not None else None
    files = [Path(p) for p in paths]
    texts = [p.read_bytes().decode("utf-8", errors="replace") for p in files]  # before anything runs
    students = identities(files, roster)
    marker = f"VGCOURSE-ANSWERS-{secrets.token_hex(8)}:"
    job = {"timeout": timeout, "kernel": kernel_name, "marker": marker, "output_cap": output_cap}
    submissions: list[Submission | None] = [None] * len(files)
    pending: list[_Run] = []
    for index, (path, text, student) in enumerate(zip(files, texts, students, strict=True)):
        notebook, exercises, flags, problem = _prepare(text, fixed, marker)
        if notebook is None:
            submissions[index] = Submission(student, path.name, "unreadable", problem)
            continue
        ours = notebook.metadata.get("vgcourse")
        claimed = ours.get("student") if isinstance(ours, dict) else None
        if claimed is not None and str(claimed) != student:
            flags.append(f"metadata names {str(claimed)[:40]!r} (ignored)")
        pending.append(_Run(index, path, student, notebook, exercises, flags))
    counts = Counter(students)

    with Path(out_csv).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "notebook", "exercise", "result", "feedback", "status", "flags"])

        def record(sub: Submission) -> None:
            if counts[sub.student] > 1:
                sub.flags.append(f"duplicate: {counts[sub.student]} submissions for this student")
            flags = "; ".join(sub.flags)
            rows = sub.rows or [GradeRow(sub.student, sub.notebook, "", "not graded", sub.note)]
            for row in rows:
                writer.writerow([spreadsheet_safe(v) for v in (*astuple(row), sub.status, flags)])
            handle.flush()

        for sub in submissions:
            if sub is not None:
                record(sub)
        running: list[_Run] = []
        try:
            while pending or running:
                while pending and len(running) < jobs:
                    running.append(_start(pending.pop(0), job))
                time.sleep(0.2)
                for run in list(running):
                    run.family.update(_descendants(run.process.pid))
                    over = time.monotonic() - run.started > timeout + GRACE
                    if run.process.poll() is None and not over:
                        continue
                    if over:
                        run.process.kill()
                    run.process.wait()
                    _kill(run.family - {run.process.pid})
                    run.reader.join(READ_GRACE)  # the worker's last lines (DONE) may still be in the pipe
                    shutil.rmtree(run.scratch, ignore_errors=True)
                    running.remove(run)
                    sub = _finish(run, over, timeout)
                    submissions[run.index] = sub
                    record(sub)
        finally:  # stopped early (Ctrl-C, an error): the workers, in sessions of their own, would run on
            for run in running:
                family = run.family | {run.process.pid, *_descendants(run.process.pid)}
                run.process.kill()
                _kill(family)
                shutil.rmtree(run.scratch, ignore_errors=True)
    return [s for s in submissions if s is not None]


def _start(run: _Run, job: dict[str, Any]) -> _Run:
    """Start ``run``'s worker (grade_worker.py, by path) on ``job`` and a thread that reads its channel."""
    run.channel = secrets.token_hex(16)
    payload = json.dumps({**job, "notebook": nbformat.writes(run.notebook), "channel": run.channel})
    worker = [sys.executable, "-I", str(Path(__file__).with_name("grade_worker.py"))]
    # a killed worker cannot remove its folder or its kernel's connection file: both go in here
    run.scratch = tempfile.mkdtemp(prefix="vgcourse-grade-")
    run.process = subprocess.Popen(
        worker,
        env={**os.environ, "TMPDIR": run.scratch},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    run.family.add(run.process.pid)
    run.started = time.monotonic()
    run.process.stdin.write(payload)
    run.process.stdin.close()
    run.reader = threading.Thread(target=_read_lines, args=(run,), daemon=True)
    run.reader.start()
    return run


def _read_lines(run: _Run) -> None:
    for line in run.process.stdout:
        if line.startswith(run.channel + " "):
            run.lines.append(line[len(run.channel) + 1 :])


def _finish(run: _Run, over: bool, timeout: float) -> Submission:
    answers: dict[str, dict] = {}
    done = None
    for line in list(run.lines):
        kind, _, payload = line.partition(" ")
        try:
            data = json.loads(payload)
        except ValueError:
            continue
        if kind == "ANSWERS" and isinstance(data, dict):
            answers.update({k: v for k, v in data.items() if isinstance(v, dict)})
        elif kind == "DONE" and isinstance(data, dict):
            done = data
    if over:
        status, note = "timeout", f"killed after the notebook's {timeout:g} s limit"
    elif done is None:
        status, note = "killed", "the grading process of this notebook was killed (by the notebook?)"
    else:
        status, note = str(done.get("status", "errors")), str(done.get("note", ""))
    rows = [
        GradeRow(run.student, run.path.name, eid, result, message)
        for eid, result, message in verdicts(run.exercises, answers)
    ]
    if not rows:
        run.flags.append("no exercise found: pass --chapter")
    return Submission(run.student, run.path.name, status, note, run.flags, rows)


def summary(submissions: list[Submission]) -> str:
    """One line per submission: score, status, a note for errors or time-outs, and flags."""
    lines = []
    for sub in submissions:
        attempted = sum(row.result != "not attempted" for row in sub.rows)
        line = (
            f"{sub.student:<24} {sub.score}/{len(sub.rows)} correct ({attempted} attempted)  [{sub.status}]"
        )
        extra = [sub.note] if sub.note else []
        extra += [f"FLAG {flag}" for flag in sub.flags]
        lines.append(line + ("  " + "; ".join(extra) if extra else ""))
    return "\n".join(lines)
