"""Explorers: widget controls wired to an experiment's ``run`` and a ``plots`` function.

An explorer owns no computation of its own: each change of a control builds a config from the
controls' values, calls the same ``run(config)`` and plot function that the chapter's static figure
uses, and shows the figure. Works with ipywidgets 7.7 (Colab) and 8.

On the static site there is no Python to call: while the book is built (the Sphinx extension
_ext/static_explorers.py sets ``VGCOURSE_SITE_BUILD=1`` and ``VGCOURSE_COLAB_URLS`` for the kernels),
``show`` returns ``page_widget()`` instead: every view of a grid of settings computed in advance, in
nested ``Stack`` containers whose ``selected_index`` is ``jslink``-ed to the index of a page control.
The embedded widget manager runs those links in the browser, so moving a control shows the figure
computed for its value. The live explorer (Colab, Jupyter) is unchanged.
"""

from __future__ import annotations

import html
import io
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

SITE_BUILD_ENV = "VGCOURSE_SITE_BUILD"
"""Set to "1" while the book is built: explorers show their precomputed page widget."""
COLAB_URLS_ENV = "VGCOURSE_COLAB_URLS"
"""While the book is built: JSON {chapter notebook name: the Colab URL of its reader notebook}."""


def site_build() -> bool:
    """Whether this kernel runs a chapter for the static site (``VGCOURSE_SITE_BUILD=1``)."""
    return os.environ.get(SITE_BUILD_ENV) == "1"


def colab_link(chapter: str, text: str = "in Colab") -> str:
    """HTML: ``text`` linked to the chapter's reader notebook in Colab when the build passed its URL
    (``VGCOURSE_COLAB_URLS``), else ``text`` alone."""
    try:
        url = json.loads(os.environ.get(COLAB_URLS_ENV, "{}")).get(chapter, "")
    except json.JSONDecodeError:
        url = ""
    if not url:
        return html.escape(text)
    return f'<a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener">{html.escape(text)}</a>'


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
        page_grid: the values each control takes on the static page (``page_widget``), which shows the
            view computed for every combination. A control it does not name keeps its starting value
            there and is shown disabled; a view control it does not name takes all its options. Every
            list must hold the control's starting value.
        chapter: the chapter's notebook name, for the page's "open in Colab" link (default: the module
            ``vgcourse.explorers.<chapter>`` that defines ``make_config``).
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
        page_grid: Mapping[str, Sequence[Any]] | None = None,
        chapter: str | None = None,
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
        self.page_grid = _check_page_grid(dict(page_grid or {}), self.controls, self.view_controls)
        module = getattr(make_config, "__module__", "") or ""
        self.chapter = chapter or (
            module.rpartition(".")[2] if module.startswith("vgcourse.explorers.") else ""
        )
        self.title = title
        self.page_seconds = 0.0
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
        """Draw the initial figure and return the widget (the last expression of a cell displays it).
        While the book is built (``VGCOURSE_SITE_BUILD=1``) return ``page_widget()`` instead."""
        if site_build():
            return self.page_widget()
        self._refresh()
        return self.widget

    def page_dimensions(self) -> list[tuple[str, list[Any]]]:
        """The static page's grid: (control name, its values) for every control and view control that
        takes more than one value on the page, fewest values first (the nesting order of
        ``page_widget``). A view control ``page_grid`` does not name takes all its options."""
        grid = dict(self.page_grid)
        for name, control in self.view_controls.items():
            grid.setdefault(name, list(_option_values(control)))
        varied = [(name, list(values)) for name, values in grid.items() if len(values) > 1]
        return sorted(varied, key=lambda item: len(item[1]))

    def page_fixed(self) -> list[str]:
        """The controls (and view controls) that keep their starting value on the static page."""
        varied = {name for name, _ in self.page_dimensions()}
        return [name for name in {**self.controls, **self.view_controls} if name not in varied]

    def page_views(self) -> dict[tuple, tuple[bytes, str]]:
        """Every view of the page's grid: {values in ``page_dimensions`` order: (PNG, readout)}, the PNG
        reduced by ``compact_png``. Each distinct config is run once and its views drawn from that
        result; a setting whose config or view repeats another's (a control its config ignores) shares
        its PNG. Controls outside the grid keep their current values."""
        dimensions = self.page_dimensions()
        names = [name for name, _ in dimensions]
        values = dict(dimensions)
        config_names = [name for name in names if name in self.controls]
        view_names = [name for name in names if name in self.view_controls]
        started = time.perf_counter()
        drawn: dict[Any, tuple[bytes, str]] = {}
        views: dict[tuple, tuple[bytes, str]] = {}
        for config_values in itertools.product(*(values[name] for name in config_names)):
            setting = {**self.values(), **dict(zip(config_names, config_values, strict=True))}
            config = self.make_config(**setting)
            result = None
            for view_values in itertools.product(*(values[name] for name in view_names)):
                view = {**self.view(), **dict(zip(view_names, view_values, strict=True))}
                key = _hashable((config, tuple(view.items())))
                if key is None or key not in drawn:
                    result = self.run(config) if result is None else result
                    figure = self.plot(result, **view)
                    png = compact_png(self._render(figure, key=tuple(view.values())))
                    plt.close(figure)
                    shown = (png, self.readout(result) if self.readout else "")
                    if key is None:
                        views[tuple({**setting, **view}[name] for name in names)] = shown
                        continue
                    drawn[key] = shown
                views[tuple({**setting, **view}[name] for name in names)] = drawn[key]
        self.page_seconds = time.perf_counter() - started
        return views

    def page_widget(self) -> widgets.VBox:
        """The explorer for a page without Python: page controls over ``page_dimensions`` and the views
        of ``page_views`` in nested ``Stack`` containers (level k is chosen by control k's index through
        ``jslink``, which the browser runs). Fixed controls are shown disabled. Needs ipywidgets 8
        (``Stack``), the version the book is built with."""
        dimensions = self.page_dimensions()
        views = self.page_views()
        every = {**self.controls, **self.view_controls}
        page_controls = {name: _page_control(every[name], values) for name, values in dimensions}
        fixed = self.page_fixed()
        for name in fixed:
            page_controls[name] = _disabled_copy(every[name])
        self._page_links: list[Any] = []
        # The page saves every model's whole state: widgets share one layout (and style) model per kind,
        # a repeated view or readout is one widget shown in several places.
        layout, image_layout = widgets.Layout(), widgets.Layout(max_width="100%")
        style = widgets.HTML().style  # an HTMLStyle (not exported by ipywidgets)
        leaves: dict[tuple[bytes, str], widgets.Widget] = {}
        readouts: dict[str, widgets.HTML] = {}

        def level(depth: int, chosen: tuple) -> widgets.Widget:
            if depth == len(dimensions):
                png, text = views[chosen]
                if (png, text) not in leaves:
                    image = widgets.Image(value=png, format="png", layout=image_layout)
                    if text not in readouts:
                        readouts[text] = widgets.HTML(text, layout=layout, style=style)
                    leaves[png, text] = widgets.VBox([image, readouts[text]], layout=layout)
                return leaves[png, text]
            name, values = dimensions[depth]
            stack = widgets.Stack(
                [level(depth + 1, (*chosen, value)) for value in values],
                selected_index=page_controls[name].index,
                layout=layout,
            )
            self._page_links.append(widgets.jslink((page_controls[name], "index"), (stack, "selected_index")))
            return stack

        figure = level(0, ())
        header = [widgets.HTML(f"<b>{self.title}</b>")] if self.title else []
        note = widgets.HTML(self._page_note(len(views), fixed), layout=widgets.Layout(width="100%"))
        wrap = {"flex_flow": "row wrap"}
        rows = [widgets.HBox([page_controls[name] for name in self.controls], layout=widgets.Layout(**wrap))]
        if self.view_controls:
            rows.append(
                widgets.HBox(
                    [page_controls[name] for name in self.view_controls], layout=widgets.Layout(**wrap)
                )
            )
        self.page_controls = page_controls
        return widgets.VBox([*header, note, *rows, figure])

    def _page_note(self, n_views: int, fixed: Sequence[str]) -> str:
        """The line above the page controls: what they do on the page, what they cannot do there (fixed
        controls, options left out of the grid), and where to explore freely."""
        every = {**self.controls, **self.view_controls}
        limits = [
            html.escape(f"{_label_of(every[name])} fixed at {_shown(every[name], every[name].value)}")
            for name in fixed
        ]
        for name, values in self.page_dimensions():
            control = every[name]
            if hasattr(control, "_options_values") and len(values) < len(control._options_values):
                shown = ", ".join(html.escape(_shown(control, value)) for value in values)
                limits.append(f"{html.escape(_label_of(control))}: {shown} only")
        held = f" Here: {'; '.join(limits)}." if limits else ""
        return (
            f"<small>On this page the controls switch between {n_views} precomputed views; sliders snap "
            f"to the computed values.{held} Open the chapter {colab_link(self.chapter)} to compute any "
            "setting.</small>"
        )

    def _ipython_display_(self) -> None:
        _display(self.show())


def compact_png(png: bytes, colors: int = 256) -> bytes:
    """``png`` with at most ``colors`` colours (a palette PNG): about a third of the bytes of a
    matplotlib figure, which has few colours but anti-aliased edges. Transparency is kept."""
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    method = Image.Quantize.FASTOCTREE if image.mode == "RGBA" else Image.Quantize.MEDIANCUT
    buffer = io.BytesIO()
    image.quantize(colors=colors, method=method).save(buffer, format="png", optimize=True)
    return buffer.getvalue()


def _hashable(key: Any) -> Any:
    """``key`` if it can be a dict key (a frozen dataclass config can), else None."""
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _option_values(control: widgets.Widget) -> tuple:
    """The values a selection widget (Dropdown, ToggleButtons, SelectionSlider...) offers."""
    return tuple(control._options_values)


def _label_of(control: widgets.Widget) -> str:
    return getattr(control, "description", "") or "setting"


def _shown(control: widgets.Widget, value: Any) -> str:
    """``value`` as ``control`` displays it: its option label, or its slider readout."""
    if hasattr(control, "_options_values"):
        return str(control._options_labels[list(control._options_values).index(value)])
    if isinstance(control, widgets.IntSlider):
        return f"{int(value)}"
    return format(float(value), getattr(control, "readout_format", ".3g"))


def _page_control(control: widgets.Widget, values: Sequence[Any]) -> widgets.Widget:
    """A control whose ``index`` selects among ``values``: the same kind of selection widget restricted
    to them, or, for a numeric slider, a SelectionSlider labelled as the slider's readout."""
    description = getattr(control, "description", "")
    options = [(_shown(control, value), value) for value in values]
    if hasattr(control, "_options_values"):
        kind = type(control)
        extra = {"continuous_update": True} if isinstance(control, widgets.SelectionSlider) else {}
        return kind(options=options, value=control.value, description=description, **extra)
    return widgets.SelectionSlider(
        options=options, value=control.value, description=description, continuous_update=True
    )


def _disabled_copy(control: widgets.Widget) -> widgets.Widget:
    """A disabled widget showing ``control``'s kind and value (a control the page cannot vary)."""
    if hasattr(control, "_options_values"):
        options = list(zip(control._options_labels, control._options_values, strict=True))
        return type(control)(
            options=options, value=control.value, description=control.description, disabled=True
        )
    keys = ("value", "min", "max", "step", "base", "description", "readout_format")
    return type(control)(**{k: getattr(control, k) for k in keys if hasattr(control, k)}, disabled=True)


def _check_page_grid(
    grid: dict[str, list[Any]],
    controls: Mapping[str, widgets.Widget],
    view_controls: Mapping[str, widgets.Widget],
) -> dict[str, list[Any]]:
    """``grid`` with each list checked: a known control, no repeats, values it can take, its start."""
    every = {**controls, **view_controls}
    unknown = set(grid) - set(every)
    if unknown:
        raise ValueError(f"page_grid names unknown control(s) {sorted(unknown)}; valid: {sorted(every)}")
    checked = {}
    for name, values in grid.items():
        control, values = every[name], list(values)
        if not values or len(set(map(repr, values))) != len(values):
            raise ValueError(f"page_grid[{name!r}] must be a non-empty list without repeats; got {values}")
        if hasattr(control, "_options_values"):
            bad = [v for v in values if v not in control._options_values]
        else:
            bad = [v for v in values if not control.min <= _exponent(control, v) <= control.max]
        if bad:
            raise ValueError(f"page_grid[{name!r}] has values {name} cannot take: {bad}")
        if not any(v == control.value for v in values):
            raise ValueError(f"page_grid[{name!r}] must hold the starting value {control.value!r}")
        checked[name] = values
    return checked


def _exponent(control: widgets.Widget, value: float) -> float:
    """Where ``value`` sits on the slider's scale (its exponent for a log slider)."""
    if isinstance(control, widgets.FloatLogSlider):
        return math.log(value, control.base)
    return value


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
