"""Student copies drop solution cells and outputs; grading reports every submission, never crashes."""

from __future__ import annotations

import csv
from pathlib import Path

import nbformat
import pytest

from vgcourse.cli import main
from vgcourse.instructor import SOLUTION_TAG, grade, student_notebooks, summary


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


def test_student_copies_of_the_real_book(tmp_path: Path) -> None:
    """Made from the reader notebooks of the built book (make test builds it first)."""
    root = Path(__file__).resolve().parents[1]
    readers = root / "_build" / "colab"
    if not list(readers.glob("*.ipynb")):
        pytest.skip("the book is not built: run `make book` (it writes _build/colab)")
    written = student_notebooks(readers, tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in (root / "book").glob("*.ipynb"))
    for path in written:
        copy = nbformat.read(path, as_version=4)
        assert all(SOLUTION_TAG not in cell.metadata.get("tags", []) for cell in copy.cells)
        assert all(cell.outputs == [] for cell in copy.cells if cell.cell_type == "code")
        prose = "".join(cell.source for cell in copy.cells if cell.cell_type == "markdown")
        assert "{glue" not in prose, f"{path.name}: a glue role is left in the student copy"


def test_grading_reports_right_wrong_missing_errors_timeouts_and_corrupt_files(tmp_path: Path) -> None:
    check = "from vgcourse.exercises import check\n"
    good = write(
        tmp_path / "ada.ipynb",
        [code(check + "check('initialization.he_std', 2 ** -4)\ncheck('sigmoid_bound.max_derivative', 0.5)")],
    )
    broken = write(
        tmp_path / "bob.ipynb",
        [code("1 / 0"), code(check + "check('initialization.he_std', 2 / 512)")],
        student="Bob B.",
    )
    slow = write(tmp_path / "cyd.ipynb", [code("import time\nwhile True:\n    time.sleep(0.1)")])
    corrupt = tmp_path / "dan.ipynb"
    corrupt.write_text("{not json")
    out = tmp_path / "grades.csv"
    submissions = grade([good, broken, slow, corrupt], out_csv=out, timeout=5)

    by_student = {s.student: s for s in submissions}
    assert by_student["ada"].status == "ok" and by_student["ada"].score == 1
    assert by_student["Bob B."].status == "errors" and "ZeroDivisionError" in by_student["Bob B."].note
    assert by_student["cyd"].status == "timeout"
    assert by_student["dan"].status == "unreadable"

    rows = list(csv.DictReader(out.open()))
    ada = {r["exercise"]: r["result"] for r in rows if r["student"] == "ada"}
    assert ada == {"initialization.he_std": "correct", "sigmoid_bound.max_derivative": "incorrect"}
    bob = [r for r in rows if r["student"] == "Bob B."]
    assert [(r["exercise"], r["result"]) for r in bob] == [("initialization.he_std", "incorrect")]
    assert bob[0]["feedback"] == "that is the variance; the question asks for the standard deviation."
    assert {r["status"] for r in rows if r["student"] == "dan"} == {"unreadable"}
    text = summary(submissions)
    assert "ada" in text and "[timeout]" in text and "[unreadable]" in text


def test_grade_cli_rejects_missing_files(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["grade", str(tmp_path / "nobody.ipynb")])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["grade", "x.ipynb", "--timeout", "0"])


def test_grade_needs_submissions() -> None:
    with pytest.raises(ValueError):
        grade([])
