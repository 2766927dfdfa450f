"""One module per chapter: functions that return a ready `vgcourse.widgets.Explorer`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable

from vgcourse.widgets import Explorer

__all__ = ["explorer_functions"]


def explorer_functions() -> dict[str, Callable[[], Explorer]]:
    """Every chapter's explorer function that needs no argument, by "chapter.function" (e.g.
    "linear_chain.layer_profile_explorer"), in chapter-module order: what benchmarks and tests sweep."""
    found: dict[str, Callable[[], Explorer]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name, function in inspect.getmembers(module, inspect.isfunction):
            parameters = inspect.signature(function).parameters.values()
            needs_argument = any(p.default is p.empty for p in parameters)
            if name.endswith("_explorer") and function.__module__ == module.__name__ and not needs_argument:
                found[f"{info.name}.{name}"] = function
    return found
