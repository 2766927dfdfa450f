"""Small arguments for every chapter's runs, one module per chapter, read by the contract tests."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


def load(chapter_id: str) -> ModuleType:
    """tests/small_runs/<chapter_id>.py: ``SMALL_RUNS``, run name -> the smallest arguments that still take
    every code path of that run, and optionally ``PLOT_ARGUMENTS``, plot name -> a function of the small
    results (a dict: result type -> the first result of that type) returning the plot's positional arguments,
    for a plot that needs more than one result or an argument no run returns."""
    name = f"{__name__}.{chapter_id}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:  # the file exists; something it imports does not
            raise
        pytest.fail(f"add tests/small_runs/{chapter_id}.py with SMALL_RUNS (run name -> small arguments)")
