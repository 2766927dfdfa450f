"""Raw MyST in Markdown: what the reader notebooks must not show (shared by their built and unbuilt tests)."""

from __future__ import annotations

import re

ROLE = re.compile(r"\{(?P<name>[A-Za-z][\w:+.-]*)\}`")
# A role or an inline code span; either may wrap over the lines of a paragraph (MyST, CommonMark).
ROLE_OR_CODE = re.compile(r"\{(?P<name>[A-Za-z][\w:+.-]*)\}(`+).+?\2(?!`)|(`+).+?\3", re.S)
# A link to a page of the book by its source file, which the site rewrites and a notebook cannot follow.
PAGE_LINK = re.compile(r"\]\(\s*(?![a-z][a-z0-9+.-]*:)[^()\s]+\.(?:md|ipynb)(?:#[^()\s]*)?\s*\)")


def raw_myst(text: str) -> list[str]:
    """MyST a Markdown renderer would show as raw text, outside fenced code (which stays verbatim).

    Roles and page links are looked for in each paragraph as a whole, since they may wrap over lines.
    """
    found: list[str] = []
    fence = ""
    paragraph: list[str] = []

    def check_paragraph() -> None:
        prose = "\n".join(paragraph)
        paragraph.clear()
        found.extend(f"role: {m[0]}" for m in ROLE_OR_CODE.finditer(prose) if m["name"])
        outside_code = ROLE_OR_CODE.sub("", prose)
        found.extend(f"role never closed: {m[0]}" for m in ROLE.finditer(outside_code))
        found.extend(f"page link: {m[0]}" for m in PAGE_LINK.finditer(outside_code))

    for line in text.split("\n"):
        stripped = line.strip()
        if fence:
            if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                fence = ""
            continue
        opening = re.match(r"^(`{3,}|~{3,}|:{3,})\s*(.*)$", stripped)
        if opening or not stripped:
            check_paragraph()
        if opening:
            if opening[1][0] == ":" or opening[2].startswith("{"):
                found.append(f"directive: {line}")
            fence = opening[1]
            continue
        if re.match(r"^\(\S+\)=$", stripped):
            found.append(f"target: {line}")
        if re.match(r"^\$\$\s*\(\S+\)$", stripped):
            found.append(f"math label: {line}")
        paragraph.append(line)
    check_paragraph()
    return found
