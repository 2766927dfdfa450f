"""Reader notebooks: the chapters for Colab and Jupyter have the page's numbers and no raw MyST.

The first tests convert a fixture that holds every MyST construct the chapters use (a test checks
that it does; glue:text values are formatted by myst-nb's own function). The last ones read a built
book (`make book` writes _build/html and _build/colab; `make test` builds it before the tests; set
VGCOURSE_BUILD_DIR to check another build folder): every chapter has a reader notebook with no raw
MyST, and the numbers the page shows for its glue keys, in the page's order, are the ones written
into the reader notebook's prose; every figure has the number the page gives it, and every {numref} of a
figure reads as the page's link does.
"""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from myst_text import ROLE, raw_myst

from vgcourse.reader_notebooks import (
    Citation,
    Site,
    format_glue_text,
    glue_values,
    reader_notebook,
    site_of,
    to_plain_markdown,
    write_reader_notebooks,
)

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("VGCOURSE_BUILD_DIR") or ROOT / "_build")
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))
URL = "https://example.org/course/"

DIRECTIVE = re.compile(r"^\s*(?:`{3,}|~{3,}|:{3,})\s*\{(?P<name>[^}\s]+)\}", re.M)


def plain(value: object) -> dict:
    return {"data": {"text/plain": repr(value)}, "metadata": {}}


GLUE = {
    "ratio": plain(0.36603234),
    "steps": plain(1500),
    "share": plain(0.0734),
    "tiny": plain(3.2e-07),
    "name": plain("he_normal"),
    "count": plain(12345678),
    "note_md": {"data": {"text/markdown": "**bold** words", "text/plain": "<md>"}, "metadata": {}},
    "formula": {"data": {"text/latex": "$\\sigma'(0) = 1/4$", "text/plain": "<latex>"}, "metadata": {}},
    "figure": {"data": {"image/png": "iVBORw0KGgo=\n", "text/plain": "<Figure>"}, "metadata": {}},
}

FIXTURE = r"""(chain-section)=
## A chain

% a MyST comment the reader never sees
The ratio is {glue:text}`ratio:.3f` after {glue:text}`steps:d` steps ({glue:text}`share:.1%` of
them), a gradient of {glue:text}`tiny:.1e`, with {glue:text}`name` and {glue:text}`count:,d`
samples; {glue:text}`ratio:g` in general form, {glue:text}`ratio` raw, {glue}`steps`, {glue:}`name`,
{glue:any}`ratio` and {glue:md}`note_md` as Markdown.

See {doc}`intro`, {doc}`the setup <running>`, {ref}`chain-section`, {ref}`this part <later>`,
{numref}`Figure %s <later>`, {cite}`hochreiter1991,bengio1994`, {math}`\alpha^L`, {eq}`eq-chain`,
as {cite:t}`kingma2015` found {cite:p}`he2016`,
{term}`gradient`, {abbr}`SGD (stochastic gradient descent)`, H{sub}`2`O, the [introduction](intro.md)
and the [data section](running.md#data), an [outside page](https://pytorch.org/a.md) and `{doc}`-style
code left as code.

```{note}
A note with {glue:text}`ratio:.2f` in it.
```

:::{warning}
A warning over
two lines.
:::

```{admonition} A titled box
:class: dropdown
Body of the box.
```

::::{dropdown} Show the derivation
:open:
The derivation, with a nested note:
```{tip}
Nested tip.
```
::::

```{math}
:label: eq-chain
\frac{\partial J}{\partial w_1} = \prod_l w_l
```

$$
h_L = w^L x
$$ (eq-power)

```{code-block} python
print("code")
```

```python
x = "{glue:text}`ratio:.3f` stays code"
```

```{glue:figure} figure
:name: fig-glued
The glued figure, {glue:text}`steps:d` steps.
```

```{glue} formula
```

```{glue:math} formula
```

```{toctree}
:hidden:
book/intro
```

(later)=
### Later

The end.
"""

FIXTURE_SITE = Site(
    URL,
    titles={"book/intro": "Introduction", "book/running": "Running the course"},
    labels={"chain-section": ("book/linear_chain", "A chain"), "later": ("book/linear_chain", "Later")},
    citations={
        "hochreiter1991": Citation("Hochreiter", "1991", ("hochreiter", "1991", "")),
        "bengio1994": Citation("Bengio et al.", "1994", ("bengio simard frasconi", "1994", "")),
        "kingma2015": Citation("Kingma and Ba", "2015", ("kingma ba", "2015", "")),
        "he2016": Citation("He et al.", "2016", ("he zhang ren sun", "2016", "")),
    },
)
REFS = "https://example.org/course/book/references.html"


def test_fixture_covers_every_construct_the_chapters_use() -> None:
    used_roles, used_directives = set(), set()
    for path in CHAPTERS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown":
                used_roles |= {m["name"] for m in ROLE.finditer(cell.source)}
                used_directives |= {m["name"] for m in DIRECTIVE.finditer(cell.source)}
    fixture_roles = {m["name"] for m in ROLE.finditer(FIXTURE)}
    fixture_directives = {m["name"] for m in DIRECTIVE.finditer(FIXTURE)}
    assert used_roles <= fixture_roles, f"add these roles to FIXTURE: {used_roles - fixture_roles}"
    assert used_directives <= fixture_directives, f"add to FIXTURE: {used_directives - fixture_directives}"


def test_fixture_converts_to_plain_markdown() -> None:
    assert len(raw_myst(FIXTURE)) >= 30  # the checker sees what it must remove
    text = to_plain_markdown(FIXTURE, GLUE, FIXTURE_SITE, "book/linear_chain")
    assert raw_myst(text) == []
    assert "% a MyST comment" not in text
    expected = [
        "The ratio is 0.366 after 1500 steps (7.3% of",
        "a gradient of 3.2e-07, with he_normal and 12,345,678",
        "0.366032 in general form, 0.36603234 raw, 1500, 'he_normal',",
        "0.36603234 and **bold** words as Markdown.",
        "See [Introduction](https://example.org/course/book/intro.html), "
        "[the setup](https://example.org/course/book/running.html), "
        "[A chain](https://example.org/course/book/linear_chain.html#chain-section), "
        "[this part](https://example.org/course/book/linear_chain.html#later)",
        "[Figure](https://example.org/course/book/linear_chain.html#later), "
        f"[[Bengio et al., 1994]({REFS}), [Hochreiter, 1991]({REFS})], $\\alpha^L$, (eq-chain),",
        f"as Kingma and Ba [[2015]({REFS})] found [[He et al., 2016]({REFS})],",
        "gradient, SGD, H<sub>2</sub>O, the [introduction](https://example.org/course/book/intro.html)",
        "[data section](https://example.org/course/book/running.html#data), an "
        "[outside page](https://pytorch.org/a.md) and `{doc}`-style",
        "> **Note:** A note with 0.37 in it.",
        "> **Warning:** A warning over\n> two lines.",
        "> **A titled box**\n>\n> Body of the box.",
        "**Show the derivation**\n\nThe derivation, with a nested note:\n> **Tip:** Nested tip.",
        "$$\n\\frac{\\partial J}{\\partial w_1} = \\prod_l w_l\n$$",
        "$$\nh_L = w^L x\n$$\n",
        '```python\nprint("code")\n```',
        '```python\nx = "{glue:text}`ratio:.3f` stays code"\n```',
        "![figure](data:image/png;base64,iVBORw0KGgo=)\n\n*The glued figure, 1500 steps.*",
        "$$\n\\sigma'(0) = 1/4\n$$\n\n$$\n\\sigma'(0) = 1/4\n$$",
        "### Later\n\nThe end.",
    ]
    for piece in expected:
        assert piece in text, f"missing from the conversion: {piece!r}\n---\n{text}"
    assert "toctree" not in text and "book/intro\n" not in text


def test_glue_values_are_in_reading_order() -> None:
    values = glue_values(FIXTURE, GLUE, FIXTURE_SITE, "book/linear_chain")
    assert values[:4] == [
        ("glue:text", "ratio", "0.366"),
        ("glue:text", "steps", "1500"),
        ("glue:text", "share", "7.3%"),
        ("glue:text", "tiny", "3.2e-07"),
    ]
    assert [(name, key) for name, key, _ in values[-5:]] == [
        ("glue:text", "ratio"),  # the note's
        ("glue:figure", "figure"),
        ("glue:text", "steps"),  # the figure's caption
        ("glue", "formula"),
        ("glue:math", "formula"),
    ]
    assert len(values) == len(re.findall(r"\{glue[^}]*\}", FIXTURE)) - 1  # the one in code stays


def test_bad_input_is_named() -> None:
    with pytest.raises(KeyError, match="make book"):
        to_plain_markdown("{glue:text}`missing:.2f`", GLUE, FIXTURE_SITE, "book/x")
    with pytest.raises(ValueError, match="another document"):
        to_plain_markdown("{glue:text}`other::ratio:.2f`", GLUE, FIXTURE_SITE, "book/x")
    with pytest.raises(ValueError, match="text/plain"):
        format_glue_text({"image/png": "..."}, ".2f")
    with pytest.raises(ValueError, match="ending in '/'"):
        Site("https://example.org/course")
    with pytest.raises(ValueError, match=r"cites \['nobody2020'\], which the bibliography lacks"):
        to_plain_markdown("{cite:p}`he2016, nobody2020`", GLUE, FIXTURE_SITE, "book/x")


def test_text_on_an_admonitions_first_line_is_the_start_of_its_body() -> None:
    # MyST passes it to a note (which takes no title) as the first line of the body, as the site shows.
    text = to_plain_markdown(":::{tip} First line\nthe rest.\n:::", {}, FIXTURE_SITE, "book/x")
    assert text.strip() == "> **Tip:** First line\n> the rest."


def test_citations_read_like_the_site_from_the_books_bibliography() -> None:
    """sphinxcontrib-bibtex's author_year style (measured on a Sphinx build of references.bib):
    ':cite:t:`kingma2015adam`' gives "Kingma and Ba [2015]", ':cite:p:`saxe2014exact,
    pennington2017resurrecting`' gives "[Pennington et al., 2017, Saxe et al., 2014]" (sorted)."""
    site = site_of(ROOT / "book", URL)
    assert site.citations["kingma2015adam"] == Citation(
        "Kingma and Ba", "2015", ("kingma ba", "2015", "adam: a method for stochastic optimization")
    )
    assert site.citations["hochreiter1991untersuchungen"].authors == "Hochreiter"
    assert site.citations["he2016identity"].authors == "He et al."
    refs = site.page("book/references")
    text = to_plain_markdown(
        "{cite:t}`kingma2015adam` and {cite:p}`saxe2014exact,pennington2017resurrecting`.",
        {},
        site,
        "book/linear_chain",
    )
    assert text == (
        f"Kingma and Ba [[2015]({refs})] and "
        f"[[Pennington et al., 2017]({refs}), [Saxe et al., 2014]({refs})]."
    )
    # Every key a page cites is in the bibliography, so the reader notebooks can write each one.
    cited = set()
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        prose = "\n".join(
            c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"
        )
        for keys in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", prose):
            cited |= {k.strip() for k in keys.split(",")}
    assert "kingma2015adam" in cited
    assert cited - set(site.citations) == set()


def test_reader_notebook_keeps_cells_and_drops_outputs(tmp_path: Path) -> None:
    executed = nbformat.v4.new_notebook()
    executed.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3"}, "widgets": {}}
    install = nbformat.v4.new_code_cell('import sys\n\nif "google.colab" in sys.modules:\n    %pip install x')
    install.metadata = {"tags": ["remove-cell"]}
    install.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    install.execution_count = 1
    executed.cells = [install, nbformat.v4.new_markdown_cell("Ratio {glue:text}`ratio:.2f`.")]
    reader = reader_notebook(executed, GLUE, FIXTURE_SITE, "book/x")
    assert [c.cell_type for c in reader.cells] == ["code", "markdown"]
    assert reader.cells[0].source == install.source and reader.cells[0].metadata == install.metadata
    assert reader.cells[0].outputs == [] and reader.cells[0].execution_count is None
    assert reader.cells[1].source == "Ratio 0.37."
    assert "widgets" not in reader.metadata
    nbformat.validate(reader)


def test_write_reader_notebooks_needs_a_current_build(tmp_path: Path) -> None:
    book, build = tmp_path / "book", tmp_path / "_build"
    book.mkdir()
    chapter = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T\n\n{glue:text}`steps:d`")])
    nbformat.write(chapter, book / "ch.ipynb")
    with pytest.raises(FileNotFoundError, match="make book"):
        write_reader_notebooks(book, build, tmp_path / "out", URL)
    executed_dir = build / "jupyter_execute" / "book"
    executed_dir.mkdir(parents=True)
    nbformat.write(chapter, executed_dir / "ch.ipynb")
    (executed_dir / "ch.glue.json").write_text('{"steps": {"data": {"text/plain": "1500"}, "metadata": {}}}')
    [written] = write_reader_notebooks(book, build, tmp_path / "out", URL)
    assert nbformat.read(written, as_version=4).cells[0].source == "# T\n\n1500"
    chapter.cells[0].source += " more"
    nbformat.write(chapter, book / "ch.ipynb")
    with pytest.raises(ValueError, match="changed after the book was built"):
        write_reader_notebooks(book, build, tmp_path / "out", URL)


def test_site_of_the_book_knows_every_page_title() -> None:
    site = site_of(ROOT / "book", URL)
    pages = {f"book/{p.stem}" for p in (ROOT / "book").iterdir() if p.suffix in (".md", ".ipynb")}
    assert set(site.titles) == pages
    assert all(title and not title.startswith("{") for title in site.titles.values())


# --- the built book ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def book_site() -> Site:
    return site_of(ROOT / "book", URL)


class _PastedText(HTMLParser):
    """The text of every ``<span class="pasted-text">`` (myst-nb's glue:text output), in page order."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[str] = []
        self._open: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._open is not None:
            self._depth += 1
        elif tag == "span" and "pasted-text" in (dict(attrs).get("class") or "").split():
            self._open, self._depth = "", 0

    def handle_endtag(self, tag: str) -> None:
        if self._open is None:
            return
        if self._depth == 0:
            self.values.append(self._open)
            self._open = None
        else:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open += data


def _built(chapter: Path) -> tuple[Path, Path, Path]:
    page = BUILD / "html" / "book" / f"{chapter.stem}.html"
    if not page.exists():
        pytest.skip(f"the book is not built ({page} is missing): run `make book`")
    reader = BUILD / "colab" / chapter.name
    executed = BUILD / "jupyter_execute" / "book" / chapter.name
    assert reader.exists(), f"{reader} is missing: `make book` writes the reader notebooks after the site"
    return page, reader, executed


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_reader_notebook_has_no_raw_myst_and_no_outputs(chapter: Path) -> None:
    _, reader_path, executed_path = _built(chapter)
    reader = nbformat.read(reader_path, as_version=4)
    executed = nbformat.read(executed_path, as_version=4)
    nbformat.validate(reader)
    assert [c.cell_type for c in reader.cells] == [c.cell_type for c in executed.cells]
    code = [c for c in reader.cells if c.cell_type == "code"]
    assert [c.source for c in code] == [c.source for c in executed.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "outputs are not stored"
    assert reader.cells[0].cell_type == "code" and "google.colab" in reader.cells[0].source
    for cell in reader.cells:
        if cell.cell_type == "markdown":
            assert raw_myst(cell.source) == [], f"{reader_path.name}: raw MyST left in\n{cell.source}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_reader_notebook_states_the_numbers_of_the_page(chapter: Path, book_site: Site) -> None:
    page, reader_path, executed_path = _built(chapter)
    parser = _PastedText()
    parser.feed(page.read_text())
    shown = parser.values
    executed = nbformat.read(executed_path, as_version=4)
    prose_source = "\n\n".join(c.source for c in executed.cells if c.cell_type == "markdown")
    assert len(shown) == len(re.findall(r"\{glue:text\}`", prose_source)), "one page value per glue:text role"
    reader = nbformat.read(reader_path, as_version=4)
    prose = "\n\n".join(c.source for c in reader.cells if c.cell_type == "markdown")
    assert [value for value in shown if value not in prose] == []
    # Role by role, in reading order: the value written in place of each role is the one the page shows.
    glue_json = executed_path.with_suffix(".glue.json")
    glue = json.loads(glue_json.read_text()) if glue_json.exists() else {}
    written = [
        value
        for cell in executed.cells
        if cell.cell_type == "markdown"
        for name, _, value in glue_values(cell.source, glue, book_site, f"book/{chapter.stem}")
        if name == "glue:text"
    ]
    assert written == shown


# A figure the page numbers (its id, then its caption's number) and a {numref} link to one, in page order.
_FIGURE = re.compile(
    r'<figure[^>]*\bid="(fig-[\w-]+)"(?:(?!</figure>).)*?caption-number">Fig\. ([\d.]+)', re.S
)
_NUMREF = re.compile(r'href="[^"]*#(fig-[\w-]+)"><span class="std std-numref">([^<]*)</span>')


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_reader_notebook_numbers_figures_as_the_page(chapter: Path, book_site: Site) -> None:
    page, reader_path, _ = _built(chapter)
    html = page.read_text()
    figures = book_site.figures.items()
    numbers = {label: number for label, (doc, number) in figures if doc == f"book/{chapter.stem}"}
    assert dict(_FIGURE.findall(html)) == numbers
    reader = nbformat.read(reader_path, as_version=4)
    prose = "\n\n".join(c.source for c in reader.cells if c.cell_type == "markdown")
    links = re.findall(r"\[([^\[\]]*)\]\([^()\s]*#(fig-[\w-]+)\)", prose)
    assert [(label, text) for text, label in links] == _NUMREF.findall(html)
