"""The book's table of contents as the tests read it (shared by the site and Colab-path tests)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_entries() -> list[str]:
    """Every `file` of _toc.yml, in reading order (root first, then parts, chapters and sections)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    entries = [toc["root"]]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                entries.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key, []))
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return entries


def chapter_notebooks() -> list[Path]:
    """The chapters' notebooks in reading order, from the chapter registry (`vgcourse.chapters`; that the
    toc numbers exactly these is tests/test_contracts.py's first check)."""
    from vgcourse.chapters import CHAPTERS

    return [ROOT / f"{c.notebook}.ipynb" for c in CHAPTERS]


def numbered_chapters() -> list[str]:
    """The files of the toc's numbered parts (the chapters) in reading order, e.g. "book/linear_chain"."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [
        entry["file"]
        for part in toc.get("parts", [])
        if part.get("numbered")
        for entry in part.get("chapters", [])
    ]
