"""Explorers: widget controls wired to an experiment's ``run`` and a ``plots`` function.

An explorer owns no computation of its own: each change of a control builds a config from the
controls' values, calls the same ``run(config)`` and plot function that the chapter's static figure
uses, and shows the figure. Works with ipywidgets 7.7 (Colab) and 8.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

ConfigT = TypeVar("ConfigT")
ResultT = TypeVar("ResultT")


class Explorer(Generic[ConfigT, ResultT]):
    """Controls -> ``make_config(**values)`` -> ``run(config)`` -> ``plot(result)`` shown in an Output.

    Args:
        controls: widget per keyword of ``make_config`` (each has a ``value``).
        make_config: builds the experiment's config from the controls' values.
        run: the experiment's ``run(config) -> result``.
        plot: a ``plots`` function ``plot(result) -> Figure``.
        readout: optional ``readout(result) -> str`` shown as text under the figure.
        title: a line of text above the controls.
    """

    def __init__(
        self,
        controls: Mapping[str, widgets.ValueWidget],
        make_config: Callable[..., ConfigT],
        run: Callable[[ConfigT], ResultT],
        plot: Callable[[ResultT], Figure],
        readout: Callable[[ResultT], str] | None = None,
        title: str = "",
    ) -> None:
        if not controls:
            raise ValueError("an explorer needs at least one control")
        for name, control in controls.items():
            if not hasattr(control, "value") or not hasattr(control, "observe"):
                raise TypeError(f"control {name!r} must be an ipywidgets value widget")
        self.controls = dict(controls)
        self.make_config = make_config
        self.run = run
        self.plot = plot
        self.readout = readout
        self.output = widgets.Output()
        self.text = widgets.HTML()
        self.result: ResultT | None = None
        header = [widgets.HTML(f"<b>{title}</b>")] if title else []
        controls_row = widgets.HBox(list(self.controls.values()))
        self.widget = widgets.VBox([*header, controls_row, self.output, self.text])
        for control in self.controls.values():
            control.observe(self._on_change, names="value")

    def values(self) -> dict[str, Any]:
        """The controls' current values, by keyword."""
        return {name: control.value for name, control in self.controls.items()}

    def update(self, **values: Any) -> Figure:
        """Set any given controls, recompute and redraw; return the new figure (already closed)."""
        unknown = set(values) - set(self.controls)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; valid: {sorted(self.controls)}")
        for control in self.controls.values():
            control.unobserve(self._on_change, names="value")
        try:
            for name, value in values.items():
                self.controls[name].value = value
        finally:
            for control in self.controls.values():
                control.observe(self._on_change, names="value")
        return self._refresh()

    def _on_change(self, _change: Any) -> None:
        self._refresh()

    def _refresh(self) -> Figure:
        self.result = self.run(self.make_config(**self.values()))
        figure = self.plot(self.result)
        with self.output:
            self.output.clear_output(wait=True)
            _display(figure)
        plt.close(figure)
        self.text.value = self.readout(self.result) if self.readout else ""
        return figure

    def show(self) -> widgets.VBox:
        """Draw the initial figure and return the widget (the last expression of a cell displays it)."""
        self._refresh()
        return self.widget

    def _ipython_display_(self) -> None:
        _display(self.show())


def _display(obj: Any) -> None:
    """Show ``obj`` in the running notebook; outside IPython there is nowhere to show it."""
    from IPython import get_ipython
    from IPython.display import display

    if get_ipython() is not None:
        display(obj)
