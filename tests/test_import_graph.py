"""The package's layers: the core never imports figures or widgets, and `import vgcourse` stays light.

core (models, data, training, monitor, diagnose, ...) <- experiments <- plots <- explorers/exercises.
A core module that imported plots or widgets would drag matplotlib and ipywidgets into every script
and create import cycles (diagnose <-> plots.diagnose was one).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vgcourse"
FIGURES_AND_WIDGETS = ("vgcourse.plots", "vgcourse.widgets", "vgcourse.explorers", "ipywidgets", "matplotlib")
# Top-level modules that are not core: widgets themselves, the command-line and instructor tools, and the
# package's __init__ (it hands out vgcourse.Explorer lazily; the last test checks that importing it stays
# light).
NOT_CORE = {
    "__init__",
    "widgets",
    "cli",
    "__main__",
    "instructor",
    "otter_export",
    "grade_worker",
    "reader_notebooks",
}


def _imports(path: Path, package: str | None = None) -> set[str]:
    """Every module name ``path`` imports, at any depth (function-level imports included), as an absolute
    name: a relative import resolved against ``package`` (by default the package ``path`` lies in), and
    ``from a import b`` counted as a and as a.b (b may be a module: ``from vgcourse import plots``)."""
    if package is None and path.is_relative_to(PACKAGE.parent):
        package = ".".join(path.relative_to(PACKAGE.parent).parent.parts)
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = (package or "").split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return names


def _modules(layer: str) -> list[Path]:
    if layer == "core":
        top = [p for p in PACKAGE.glob("*.py") if p.stem not in NOT_CORE]
        return sorted(top + list((PACKAGE / "datasets").glob("*.py")))
    return sorted((PACKAGE / layer).glob("*.py"))


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("core", (*FIGURES_AND_WIDGETS, "vgcourse.experiments", "vgcourse.exercises")),
        ("experiments", (*FIGURES_AND_WIDGETS, "vgcourse.exercises")),
        ("plots", ("vgcourse.widgets", "vgcourse.explorers", "vgcourse.exercises", "ipywidgets")),
    ],
)
def test_layers_import_only_what_is_below_them(layer: str, forbidden: tuple[str, ...]) -> None:
    modules = _modules(layer)
    assert len(modules) >= 3, f"no modules found for {layer}"
    wrong = {
        f"{path.relative_to(PACKAGE.parent)}: {name}"
        for path in modules
        for name in _imports(path)
        if name.startswith(forbidden)
    }
    assert not wrong, f"{layer} modules import from a layer above them: {sorted(wrong)}"


def test_the_check_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from vgcourse.plots.diagnose import diagnosis\n    import ipywidgets\n")
    assert {"vgcourse.plots.diagnose", "ipywidgets"} <= _imports(module)
    # as a module of vgcourse/ and of vgcourse/experiments/ would write them
    module.write_text("from . import widgets\nfrom .plots import layers\nfrom vgcourse import explorers\n")
    assert {"vgcourse.widgets", "vgcourse.plots", "vgcourse.explorers"} <= _imports(module, "vgcourse")
    module.write_text("def f():\n    from ..plots._common import checked\n")
    assert "vgcourse.plots._common" in _imports(module, "vgcourse.experiments")


def test_importing_the_package_imports_no_widgets_or_figures() -> None:
    code = (
        "import sys, vgcourse\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'ipywidgets', 'matplotlib'})\n"
        "print(','.join(heavy))\n"
        "assert vgcourse.Explorer.__name__ == 'Explorer'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import vgcourse imported {out.stdout.strip()}"
