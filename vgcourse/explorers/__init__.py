"""One module per chapter: functions that return a ready `vgcourse.widgets.Explorer`."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

from vgcourse.chapters import CHAPTERS, has_module
from vgcourse.widgets import Explorer

__all__ = ["explorer_functions"]


def explorer_functions() -> dict[str, Callable[[], Explorer]]:
    """Every chapter's explorer function that needs no argument, by "chapter.function" (e.g.
    "linear_chain.layer_profile_explorer"), in reading order of the chapters (`vgcourse.chapters`) that
    have an explorer module: what benchmarks and tests sweep."""
    found: dict[str, Callable[[], Explorer]] = {}
    for chapter in CHAPTERS:
        if not has_module(chapter.id, "explorers"):
            continue
        module = importlib.import_module(chapter.module("explorers"))
        for name, function in inspect.getmembers(module, inspect.isfunction):
            parameters = inspect.signature(function).parameters.values()
            needs_argument = any(p.default is p.empty for p in parameters)
            if name.endswith("_explorer") and function.__module__ == module.__name__ and not needs_argument:
                found[f"{chapter.id}.{name}"] = function
    return found
