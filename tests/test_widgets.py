"""Explorer: controls -> config -> run -> plot, the same functions a chapter's static figure uses."""

from __future__ import annotations

import itertools
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from vgcourse import config as vc
from vgcourse.explorers import explorer_functions
from vgcourse.glue import glue
from vgcourse.widgets import Explorer, compact_png, control

ROOT = Path(__file__).resolve().parents[1]
# The static page's widget (Explorer.page_widget) nests ipywidgets 8's Stack: the book is built with
# ipywidgets 8; with 7.7 (Colab's, the floor `make versions` tests) the live explorer runs instead.
needs_stack = pytest.mark.skipif(not hasattr(widgets, "Stack"), reason="the page widget needs ipywidgets 8")

matplotlib.use("Agg")


@dataclass(frozen=True)
class Config:
    depth: int
    scale: float


@dataclass(frozen=True)
class Result:
    values: list[float]


def run(config: Config) -> Result:
    return Result([config.scale**layer for layer in range(1, config.depth + 1)])


RUNS: list[Config] = []


def counted_run(config: Config) -> Result:
    RUNS.append(config)
    return run(config)


def plot(result: Result, ax=None, style: str = "-") -> Figure:
    fig, ax = plt.subplots() if ax is None else (ax.figure, ax)
    ax.semilogy(range(1, len(result.values) + 1), result.values, style)
    return fig


def make_explorer(**kwargs) -> Explorer:
    controls = {
        "depth": widgets.IntSlider(value=5, min=1, max=50),
        "scale": widgets.FloatLogSlider(value=1.0, base=10, min=-1, max=1),
    }
    return Explorer(controls, Config, run, plot, **kwargs)


def test_update_runs_the_experiment_and_shows_its_readout() -> None:
    # that update() returns a Figure and renders a PNG, at the defaults and both ends of every control of
    # every chapter's explorer: tests/test_contracts.py
    explorer = make_explorer(readout=lambda r: f"last = {r.values[-1]:.3g}")
    explorer.update(depth=10, scale=0.5)
    assert explorer.result == run(Config(10, 0.5))
    assert explorer.controls["depth"].value == 10
    assert explorer.text.value == "last = 0.000977"


def test_moving_a_control_recomputes() -> None:
    explorer = make_explorer()
    explorer.show()
    explorer.controls["depth"].value = 3
    assert explorer.result == run(Config(3, 1.0))


def test_show_returns_the_widget_tree() -> None:
    explorer = make_explorer(title="Depth and scale")
    box = explorer.show()
    assert isinstance(box, widgets.VBox)
    assert explorer.result is not None


def test_update_renders_a_new_png() -> None:
    explorer = make_explorer()
    explorer.update(depth=20)
    first = explorer.png
    explorer.update(depth=3)
    assert explorer.png != first


def test_a_figure_with_its_own_layout_engine_is_left_to_it() -> None:
    def constrained(result: Result) -> Figure:
        fig, ax = plt.subplots(layout="constrained")
        ax.plot(result.values)
        return fig

    controls = {"depth": widgets.IntSlider(value=5, min=1, max=50), "scale": widgets.FloatText(value=0.5)}
    explorer = Explorer(controls, Config, run, constrained)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # subplots_adjust on a constrained figure would warn
        for depth in (5, 6, 7):
            explorer.update(depth=depth)
    assert explorer.png.startswith(b"\x89PNG")


def test_view_controls_redraw_without_recomputing() -> None:
    style = widgets.Dropdown(options=["-", "o"], value="-")
    controls = {"depth": widgets.IntSlider(value=5, min=1, max=50), "scale": widgets.FloatText(value=0.5)}
    explorer = Explorer(controls, Config, counted_run, plot, view_controls={"style": style})
    RUNS.clear()
    explorer.show()
    line = explorer.png
    style.value = "o"  # a view control: the same result drawn differently
    assert RUNS == [Config(5, 0.5)]
    assert explorer.png != line
    assert explorer.view() == {"style": "o"}
    rows = [child for child in explorer.widget.children if isinstance(child, widgets.HBox)]
    assert [list(row.children) for row in rows] == [
        list(controls.values()),
        [style],
    ]  # view controls: own row
    explorer.update(style="-")
    assert len(RUNS) == 1 and explorer.png == line
    explorer.update(depth=6, style="o")
    assert RUNS[-1] == Config(6, 0.5)
    with pytest.raises(ValueError, match="valid: \\['depth', 'scale', 'style'\\]"):
        explorer.update(width=3)


def test_a_name_cannot_be_both_kinds_of_control() -> None:
    with pytest.raises(ValueError, match="both"):
        Explorer(
            {"depth": widgets.IntSlider(value=5)},
            Config,
            run,
            plot,
            view_controls={"depth": widgets.IntSlider(value=5)},
        )
    with pytest.raises(TypeError, match="ipywidgets value widget"):
        Explorer({"depth": widgets.IntSlider(value=5)}, Config, run, plot, view_controls={"style": "-"})


def test_unknown_control_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="valid: \\['depth', 'scale'\\]"):
        make_explorer().update(width=3)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"depth": 500}, "depth cannot take 500; valid: whole numbers from 1 to 50"),  # was clamped to 50
        ({"depth": 2.7}, "depth cannot take 2.7"),  # was cut to 2
        ({"depth": True}, "depth cannot take True"),  # was 1
        ({"scale": 1e6}, "scale cannot take 1000000.0; valid: 0.1 to 10"),  # was clamped to 10
        ({"depth": 3, "scale": "x"}, "scale cannot take 'x'"),  # depth was left at 3, unrun
    ],
)
def test_update_refuses_a_value_its_control_would_change(values: dict, match: str) -> None:
    # a slider clamps an out-of-range value to its end and an IntSlider truncates a real: the run would
    # silently differ from the setting asked for; a refused update leaves every control and the view as
    # they were
    explorer = make_explorer()
    explorer.update(depth=2)
    png = explorer.png
    with pytest.raises(ValueError, match=match):
        explorer.update(**values)
    assert explorer.values() == {"depth": 2, "scale": 1.0}
    assert explorer.result == run(Config(2, 1.0)) and explorer.png == png
    explorer.update(depth=3.0, scale=10**-1)  # a whole real on an int slider, a log slider's end: taken
    assert explorer.values() == {"depth": 3, "scale": 0.1}


def test_bad_controls_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least one control"):
        Explorer({}, Config, run, plot)
    with pytest.raises(TypeError, match="ipywidgets value widget"):
        Explorer({"depth": 3}, Config, run, plot)


def test_glue_returns_the_value_and_checks_the_name() -> None:
    assert glue("answer", 42) == 42
    with pytest.raises(TypeError):
        glue("", 1)


def test_glue_unwraps_numpy_and_torch_scalars() -> None:
    import numpy as np
    import torch

    assert type(glue("np", np.float64(0.5))) is float
    assert type(glue("torch", torch.tensor(3))) is int


# ----------------------------------------------------------------------------------------------------
# Controls built from a config field's declared constraint


class Knobs(vc.Config):
    depth: int = vc.integer(5, low=1, high=100)
    scale: float = vc.positive(1.0)
    act: str = vc.one_of("relu", "tanh", default="relu")
    skip: bool = vc.flag(False)
    depths: tuple[int, ...] = vc.nonempty(vc.integer(low=1, high=50), default=(5,))


def test_control_takes_its_range_or_choices_from_the_fields_constraint() -> None:
    depth = control(Knobs, "depth", 5, "depth L")
    assert isinstance(depth, widgets.IntSlider) and (depth.min, depth.max, depth.step) == (1, 100, 1)
    assert depth.description == "depth L" and depth.continuous_update is False
    assert depth.config_field == (Knobs, "depth")
    assert control(Knobs, "depth", 5, high=50).max == 50  # an explorer may narrow the range
    act = control(Knobs, "act", "tanh")
    assert isinstance(act, widgets.ToggleButtons) and act.options == ("relu", "tanh") and act.value == "tanh"
    assert isinstance(control(Knobs, "act", "relu", kind=widgets.Dropdown), widgets.Dropdown)
    assert isinstance(control(Knobs, "skip", True), widgets.Checkbox)
    labelled = control(Knobs, "skip", False, options=[("plain", False), ("skip", True)])
    assert labelled._options_labels == ("plain", "skip") and labelled.value is False
    log = control(Knobs, "scale", 2.0, low=0.25, high=16, step=0.5, base=2)
    assert isinstance(log, widgets.FloatLogSlider) and (log.min, log.max, log.base) == (-2, 4, 2)
    linear = control(Knobs, "scale", 1.0, low=0.5, high=2.0, step=0.05, readout_format=".2f")
    assert isinstance(linear, widgets.FloatSlider) and linear.readout_format == ".2f"
    stops = control(Knobs, "scale", 0.3, options=[0.1, 0.3, 1.0], kind=widgets.SelectionSlider)
    assert stops._options_values == (0.1, 0.3, 1.0) and stops.continuous_update is False
    element = control(Knobs, "depths", 7, name="depth")  # a tuple field: one element's constraint
    assert element.max == 50 and element.config_field == (Knobs, "depths")


@pytest.mark.parametrize(
    ("field", "value", "kwargs", "error", "match"),
    [
        ("depth", 5, {"high": 200}, ValueError, "depth's upper end must be <= 100"),  # never widen
        ("depth", 0, {}, ValueError, "depth must be >= 1"),
        ("depth", 60, {"high": 50}, ValueError, "depth must be <= 50"),
        ("depth", 2.5, {}, TypeError, "depth must be an integer"),
        ("depth", 5, {"low": 5, "high": 5}, ValueError, "low < high"),
        ("act", "gelu", {}, ValueError, "valid choices: relu, tanh"),
        ("act", "relu", {"options": ["relu", "gelu"]}, ValueError, "valid choices: relu, tanh"),
        ("act", "tanh", {"options": ["relu"]}, ValueError, "unknown act 'tanh'; valid choices: relu"),
        ("skip", 1, {}, TypeError, "True or False"),
        ("scale", 1.0, {"low": 0.0, "high": 2.0, "step": 0.1}, ValueError, "lower end must be > 0"),
        ("scale", 1.05, {"low": 0.5, "high": 2.0, "step": 0.1}, ValueError, "steps of 0.1 from 0.5"),
        ("scale", 1.0, {}, ValueError, "needs low, high"),
        ("depths", 60, {"name": "depth", "high": 50}, ValueError, "depth must be <= 50"),
    ],
)
def test_control_rejects_what_its_field_does_not_accept(
    field: str, value: object, kwargs: dict, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        control(Knobs, field, value, **kwargs)


def test_explorer_checks_its_config_when_built() -> None:
    # a fixed argument outside its field's range fails at once, not at the first update
    with pytest.raises(ValueError, match="depth must be <= 100"):
        Explorer(
            {"scale": widgets.FloatText(value=1.0)}, lambda scale: Knobs(depth=500, scale=scale), run, plot
        )


@pytest.mark.parametrize("warmup", [25.0, False])
def test_a_hand_built_slider_rejects_a_start_of_the_wrong_type(warmup: object) -> None:
    # the warmup slider sets no single config field (0 means no warmup), so its start is checked by hand
    from vgcourse.explorers.transformers import warmup_explorer

    with pytest.raises(TypeError, match="warmup must be an integer"):
        warmup_explorer(warmup=warmup)


# ----------------------------------------------------------------------------------------------------
# Every chapter's explorer: its sliders start where the browser's slider can be


CHAPTER_EXPLORERS = [(label, make()) for label, make in explorer_functions().items()]


# Every chapter having an explorer (found through the registry) is a contract: tests/test_contracts.py


@pytest.mark.parametrize(
    ("label", "explorer"), CHAPTER_EXPLORERS, ids=[label for label, _ in CHAPTER_EXPLORERS]
)
def test_sliders_start_on_a_step_of_their_range(label: str, explorer: Explorer) -> None:
    # The browser snaps a slider to min + k * step (of the exponent, for a log slider) and shows that
    # value; a start between two steps would show a value the figure was not computed for.
    for name, widget in explorer.every.items():
        if isinstance(widget, widgets.FloatLogSlider):
            position = (math.log(widget.value, widget.base) - widget.min) / widget.step
        elif isinstance(widget, (widgets.FloatSlider, widgets.IntSlider)):
            position = (widget.value - widget.min) / widget.step
        else:
            continue
        assert position == pytest.approx(round(position), abs=1e-6), f"{label}: {name} = {widget.value}"


@pytest.mark.parametrize(
    ("label", "explorer"), CHAPTER_EXPLORERS, ids=[label for label, _ in CHAPTER_EXPLORERS]
)
def test_sliders_update_on_release(label: str, explorer: Explorer) -> None:
    # an update takes ~0.1 s: recomputing at every pixel of a drag would queue updates behind the mouse
    for name, widget in explorer.every.items():
        if hasattr(widget, "continuous_update"):
            assert widget.continuous_update is False, f"{label}: {name}"


# ----------------------------------------------------------------------------------------------------
# The static page: views precomputed for a grid, switched in the browser through jslink


def _browser_pick(explorer: Explorer, figure: widgets.Widget, **indices: int) -> widgets.Widget:
    """What the browser shows after the reader moves page controls: set their ``index``, copy every
    jslink's source to its target as the widget manager does, and follow the Stacks to the view."""
    for name, index in indices.items():
        explorer.page_controls[name].index = index
    for link in explorer._page_links:
        (source, source_trait), (target, target_trait) = link.source, link.target
        setattr(target, target_trait, getattr(source, source_trait))
    node = figure
    while isinstance(node, widgets.Stack):
        node = node.children[node.selected_index]
    return node


@needs_stack
def test_page_widget_shows_the_view_computed_for_each_setting() -> None:
    style = widgets.Dropdown(options=["-", "o"], value="-", description="style")
    controls = {
        "depth": widgets.IntSlider(value=5, min=1, max=50, description="depth"),
        "scale": widgets.FloatLogSlider(value=1.0, base=10, min=-1, max=1, description="scale"),
    }
    explorer = Explorer(
        controls,
        lambda depth, scale: Config(min(depth, 5), scale),  # depths 5 and 10: one config
        counted_run,
        plot,
        readout=lambda r: f"last = {r.values[-1]:.3g}",
        view_controls={"style": style},
        page_grid={"depth": [2, 5, 10], "scale": [0.1, 1.0, 10.0]},
    )
    RUNS.clear()
    page = explorer.page_widget()
    assert len(RUNS) == 6  # each distinct config once, both styles drawn from it
    assert explorer.page_dimensions() == [
        ("style", ["-", "o"]),
        ("depth", [2, 5, 10]),
        ("scale", [0.1, 1.0, 10.0]),
    ]
    figure = page.children[-1]
    assert isinstance(figure, widgets.Stack) and len(explorer._page_links) == 1 + 2 + 6
    labels = {name: control.options for name, control in explorer.page_controls.items()}
    assert labels["depth"] == (("2", 2), ("5", 5), ("10", 10))  # as the live slider's readout shows them
    assert labels["scale"] == (("0.1", 0.1), ("1", 1.0), ("10", 10.0))
    start = _browser_pick(explorer, figure)  # the page opens on the live explorer's starting setting
    assert start.children[0].value == compact_png(explorer.update() and explorer.png)
    seen = set()
    for i, j, k in itertools.product(range(2), range(3), range(3)):
        view = _browser_pick(explorer, figure, style=i, depth=j, scale=k)
        image, readout = view.children
        explorer.update(style=["-", "o"][i], depth=[2, 5, 10][j], scale=[0.1, 1.0, 10.0][k])
        assert image.value == compact_png(explorer.png), (i, j, k)
        assert readout.value == explorer.text.value
        seen.add(bytes(image.value))
    assert len(seen) == 12  # a setting whose config repeats another's shows the same view


@needs_stack
def test_page_widget_disables_what_it_cannot_vary() -> None:
    explorer = make_explorer(page_grid={"depth": [5, 6]})
    page = explorer.page_widget()
    assert explorer.page_fixed() == ["scale"]
    assert explorer.page_controls["scale"].disabled and not explorer.page_controls["depth"].disabled
    note = page.children[0].value
    assert "2 precomputed views" in note and "Here: setting fixed at 1." in note and "Colab" in note


@needs_stack
def test_page_note_links_the_chapter_in_colab(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://colab.research.google.com/github/o/r/blob/colab/book/linear_chain.ipynb"
    monkeypatch.setenv("VGCOURSE_COLAB_URLS", json.dumps({"linear_chain": url}))
    explorer = make_explorer(page_grid={"depth": [5, 6]}, chapter="linear_chain")
    assert f'<a href="{url}"' in explorer.page_widget().children[0].value


@needs_stack
def test_show_returns_the_page_widget_while_the_book_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    explorer = make_explorer(page_grid={"depth": [5, 6]})
    assert explorer.show() is explorer.widget
    monkeypatch.setenv("VGCOURSE_SITE_BUILD", "1")
    page = explorer.show()
    assert page is not explorer.widget and isinstance(page.children[-1], widgets.Stack)


@pytest.mark.parametrize(
    ("grid", "match"),
    [
        ({"width": [1, 2]}, "unknown control"),
        ({"depth": [1, 2]}, "starting value 5"),
        ({"depth": [5, 60]}, "cannot take"),
        ({"scale": [1.0, 100.0]}, "cannot take"),
        ({"depth": [5, 5]}, "without repeats"),
        ({"depth": []}, "non-empty"),
    ],
)
def test_bad_page_grids_are_value_errors(grid: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_explorer(page_grid=grid)


@pytest.mark.parametrize(
    ("label", "explorer"), CHAPTER_EXPLORERS, ids=[label for label, _ in CHAPTER_EXPLORERS]
)
def test_chapter_page_grids_are_small_and_on_the_live_steps(label: str, explorer: Explorer) -> None:
    # every chapter's explorer varies on the page; a page view costs ~0.15 s to build and ~10 kB
    dimensions = explorer.page_dimensions()
    assert dimensions and math.prod(len(values) for _, values in dimensions) <= 150, label
    for name, values in dimensions:
        control = {**explorer.controls, **explorer.view_controls}[name]
        if isinstance(control, (widgets.FloatSlider, widgets.IntSlider)):  # Colab's slider can show them
            positions = [(value - control.min) / control.step for value in values]
            assert all(p == pytest.approx(round(p), abs=1e-6) for p in positions), f"{label}: {name}"


# ----------------------------------------------------------------------------------------------------
# Exercises on the static page: no Python to check with, so no Check button and no template verdict


def test_exercise_check_is_disabled_on_the_static_page(monkeypatch: pytest.MonkeyPatch) -> None:
    import vgcourse.exercises.sigmoid_bound  # noqa: F401 (registers the chapter's exercises)
    from vgcourse.exercises import check, exercise_widget

    live = exercise_widget("sigmoid_bound.max_derivative")
    button = live.children[1].children[1]
    assert not button.disabled and button.description == "Check"
    assert "Not yet" in str(check("sigmoid_bound.max_derivative", 0.0))
    url = "https://colab.research.google.com/github/o/r/blob/colab/book/sigmoid_bound.ipynb"
    monkeypatch.setenv("VGCOURSE_SITE_BUILD", "1")
    monkeypatch.setenv("VGCOURSE_COLAB_URLS", json.dumps({"sigmoid_bound": url}))
    page = exercise_widget("sigmoid_bound.max_derivative")
    button, note = page.children[1].children[1], page.children[2]
    assert button.disabled and button.description == "Check in Colab"
    assert f'<a href="{url}"' in note.value and "Not yet" not in note.value
    template = check("sigmoid_bound.max_derivative", 0.0)  # an unanswered template's verdict
    assert not template.correct and "Not yet" not in str(template) + template._repr_html_()
    assert "Check in Colab" in template._repr_html_()
    assert "Correct" in str(check("sigmoid_bound.max_derivative", 0.105))  # a solution's verdict stays


@needs_stack
def test_page_widget_takes_a_checkbox_and_a_slider_as_view_controls() -> None:
    # page_dimensions read every view control's options: a checkbox or slider raised AttributeError
    def drawn(result: Result, ax=None, log: bool = False, alpha: float = 1.0) -> Figure:
        fig = plot(result, ax)
        fig.axes[0].set_yscale("log" if log else "linear")
        fig.axes[0].lines[0].set_alpha(alpha)
        return fig

    log, alpha = widgets.Checkbox(value=False, description="log"), widgets.FloatSlider(value=1.0, max=1.0)
    explorer = make_explorer(view_controls={"log": log, "alpha": alpha}, page_grid={"depth": [5, 6]})
    explorer.plot = drawn
    page = explorer.page_widget()
    assert explorer.page_dimensions() == [("depth", [5, 6]), ("log", [False, True])]
    assert explorer.page_fixed() == ["scale", "alpha"]
    assert [o[0] for o in explorer.page_controls["log"].options] == ["off", "on"]
    assert explorer.page_controls["alpha"].disabled
    for i, j in itertools.product(range(2), range(2)):
        image, _ = _browser_pick(explorer, page.children[-1], log=i, depth=j).children
        explorer.update(log=[False, True][i], depth=[5, 6][j])
        assert image.value == compact_png(explorer.png), (i, j)
    numpy_depths = make_explorer(page_grid={"depth": list(np.arange(4, 7))})  # NumPy integers are numbers
    assert numpy_depths.page_dimensions() == [("depth", [4, 5, 6])]
    with pytest.raises(ValueError, match=r"page_grid\['log'\] has values log cannot take: \[1\]"):
        make_explorer(view_controls={"log": widgets.Checkbox(value=True)}, page_grid={"log": [1, True]})
    with pytest.raises(
        ValueError, match=r"page_grid\['depth'\] has values depth cannot take: \[2.7\]; valid: whole"
    ):
        make_explorer(page_grid={"depth": [5, 2.7]})  # the live slider refuses 2.7 too (Explorer.update)
    with pytest.raises(ValueError, match=r"cannot take: \[0.0, -1.0\]; valid: 0.1 to 10"):
        Explorer(
            {"depth": widgets.IntSlider(value=5), "scale": widgets.FloatLogSlider(value=1.0, min=-1, max=1)},
            Config,
            run,
            plot,
            page_grid={"scale": [1.0, 0.0, -1.0]},
        )
