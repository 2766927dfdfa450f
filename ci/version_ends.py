"""The version range of pyproject.toml, tested at both ends (issue 14 item 8).

pyproject.toml declares ranges (users, and Colab's preinstalled torch, land anywhere in them);
constraints.txt pins the one set the book is built with. This script tests the two ends of the ranges:

- lowest: every direct dependency at the floor its range allows (lowest-direct resolution: `name==floor`;
  what they need in turn at the newest versions that fit), on the oldest Python `requires-python` allows;
- newest: the newest release of everything the ranges allow, on the newest Python found here.

    python ci/version_ends.py lock [lowest|newest ...]  # resolve the ends again (needs the package index)
    python ci/version_ends.py test [lowest|newest ...]  # install each end's lock, run the unit tests there

`lock` writes constraints-lowest.txt and constraints-newest.txt: every package of each end pinned, so
`test` installs exactly that set (`pip install --no-deps -r`, then `pip check`), offline once its wheels
are cached. `test` keeps each end's virtual environment in $XDG_CACHE_HOME/vgcourse/version-venvs/ (default
~/.cache/...), keyed by the lock file and the Python, and makes a new one only when either changes. It runs
the package's unit tests (UNIT_TESTS, not the chapters' claims, notebooks or site) against this checkout's
`vgcourse` (on PYTHONPATH, not installed), and first checks that the environment is the end it claims to be:
each direct dependency at its floor (lowest) or inside its range (newest).

Pip's own settings are kept (index mirrors, find-links) except a machine-wide constraint file: PIP_CONSTRAINT
points at an empty file, so a cap on torch set for the book's build cannot hide the newest release.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
CONSTRAINTS = ROOT / "constraints.txt"
ENDS = ("lowest", "newest")
NEWEST_PYTHONS = ("3.13", "3.12", "3.11")  # the newest end runs on the first one found
TOOLS = ("pytest", "PyYAML")  # what the tests need besides the package (yaml: the toc): as in constraints.txt
# The package's unit tests: fast, and between them they import every module the chapters use, draw
# with every plot and widget helper and run every experiment (test_config_bounds: each run on its small
# arguments and at its fields' edges; test_contracts: each run's result drawn by every plot of its chapter,
# every explorer updated at its controls' extremes). Claims are left out (-m "not claim"): their thresholds
# are measured with the pinned versions; the chapters, the site and the Colab path have their own steps.
UNIT_TESTS = (
    "tests/test_activations.py",
    "tests/test_config.py",
    "tests/test_config_bounds.py",
    "tests/test_contracts.py",
    "tests/test_data.py",
    "tests/test_diagnose.py",
    "tests/test_figure_check.py",
    "tests/test_import_graph.py",
    "tests/test_initializers.py",
    "tests/test_models.py",
    "tests/test_monitor.py",
    "tests/test_plots.py",
    "tests/test_tables.py",
    "tests/test_training.py",
    "tests/test_widgets.py",
)
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vgcourse" / "version-venvs"
CACHE_FORMAT = 1  # bump when the way the environments are made changes


def lock_path(end: str) -> Path:
    return ROOT / f"constraints-{end}.txt"


def direct_requirements() -> list[Requirement]:
    """The package's runtime dependencies, as pyproject.toml declares them."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


def floor(requirement: Requirement) -> Version:
    """The lowest version `requirement` allows: the version of its `>=` (or `==`) clause."""
    floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=")]
    if not floors:
        raise ValueError(f"{requirement} has no lower bound (>=): the lowest end cannot be tested")
    return max(floors)


def _pins(path: Path) -> dict[str, str]:
    """name -> version of a constraints file's `name==version` lines."""
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split(";")[0].strip().split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _python(version: str) -> str | None:
    """A Python `version` ("3.11") interpreter: on PATH, else pyenv's newest; None when there is none."""
    found = shutil.which(f"python{version}")
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    candidates = sorted(pyenv.glob(f"{version}.*/bin/python{version}"), key=lambda p: Version(p.parts[-3]))
    for path in ([found] if found else []) + [str(p) for p in reversed(candidates)]:
        if subprocess.run([path, "-c", "import venv"], capture_output=True).returncode == 0:
            return path
    return None


def python_for(end: str, *, locked: bool = False) -> str:
    """The interpreter of an end: the oldest Python requires-python allows (lowest), the newest (newest).

    With `locked`, the Python minor version the end's lock file was resolved for (its header says)."""
    if locked:
        header = lock_path(end).read_text().split("Resolved for Python ", 1)[1].split()[0]
        wanted = [".".join(header.split(".")[:2])]
    elif end == "lowest":
        requires = tomllib.loads(PYPROJECT.read_text())["project"]["requires-python"]
        oldest = floor(Requirement("python" + requires))
        wanted = [f"{oldest.major}.{oldest.minor}"]
    else:
        wanted = list(NEWEST_PYTHONS)
    for version in wanted:
        if path := _python(version):
            return path
    hint = " (install it, or resolve the end for the Pythons here: `make versions-lock`)" if locked else ""
    raise SystemExit(f"version_ends: the {end} end needs Python {' or '.join(wanted)}, not found{hint}")


def _pip_env() -> dict[str, str]:
    """pip's environment: the caller's settings, no machine-wide constraint, nothing from this repository."""
    leaks = ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")
    env = {k: v for k, v in os.environ.items() if k not in leaks}
    env.update(PIP_CONSTRAINT=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    return env


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        shown = " ".join(map(str, command))
        raise SystemExit(f"{shown} failed:\n{result.stdout[-6000:]}{result.stderr[-6000:]}")
    return result


def requested(end: str) -> list[str]:
    """What `lock` asks pip for: the direct dependencies (at their floors for the lowest end), the tools."""
    asked = []
    for requirement in direct_requirements():
        if end == "lowest":
            extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
            marker = f"; {requirement.marker}" if requirement.marker else ""
            asked.append(f"{requirement.name}{extras}=={floor(requirement)}{marker}")
        else:
            asked.append(str(requirement))
    tools = _pins(CONSTRAINTS)
    asked += [f"{tool}=={tools[canonicalize_name(tool)]}" for tool in TOOLS]
    return asked


def lock(end: str) -> None:
    """Resolve an end with pip (wheels only) and write every package it installs, pinned, to its lock file."""
    python = python_for(end)
    version = _run([python, "-c", "import platform; print(platform.python_version())"]).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        _run(
            [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
             "--quiet", "--report", str(report), *requested(end)],
            env=_pip_env(),
        )  # fmt: skip
        installs = json.loads(report.read_text())["install"]
    pins = sorted((i["metadata"]["name"], i["metadata"]["version"]) for i in installs)
    header = [
        f"# The {end} end of pyproject.toml's ranges (ci/version_ends.py; `make versions` tests it).",
        f"# Resolved for Python {version} on {sys.platform} by: python ci/version_ends.py lock {end}",
        "# Asked for: " + " ".join(requested(end)),
    ]
    lines = [*header, *(f"{name}=={version}" for name, version in sorted(pins, key=lambda p: p[0].lower()))]
    lock_path(end).write_text("\n".join(lines) + "\n")
    print(f"{lock_path(end).name}: {len(pins)} packages for Python {version}")


def _venv(end: str, python: str) -> Path:
    """The cached environment of an end (made from its lock file when missing or stale)."""
    version = _run([python, "-c", "import sys; print(sys.version)"]).stdout.strip()
    digest = hashlib.sha256(lock_path(end).read_bytes() + f"{version} {CACHE_FORMAT}".encode()).hexdigest()
    folder = CACHE / f"{end}-py{version.split()[0]}-{digest[:12]}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{end}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # two runs of the same end: one builds, the other waits
        if (folder / ".complete").exists():
            return folder
        for stale in CACHE.glob(f"{end}-*"):
            shutil.rmtree(stale)
        print(f"version_ends: making the {end} environment {folder} (once per lock and Python)", flush=True)
        _run([python, "-m", "venv", str(folder)])
        pip = [str(folder / "bin" / "python"), "-m", "pip"]
        _run([*pip, "install", "--quiet", "--no-cache-dir", "--no-deps", "--only-binary=:all:",
              "-r", str(lock_path(end))], env=_pip_env())  # fmt: skip
        _run([*pip, "check"], env=_pip_env())
        (folder / ".complete").touch()
    return folder


def check_end(end: str, installed: dict[str, str]) -> list[str]:
    """What is wrong with an environment as the `end` of the ranges (empty when it is that end)."""
    problems = []
    for requirement in direct_requirements():
        if requirement.marker and not requirement.marker.evaluate():
            continue
        have = installed.get(canonicalize_name(requirement.name))
        if have is None:
            problems.append(f"{requirement.name} is not installed")
        elif end == "lowest" and Version(have) != floor(requirement):
            problems.append(f"{requirement.name} {have} is not the floor of {requirement}")
        elif not SpecifierSet(str(requirement.specifier)).contains(have, prereleases=True):
            problems.append(f"{requirement.name} {have} is outside {requirement}")
    return problems


def test(end: str, pytest_args: list[str]) -> int:
    python = python_for(end, locked=True)
    folder = _venv(end, python)
    venv_python = str(folder / "bin" / "python")
    listing = _run([venv_python, "-c", "import importlib.metadata as m, json; print(json.dumps("
                    "{d.metadata['Name']: d.version for d in m.distributions()}))"])  # fmt: skip
    installed = {canonicalize_name(name): version for name, version in json.loads(listing.stdout).items()}
    if problems := check_end(end, installed):
        raise SystemExit(f"version_ends: the {end} environment is not the {end} end: " + "; ".join(problems))
    shown = " ".join(f"{r.name}=={installed[canonicalize_name(r.name)]}" for r in direct_requirements())
    print(f"== {end} end (Python {folder.name.split('-')[1][2:]}): {shown}", flush=True)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env.update(PYTHONPATH=str(ROOT), PYTHONNOUSERSITE="1")
    command = [venv_python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "not claim", *UNIT_TESTS]
    if end == "lowest":  # old releases' deprecation notices about their own dependencies: noise here
        command.append("--disable-warnings")  # (a DeprecationWarning from vgcourse still fails: pyproject)
    return subprocess.run([*command, *pytest_args], cwd=ROOT, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("lock", "test"))
    parser.add_argument("ends", nargs="*", help="lowest, newest or both (the default)")
    args, pytest_args = parser.parse_known_args(argv)
    ends = args.ends or list(ENDS)
    if unknown := set(ends) - set(ENDS):
        parser.error(f"unknown end(s) {sorted(unknown)}: choose from {ENDS}")
    if args.action == "lock":
        for end in ends:
            lock(end)
        return 0
    return max(test(end, pytest_args) for end in ends)


if __name__ == "__main__":
    sys.exit(main())
