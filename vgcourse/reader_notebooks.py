"""Reader notebooks: the chapters as Colab and Jupyter show them, with the book's numbers in the prose.

An executed chapter and its ``.glue.json`` become the same cells with plain Markdown prose: glue roles
become the values the page shows, admonitions quoted paragraphs, references and citations links to the
site ("He et al. [2016]", "Fig. N.k": `figure_names` says which figures the site numbers). Code cells
keep their source, without outputs. ``make book`` writes them to ``_build/colab/``;
``python -m vgcourse.reader_notebooks`` writes them again from an existing build.
"""

from __future__ import annotations

import argparse
import base64
import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from myst_nb.core.render import strip_latex_delimiters
from myst_nb.core.variables import format_plain_text

from vgcourse.chapters import CHAPTERS

ADMONITIONS = {"admonition": "", "seealso": "See also", "todo": "To do"} | {
    name: name.capitalize()
    for name in "attention caution danger error hint important note tip warning".split()
}
DROPPED_DIRECTIVES = {"toctree", "tableofcontents", "bibliography", "index", "include", "only", "raw"}
CODE_DIRECTIVES = {"code", "code-block", "sourcecode", "code-cell"}
GLUE_ROLES = {"glue", "glue:", "glue:any", "glue:text", "glue:md"}
# myst-nb's render priority for HTML, restricted to what Markdown can show.
GLUE_PRIORITY = ("image/svg+xml", "image/png", "image/gif", "image/jpeg", "text/markdown", "text/latex")

# What the inline pass rewrites, read left to right through a paragraph (so each may wrap over lines):
# a role {name}`content` (any number of backticks), an inline code span (left alone, links in it too),
# or a link to a page of the book ([text](page.md#anchor); CommonMark allows a line break in the parentheses).
_INLINE = re.compile(
    r"\{(?P<name>[A-Za-z][\w:+.-]*)\}(?P<ticks>`+)(?P<content>.+?)(?P=ticks)(?!`)|(?P<code>`+).+?(?P=code)"
    r"|(?<!!)\[(?P<text>[^\]]*)\]\(\s*(?P<target>[^()\s]+\.(?:md|ipynb))(?P<anchor>#[^()\s]*)?\s*\)",
    re.S,
)
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,}|:{3,})\s*(?P<info>.*?)\s*$")
_DIRECTIVE_INFO = re.compile(r"^\{(?P<name>[^}\s]+)\}\s*(?P<argument>.*)$")
_OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*)$")
_TARGET = re.compile(r"^\s*\((?P<label>[^()\s]+)\)=\s*$")
_EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)
_BLOCK = re.compile(r"^ {0,3}(?:(?P<single>#{1,6}(?:\s|$)|\|)|[-*+]\s|\d{1,9}[.)]\s)")
_HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*#*\s*$", re.M)
_ROLE_FORMATS = {"math": "${}$", "emphasis": "*{}*"} | {
    **{name: f"<{name}>{{}}</{name}>" for name in ("sub", "sup", "kbd")},
    **dict.fromkeys(("code", "literal", "samp", "file", "command", "program"), "`{}`"),
    **dict.fromkeys(("guilabel", "menuselection", "strong"), "**{}**"),
}
_MATH_LABEL = re.compile(r"^(?P<fence>\s*\$\$)\s*\([\w:.-]+\)\s*$")


@dataclass(frozen=True)
class Citation:
    """How the site cites one bibliography entry (sphinxcontrib-bibtex, author_year style)."""

    authors: str  # "Hochreiter", "Kingma and Ba", "He et al."
    year: str
    sort_key: tuple[str, str, str] = ("", "", "")  # (last names, year, title), lowercase: order in one role


def read_citations(bibfile: str | Path) -> dict[str, Citation]:
    """`Citation` of every entry of a BibTeX file, keyed by citation key (pybtex parses the file)."""
    from pybtex.database import parse_file
    from pybtex.plugin import find_plugin

    last_names = find_plugin("pybtex.style.names", "last")()
    citations = {}
    for key, entry in parse_file(str(bibfile)).entries.items():
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [last_names.format(person, True).format().render_as("text") for person in persons]
        if not names:
            raise ValueError(f"{bibfile}: entry {key!r} has no author or editor")
        authors = names[0] if len(names) == 1 else f"{names[0]} and {names[1]}"
        if len(names) > 2:
            authors = f"{names[0]} et al."
        year = entry.fields.get("year", "")
        title = str(entry.fields.get("title", ""))
        citations[key] = Citation(authors, year, (" ".join(names).lower(), year, title.lower()))
    return citations


@dataclass(frozen=True)
class Site:
    """Where the book is published and what its pages are called, for links that leave a notebook."""

    url: str  # ends in "/"; page "book/intro" is at url + "book/intro.html"
    titles: Mapping[str, str] = field(default_factory=dict)  # docname -> title, for {doc} without text
    labels: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # label -> (docname, title)
    citations: Mapping[str, Citation] = field(default_factory=dict)  # bibliography key -> Citation
    figures: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # label -> (docname, "3.2")
    references: str = "book/references"  # docname of the page citations link to

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not re.match(r"^https?://.+/$", self.url):
            raise ValueError(f"site url must be an http(s) address ending in '/', got {self.url!r}")

    def page(self, docname: str, anchor: str = "") -> str:
        """The address of a document (``book/intro``), with ``#anchor`` when given."""
        return f"{self.url}{docname}.html" + (f"#{anchor}" if anchor else "")


def figure_names(cells: Sequence[nbformat.NotebookNode]) -> list[str]:
    """The name ("" if none) of each figure Sphinx numbers on a page (numfig), in document order.

    Sphinx numbers figures with a caption: a myst-nb code cell with ``mystnb.figure.caption`` in its
    metadata (one figure per shown output; a chapter cell shows one, which `write_reader_notebooks` checks)
    unless tagged remove-cell or remove-output, and a ``{figure}`` or ``{glue:figure}`` directive with text.
    """
    names = []
    for cell in cells:
        if cell.cell_type == "code":
            figure = cell.get("metadata", {}).get("mystnb", {}).get("figure") or {}
            removed = {"remove-cell", "remove-output"} & set(cell.get("metadata", {}).get("tags", []))
            if figure.get("caption") and not removed:
                names.append(str(figure.get("name", "")))
        elif cell.cell_type == "markdown":
            lines = cell.source.split("\n")
            for index, line in enumerate(lines):
                fence = _FENCE.match(line)
                directive = _DIRECTIVE_INFO.match(fence["info"]) if fence else None
                if directive and directive["name"] in ("figure", "glue:figure"):
                    body = lines[index + 1 : _Converter._closing(lines, index, fence)]
                    options, caption = _options([x.removeprefix(fence["indent"]) for x in body])
                    if "".join(caption).strip():
                        names.append(options.get("name", ""))
    return names


def site_of(book_dir: str | Path, url: str, bibfile: str | Path | None = None) -> Site:
    """`Site` of the pages in ``book_dir`` at ``url``, citing ``bibfile`` (default: references.bib)."""
    book = Path(book_dir)
    bib = Path(bibfile) if bibfile is not None else book.parent / "references.bib"
    citations = read_citations(bib) if bibfile is not None or bib.exists() else {}
    titles: dict[str, str] = {}
    labels: dict[str, tuple[str, str]] = {}
    figures: dict[str, tuple[str, str]] = {}
    numbers = {c.id: c.number for c in CHAPTERS}  # figures are numbered "<chapter>.<k>" (numfig)
    for path in sorted([*book.glob("*.md"), *book.glob("*.ipynb")]):
        docname = f"{book.name}/{path.stem}"
        if path.suffix == ".ipynb":
            cells = nbformat.read(path, as_version=4).cells
        else:
            cells = [nbformat.v4.new_markdown_cell(path.read_text())]
        text = "\n\n".join(c.source for c in cells if c.cell_type == "markdown")
        names = figure_names(cells)
        if names and path.stem not in numbers:
            raise ValueError(f"{path}: numbered figures outside a chapter of vgcourse.chapters")
        figures |= {
            name: (docname, f"{numbers.get(path.stem)}.{k}") for k, name in enumerate(names, 1) if name
        }
        lines = text.splitlines()
        first = _HEADING.search(text)
        titles[docname] = first["title"] if first else path.stem
        for index, line in enumerate(lines):
            target = _TARGET.match(line)
            if target:
                following = next((x for x in lines[index + 1 :] if x.strip()), "")
                heading = _HEADING.match(following)
                labels[target["label"]] = (docname, heading["title"] if heading else target["label"])
    return Site(url, titles, labels, citations, figures)


def format_glue_text(data: Mapping[str, Any], spec: str) -> str:
    """A glued value as ``{glue:text}`key:spec``` shows it (myst-nb's own ``format_plain_text``)."""
    if "text/plain" not in data:
        raise ValueError(f"a glue:text role needs a text/plain value; this one has {sorted(data)}")
    return format_plain_text(data["text/plain"], spec)


def _glue_output(glue: Mapping[str, Mapping[str, Any]], key: str, page: str) -> Mapping[str, Any]:
    if "::" in key:
        raise ValueError(f"{page}: glue from another document ({key!r}) is not supported in reader notebooks")
    if key not in glue:
        raise KeyError(f"{page}: glue key {key!r} is not in the book build; rebuild it with `make book`")
    return glue[key]


def _glue_any(output: Mapping[str, Any], key: str, block: bool) -> str:
    """A glued output as Markdown: the first of `GLUE_PRIORITY` it has, else its plain text."""
    data = output.get("data", {})
    for mime in GLUE_PRIORITY:
        if mime in data:
            value = data[mime]
            value = "".join(value) if isinstance(value, list) else value
            if mime.startswith("image/"):
                raw = value.encode() if mime == "image/svg+xml" else None
                payload = base64.b64encode(raw).decode() if raw else value.replace("\n", "")
                return f"![{key}](data:{mime};base64,{payload})"
            if mime == "text/latex":
                math = strip_latex_delimiters(value)
                return f"$$\n{math}\n$$" if block else f"${math}$"
            return value
    if "text/plain" not in data:
        raise ValueError(f"glue key {key!r} has no output Markdown can show ({sorted(data)})")
    text = data["text/plain"]
    if output.get("metadata", {}).get("strip_text_quotes") and re.match(r"^([\"']).*\1$", text):
        text = text[1:-1]
    return text


class _Converter:
    """One page's conversion: its glue values, its site and its document name."""

    def __init__(self, glue: Mapping[str, Mapping[str, Any]], site: Site, docname: str) -> None:
        self.glue, self.site, self.docname = glue, site, docname
        self.values: list[tuple[str, str, str]] = []  # (role or directive, key, value), in reading order

    # --- inline -----------------------------------------------------------------------------------

    def inline(self, text: str) -> str:
        """A paragraph's roles and page links rewritten; code spans stay as they are."""
        return _INLINE.sub(self._inline, text)

    def _inline(self, match: re.Match[str]) -> str:
        if match["code"]:
            return match[0]
        return self._link(match) if match["target"] else self._role(match)

    def _role(self, match: re.Match[str]) -> str:
        # MyST joins the lines of a role that wraps: "{doc}`the\n  guide <x>`" links "the guide"
        name, content = match["name"], re.sub(r"[ \t]*\n[ \t]*", " ", match["content"])
        if name in GLUE_ROLES:
            # myst-nb splits key:spec at the last colon (the spec is glue:text's format; glue:md ignores it)
            key, colon, spec = content.rpartition(":")
            if not colon or name not in ("glue:text", "glue:md"):
                key, spec = content, ""
            output = _glue_output(self.glue, key, self.docname)
            if name == "glue:text":
                value = format_glue_text(output.get("data", {}), spec)
            elif name == "glue:md":
                value = output.get("data", {}).get("text/markdown", "")
            else:
                value = _glue_any(output, key, block=False)
            self.values.append((name, key, value))
            return value
        explicit = _EXPLICIT.match(content)
        text, target = (explicit["text"], explicit["target"]) if explicit else ("", content)
        if name == "doc":
            docname = self._resolve(target)
            return f"[{text or self.site.titles.get(docname, target)}]({self.site.page(docname)})"
        if name == "numref" and target in self.site.figures:  # "Fig. %s" is Sphinx's numfig_format
            docname, number = self.site.figures[target]
            text = (text or "Fig. %s").replace("%s", number).replace("{number}", number)
            return f"[{text}]({self.site.page(docname, target)})"
        if name in ("ref", "numref"):
            docname, title = self.site.labels.get(target, ("", target))
            text = re.sub(r"\s*(%s|\{number\}|\{name\})\s*", " ", text or title).strip() or title
            return f"[{text}]({self.site.page(docname, target)})" if docname else text
        if name in _ROLE_FORMATS:
            return _ROLE_FORMATS[name].format(content)
        if name == "eq":
            return text or f"({target})"
        if name.startswith("cite"):
            return self._cite(name, content)
        if name == "abbr":
            return re.sub(r"\s*\(.*\)$", "", content, flags=re.S)
        return text or target

    def _cite(self, name: str, content: str) -> str:
        """A citation role as the site writes it (author_year style; see the module docstring)."""
        keys = [k.strip() for k in content.split(",") if k.strip()]
        missing = [k for k in keys if k not in self.site.citations]
        if missing:
            raise ValueError(f"{self.docname}: {{{name}}} cites {missing}, which the bibliography lacks")
        entries = sorted((self.site.citations[k] for k in keys), key=lambda c: c.sort_key)
        url = self.site.page(self.site.references)
        if name in ("cite:t", "cite:ts"):
            return ", ".join(f"{c.authors} [[{c.year}]({url})]" for c in entries)
        if name == "cite:author":
            return ", ".join(f"[{c.authors}]({url})" for c in entries)
        if name == "cite:year":
            return ", ".join(f"[{c.year}]({url})" for c in entries)
        return "[" + ", ".join(f"[{c.authors}, {c.year}]({url})" for c in entries) + "]"

    def _resolve(self, target: str) -> str:
        """Document name of a page reference relative to this page (``intro`` → ``book/intro``)."""
        target = re.sub(r"\.(md|ipynb)$", "", target)
        if target.startswith("/"):
            return target.lstrip("/")
        return posixpath.normpath(posixpath.join(posixpath.dirname(self.docname), target))

    def _link(self, match: re.Match[str]) -> str:
        text, target = self.inline(match["text"]), match["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # an address of its own: only its text changes
            return f"[{text}{match[0][match.end('text') - match.start() :]}"
        anchor = (match["anchor"] or "#")[1:]
        return f"[{text}]({self.site.page(self._resolve(target), anchor)})"

    # --- blocks -----------------------------------------------------------------------------------

    def markdown(self, text: str) -> str:
        lines = text.split("\n")
        out: list[str] = []
        prose: list[str] = []  # ordinary lines, converted a paragraph at a time (a role or link may wrap)

        def flush() -> None:
            if prose:
                out.extend(self.inline("\n".join(prose)).split("\n"))
                prose.clear()

        index, in_math = 0, False
        while index < len(lines):
            line, stripped = lines[index], lines[index].strip()
            fence = None if in_math else _FENCE.match(line)
            if fence:
                flush()
                end = self._closing(lines, index, fence)
                directive = _DIRECTIVE_INFO.match(fence["info"])
                if directive:
                    body = [x.removeprefix(fence["indent"]) for x in lines[index + 1 : end]]
                    block = self.directive(directive["name"], directive["argument"], body)
                    if block:
                        out.extend(fence["indent"] + x if x else x for x in block.split("\n"))
                else:  # ordinary code stays verbatim
                    out.extend(lines[index : end + 1])
                index = end + 1
                continue
            labelled = _MATH_LABEL.match(line)
            if in_math or stripped.startswith("$$"):
                flush()
                if in_math:
                    in_math = not (labelled or stripped.endswith("$$"))
                else:
                    in_math = not (len(stripped) >= 4 and stripped.endswith("$$"))
                out.append(labelled["fence"] if labelled else line)
            elif _TARGET.match(line) or stripped == "+++" or line.lstrip().startswith("%"):
                flush()  # dropped, and like a blank line it ends a paragraph
            elif stripped == "":
                flush()
                out.append(line)
            else:
                block = _BLOCK.match(line)
                if block:  # a heading, table row or list item ends the paragraph above it
                    flush()
                prose.append(line)
                if block and block["single"]:  # a heading or table row is one line
                    flush()
            index += 1
        flush()
        return "\n".join(out)

    @staticmethod
    def _closing(lines: list[str], start: int, fence: re.Match[str]) -> int:
        mark = fence["fence"]
        for index in range(start + 1, len(lines)):
            stripped = lines[index].strip()
            if stripped and set(stripped) == {mark[0]} and len(stripped) >= len(mark):
                return index
        return len(lines)  # an unclosed fence runs to the end of the cell, as in CommonMark

    def directive(self, name: str, argument: str, body: list[str]) -> str:
        options, content = _options(body)
        text = "\n".join(content).strip("\n")
        if name in DROPPED_DIRECTIVES:
            return ""
        if name in CODE_DIRECTIVES:
            return f"```{argument}\n{text}\n```"
        if name == "math":
            return f"$$\n{text}\n$$"
        if name.startswith("glue"):
            return self._glue_directive(name, argument, options, text)
        if name in ("figure", "image"):
            image = self.site.url + "_images/" + posixpath.basename(argument)
            caption = self.markdown(text).strip()
            alt = options.get("alt", caption.split("\n")[0] if caption else posixpath.basename(argument))
            return f"![{alt}]({image})" + (f"\n\n*{caption}*" if caption else "")
        converted = self.markdown(text).strip("\n")
        if name in ADMONITIONS:
            if name == "admonition":  # a title of its own: a bold line over the body
                lead = f"**{self.inline(argument).strip()}**\n\n"
            else:  # MyST reads the first line of a note, tip, ... as the start of its body
                first = f"{self.inline(argument).strip()}\n" if argument else ""
                lead = f"**{ADMONITIONS[name]}:** {first}"
            quoted = [f"> {x}" if x else ">" for x in (lead + converted).split("\n")]
            return "\n".join(quoted)
        title = self.inline(argument).strip()
        return (f"**{title}**\n\n" if title else "") + converted

    def _glue_directive(self, name: str, key: str, options: Mapping[str, str], caption: str) -> str:
        output = _glue_output(self.glue, key, self.docname)
        data = output.get("data", {})
        if name == "glue:md":
            value = data.get("text/markdown", "")
        elif name == "glue:math":
            value = f"$$\n{strip_latex_delimiters(data.get('text/latex', ''))}\n$$"
        else:
            value = _glue_any(output, key, block=True)
        self.values.append((name, key, value))
        if name == "glue:figure" and caption:
            value += f"\n\n*{self.markdown(caption).strip()}*"
        return value


def _options(body: list[str]) -> tuple[dict[str, str], list[str]]:
    """A directive's ``:key: value`` lines or ``---`` YAML block, and the rest of its body."""
    options: dict[str, str] = {}
    if body and body[0].strip() == "---":
        end = next((i for i in range(1, len(body)) if body[i].strip() == "---"), 0)
        for line in body[1:end]:
            key, _, value = line.partition(":")
            options[key.strip()] = value.strip()
        return options, body[end + 1 :]
    index = 0
    while index < len(body) and (option := _OPTION.match(body[index].strip())):
        options[option["key"]] = option["value"]
        index += 1
    return options, body[index:]


def to_plain_markdown(text: str, glue: Mapping[str, Mapping[str, Any]], site: Site, docname: str) -> str:
    """Page ``docname``'s MyST Markdown as plain Markdown; ``glue``: {key: {"data", "metadata"}}."""
    return _Converter(glue, site, docname).markdown(text)


def glue_values(
    text: str, glue: Mapping[str, Mapping[str, Any]], site: Site, docname: str
) -> list[tuple[str, str, str]]:
    """``(role or directive, key, value)`` for each glue `to_plain_markdown` fills in, in reading order."""
    converter = _Converter(glue, site, docname)
    converter.markdown(text)
    return converter.values


def reader_notebook(
    executed: nbformat.NotebookNode, glue: Mapping[str, Mapping[str, Any]], site: Site, docname: str
) -> nbformat.NotebookNode:
    """The reader notebook of an executed chapter: plain Markdown prose, code cells without outputs."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {k: v for k, v in executed.metadata.items() if k in ("kernelspec", "language_info")}
    for cell in executed.cells:
        if cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(to_plain_markdown(cell.source, glue, site, docname))
        elif cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(cell.source)
        else:
            new = nbformat.v4.new_raw_cell(cell.source)
        new.metadata = dict(cell.get("metadata", {}))
        notebook.cells.append(new)
    return notebook


def _sources(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def _glue_of(executed_path: Path, executed: nbformat.NotebookNode) -> dict[str, Any]:
    """The chapter's glued outputs: myst-nb's ``<chapter>.glue.json``, plus any left in the notebook."""
    glue_path = executed_path.with_suffix(".glue.json")
    glue: dict[str, Any] = json.loads(glue_path.read_text()) if glue_path.exists() else {}
    for cell in executed.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            record = output.get("metadata", {}).get("scrapbook")
            if record:
                prefix = len(record.get("mime_prefix", ""))
                data = {k[prefix:]: v for k, v in output.get("data", {}).items()}
                glue[record["name"]] = {"data": data, "metadata": output.get("metadata", {})}
    return glue


def write_reader_notebooks(
    book_dir: str | Path, build_dir: str | Path, out_dir: str | Path, site_url: str
) -> list[Path]:
    """Write ``out_dir/<chapter>.ipynb`` for every chapter of the book built in ``build_dir``."""
    book, out = Path(book_dir), Path(out_dir)
    chapters = sorted(book.glob("*.ipynb"))
    if not chapters:
        raise FileNotFoundError(f"no chapter notebooks in {book}; pass the course's book/ folder")
    site = site_of(book, site_url)
    executed_dir = Path(build_dir) / "jupyter_execute" / book.name
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for source_path in chapters:
        executed_path = executed_dir / source_path.name
        if not executed_path.exists():
            raise FileNotFoundError(f"{executed_path} is missing: build the book first (`make book`)")
        executed = nbformat.read(executed_path, as_version=4)
        source = nbformat.read(source_path, as_version=4)
        if _sources(executed) != _sources(source):
            raise ValueError(f"{source_path} changed after the book was built: run `make book` again")
        for cell in executed.cells:
            shown = [
                o
                for o in cell.get("outputs", [])
                if o.output_type in ("display_data", "execute_result")
                and not o.get("metadata", {}).get("scrapbook", {}).get("mime_prefix")  # glue not shown
            ]
            if cell.cell_type == "code" and figure_names([cell]) and len(shown) != 1:
                raise ValueError(
                    f"{executed_path}: a figure cell shows {len(shown)} outputs; the site numbers each"
                )
        docname = f"{book.name}/{source_path.stem}"
        notebook = reader_notebook(executed, _glue_of(executed_path, executed), site, docname)
        target = out / source_path.name
        nbformat.write(notebook, target)
        written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vgcourse.reader_notebooks``: write the reader notebooks of a built book."""
    parser = argparse.ArgumentParser(
        prog="python -m vgcourse.reader_notebooks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--book", default="book", help="the chapters' folder (default: book)")
    parser.add_argument("--build", default="_build", help="the book build's folder (default: _build)")
    parser.add_argument("--out", default="_build/colab", help="where to write them (default: _build/colab)")
    parser.add_argument("--site-url", help="the published site (default: html.baseurl of _config.yml)")
    args = parser.parse_args(argv)
    site_url = args.site_url
    if site_url is None:
        import yaml

        config = yaml.safe_load(Path("_config.yml").read_text())
        site_url = config.get("html", {}).get("baseurl")
        if not site_url:
            parser.error("_config.yml has no html.baseurl: pass --site-url")
    try:
        written = write_reader_notebooks(args.book, args.build, args.out, site_url)
    except (FileNotFoundError, ValueError, KeyError) as error:
        parser.error(str(error))
    print(f"wrote {len(written)} reader notebooks to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
