"""Contracts every chapter keeps, read from the chapter registry (`vgcourse.chapters`).

The registry is the one place that names the chapters: the toc's numbered part, the notebooks' titles,
``diagnose``'s chapter links, exercise registration and explorer discovery must all agree with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from book_toc import numbered_chapters

from vgcourse import chapters
from vgcourse.chapters import CHAPTERS, LAYERS, chapter, chapter_ids, has_module

ROOT = Path(__file__).resolve().parents[1]


def _first_heading(notebook: Path) -> str:
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    raise AssertionError(f"{notebook} has no '# ' heading")


# ----------------------------------------------------------------------------------------------------
# The registry itself


def test_the_toc_numbers_exactly_the_registered_chapters_in_order() -> None:
    assert numbered_chapters() == [c.notebook for c in CHAPTERS]


def test_numbers_are_reading_order_and_ids_are_unique() -> None:
    assert [c.number for c in CHAPTERS] == list(range(1, len(CHAPTERS) + 1))
    assert len(set(chapter_ids())) == len(CHAPTERS)


@pytest.mark.parametrize("entry", CHAPTERS, ids=chapter_ids())
def test_each_chapter_notebook_exists_and_carries_the_registered_title(entry: chapters.Chapter) -> None:
    notebook = ROOT / f"{entry.notebook}.ipynb"
    assert notebook.is_file()
    assert _first_heading(notebook) == entry.title


def test_lookups_name_the_valid_choices() -> None:
    assert chapter("initialization").number == 4
    with pytest.raises(ValueError, match="linear_chain"):
        chapter("no_such_chapter")
    with pytest.raises(ValueError, match="experiments"):
        chapter("linear_chain").module("widgets")
    assert chapter("linear_chain").module("plots") == "vgcourse.plots.linear_chain"
    assert has_module("linear_chain", "experiments") and set(LAYERS) >= {"experiments", "exercises"}


def test_diagnose_links_every_registered_chapter_by_its_title() -> None:
    from vgcourse.diagnose import CHAPTERS as LINKS

    assert LINKS == {c.id: c.title for c in CHAPTERS}


def test_exercises_register_every_chapter_module_that_exists() -> None:
    import vgcourse.exercises as exercises

    present = [c.id for c in CHAPTERS if has_module(c.id, "exercises")]
    assert list(exercises.CHAPTER_MODULES) == present
    assert {e.chapter for e in exercises.EXERCISES.values()} <= set(chapter_ids())


def test_explorer_discovery_follows_the_registry() -> None:
    from vgcourse.explorers import explorer_functions

    found = list(dict.fromkeys(label.split(".")[0] for label in explorer_functions()))
    assert found == [c.id for c in CHAPTERS if has_module(c.id, "explorers")]
