"""Put a computed number into a chapter's prose (myst-nb's ``glue``), harmless where myst-nb is absent."""

from __future__ import annotations

from typing import Any


def glue(name: str, value: Any, display: bool = False) -> Any:
    """Register ``value`` (NumPy and torch scalars as Python numbers) under ``name`` for
    ``{glue:text}`name``` roles and return it; without myst-nb (Colab, Jupyter) only return it."""
    if not isinstance(name, str) or not name:
        raise TypeError("glue name must be a non-empty string")
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()  # NumPy/torch scalars glue as plain numbers, so {glue:text}`x:.3f` formats
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return value
    myst_glue(name, value, display=display)
    return value
