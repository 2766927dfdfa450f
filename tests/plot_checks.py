"""The check the chapters' plot tests share: a plot function draws a new figure or into a given ax."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure


def check_plot(plot: Callable[..., Figure], result: object) -> None:
    """``plot(result)`` returns a Figure, ``plot(result, ax=ax)`` returns ax's figure, and anything but a
    result (``object()``) is a TypeError."""
    assert isinstance(plot(result), Figure)
    _, ax = plt.subplots()
    assert plot(result, ax=ax) is ax.figure
    with pytest.raises(TypeError):
        plot(object())
