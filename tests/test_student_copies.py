"""Student copies (`vgcourse student-notebooks`) hold no solution and no stale word about one.

The copies are made twice: from the chapter sources with each glue role replaced by a placeholder
(always, no build needed), and from the reader notebooks of the built book (`make book` writes
_build/colab; skipped when the book is not built, VGCOURSE_BUILD_DIR picks another build). In both,
no cell is a solution cell or has outputs, every answer variable is left for the student (``answer_x =
...``, a function that raises NotImplementedError), and no prose has a glue role or says a solution is
hidden, folded or below.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

from vgcourse.chapters import CHAPTERS as REGISTRY
from vgcourse.exercises import EXERCISES
from vgcourse.instructor import GLUE_ROLE, SOLUTION_TAG, student_notebooks

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("VGCOURSE_BUILD_DIR") or ROOT / "_build")
CHAPTERS = [ROOT / f"{c.notebook}.ipynb" for c in REGISTRY]
STALE = re.compile(r"solution[^.]*\b(hidden|folded|below|follows)\b|\bfolded away\b", re.IGNORECASE)
GLUE = re.compile(GLUE_ROLE.pattern + r"[^`]*`")


def assert_no_solution(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    variables = {e.variable: e for e in EXERCISES.values()}
    asked = set()
    for cell in notebook.cells:
        assert SOLUTION_TAG not in cell.metadata.get("tags", []), f"{path.name}: a solution cell"
        if cell.cell_type == "markdown":
            stale = STALE.search(cell.source)
            assert stale is None, f"{path.name}: stale phrase {stale.group(0)!r}"
            assert "{glue" not in cell.source, f"{path.name}: a glue role is left"
            continue
        assert cell.outputs == [], f"{path.name}: an output is left"
        assert not cell.source.lstrip().startswith("# Solution"), f"{path.name}: {cell.source[:80]!r}"
        for variable, exercise in variables.items():
            if exercise.kind == "function":
                found = re.search(rf"^def {variable}\(.*?(?=^\S|\Z)", cell.source, re.M | re.S)
                if found:
                    assert "raise NotImplementedError" in found.group(0), (
                        f"{path.name}: {variable} is written"
                    )
                    asked.add(variable)
            for value in re.findall(rf"^{variable}\s*=\s*(.*)$", cell.source, re.M):
                assert value.split("#")[0].strip() == "...", f"{path.name}: {variable} = {value}"
                asked.add(variable)
    chapter = path.stem
    expected = {e.variable for e in EXERCISES.values() if e.chapter == chapter}
    assert asked == expected, f"{path.name}: answer cells for {sorted(asked)}, exercises {sorted(expected)}"


def test_copies_of_the_sources_hold_no_solution(tmp_path: Path) -> None:
    readers = tmp_path / "readers"
    readers.mkdir()
    for chapter in CHAPTERS:
        notebook = nbformat.read(chapter, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "markdown":
                cell.source = GLUE.sub("N", cell.source)
        nbformat.write(notebook, readers / chapter.name)
    written = student_notebooks(readers, tmp_path / "copies")
    assert sorted(p.name for p in written) == sorted(c.name for c in CHAPTERS)
    for path in written:
        assert_no_solution(path)


def test_copies_of_the_built_reader_notebooks_hold_no_solution(tmp_path: Path) -> None:
    readers = BUILD / "colab"
    missing = [c.stem for c in CHAPTERS if not (BUILD / "html" / "book" / f"{c.stem}.html").exists()]
    if missing:
        pytest.skip(f"the book is not built (no page for {', '.join(missing)}): run `make book`")
    written = student_notebooks(readers, tmp_path / "copies")
    assert sorted(p.name for p in written) == sorted(c.name for c in CHAPTERS)
    for path in written:
        assert_no_solution(path)
