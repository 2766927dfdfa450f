"""The lock files of the two version ends (ci/version_ends.py, `make versions`) match pyproject.toml.

`make versions` installs them and runs the unit tests; these checks are the fast part: a floor changed in
pyproject.toml without `make versions-lock` fails here, with the command to run.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("version_ends", ROOT / "ci" / "version_ends.py")
assert _spec is not None and _spec.loader is not None
version_ends = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(version_ends)


@pytest.mark.parametrize("end", version_ends.ENDS)
def test_lock_file_is_resolved_from_the_current_ranges(end: str) -> None:
    lock = version_ends.lock_path(end)
    asked = next(line for line in lock.read_text().splitlines() if line.startswith("# Asked for: "))
    assert asked.removeprefix("# Asked for: ").split() == version_ends.requested(end), (
        f"{lock.name} was resolved for other ranges: run `make versions-lock`"
    )


@pytest.mark.parametrize("end", version_ends.ENDS)
def test_lock_file_is_the_end_it_names(end: str) -> None:
    pins = version_ends._pins(version_ends.lock_path(end))
    assert version_ends.check_end(end, pins) == []
    assert all(canonicalize_name(tool) in pins for tool in version_ends.TOOLS)


@pytest.mark.parametrize("end", version_ends.ENDS)
def test_each_end_pins_every_distribution_the_unit_tests_import(end: str) -> None:
    # the third-party modules imported at the top of UNIT_TESTS and of the test helpers they import (yaml
    # through book_toc: the newest end once lacked it, so test_contracts could run only at the lowest)
    local = {p.stem for p in (ROOT / "tests").iterdir()} | {"vgcourse"}
    files = [ROOT / "tests" / "conftest.py", *(ROOT / t for t in version_ends.UNIT_TESTS)]
    seen, modules = set(), set()
    while files:
        path = files.pop()
        seen.add(path)
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for top in {name.split(".")[0] for name in names}:
                helper = ROOT / "tests" / top
                helper = helper / "__init__.py" if helper.is_dir() else helper.with_suffix(".py")
                if top in local and helper.exists() and helper not in seen:
                    files.append(helper)
                elif top not in local and top not in sys.stdlib_module_names and top != "__future__":
                    modules.add(top)
    distributions = importlib.metadata.packages_distributions()
    pins = version_ends._pins(version_ends.lock_path(end))
    missing = {
        m: distributions.get(m)
        for m in modules
        if not any(canonicalize_name(d) in pins for d in distributions.get(m, []))
    }
    assert not missing, f"{version_ends.lock_path(end).name} lacks {missing}: add it to TOOLS and relock"


def test_the_lowest_end_is_below_the_pins_and_the_newest_at_or_above() -> None:
    pinned = version_ends._pins(ROOT / "constraints.txt")
    lowest = version_ends._pins(version_ends.lock_path("lowest"))
    newest = version_ends._pins(version_ends.lock_path("newest"))
    for requirement in version_ends.direct_requirements():
        name = canonicalize_name(requirement.name)
        assert version_ends.Version(lowest[name]) <= version_ends.Version(pinned[name])
        assert version_ends.Version(newest[name]) >= version_ends.Version(pinned[name]), (
            f"constraints.txt pins {name}=={pinned[name]}, newer than the newest end: `make versions-lock`"
        )


def test_colabs_torch_is_inside_the_range() -> None:
    """The Colab path's image (an older torch, as Colab preinstalls) must satisfy pyproject.toml."""
    ranges = {canonicalize_name(r.name): r.specifier for r in version_ends.direct_requirements()}
    image = version_ends._pins(ROOT / "tests" / "colab" / "image.txt")
    for name in ("torch", "torchvision"):
        assert ranges[name].contains(image[name]), f"Colab's {name}=={image[name]} is outside {ranges[name]}"


def test_floor_and_check_end() -> None:
    assert str(version_ends.floor(Requirement("ipywidgets>=7.7,<9"))) == "7.7"
    with pytest.raises(ValueError, match="no lower bound"):
        version_ends.floor(Requirement("torch<3"))
    pins = version_ends._pins(version_ends.lock_path("lowest"))
    assert version_ends.check_end("lowest", {**pins, "torch": "2.14.1"}) == [
        "torch 2.14.1 is not the floor of torch>=2.6"
    ]
    too_old = {**pins, "numpy": "1.23"}
    assert version_ends.check_end("newest", too_old) == ["numpy 1.23 is outside numpy>=1.24"]
    without = {name: version for name, version in pins.items() if name != "tqdm"}
    assert version_ends.check_end("newest", without) == ["tqdm is not installed"]
