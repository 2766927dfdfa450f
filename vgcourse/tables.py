"""Tables as the book shows them (``styled(result.to_frame())``): three significant figures, no index."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def format_value(value: Any, *, digits: int = 3, never: bool = False) -> str:
    """One cell as the book writes it: ``digits`` significant figures, "never"/"∞" for inf, "–" for NaN."""
    if isinstance(value, bool) or value is None:
        return "–" if value is None else ("yes" if value else "no")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) or hasattr(value, "dtype"):
        x = float(value)
        if math.isnan(x):
            return "–"
        if math.isinf(x):
            return "never" if never and x > 0 else ("−∞" if x < 0 else "∞")
        if x == int(x) and abs(x) < 10**digits:
            return str(int(x))
        return f"{x:.{digits}g}".replace("-", "−")
    return str(value)


def styled(frame: Any, *, digits: int = 3, never: Iterable[str] = (), caption: str | None = None) -> Any:
    """``frame`` as a Styler: formatted cells, named index levels as columns, no index, optional caption."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"styled() needs a pandas DataFrame, got {type(frame).__name__}")
    if digits < 1:
        raise ValueError(f"digits must be at least 1, got {digits}")
    never = set(never)
    unknown = never - set(map(str, frame.columns)) - set(n for n in frame.index.names if n)
    if unknown:
        raise ValueError(f"never= names columns that are not in the table: {sorted(unknown)}")
    if any(name is not None for name in frame.index.names):
        frame = frame.reset_index()
    formatters = {
        column: (lambda v, n=str(column) in never: format_value(v, digits=digits, never=n))
        for column in frame.columns
    }
    styler = frame.style.format(formatters).hide(axis="index")
    if caption:
        styler = styler.set_caption(caption)
    return styler
