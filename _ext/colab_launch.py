"""Sphinx extension: the Colab launch button opens the reader notebooks, not the MyST sources.

sphinx-book-theme builds a chapter's Colab URL as
``{colab_url}/github/{org}/{repo}/blob/{repository branch}/{path_to_book}{page}.ipynb``, i.e. the
MyST source on ``main``, whose prose holds ``{glue:text}`` roles Colab shows as raw text. The reader
notebooks (``make book`` writes them to ``_build/colab/``; .github/workflows/publish.yml pushes them
to ``book/`` of the branch ``colab_launch_branch``) have the page's numbers in their prose, so this
extension puts that branch in the Colab URL: ``.../blob/colab/book/<chapter>.ipynb``. Only the Colab
button changes; the repository button and the branch other links name stay as configured.
"""

from __future__ import annotations

import re
from typing import Any

from sphinx.application import Sphinx

_BLOB = re.compile(r"^(?P<head>https://[^/]+/github/[^/]+/[^/]+/blob/)[^/]+/")


def colab_url(url: str, branch: str) -> str:
    """``url`` (a Colab launch URL of a GitHub file) with ``branch`` in place of its branch."""
    if not _BLOB.match(url):
        raise ValueError(f"not a Colab URL of a GitHub file: {url!r}")
    return _BLOB.sub(lambda m: f"{m['head']}{branch}/", url, count=1)


def _point_at_reader_notebooks(app: Sphinx, page: str, template: str, context: dict, doctree: Any) -> None:
    branch = app.config.colab_launch_branch
    for group in context.get("header_buttons", []):
        for button in group.get("buttons", []) if group.get("label") == "launch-buttons" else []:
            if button.get("text") == "Colab":
                button["url"] = colab_url(button["url"], branch)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("colab_launch_branch", "colab", "html", types=[str])
    # The theme adds its launch buttons at priority 501; this runs after it.
    app.connect("html-page-context", _point_at_reader_notebooks, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
