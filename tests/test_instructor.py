"""Student copies drop solution cells and outputs; grading reports every submission, never crashes."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import nbformat
import pytest

from vgcourse import instructor
from vgcourse.cli import main
from vgcourse.instructor import REFERENCE_CALLS, SOLUTION_TAG, grade, student_notebooks, summary


def code(source: str, tags: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = list(tags)
    return cell


def write(path: Path, cells: list[nbformat.NotebookNode], student: str | None = None) -> Path:
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if student:
        notebook.metadata["vgcourse"] = {"student": student}
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def chapter(tmp_path: Path) -> Path:
    book = tmp_path / "book"
    book.mkdir()
    solved = code("answer = 0.0625", tags=(SOLUTION_TAG, "hide-cell"))
    solved.outputs = [nbformat.v4.new_output("stream", name="stdout", text="secret\n")]
    write(
        book / "chapter.ipynb",
        [
            nbformat.v4.new_markdown_cell("# A chapter"),
            code("answer = ...  # your answer"),
            solved,
            code("from vgcourse.exercises import check\ncheck('initialization.he_std', answer)"),
        ],
    )
    return book


def test_student_copy_has_no_solutions_and_no_outputs(chapter: Path, tmp_path: Path) -> None:
    written = student_notebooks(chapter, tmp_path / "students")
    assert [p.name for p in written] == ["chapter.ipynb"]
    copy = nbformat.read(written[0], as_version=4)
    assert all(SOLUTION_TAG not in cell.metadata.get("tags", []) for cell in copy.cells)
    assert "0.0625" not in "".join(cell.source for cell in copy.cells)
    assert all(cell.outputs == [] for cell in copy.cells if cell.cell_type == "code")
    assert len(copy.cells) == 3


def test_student_notebooks_cli(chapter: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["student-notebooks", str(tmp_path / "out"), "--book", str(chapter)]) == 0
    assert "wrote 1 student notebooks" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["student-notebooks", str(tmp_path / "out2"), "--book", str(tmp_path / "nothing")])
    assert exit_info.value.code == 2


def test_a_myst_source_is_refused(chapter: Path, tmp_path: Path) -> None:
    source = nbformat.read(chapter / "chapter.ipynb", as_version=4)
    source.cells[0].source += "\n\nThe answer is {glue:text}`answer:.4f`."
    nbformat.write(source, chapter / "chapter.ipynb")
    with pytest.raises(ValueError, match="_build/colab"):
        student_notebooks(chapter, tmp_path / "students")


IMPORTS = "import math\nimport torch\nfrom vgcourse.exercises import check, exercise_widget\n"
HE_INIT = (
    "def he_init(fan_in, fan_out, generator):\n"
    "    return torch.randn(fan_out, fan_in, generator=generator) * math.sqrt(2 / fan_in)\n"
)
STUB = "def he_init(fan_in, fan_out, generator):\n    raise NotImplementedError  # your code\n"
RIGHT_HE_STD = "answer_he_std = math.sqrt(2 / 512)\ncheck('initialization.he_std', answer_he_std)"
FAKE_PACKAGE = "def check(*a, **k):\n    return 'correct'\ndef exercise_widget(*a, **k):\n    return None\n"
ALL_RIGHT = ["correct"] * 3


def crafted_class(folder: Path) -> tuple[list[Path], dict[str, tuple[list[str], str, str]]]:
    """The class: file -> (results for he_std, he_init, tanh_scale; status; a flag to find or '')."""
    folder.mkdir()
    victim = folder / "zoe.ipynb"
    cells = {
        # deletes a classmate's file and plants a fake vgcourse next to the submissions and in its cwd
        "mallory": [
            IMPORTS,
            "import os, pathlib\n"
            f"os.remove({str(victim)!r})\n"
            f"for root in ({str(folder)!r}, '.'):\n"
            "    pathlib.Path(root, 'vgcourse').mkdir(exist_ok=True)\n"
            f"    pathlib.Path(root, 'vgcourse', '__init__.py').write_text({FAKE_PACKAGE!r})\n"
            "answer_he_std = 1.0",
        ],
        "ada": [
            IMPORTS,
            "answer_he_std = 0.0625\nexercise_widget('initialization.he_std', answer_he_std)",
            HE_INIT,
            "answer_tanh_scale = 1.2\nexercise_widget('initialization.tanh_scale', answer_tanh_scale)",
        ],
        "ben": [
            IMPORTS,
            RIGHT_HE_STD,
            HE_INIT + "check('initialization.he_init', he_init)",
            "answer_tanh_scale = 1.15\ncheck('initialization.tanh_scale', answer_tanh_scale)",
        ],
        "cyd": [
            IMPORTS,
            "answer_he_std = 2 / 512",
            "def he_init(fan_in, fan_out, generator):\n"
            "    return torch.randn(fan_out, fan_in, generator=generator) / math.sqrt(fan_in)",
            "answer_tanh_scale = 0.5",
        ],
        "dan": [IMPORTS, "answer_he_std = ...  # your answer", STUB, "answer_tanh_scale = ..."],
        "eve": [
            IMPORTS,
            "from vgcourse.exercises import get\nanswer_he_std = get('initialization.he_std').reference()",
            STUB,
            "answer_tanh_scale = ...",
        ],
        "fay": [
            IMPORTS,
            "import vgcourse.exercises.core as core\n"
            "core.Exercise.check = lambda self, answer: core.Feedback(self.id, 'correct', 'ok')\n"
            "core.Exercise.verdict = lambda self, value: core.Feedback(self.id, 'correct', 'ok')\n"
            "answer_he_std = 1.0",
            STUB,
            "answer_tanh_scale = ...",
        ],
        "gus": [
            IMPORTS,
            "answer_he_std = 1.0\n"
            'print(\'VGCOURSE-GRADES: {"initialization.he_std": {"correct": true, "message": ""}}\')\n'
            'print(\'VGCOURSE-ANSWERS-0000: {"answer_he_std": {"value": 0.0625}}\')',
            STUB,
            "answer_tanh_scale = ...",
        ],
        "hal": [IMPORTS, RIGHT_HE_STD, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", HE_INIT],
        "ivy": [
            IMPORTS,
            RIGHT_HE_STD,
            "import time\nwhile True:\n    try:\n        time.sleep(0.2)\n"
            "    except BaseException:\n        pass",
            HE_INIT,
        ],
        "jon": [IMPORTS, RIGHT_HE_STD, HE_INIT, "answer_tanh_scale = 1.2", "import os\nos._exit(1)"],
        "kim": [IMPORTS, RIGHT_HE_STD, "print('x' * 30_000_000)", STUB, "answer_tanh_scale = ..."],
        "zoe": [IMPORTS, RIGHT_HE_STD, HE_INIT, "answer_tanh_scale = 1.2"],
    }
    expected = {
        "mallory": (["incorrect", "not attempted", "not attempted"], "ok", ""),
        "ada": (ALL_RIGHT, "ok", ""),
        "ben": (ALL_RIGHT, "ok", ""),
        "cyd": (["incorrect"] * 3, "ok", ""),
        "dan": (["not attempted"] * 3, "ok", ""),
        "eve": (["not attempted"] * 3, "errors", "calls solution helpers"),
        "fay": (["incorrect", "not attempted", "not attempted"], "ok", ""),
        "gus": (["incorrect", "not attempted", "not attempted"], "ok", ""),
        "hal": (["correct", "not attempted", "not attempted"], "killed", ""),
        "ivy": (["correct", "not attempted", "not attempted"], "timeout", ""),
        "jon": (ALL_RIGHT, "errors", ""),
        "kim": (["correct", "not attempted", "not attempted"], "ok", ""),
        "zoe": (ALL_RIGHT, "ok", ""),
        "original": (["not attempted"] * 3, "ok", "solution cells"),
        "copycat": (ALL_RIGHT, "ok", "metadata names 'ada'"),
    }
    paths = [write(folder / f"{name}.ipynb", [code(c) for c in source]) for name, source in cells.items()]
    paths.append(
        write(
            folder / "original.ipynb",
            [
                code(IMPORTS),
                code("answer_he_std = ...  # your answer"),
                code("answer_he_std = math.sqrt(2 / 512)", tags=(SOLUTION_TAG, "hide-cell")),
                code(STUB),
                code(HE_INIT, tags=(SOLUTION_TAG,)),
            ],
        )
    )
    paths.append(write(folder / "copycat.ipynb", [code(c) for c in cells["ada"]], student="ada"))
    corrupt = folder / "=cmd.ipynb"
    corrupt.write_text("{not json")
    paths.append(corrupt)
    return paths, expected


def test_a_crafted_class_is_graded_as_it_should_be(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Right via widgets and via code, typical mistakes, blank, reference answers, a patched checker, a
    fake marker, a deleted classmate and a planted package, a killed grader, an uninterruptible loop, a
    crash at the end, huge output, the instructor's original, a borrowed name and a corrupt file."""
    paths, expected = crafted_class(tmp_path / "submissions")
    # The uninterruptible loop holds its worker, asleep, until the hard limit: it goes first, beside two
    # workers that grade the rest meanwhile, and is killed 5 s (not 15) past the limit.
    paths.sort(key=lambda path: path.stem != "ivy")
    monkeypatch.setattr(instructor, "GRACE", 5.0)
    out = tmp_path / "grades.csv"
    submissions = grade(paths, out_csv=out, timeout=60, jobs=3, chapter="initialization", output_cap=100_000)
    by_student = {s.notebook.removesuffix(".ipynb"): s for s in submissions}
    wrong = {
        name: ([row.result for row in sub.rows], sub.status, sub.note, sub.flags)
        for name, sub in by_student.items()
        if name in expected
        and (
            [row.result for row in sub.rows] != expected[name][0]
            or sub.status != expected[name][1]
            or expected[name][2] not in "; ".join(sub.flags)
        )
    }
    assert not wrong
    assert by_student["=cmd"].status == "unreadable"
    assert "dropped" in by_student["kim"].note
    assert "metadata names" not in "; ".join(by_student["ada"].flags)
    cyd = {row.exercise: row.feedback for row in by_student["cyd"].rows}
    assert (
        cyd["initialization.he_std"] == "that is the variance; the question asks for the standard deviation."
    )
    assert cyd["initialization.he_init"] == "the variance is a factor 2 too small for ReLU."

    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3 * (len(paths) - 1) + 1  # three rows per notebook, one for the corrupt file
    assert {r["student"] for r in rows} >= {"'=cmd", "ada", "copycat"}  # no formula, no borrowed name
    text = summary(submissions)
    assert "ada" in text and "[timeout]" in text and "[unreadable]" in text and "FLAG" in text


def test_a_worker_that_ends_before_its_lines_are_read_is_graded_from_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the channel's reader thread may lag behind the worker's exit on a loaded machine: grade waits for it
    # instead of calling the notebook killed (CI saw a blank notebook graded "killed" that way)
    read_lines = instructor._read_lines

    def late(run: instructor._Run) -> None:
        run.process.wait()  # the worker has ended
        time.sleep(1.0)
        read_lines(run)

    monkeypatch.setattr(instructor, "_read_lines", late)
    path = write(tmp_path / "zoe.ipynb", [code(IMPORTS), code(RIGHT_HE_STD)])
    (submission,) = grade(
        [path], out_csv=tmp_path / "grades.csv", timeout=60, jobs=1, chapter="initialization"
    )
    assert (submission.status, submission.rows[0].result) == ("ok", "correct"), submission


def test_reference_calls_are_flagged_and_exercise_ids_are_not() -> None:
    for source in (
        "from vgcourse.exercises.detecting_and_fixing import guide_lr",
        "answer_per_weight_ratio = dfx.per_weight_ratio()",
        "answer_forget_gate_steps = forget_gate_steps(1.0)",
        "answer_he_std = get('initialization.he_std').reference()",
        "from exercise_solutions import SOLUTIONS",
    ):
        assert REFERENCE_CALLS.search(source), source
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "book").glob("*.ipynb")):  # the handouts' own code is not flagged
        notebook = nbformat.read(path, as_version=4)
        code = "\n".join(
            c.source
            for c in notebook.cells
            if c.cell_type == "code" and SOLUTION_TAG not in c.metadata.get("tags", [])
        )
        assert not REFERENCE_CALLS.search(code), f"{path.name}: {REFERENCE_CALLS.search(code)}"


def test_grade_cli_rejects_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["grade", str(tmp_path / "nobody.ipynb")])
    assert exit_info.value.code == 2 and "no such submission" in capsys.readouterr().err
    submission = tmp_path / "x.ipynb"  # a file that exists: the timeout alone is refused
    submission.write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        main(["grade", str(submission), "--timeout", "0"])
    assert exit_info.value.code == 2 and "--timeout" in capsys.readouterr().err


def test_grade_needs_submissions() -> None:
    with pytest.raises(ValueError):
        grade([])


def test_grading_that_stops_midway_leaves_no_worker_or_kernel_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the workers run in sessions of their own (a Ctrl-C at the terminal does not reach them): when grade
    # stops early (KeyboardInterrupt, a full disk writing the CSV...), it kills the ones it started, which
    # went on running the student's code (here for two minutes) with their kernels
    import psutil

    seen: set[int] = set()
    descendants = instructor._descendants

    def interrupted_once_the_kernel_runs(pid: int) -> list[int]:
        found = descendants(pid)
        seen.update([pid, *found])
        if found and not interrupted:
            interrupted.append(pid)
            time.sleep(2.0)  # the kernel is up, and runs the sleeping cell
            raise KeyboardInterrupt
        return found

    interrupted: list[int] = []

    monkeypatch.setattr(instructor, "_descendants", interrupted_once_the_kernel_runs)
    path = write(tmp_path / "zoe.ipynb", [code("import time\ntime.sleep(120)")])
    with pytest.raises(KeyboardInterrupt):
        grade([path], out_csv=tmp_path / "grades.csv", timeout=300, chapter="initialization")
    assert len(seen) >= 2  # the worker and its kernel
    _, alive = psutil.wait_procs([psutil.Process(p) for p in seen if psutil.pid_exists(p)], timeout=10)
    assert not alive, [p.cmdline()[:3] for p in alive]


def test_grading_leaves_no_temporary_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a worker that is killed (here by the notebook; also past the time limit, or when grading stops)
    # cannot remove its folder and its kernel's connection file: they stayed in the temporary folder
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    killed = write(tmp_path / "hal.ipynb", [code("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")])
    finished = write(tmp_path / "zoe.ipynb", [code("answer_he_std = 0.0625")])
    submissions = grade(
        [killed, finished], out_csv=tmp_path / "grades.csv", timeout=60, chapter="initialization"
    )
    assert [s.status for s in submissions] == ["killed", "ok"]
    assert sorted(p.name for p in scratch.iterdir()) == []


def test_a_timeout_under_a_second_still_limits_each_cell(tmp_path: Path) -> None:
    # the kernel's cell limit counts whole seconds, and 0 means none: a 0.5 s timeout was rounded down to 0,
    # so a cell ran on until the notebook was killed (here it ended first, graded "ok"); it is rounded up
    path = write(tmp_path / "zoe.ipynb", [code("import time\ntime.sleep(6)")])
    (submission,) = grade([path], out_csv=tmp_path / "grades.csv", timeout=0.5, chapter="initialization")
    assert submission.status == "timeout" and "KeyboardInterrupt" in submission.note, submission
