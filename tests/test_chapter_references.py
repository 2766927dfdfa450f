"""Typed chapter references agree with the chapter registry (`vgcourse.chapters`).

A chapter inserted before others (CONTRIBUTING.md, step 2) renumbers them; these tests name each
reference that then goes stale. The rules:
- book pages (book/*.md and the Markdown cells of book/*.ipynb): "chapter N" only as the text of a
  {doc} link to the chapter numbered N ({doc}`chapter 5 <residual_networks>`: the reader notebooks turn
  it into a link to the site); in a chapter, "next chapter" and "previous chapter" are such a link, or
  are followed by one, to the chapter one after or one before it, and so is a "**Next:" pointer;
- the instructor's guide's "Learning goals" name every chapter as {doc}`Chapter N: <title> <id>`, in order;
- README.md and CONTRIBUTING.md, which cannot link, name chapters without numbers;
- so do the package and the chapters' test files (tests/test_<id>*.py, tests/small_runs/<id>.py): no
  "chapter N", "exercise N.k" or "Fig. N.k" (a number shown at runtime comes from the registry:
  ``chapter(id).number``), so a chapter inserted before others renumbers nothing there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from vgcourse.chapters import CHAPTERS

ROOT = Path(__file__).resolve().parents[1]
NUMBERS = {c.id: c.number for c in CHAPTERS}

NUMBERED = re.compile(r"\b(?:[Cc]hapters?|[Cc]h\.)\s+(\d+)\b(?!\.\d)|§\s*(\d+)")  # not "chapter 2.3e-9"
NEIGHBOUR = re.compile(r"\b(next|previous)\s+chapter\b|\*\*(Next):", re.IGNORECASE)
NUMBERED_IN_CODE = re.compile(rf"{NUMBERED.pattern}|\b(?:[Ee]xercises?|Fig(?:ure)?s?\.?)\s+\d+\.\d+\b")
DOC = re.compile(r"\{doc\}`(?:[^`<]*?<(?P<target>[^<>`]+)>|(?P<page>[^`<>]+))`")  # with a text, or without


def _links(text: str) -> list[tuple[int, int, str]]:
    """(start, end, target chapter id or other page name) of each {doc} link."""
    return [(m.start(), m.end(), Path(m["target"] or m["page"]).stem) for m in DOC.finditer(text)]


def stale_references(text: str, chapter: str | None, numbers: Mapping[str, int] = NUMBERS) -> list[str]:
    """What in one book text (of ``chapter``, or of a page that is no chapter) contradicts ``numbers``."""
    links = _links(text)
    problems = []
    for match in NUMBERED.finditer(text):
        typed, words = int(match[1] or match[2]), " ".join(match[0].split())
        target = next((t for start, end, t in links if start <= match.start() < end), None)
        if target is None:
            problems.append(f"'{words}' is no link: write {{doc}}`{match[0]} <its id>`")
        elif numbers.get(target) != typed:
            problems.append(f"'{words}' links {target}, chapter {numbers.get(target)}")
    for match in NEIGHBOUR.finditer(text):
        # the link that holds the words, or the one right after them ("The next chapter, {doc}`...`")
        after = re.match(r"[\s,*]*\{doc\}", text[match.end() :])
        target = next((t for start, end, t in links if start <= match.start() < end), None)
        if target is None and after:
            target = next(
                (t for start, _, t in links if start == match.end() + after.end() - len("{doc}")), None
            )
        step = -1 if (match[1] or "").lower() == "previous" else 1
        words = " ".join(match[0].split())
        if chapter not in numbers or target is None:
            problems.append(f"'{words}' must be a link (or be followed by one) in a chapter")
        elif numbers.get(target) != numbers[chapter] + step:
            problems.append(f"'{words}' links {target}, chapter {numbers.get(target)}")
    return problems


def _book_texts() -> Iterator[tuple[str, str, str | None]]:
    """(where, Markdown text, chapter id or None) of every page and notebook Markdown cell of the book."""
    for page in sorted((ROOT / "book").glob("*.md")):
        yield f"book/{page.name}", page.read_text(), None
    for notebook in sorted((ROOT / "book").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(notebook.read_text())["cells"]):
            if cell["cell_type"] == "markdown":
                yield f"book/{notebook.name}, cell {i}", "".join(cell["source"]), notebook.stem


def test_chapter_numbers_in_the_book_link_the_chapter_they_name() -> None:
    found = [
        f"{where}: {p}" for where, text, chapter in _book_texts() for p in stale_references(text, chapter)
    ]
    assert not found, (
        "typed chapter references disagree with the registry (vgcourse/chapters.py):\n" + "\n".join(found)
    )


def test_the_instructors_guide_states_every_chapters_learning_goals_by_number_and_title() -> None:
    guide = (ROOT / "book" / "instructors_guide.md").read_text()
    section = re.search(r"^## Learning goals\n(.*?)(?=^## |\Z)", guide, re.MULTILINE | re.DOTALL)
    assert section, "book/instructors_guide.md has no '## Learning goals' section"
    terms = re.findall(r"^(\S.*)\n: ", section[1], re.MULTILINE)  # a definition list: "term\n: goals"
    registered = [f"{{doc}}`Chapter {c.number}: {c.title} <{c.id}>`" for c in CHAPTERS]
    assert terms == registered, (
        "book/instructors_guide.md's 'Learning goals' must name each registered chapter, in reading order, "
        f"as a term {{doc}}`Chapter N: <title> <id>`; found {terms}, expected {registered}"
    )


def test_readme_and_contributing_name_chapters_without_numbers() -> None:
    found = [
        f"{name}: '{m[0]}'"
        for name in ("README.md", "CONTRIBUTING.md")
        for m in NUMBERED.finditer((ROOT / name).read_text())
    ]
    assert not found, (
        f"name the chapter (or its id) instead of its number, which a new chapter changes: {found}"
    )


def test_the_package_and_chapter_tests_write_no_chapter_numbers() -> None:
    files = sorted((ROOT / "vgcourse").rglob("*.py"))
    for c in CHAPTERS:
        files += [ROOT / "tests" / f"test_{c.id}.py", *sorted((ROOT / "tests").glob(f"test_{c.id}_*.py"))]
        files += [ROOT / "tests" / "small_runs" / f"{c.id}.py"]
    found = [
        f"{path.relative_to(ROOT).as_posix()}: '{' '.join(m[0].split())}'"
        for path in files
        if path.is_file()
        for m in NUMBERED_IN_CODE.finditer(path.read_text())
    ]
    assert not found, (
        'name the chapter ("the linear-chain chapter", an exercise by its id), not its number, which a '
        "chapter inserted before it changes; a number shown at runtime comes from chapter(id).number:\n"
        + "\n".join(found)
    )


def test_stale_references_names_each_kind_of_stale_reference() -> None:
    numbers = {"a": 1, "b": 2, "c": 3}
    ok = "{doc}`chapter 2 <b>`'s path; the {doc}`previous chapter <a>`; The next chapter, {doc}`C <c>`"
    ok += "; **Next: {doc}`c <c>`.** The {doc}`next chapter <c>`, the next chapter, {doc}`c`"
    assert stale_references(ok, "b", numbers) == []
    assert stale_references("a chapter 2.3e-9 value and chapters of the course", None, numbers) == []
    assert stale_references("as chapter 2 did", "c", numbers) == [
        "'chapter 2' is no link: write {doc}`chapter 2 <its id>`"
    ]
    assert stale_references("{doc}`chapter 3 <b>`", "c", numbers) == ["'chapter 3' links b, chapter 2"]
    assert stale_references("the {doc}`next chapter <a>`", "b", numbers) == [
        "'next chapter' links a, chapter 1"
    ]
    assert stale_references("**Next: {doc}`b <b>`.**", "a", numbers) == []
    assert stale_references("**Next: {doc}`c <c>`.**", "a", numbers) == ["'**Next:' links c, chapter 3"]
    assert stale_references("the previous chapter showed", "b", numbers) == [
        "'previous chapter' must be a link (or be followed by one) in a chapter"
    ]


def test_numbers_in_code_are_found_in_each_form() -> None:
    code = '"""Figures of chapter 3."""  # Ch. 2, §4, exercises 8.1-8.2, Fig. 3.2, Figure 1.1'
    found = [" ".join(m[0].split()) for m in NUMBERED_IN_CODE.finditer(code)]
    assert found == ["chapter 3", "Ch. 2", "§4", "exercises 8.1", "Fig. 3.2", "Figure 1.1"]
    names = "the linear-chain chapter, chapter(id).number, chapter 2.3e-9, exercise rescue_post_ln, Fig. 7"
    assert not NUMBERED_IN_CODE.search(names)
