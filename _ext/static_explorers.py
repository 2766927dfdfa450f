"""Sphinx extension: the notebooks the book build executes show explorers that work without Python.

``vgcourse.widgets.Explorer.show`` returns its precomputed page widget (views for a grid of settings,
switched in the browser through ``jslink``) when ``VGCOURSE_SITE_BUILD=1``. myst-nb executes each
chapter in a kernel started from this process, which inherits its environment, so this extension sets
that variable before any notebook runs; pytest (nbval), Colab and Jupyter never set it and keep the live
explorer. It also passes each chapter's Colab URL (the reader notebook, as _ext/colab_launch.py makes it)
in ``VGCOURSE_COLAB_URLS``, for the explorer's "open in Colab" link.
"""

from __future__ import annotations

import json
import os
from pathlib import PurePosixPath
from typing import Any

from colab_launch import colab_url
from sphinx.application import Sphinx

SITE_BUILD_ENV = "VGCOURSE_SITE_BUILD"  # vgcourse.widgets.SITE_BUILD_ENV
COLAB_URLS_ENV = "VGCOURSE_COLAB_URLS"  # vgcourse.widgets.COLAB_URLS_ENV


def chapter_colab_urls(options: dict[str, Any], branch: str, docnames: list[str]) -> dict[str, str]:
    """{notebook name: Colab URL of its reader notebook on ``branch``}, from the theme's options
    (repository_url, path_to_docs, launch_buttons.colab_url); {} without a repository or Colab URL."""
    repository = str(options.get("repository_url", "")).rstrip("/")
    colab = str(options.get("launch_buttons", {}).get("colab_url", "")).rstrip("/")
    if not repository.startswith("https://github.com/") or not colab:
        return {}
    github = repository.removeprefix("https://github.com/")
    folder = str(options.get("path_to_docs", "") or "").strip("/")
    prefix = f"{folder}/" if folder else ""
    return {
        PurePosixPath(doc).name: colab_url(f"{colab}/github/{github}/blob/main/{prefix}{doc}.ipynb", branch)
        for doc in docnames
    }


def _set_environment(app: Sphinx, env: Any, docnames: list[str]) -> None:
    os.environ[SITE_BUILD_ENV] = "1"
    urls = chapter_colab_urls(
        app.config.html_theme_options, app.config.colab_launch_branch, sorted(env.found_docs)
    )
    os.environ[COLAB_URLS_ENV] = json.dumps(urls)


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("colab_launch")  # colab_launch_branch
    app.connect("env-before-read-docs", _set_environment)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
