"""Reader notebooks without a book build: every chapter's prose converts to plain Markdown.

tests/test_reader_notebooks.py checks the reader notebooks a book build writes, with the page's numbers.
These tests run in `make pytest-unbuilt` with a stand-in for every glued value, so that prose the converter
cannot handle fails before the book is built.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import nbformat
import pytest
from myst_text import raw_myst

from vgcourse.chapters import chapter as registered
from vgcourse.reader_notebooks import site_of, to_plain_markdown, write_reader_notebooks

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))
URL = "https://example.org/course/"
PAGE = URL + "book/"
REFS = PAGE + "references.html"


class StandInGlue(Mapping[str, Mapping[str, Any]]):
    """Every key glued as the number 1, which each format the chapters give glue:text takes (d, .2f, .0%)."""

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        return {"data": {"text/plain": "1", "text/markdown": "1"}, "metadata": {}}

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


@pytest.fixture(scope="module")
def site():
    return site_of(ROOT / "book", URL)


# Roles, links and code spans that wrap over lines within a paragraph, as MyST and CommonMark allow.
WRAPPED = """\
For teaching, {doc}`the instructor's
guide <instructors_guide>` follows {doc}`the ReLU chapter
<relu_dying_units>`, as {ref}`the placement
section <res-relu-placement>` and {numref}`Section %s
<res-shattered>` say {cite:p}`he2016identity,
glorot2010understanding`; {cite:t}`kingma2015adam` found {math}`\\sigma'(0) =
1/4` for {abbr}`SGD (stochastic
gradient descent)` and {term}`the
gradient <gradient>`, ratio {glue:text}`ratio:.2f`.
See the [set-up
page](
running.md#data) and [the chapter on
{doc}`relu_dying_units`](relu_dying_units.ipynb). A code span ``{doc}`the
guide <x>` stays`` verbatim, then {glue:text}`steps:d` steps.

- an item with {doc}`the
  introduction <intro>`
- the next item, `code` and {glue:text}`ratio:.1f`

```{note}
A note on {doc}`the setup
page <running>`.
```
"""


def test_roles_and_links_that_wrap_are_converted(site) -> None:
    glue = {
        "ratio": {"data": {"text/plain": "0.36603"}, "metadata": {}},
        "steps": {"data": {"text/plain": "1500"}, "metadata": {}},
    }
    text = to_plain_markdown(WRAPPED, glue, site, "book/linear_chain")
    assert raw_myst(WRAPPED) != [] and raw_myst(text) == [], text
    expected = [
        f"For teaching, [the instructor's guide]({PAGE}instructors_guide.html) follows "
        f"[the ReLU chapter]({PAGE}relu_dying_units.html), as "
        f"[the placement section]({PAGE}residual_networks.html#res-relu-placement) and "
        f"[Section]({PAGE}residual_networks.html#res-shattered) say "
        f"[[Glorot and Bengio, 2010]({REFS}), [He et al., 2016]({REFS})]; Kingma and Ba [[2015]({REFS})] "
        "found $\\sigma'(0) = 1/4$ for SGD and the gradient, ratio 0.37.",
        f"See the [set-up\npage]({PAGE}running.html#data) and [the chapter on\n"
        f"[ReLU and dying units]({PAGE}relu_dying_units.html)]({PAGE}relu_dying_units.html)",
        "A code span ``{doc}`the\nguide <x>` stays`` verbatim, then 1500 steps.",
        f"- an item with [the introduction]({PAGE}intro.html)\n- the next item, `code` and 0.4",
        f"> **Note:** A note on [the setup page]({PAGE}running.html).",
    ]
    for piece in expected:
        assert piece in text, f"missing from the conversion: {piece!r}\n---\n{text}"


def test_a_role_does_not_wrap_over_a_paragraphs_end(site) -> None:
    # Neither MyST nor the converter reads a role across a blank line, a fence, a heading or a comment line
    # (which a reader notebook drops): the page shows these raw too.
    for end in ("\n", "```\ncode\n```", "## A heading", "- a list item", "% a comment"):
        cell = f"{{doc}}`the\n{end}\nguide <intro>`"
        text = to_plain_markdown(cell, {}, site, "book/linear_chain")
        assert text == cell.replace("% a comment\n", "") and raw_myst(text) != []


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapters_prose_converts_with_stand_in_glue(chapter: Path, site) -> None:
    cells = nbformat.read(chapter, as_version=4).cells
    for cell in (c for c in cells if c.cell_type == "markdown"):
        text = to_plain_markdown(cell.source, StandInGlue(), site, f"book/{chapter.stem}")
        assert raw_myst(text) == [], f"{chapter.name}: raw MyST left in\n{text}"
        # every {numref} of a figure became its number (tests/test_reader_notebooks.py: the site's)
        shown = re.sub(r"\]\([^()\s]*\)", "]", text)
        assert "fig-" not in shown, f"{chapter.name}: a figure label left in\n{text}"
        numbers = re.findall(r"\[Fig\. (\d+)\.\d+\]\(", text)
        assert numbers.count(str(registered(chapter.stem).number)) == len(numbers), text


def _cell(
    source: str, caption: str = "", name: str = "", tags: tuple[str, ...] = ()
) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata = {"mystnb": {"figure": {"caption": caption, "name": name}}, "tags": list(tags)}
    return cell


# Which nodes Sphinx numbers (numfig): figures with a caption, in document order, "<chapter>.<k>".
TOY = [
    _cell("plot()", caption="Numbered first.", name="fig-a"),
    _cell("plot()", name="fig-no-caption"),
    nbformat.v4.new_markdown_cell("```{figure} a.png\n:name: fig-b\n:alt: words\n\nA caption.\n```"),
    nbformat.v4.new_markdown_cell(
        ":::{note}\n```{glue:figure} key\n:name: fig-c\nGlued, in a note.\n```\n:::"
    ),
    nbformat.v4.new_markdown_cell("```{figure} b.png\n:name: fig-bare\n```\n\n```python\nfigure = 1\n```"),
    _cell("plot()", caption="Removed.", name="fig-removed", tags=("remove-output",)),
    _cell("plot()", caption="Numbered fourth.", name="fig-d", tags=("hide-input",)),
]


def test_figures_are_numbered_as_sphinx_numbers_them(tmp_path: Path) -> None:
    book = tmp_path / "book"
    book.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=TOY), book / "sigmoid_bound.ipynb")  # chapter 2
    site = site_of(book, URL)
    assert site.figures == {f"fig-{x}": ("book/sigmoid_bound", f"2.{k}") for k, x in enumerate("abcd", 1)}
    text = to_plain_markdown(
        "{numref}`fig-d`, {numref}`Figure %s <fig-b>` and {numref}`the {number}\nfigure <fig-a>`; "
        "{numref}`fig-c` from {doc}`intro`",
        {},
        site,
        "book/intro",
    )
    assert text == (
        f"[Fig. 2.4]({PAGE}sigmoid_bound.html#fig-d), [Figure 2.2]({PAGE}sigmoid_bound.html#fig-b) and "
        f"[the 2.1 figure]({PAGE}sigmoid_bound.html#fig-a); [Fig. 2.3]({PAGE}sigmoid_bound.html#fig-c) "
        f"from [intro]({PAGE}intro.html)"
    )
    # A page outside the numbered chapters would number its figures differently: named, not guessed.
    (book / "intro.md").write_text("# Intro\n\n```{figure} a.png\nA caption.\n```\n")
    with pytest.raises(ValueError, match="outside a chapter"):
        site_of(book, URL)


def test_a_figure_cell_must_show_one_figure(tmp_path: Path) -> None:
    # Sphinx numbers each output of a figure cell; a cell that shows two would shift the numbers after it.
    book, executed_dir = tmp_path / "book", tmp_path / "_build" / "jupyter_execute" / "book"
    book.mkdir()
    executed_dir.mkdir(parents=True)
    chapter = nbformat.v4.new_notebook(cells=[_cell("plot()", caption="Two panels.", name="fig-a")])
    nbformat.write(chapter, book / "linear_chain.ipynb")
    figure = nbformat.v4.new_output(
        "display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}
    )
    glued = nbformat.v4.new_output("display_data", data={"application/papermill.record/text/plain": "1"})
    glued.metadata = {"scrapbook": {"name": "key", "mime_prefix": "application/papermill.record/"}}
    chapter.cells[0].outputs = [figure, glued]  # glue is not shown
    nbformat.write(chapter, executed_dir / "linear_chain.ipynb")
    write_reader_notebooks(book, tmp_path / "_build", tmp_path / "out", URL)
    chapter.cells[0].outputs = [figure, figure]
    nbformat.write(chapter, executed_dir / "linear_chain.ipynb")
    with pytest.raises(ValueError, match="shows 2 outputs"):
        write_reader_notebooks(book, tmp_path / "_build", tmp_path / "out", URL)
