"""The repository's promises: two README commands, consistent dependency lists, a clean book skeleton."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from book_toc import toc_entries
from packaging.requirements import Requirement

import vgcourse

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def _names(requirements: list[str]) -> dict[str, str]:
    parsed = [Requirement(r) for r in requirements]
    return {r.name.lower(): str(r.specifier) for r in parsed}


def test_version_is_single_sourced() -> None:
    assert PYPROJECT["project"]["version"] == vgcourse.__version__


def test_the_licence_text_ships_with_the_package() -> None:
    # MIT asks that its notice travel with every copy: a LICENSE file, named in the metadata (so wheels carry
    # it) and by the README; the shipped MNIST files keep their own licence, in their README
    project = PYPROJECT["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "The vgcourse contributors" in text
    assert "Permission is hereby granted, free of charge" in text and 'PROVIDED "AS IS"' in text
    readme = (ROOT / "README.md").read_text()
    assert "[LICENSE](LICENSE)" in readme and "vgcourse/datasets/mnist/README.md" in readme


def test_environment_yml_matches_pyproject() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    from_env = _names([r for r in pip_section if not r.startswith("-e")])
    expected = _names(
        PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["book"]
    )
    assert from_env == expected
    assert "-e ." in pip_section


def test_torch_is_a_range_and_ipywidgets_accepts_colab() -> None:
    deps = _names(PYPROJECT["project"]["dependencies"])
    assert "==" not in deps["torch"], "never pin torch exactly: Colab preinstalls it"
    assert Requirement("ipywidgets" + deps["ipywidgets"]).specifier.contains("7.7.1")
    assert Requirement("ipywidgets" + deps["ipywidgets"]).specifier.contains("8.1.5")


def test_running_page_states_the_torch_floor_of_pyproject() -> None:
    # book/running.md tells Colab readers which preinstalled PyTorch the package accepts
    floor = _names(PYPROJECT["project"]["dependencies"])["torch"].removeprefix(">=")
    stated = re.findall(r"any PyTorch from (\d+\.\d+)", (ROOT / "book" / "running.md").read_text())
    assert stated == [floor], f"book/running.md states {stated}; pyproject.toml requires torch>={floor}"


def test_constraints_pin_every_package_within_the_ranges() -> None:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    project = PYPROJECT["project"]
    everything = project["dependencies"] + [
        r for extra, reqs in project["optional-dependencies"].items() if extra != "dev" for r in reqs
    ]
    for requirement in map(Requirement, everything):
        name = requirement.name.lower()
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {requirement}"


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    commands = [c for c in commands if c]
    assert commands == ["make book", "make test"]
    ci = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == "make test"
    assert not any("pytest" in line or "jupyter" in line for line in ci), (
        "CI must call the README command only"
    )


def test_config_sets_colab_launch_and_needs_no_network() -> None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["only_build_toc_files"] is True
    assert config["repository"]["url"] == "https://github.com/vgcourse/vgcourse"
    assert config["repository"]["branch"] == "main"
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["execute"]["execute_notebooks"] == "force"
    assert config["execute"]["timeout"] > 0
    sphinx = config.get("sphinx", {})
    assert "intersphinx_mapping" not in sphinx.get("config", {})
    assert not any("intersphinx" in ext for ext in sphinx.get("extra_extensions", []))


def _source(entry: str) -> Path:
    matches = [p for p in (ROOT / f"{entry}.md", ROOT / f"{entry}.ipynb") if p.exists()]
    assert len(matches) == 1, f"{entry}: expected exactly one .md or .ipynb"
    return matches[0]


@pytest.mark.parametrize("entry", toc_entries())
def test_every_toc_entry_is_a_real_page(entry: str) -> None:
    path = _source(entry)
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        text = " ".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    else:
        text = path.read_text()
    if "```{bibliography}" in text:  # the references page: its content is references.bib's cited entries
        entries = re.findall(r"^@\w+\{", (ROOT / "references.bib").read_text(), flags=re.M)
        assert len(entries) >= 10, f"references.bib has {len(entries)} entries"
        return
    words = re.findall(r"[A-Za-z]{2,}", text)
    assert len(words) >= 300, f"{path.name} has {len(words)} words: no placeholder pages"
    assert not re.search(r"\b(TODO|TBD|coming soon|placeholder)\b", text, flags=re.I)


def test_every_book_file_is_in_the_toc() -> None:
    listed = {_source(entry) for entry in toc_entries()}
    pages = set((ROOT / "book").glob("*.md")) | set(NOTEBOOKS)
    assert pages == listed


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_install_cell_runs_only_in_colab_and_matches_version(path: Path) -> None:
    cells = json.loads(path.read_text())["cells"]
    first_code = next(c for c in cells if c["cell_type"] == "code")
    source = "".join(first_code["source"])
    assert '"google.colab" in sys.modules' in source
    pip_lines = [line for line in source.splitlines() if "%pip install" in line]
    assert len(pip_lines) == 1
    assert f'"vgcourse=={vgcourse.__version__}"' in pip_lines[0]
    assert "torch" not in source, "the install cell must never (re)install torch"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_stored_without_outputs(path: Path) -> None:
    cells = json.loads(path.read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, (
                f"{path.name} has stored outputs"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_never_seed_the_process(path: Path) -> None:
    # reader code takes a seed argument, builds inside vgcourse.models.initial_weights(seed) or draws from
    # its own torch.Generator: a global seed would hide which numbers depend on it
    cells = json.loads(path.read_text())["cells"]
    code = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    pattern = r"\b(?:torch\.(?:cuda\.|random\.)?manual_seed(?:_all)?|seed_everything|(?:np\.)?random\.seed)\("
    assert not re.findall(pattern, code), f"{path.name} seeds the process: {re.findall(pattern, code)}"


def test_public_api_is_sorted_and_complete() -> None:
    assert vgcourse.__all__ == sorted(vgcourse.__all__)
    for name in vgcourse.__all__:
        assert hasattr(vgcourse, name), name
