"""Explorers: widget controls wired to an experiment's ``run`` and a ``plots`` function.

An explorer owns no computation of its own: each change of a control builds a config from the
controls' values, calls the same ``run(config)`` and plot function that the chapter's static figure
uses, and shows the figure. Works with ipywidgets 7.7 (Colab) and 8.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

ConfigT = TypeVar("ConfigT")
ResultT = TypeVar("ResultT")


class Explorer(Generic[ConfigT, ResultT]):
    """Controls -> ``make_config(**values)`` -> ``run(config)`` -> ``plot(result, **view)`` shown as a PNG.

    Args:
        controls: widget per keyword of ``make_config`` (each has a ``value``).
        make_config: builds the experiment's config from the controls' values.
        run: the experiment's ``run(config) -> result``.
        plot: a ``plots`` function ``plot(result, **view) -> Figure``.
        readout: optional ``readout(result) -> str`` shown as text under the figure.
        title: a line of text above the controls.
        view_controls: widget per keyword of ``plot`` (e.g. which panel to show); changing one redraws
            the current result without recomputing it.
    """

    def __init__(
        self,
        controls: Mapping[str, widgets.ValueWidget],
        make_config: Callable[..., ConfigT],
        run: Callable[[ConfigT], ResultT],
        plot: Callable[..., Figure],
        readout: Callable[[ResultT], str] | None = None,
        title: str = "",
        view_controls: Mapping[str, widgets.ValueWidget] | None = None,
    ) -> None:
        if not controls:
            raise ValueError("an explorer needs at least one control")
        view_controls = dict(view_controls or {})
        for name, control in {**controls, **view_controls}.items():
            if not hasattr(control, "value") or not hasattr(control, "observe"):
                raise TypeError(f"control {name!r} must be an ipywidgets value widget")
        shared = set(controls) & set(view_controls)
        if shared:
            raise ValueError(f"{sorted(shared)} cannot be both a control and a view control")
        self.controls = dict(controls)
        self.view_controls = view_controls
        self.make_config = make_config
        self.run = run
        self.plot = plot
        self.readout = readout
        self.output = widgets.Output()
        self.text = widgets.HTML()
        self.result: ResultT | None = None
        self.png: bytes = b""
        self._margins: dict[tuple, dict[str, float]] = {}
        header = [widgets.HTML(f"<b>{title}</b>")] if title else []
        wrap = {"flex_flow": "row wrap"}  # controls wrap onto more lines in a narrow notebook
        rows = [widgets.HBox(list(self.controls.values()), layout=widgets.Layout(**wrap))]
        if self.view_controls:
            rows.append(widgets.HBox(list(self.view_controls.values()), layout=widgets.Layout(**wrap)))
        self.widget = widgets.VBox([*header, *rows, self.output, self.text])
        self._observe(True)

    def values(self) -> dict[str, Any]:
        """The controls' current values, by keyword (the view controls' are in ``view()``)."""
        return {name: control.value for name, control in self.controls.items()}

    def view(self) -> dict[str, Any]:
        """The view controls' current values, by keyword of ``plot``."""
        return {name: control.value for name, control in self.view_controls.items()}

    def update(self, **values: Any) -> Figure:
        """Set any given controls, recompute (unless only view controls changed) and redraw; return the
        new figure (already closed)."""
        every = {**self.controls, **self.view_controls}
        unknown = set(values) - set(every)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; valid: {sorted(every)}")
        self._observe(False)
        try:
            for name, value in values.items():
                every[name].value = value
        finally:
            self._observe(True)
        return self._refresh(recompute=not set(values) <= set(self.view_controls))

    def _observe(self, on: bool) -> None:
        for control in self.controls.values():
            (control.observe if on else control.unobserve)(self._on_change, names="value")
        for control in self.view_controls.values():
            (control.observe if on else control.unobserve)(self._on_view_change, names="value")

    def _on_change(self, _change: Any) -> None:
        self._refresh()

    def _on_view_change(self, _change: Any) -> None:
        self._refresh(recompute=False)

    def _refresh(self, recompute: bool = True) -> Figure:
        """Run the experiment (when asked, or when there is no result yet), plot, render and show."""
        if recompute or self.result is None:
            self.result = self.run(self.make_config(**self.values()))
        view = self.view()
        figure = self.plot(self.result, **view)
        self.png = self._render(figure, key=tuple(view.values()))
        _show_png(self.output, self.png)
        plt.close(figure)
        self.text.value = self.readout(self.result) if self.readout else ""
        return figure

    def _render(self, figure: Figure, key: tuple = ()) -> bytes:
        """The figure as PNG bytes, drawn once. The margins are fitted to the labels (``tight_layout``) on
        the first update of each view and reused after: fitting measures every label, which would double
        the drawing time, as the inline backend's ``bbox_inches="tight"`` does on every update."""
        if figure.get_layout_engine() is None:  # else the figure lays itself out when it is drawn
            margins = self._margins.get(key)
            if margins is None:
                figure.tight_layout(pad=1.6)
                params = figure.subplotpars
                self._margins[key] = {
                    k: getattr(params, k) for k in ("left", "right", "bottom", "top", "wspace", "hspace")
                }
            else:
                figure.subplots_adjust(**margins)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()

    def show(self) -> widgets.VBox:
        """Draw the initial figure and return the widget (the last expression of a cell displays it)."""
        self._refresh()
        return self.widget

    def _ipython_display_(self) -> None:
        _display(self.show())


def _show_png(output: widgets.Output, png: bytes) -> None:
    """Replace what ``output`` shows by the PNG (as the inline backend shows a figure). Outside IPython
    there is nowhere to show it, and clearing would print terminal escape codes."""
    from IPython import get_ipython
    from IPython.display import Image, display

    if get_ipython() is None:
        return
    with output:
        output.clear_output(wait=True)
        display(Image(data=png, format="png"))


def _display(obj: Any) -> None:
    """Show ``obj`` in the running notebook; outside IPython there is nowhere to show it."""
    from IPython import get_ipython
    from IPython.display import display

    if get_ipython() is not None:
        display(obj)
