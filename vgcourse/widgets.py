"""Explorers: controls -> config -> the chapter's ``run`` -> its plot, shown as a PNG (ipywidgets 7.7 and 8).

While the book is built (``VGCOURSE_SITE_BUILD=1``), ``Explorer.show`` returns ``page_widget()``: views
precomputed for a grid of settings, switched in the browser through ``jslink``-ed ``Stack`` containers.
"""

from __future__ import annotations

import html
import io
import itertools
import json
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from traitlets import TraitError

from vgcourse._validation import check_float, check_int
from vgcourse.config import constraints

SITE_BUILD_ENV = "VGCOURSE_SITE_BUILD"  # "1" while the book is built: explorers show their page widget
COLAB_URLS_ENV = "VGCOURSE_COLAB_URLS"  # JSON {chapter: the Colab URL of its reader notebook}, in a build


def site_build() -> bool:
    """Whether this kernel runs a chapter for the static site (``VGCOURSE_SITE_BUILD=1``)."""
    return os.environ.get(SITE_BUILD_ENV) == "1"


def colab_link(chapter: str, text: str = "in Colab") -> str:
    """HTML: ``text`` linked to the chapter's Colab notebook when the build passed its URL, else ``text``."""
    try:
        url = json.loads(os.environ.get(COLAB_URLS_ENV, "{}")).get(chapter, "")
    except json.JSONDecodeError:
        url = ""
    if not url:
        return html.escape(text)
    return f'<a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener">{html.escape(text)}</a>'


def select(
    name: str,
    value: Any,
    options: Sequence[Any],
    description: str | None = None,
    *,
    kind: type[widgets.Widget] = widgets.ToggleButtons,
) -> widgets.Widget:
    """A ``kind`` selection widget over ``options`` (values or (label, value) pairs) starting at ``value``."""
    values = [o[1] if isinstance(o, tuple) else o for o in options]
    if not any(value == v and type(value) is type(v) for v in values):
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(map(str, values))}")
    extra = {"continuous_update": False} if kind is widgets.SelectionSlider else {}
    description = name if description is None else description
    return kind(options=list(options), value=value, description=description, **extra)


def control(
    config: type,
    field: str,
    value: Any,
    description: str | None = None,
    *,
    name: str | None = None,
    low: float | None = None,
    high: float | None = None,
    step: float | None = None,
    base: float | None = None,
    options: Sequence[Any] | None = None,
    kind: type[widgets.Widget] = widgets.ToggleButtons,
    **traits: Any,
) -> widgets.Widget:
    """A control for ``config.field`` (an element of a tuple field) from its declared constraint: an int ->
    IntSlider, a real -> FloatSlider by ``step`` (``base``: FloatLogSlider), a choice or ``options`` -> a
    ``kind`` selection, a flag -> Checkbox. low, high and options may narrow the constraint, never widen
    it. The widget remembers ``config_field = (config, field)``."""
    rule = constraints(config)[field]
    rule = rule.each if rule.kind == "tuple" and rule.each is not None else rule
    name = name or field
    description = name if description is None else description
    value = rule.check(name, value)
    if options is None and rule.kind == "choice":
        options = rule.choices
    if options is not None:
        for option in options:
            rule.check(name, option[1] if isinstance(option, tuple) else option)
        widget = select(name, value, options, description, kind=kind)
    elif rule.kind == "bool":
        widget = widgets.Checkbox(value=value, description=description)
    elif rule.kind in ("int", "float"):
        low, high = rule.low if low is None else low, rule.high if high is None else high
        if low is None or high is None or (step is None and rule.kind == "float"):
            raise ValueError(f"a slider for {name} needs low, high and (for a real) step")
        rule.check(f"{name}'s lower end", low)  # inside the declared range
        rule.check(f"{name}'s upper end", high)
        if not low < high:
            raise ValueError(f"{name}'s slider needs low < high; got [{low}, {high}]")
        check = check_int if rule.kind == "int" else check_float
        check(name, value, low, high)
        step = step or 1
        scale = (lambda x: math.log(x, base)) if base else (lambda x: x)
        position = (scale(value) - scale(low)) / step
        if abs(position - round(position)) > 1e-6:
            raise ValueError(f"{name} must lie on the slider's steps of {step} from {low}; got {value}")
        real = widgets.FloatLogSlider if base else widgets.FloatSlider
        slider = widgets.IntSlider if rule.kind == "int" else real
        ends = {"min": round(scale(low), 12), "max": round(scale(high), 12)} | (
            {"base": base} if base else {}
        )
        widget = slider(
            value=value, step=step, description=description, continuous_update=False, **ends, **traits
        )
    else:
        raise TypeError(f"{config.__name__}.{field} ({rule.describe()}) has no control; build one by hand")
    widget.config_field = (config, field)
    return widget


ConfigT = TypeVar("ConfigT")
ResultT = TypeVar("ResultT")


class Explorer(Generic[ConfigT, ResultT]):
    """``controls`` -> ``make_config(**values)`` -> ``run(config)`` -> ``plot(result, **view)``, shown as a
    PNG with ``readout(result)`` under it; ``view_controls`` redraw without recomputing. ``page_grid``: the
    values each control takes on the static page (others stay at their start; view controls take all their
    options, a checkbox both states).
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
        self.every = {**self.controls, **view_controls}  # controls and view controls, by name
        self.page_grid = _check_page_grid(dict(page_grid or {}), self.every)
        module = getattr(run, "__module__", "") or ""  # vgcourse.experiments.<chapter>, usually
        in_chapter = module.startswith(("vgcourse.experiments.", "vgcourse.explorers."))
        self.chapter = chapter or (module.rpartition(".")[2] if in_chapter else "")
        make_config(**self.values())  # a bad fixed argument (width, seed...) fails here, naming its field
        self.title = title
        self.make_config = make_config
        self.run = run
        self.plot = plot
        self.readout = readout
        self.output = widgets.Output()
        self.text = widgets.HTML()
        self.result: ResultT | None = None
        self.png: bytes = b""
        self._margins: dict[tuple, dict[str, float]] = {}
        self.widget = widgets.VBox([*self._rows(self.controls, self.view_controls), self.output, self.text])
        self._on_change = lambda _change: self._refresh()
        self._on_view_change = lambda _change: self._refresh(recompute=False)
        self._observe(True)

    def _rows(self, controls: Mapping[str, Any], view_controls: Mapping[str, Any]) -> list[widgets.Widget]:
        """The title, then a row of controls and one of view controls (rows wrap in a narrow notebook)."""
        rows = [widgets.HTML(f"<b>{self.title}</b>")] if self.title else []
        for group in (controls, view_controls):
            if group:
                rows.append(widgets.HBox(list(group.values()), layout=widgets.Layout(flex_flow="row wrap")))
        return rows

    def values(self) -> dict[str, Any]:
        """The controls' current values, by keyword (the view controls' are in ``view()``)."""
        return {name: control.value for name, control in self.controls.items()}

    def view(self) -> dict[str, Any]:
        """The view controls' current values, by keyword of ``plot``."""
        return {name: control.value for name, control in self.view_controls.items()}

    def update(self, **values: Any) -> Figure:
        """Set the given controls, recompute (unless only views changed), redraw; the (closed) figure. A value
        a control cannot take as given is a ValueError, and every control keeps its value."""
        unknown = set(values) - set(self.every)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; valid: {sorted(self.every)}")
        before = {name: self.every[name].value for name in values}
        self._observe(False)
        try:
            for name, value in values.items():
                _set_exactly(name, self.every[name], value)
        except ValueError:
            for name, value in before.items():
                self.every[name].value = value
            raise
        finally:
            self._observe(True)
        return self._refresh(recompute=not set(values) <= set(self.view_controls))

    def _observe(self, on: bool) -> None:
        for group, handler in ((self.controls, self._on_change), (self.view_controls, self._on_view_change)):
            for control in group.values():
                (control.observe if on else control.unobserve)(handler, names="value")

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
        """The figure as PNG bytes; margins fitted (``tight_layout``) on a view's first draw and reused, since
        fitting every time would double the drawing time."""
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
        """Draw the initial figure and return the widget (``page_widget()`` while the book is built)."""
        if site_build():
            return self.page_widget()
        self._refresh()
        return self.widget

    def page_dimensions(self) -> list[tuple[str, list[Any]]]:
        """(control name, values) of every control varied on the static page, fewest values first."""
        grid = dict(self.page_grid)
        for name, control in self.view_controls.items():
            grid.setdefault(name, _every_value(control))
        varied = [(name, list(values)) for name, values in grid.items() if len(values) > 1]
        return sorted(varied, key=lambda item: len(item[1]))

    def page_fixed(self) -> list[str]:
        """The controls (and view controls) that keep their starting value on the static page."""
        varied = {name for name, _ in self.page_dimensions()}
        return [name for name in self.every if name not in varied]

    def page_views(self) -> dict[tuple, tuple[bytes, str]]:
        """{values in ``page_dimensions`` order: (compact PNG, readout)}; each distinct config runs once and
        equal (config, view) pairs share one PNG."""
        dimensions = self.page_dimensions()
        names = [name for name, _ in dimensions]
        values = dict(dimensions)
        config_names = [name for name in names if name in self.controls]
        view_names = [name for name in names if name in self.view_controls]
        drawn: dict[Any, tuple[bytes, str]] = {}
        views: dict[tuple, tuple[bytes, str]] = {}
        for config_values in itertools.product(*(values[name] for name in config_names)):
            setting = {**self.values(), **dict(zip(config_names, config_values, strict=True))}
            config = self.make_config(**setting)
            result = None
            for view_values in itertools.product(*(values[name] for name in view_names)):
                view = {**self.view(), **dict(zip(view_names, view_values, strict=True))}
                key = (config, tuple(view.items()))
                if key not in drawn:
                    result = self.run(config) if result is None else result
                    figure = self.plot(result, **view)
                    png = compact_png(self._render(figure, key=tuple(view.values())))
                    plt.close(figure)
                    drawn[key] = (png, self.readout(result) if self.readout else "")
                views[tuple({**setting, **view}[name] for name in names)] = drawn[key]
        return views

    def page_widget(self) -> widgets.VBox:
        """The explorer without Python: page controls ``jslink``-ed to nested ``Stack``s of ``page_views``
        (level k chosen by control k); fixed controls shown disabled. Needs ipywidgets 8."""
        dimensions = self.page_dimensions()
        views = self.page_views()
        page_controls = {name: _page_control(self.every[name], values) for name, values in dimensions}
        fixed = self.page_fixed()
        for name in fixed:
            page_controls[name] = _disabled_copy(self.every[name])
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
        note = widgets.HTML(self._page_note(len(views), fixed), layout=widgets.Layout(width="100%"))
        rows = self._rows(
            *({name: page_controls[name] for name in g} for g in (self.controls, self.view_controls))
        )
        rows.insert(1 if self.title else 0, note)
        self.page_controls = page_controls
        return widgets.VBox([*rows, figure])

    def _page_note(self, n_views: int, fixed: Sequence[str]) -> str:
        """The line above the page controls: what they can and cannot do there, and where to go for more."""
        every = self.every
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
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:  # outside IPython there is nowhere to show it
            display(self.show())


def compact_png(png: bytes, colors: int = 256) -> bytes:
    """``png`` as a palette PNG of at most ``colors`` colours (about a third of the bytes)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    method = Image.Quantize.FASTOCTREE if image.mode == "RGBA" else Image.Quantize.MEDIANCUT
    buffer = io.BytesIO()
    image.quantize(colors=colors, method=method).save(buffer, format="png", optimize=True)
    return buffer.getvalue()


def _set_exactly(name: str, control: widgets.Widget, value: Any) -> None:
    """Set ``control.value = value``; a ValueError naming what it takes if it refuses ``value`` or would
    change it (a slider clamps to its ends, an IntSlider cuts 2.7 to 2 and takes True as 1)."""
    try:
        control.value = value
        taken = control.value
    except TraitError:
        taken = _REFUSED
    same = isinstance(taken, bool) == isinstance(value, bool) and (
        taken == value
        or (isinstance(taken, float) and isinstance(value, (int, float)) and math.isclose(taken, value))
    )
    if not same:
        raise ValueError(f"{name} cannot take {value!r}; valid: {_valid_values(control)}")


_REFUSED = object()


def _valid_values(control: widgets.Widget) -> str:
    """What ``control`` takes, in words: its options, or its slider's range."""
    if hasattr(control, "_options_values"):
        return ", ".join(map(repr, control._options_values))
    if isinstance(control, widgets.FloatLogSlider):
        return f"{control.base**control.min:g} to {control.base**control.max:g}"
    if isinstance(control, widgets.IntSlider):
        return f"whole numbers from {control.min} to {control.max}"
    if isinstance(control, widgets.FloatSlider):
        return f"{control.min:g} to {control.max:g}"
    return f"values of a {type(control).__name__}"


def _label_of(control: widgets.Widget) -> str:
    return getattr(control, "description", "") or "setting"


def _every_value(control: widgets.Widget) -> list[Any]:
    """The values a view control takes on the static page unless ``page_grid`` names it: every option, both
    states of a checkbox, or (a slider, a text box) its starting value only."""
    if hasattr(control, "_options_values"):
        return list(control._options_values)
    return [False, True] if isinstance(control.value, bool) else [control.value]


def _takes(control: widgets.Widget, value: Any) -> bool:
    """Whether ``control`` can show ``value``: one of its options, a bool for a checkbox, within a slider's
    range (a log slider's ends are exponents; an int slider's a whole number), any number for a text box."""
    if hasattr(control, "_options_values"):
        return value in control._options_values
    if isinstance(control.value, bool):
        return isinstance(value, bool)
    if not isinstance(value, numbers.Real) or isinstance(value, bool):  # NumPy numbers are Real too
        return False
    if not hasattr(control, "min"):
        return True
    if isinstance(control, widgets.FloatLogSlider):
        return value > 0 and control.min <= math.log(value, control.base) <= control.max
    if isinstance(control, widgets.IntSlider) and value != int(
        value
    ):  # as _set_exactly: 2.7 is no whole number
        return False
    return control.min <= value <= control.max


def _shown(control: widgets.Widget, value: Any) -> str:
    """``value`` as ``control`` displays it: its option label, on/off, or its slider readout."""
    if hasattr(control, "_options_values"):
        return str(control._options_labels[list(control._options_values).index(value)])
    if isinstance(control.value, bool):
        return "on" if value else "off"
    if isinstance(control, widgets.IntSlider):
        return f"{int(value)}"
    return format(float(value), getattr(control, "readout_format", ".3g"))


def _page_control(control: widgets.Widget, values: Sequence[Any]) -> widgets.Widget:
    """A control whose ``index`` selects among ``values``: the same selection widget, or a SelectionSlider."""
    options = [(_shown(control, value), value) for value in values]
    kind = type(control) if hasattr(control, "_options_values") else widgets.SelectionSlider
    extra = {"continuous_update": True} if kind is widgets.SelectionSlider else {}
    return kind(
        options=options, value=control.value, description=getattr(control, "description", ""), **extra
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


def _check_page_grid(grid: dict[str, list[Any]], every: Mapping[str, widgets.Widget]) -> dict[str, list[Any]]:
    """``grid`` with each list checked: a known control, no repeats, values it can take, its start."""
    unknown = set(grid) - set(every)
    if unknown:
        raise ValueError(f"page_grid names unknown control(s) {sorted(unknown)}; valid: {sorted(every)}")
    checked = {}
    for name, values in grid.items():
        control, values = every[name], list(values)
        if not values or len(set(map(repr, values))) != len(values):
            raise ValueError(f"page_grid[{name!r}] must be a non-empty list without repeats; got {values}")
        bad = [v for v in values if not _takes(control, v)]
        if bad:
            raise ValueError(
                f"page_grid[{name!r}] has values {name} cannot take: {bad}; valid: {_valid_values(control)}"
            )
        if not any(v == control.value for v in values):
            raise ValueError(f"page_grid[{name!r}] must hold the starting value {control.value!r}")
        checked[name] = values
    return checked


def _show_png(output: widgets.Output, png: bytes) -> None:
    """Show the PNG in ``output`` (outside IPython, nothing: clearing would print escape codes)."""
    from IPython import get_ipython
    from IPython.display import Image, display

    if get_ipython() is None:
        return
    with output:
        output.clear_output(wait=True)
        display(Image(data=png, format="png"))
