"""Contracts every chapter keeps, read from the chapter registry (`vgcourse.chapters`).

The registry is the one place that names the chapters: the toc's numbered part, the notebooks' titles and
exercise numbers, the intro's map of the course, ``diagnose``'s chapter links, exercise registration and
explorer discovery must all agree with it. Then, for every registered chapter: a module in each layer
(experiments, plots, explorers, exercises); every config field declares its constraint (vgcourse/config.py),
every config builds from its defaults and rejects a bad value of each field, naming the field; every
plot function takes ``ax`` or ``axes`` and is wrapped by ``@checked`` (the book's figure check); every run
returns its result (a frozen dataclass) on the small arguments of tests/small_runs/<chapter>.py without
drawing from torch's or NumPy's global random generator, and every plot
draws those results, alone and into a given ax or axes, and refuses a first argument of the wrong type (so
do the shared plot modules' plots, on small arguments of their own); every explorer updates at its defaults,
with all its controls at their first, then at their last values, and with one control at a time at a middle
value (a control with two values at the other one; its view passing the book's figure check and changing
with the value), and its view does not depend on the global random generators. A chapter's own test file
holds its claims, not these.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import math
import re
import sys
import types
import typing
from collections import abc
from pathlib import Path
from typing import Any

import pytest
import small_runs
from book_toc import numbered_chapters

from vgcourse import chapters
from vgcourse.chapters import CHAPTERS, LAYERS, chapter, chapter_ids, has_module
from vgcourse.config import Config, Constraint, constraints
from vgcourse.plots._common import STRICT_FIGURES_ENV
from vgcourse.plots._common import checked as checked_plot

ROOT = Path(__file__).resolve().parents[1]


def _first_heading(notebook: Path) -> str:
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    raise AssertionError(f"{notebook} has no '# ' heading")


# ----------------------------------------------------------------------------------------------------
# The registry itself


REGISTER = "add each chapter's (id, title) to _TITLES in vgcourse/chapters.py, in reading order"


def _differences(
    found: list[str], registered: list[str], found_where: str, fix_missing: str, fix_extra: str = REGISTER
) -> str:
    """A failure message: what ``found`` (read from ``found_where``) lacks or adds against the registry's
    list, or that their order differs, and for each the file to edit."""
    lines = [f"{found_where} and the chapter registry (_TITLES in vgcourse/chapters.py) differ:"]
    missing = [name for name in registered if name not in found]
    extra = [name for name in found if name not in registered]
    if missing:
        lines.append(f"registered but not in {found_where}: {missing}; {fix_missing}")
    if extra:
        lines.append(f"in {found_where} but not registered: {extra}; {fix_extra}")
    if not missing and not extra:
        lines.append(f"same entries, other order: {found_where} has {found}, the registry {registered}")
    return "\n".join(lines)


def test_the_toc_numbers_exactly_the_registered_chapters_in_order() -> None:
    registered = [c.notebook for c in CHAPTERS]
    found = numbered_chapters()
    assert found == registered, _differences(
        found, registered, "_toc.yml's numbered part", "add each as a `- file:` entry there, in reading order"
    )


def test_every_notebook_of_the_book_is_a_registered_chapter() -> None:
    found = sorted(p.stem for p in (ROOT / "book").glob("*.ipynb"))
    registered = sorted(chapter_ids())
    assert found == registered, _differences(
        found,
        registered,
        "book/*.ipynb",
        "write book/<id>.ipynb (copy templates/chapter, see CONTRIBUTING.md)",
        f"{REGISTER}, or move a notebook that is no chapter out of book/",
    )


def test_the_intros_map_of_the_course_lists_every_registered_chapter_by_number_in_order() -> None:
    # the map is prose written by hand (CONTRIBUTING step 2): "N. **{doc}`Title <chapter_id>`.** ..."
    intro = (ROOT / "book" / "intro.md").read_text()
    section = re.search(r"^## Map of the course\n(.*?)(?=^## |\Z)", intro, re.MULTILINE | re.DOTALL)
    assert section, "book/intro.md has no '## Map of the course' section"
    found = [
        f"{number}. {target}"
        for number, target in re.findall(r"^(\d+)\. \*\*\{doc\}`[^`<]*<([^>`]+)>`", section[1], re.MULTILINE)
    ]
    registered = [f"{c.number}. {c.id}" for c in CHAPTERS]
    assert found == registered, _differences(
        found,
        registered,
        "book/intro.md's 'Map of the course'",
        "add a numbered item '<number>. **{doc}`<title> <id>`.** <what it teaches>' there, in reading order, "
        "and renumber the items after it",
        "renumber or remove them there, or register the chapter (_TITLES in vgcourse/chapters.py)",
    )


def test_numbers_are_reading_order_and_ids_are_unique() -> None:
    assert [c.number for c in CHAPTERS] == list(range(1, len(CHAPTERS) + 1))
    assert len(set(chapter_ids())) == len(CHAPTERS)


@pytest.mark.parametrize("entry", CHAPTERS, ids=chapter_ids())
def test_each_chapter_notebook_exists_and_carries_the_registered_title(entry: chapters.Chapter) -> None:
    notebook = ROOT / f"{entry.notebook}.ipynb"
    assert notebook.is_file()
    assert _first_heading(notebook) == entry.title


@pytest.mark.parametrize("entry", CHAPTERS, ids=chapter_ids())
def test_each_chapters_exercise_numbers_carry_its_registered_number(entry: chapters.Chapter) -> None:
    # typed in its Markdown and solution prompts ("### Exercise N.k", "Solution to exercise N.k"): they go
    # stale when a chapter is inserted before it; headings count k = 1, 2, ... and each prompt names one
    # (every "Exercise N.k" of a notebook is its own: point to another chapter's exercise with a {doc} link)
    cells = json.loads((ROOT / f"{entry.notebook}.ipynb").read_text())["cells"]
    texts = [("".join(c["source"]) if c["cell_type"] == "markdown" else "") for c in cells]
    texts += [str(c.get("metadata", {}).get("mystnb", {}).get("code_prompt_show", "")) for c in cells]
    typed = [(n, int(k)) for text in texts for n, k in re.findall(r"[Ee]xercise (\w+)\.(\d+)", text)]
    headings = [int(k) for text in texts for k in re.findall(r"^### Exercise \w+\.(\d+)", text, re.MULTILINE)]
    where = f"{entry.notebook}.ipynb (chapter {entry.number})"
    stale = sorted({f"{n}.{k}" for n, k in typed if n != str(entry.number)})
    assert not stale, f"{where} numbers exercises {stale}: write {entry.number}.k (CONTRIBUTING.md, step 2)"
    assert headings == list(range(1, len(headings) + 1)), f"{where}: exercise headings numbered {headings}"
    unknown = sorted({k for _, k in typed} - set(headings))
    assert not unknown, f"{where} names exercises {unknown} that no '### Exercise' heading has"


def test_the_registry_is_data_that_every_layer_may_read() -> None:
    import ast

    tree = ast.parse(Path(chapters.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {name for name in imported if name.startswith("vgcourse")}, imported


def test_lookups_name_the_valid_choices() -> None:
    assert chapter("linear_chain").number == 1  # the first in the reading order, wherever others are added
    with pytest.raises(ValueError, match="linear_chain"):
        chapter("no_such_chapter")
    with pytest.raises(ValueError, match="experiments"):
        chapter("linear_chain").module("widgets")
    assert chapter("linear_chain").module("plots") == "vgcourse.plots.linear_chain"
    assert has_module("linear_chain", "experiments") and set(LAYERS) >= {"experiments", "exercises"}


def test_diagnose_links_every_registered_chapter_by_its_title() -> None:
    from vgcourse.diagnose import CHAPTERS as LINKS

    assert LINKS == {c.id: c.title for c in CHAPTERS}


def test_exercises_register_every_chapter_module_that_exists() -> None:
    import vgcourse.exercises as exercises

    present = [c.id for c in CHAPTERS if has_module(c.id, "exercises")]
    assert list(exercises.CHAPTER_MODULES) == present
    # each module registers its own chapter's exercises (ids "<chapter>.<name>"), at least one
    assert {e.chapter for e in exercises.EXERCISES.values()} == set(present)


def test_explorer_discovery_follows_the_registry() -> None:
    from vgcourse.explorers import explorer_functions

    found = list(dict.fromkeys(label.split(".")[0] for label in explorer_functions()))
    expected = [c.id for c in CHAPTERS if has_module(c.id, "explorers")]
    silent = [f"vgcourse/explorers/{c}.py" for c in expected if c not in found]
    assert found == expected, (
        f"{silent} define no explorer that discovery finds: a public function named <what>_explorer, "
        f"defined in that module, whose parameters all have defaults (found {found}, expected {expected})"
    )


# ----------------------------------------------------------------------------------------------------
# Every chapter has a module in every layer

BEING_WRITTEN: tuple[str, ...] = ()
"""Ids of registered chapters still being written: a module they do not have yet is an explicit xfail
("chapter being written"), not a failure. Empty: every registered chapter has all its modules; list a new
chapter's id here while its modules are written, and remove it when they exist."""


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("chapter_id", chapter_ids())
def test_every_chapter_has_a_module_in_every_layer(chapter_id: str, layer: str, request) -> None:
    if chapter_id in BEING_WRITTEN and not has_module(chapter_id, layer):
        request.applymarker(pytest.mark.xfail(reason="chapter being written", strict=True))
    assert has_module(chapter_id, layer), f"vgcourse/{layer}/{chapter_id}.py is missing"
    importlib.import_module(chapter(chapter_id).module(layer))


# ----------------------------------------------------------------------------------------------------
# Every experiment Config rejects bad input, naming the field


def _config_classes(chapter_id: str) -> list[type]:
    module = importlib.import_module(chapter(chapter_id).module("experiments"))
    return [
        cls
        for name, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module.__name__
        and dataclasses.is_dataclass(cls)
        and (name.endswith("Config") or issubclass(cls, Config))  # NetworkSpec-like parts of a config too
    ]


def _bad_values(constraint: Constraint) -> list[Any]:
    """Values ``constraint`` must reject: out of its bounds, of the wrong type, not a choice, empty."""
    kind = constraint.kind
    if kind in ("int", "float"):
        bad: list[Any] = ["1"]
        if constraint.low is not None:
            bad.append(constraint.low if constraint.low_open else constraint.low - 1)
        if constraint.high is not None:
            bad.append(constraint.high if constraint.high_open else constraint.high + 1)
        if kind == "float":
            bad.append(math.nan)
        if constraint.choices:  # a number that also accepts names: not one of them
            bad.append("no such choice")
        return bad
    if kind == "choice":
        return ["no such choice"]
    if kind == "bool":
        return [1]
    if kind == "instance":
        return [object()]
    if kind == "tuple":
        inner = _bad_values(constraint.each) if constraint.each is not None else []
        return [(), "a string", *[(value,) for value in inner[:1]]]
    return []


def _refusal_of(name: str) -> str:
    """A pattern for a message refusing the field ``name`` itself ("depth must be >= 1", "seeds[1] must ...",
    "unknown norm 'x'; ..."), not one about another field that mentions it ("deep_depth must exceed
    shallow_depth", "n_heads must divide d_model")."""
    field = rf"{re.escape(name)}(\[\d+\])?"
    return rf"(?<![\w.\[]){field} must |unknown {field} "


@pytest.mark.parametrize("chapter_id", [c for c in chapter_ids() if has_module(c, "experiments")])
def test_every_config_builds_from_its_defaults_and_rejects_bad_fields(chapter_id: str) -> None:
    classes = _config_classes(chapter_id)
    assert classes, f"vgcourse.experiments.{chapter_id} defines no *Config dataclass"
    checked = 0
    for cls in classes:
        cls()  # the defaults are valid
        if issubclass(cls, Config):  # declared constraints: every one is enforced at construction
            defaults = {f.name: f.default for f in dataclasses.fields(cls)}
            for name, constraint in constraints(cls).items():
                bad = _bad_values(constraint)
                default = defaults.get(name)
                if constraint.unique and isinstance(default, tuple) and default:
                    bad.append((default[0], default[0]))  # a repeated value
                for value in bad:
                    with pytest.raises((ValueError, TypeError), match=_refusal_of(name)) as error:
                        cls(**{name: value})
                    if constraint.choices:  # the message names the valid choices
                        assert all(str(c) in str(error.value) for c in constraint.choices), str(error.value)
                    checked += 1
    assert checked, f"no Config of {chapter_id} declares a constraint"


@pytest.mark.parametrize("chapter_id", [c for c in chapter_ids() if has_module(c, "experiments")])
def test_every_config_field_declares_its_constraint(chapter_id: str) -> None:
    # a field without a constraint is checked by nothing above: no bad value of it is ever tried
    source = f"vgcourse/experiments/{chapter_id}.py"
    for cls in _config_classes(chapter_id):
        assert issubclass(cls, Config), f"{source}: {cls.__name__} must subclass vgcourse.config.Config"
        undeclared = [f.name for f in dataclasses.fields(cls) if f.name not in constraints(cls)]
        assert not undeclared, (
            f"{source}: {cls.__name__} has fields without a declared constraint: {', '.join(undeclared)}; "
            "give each one with a field helper of vgcourse.config (integer, real, positive, in_range, "
            "one_of, nonempty, flag, instance_of, seed_field, device_field; positive(names=...): a number "
            "or a name)"
        )


@pytest.mark.parametrize("chapter_id", [c for c in chapter_ids() if has_module(c, "experiments")])
def test_every_run_rejects_a_config_of_the_wrong_type_naming_its_class(chapter_id: str) -> None:
    module = importlib.import_module(chapter(chapter_id).module("experiments"))
    runs = []  # (run function, the Config class its first parameter is annotated with)
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if not name.startswith("run") or fn.__module__ != module.__name__:
            continue
        first = next(iter(inspect.signature(fn, eval_str=True).parameters.values()), None)
        if first is not None and isinstance(first.annotation, type) and issubclass(first.annotation, Config):
            runs.append((fn, first.annotation))
    assert runs, f"vgcourse.experiments.{chapter_id} has no run function taking a Config"
    for fn, config_class in runs:
        with pytest.raises(TypeError, match=config_class.__name__):
            fn("not a config")


# ----------------------------------------------------------------------------------------------------
# One naming rule: a run's name says which chapter's run it is


def _public_definitions(chapter_id: str) -> list[str]:
    """Names of the public classes and functions that ``vgcourse.experiments.<chapter_id>`` defines itself
    (imported names excluded)."""
    module = importlib.import_module(chapter(chapter_id).module("experiments"))
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module.__name__
    ]


def test_experiment_classes_and_functions_have_unique_names_across_chapters() -> None:
    owners: dict[str, list[str]] = {}
    for chapter_id in (c for c in chapter_ids() if has_module(c, "experiments")):
        for name in _public_definitions(chapter_id):
            owners.setdefault(name, []).append(chapter_id)
    shared = {name: ids for name, ids in sorted(owners.items()) if len(ids) > 1}
    assert not shared, (
        f"names defined by more than one chapter's experiments module (rename the later one): {shared}"
    )


# ----------------------------------------------------------------------------------------------------
# Every plot function draws into given axes

SHARED_PLOTS = ("activations", "diagnose", "layers")
"""Plot modules that belong to no chapter."""


def _plot_functions(module_name: str) -> list[tuple[str, Any]]:
    module = importlib.import_module(f"vgcourse.plots.{module_name}")
    return [
        (name, function)
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if not name.startswith("_") and function.__module__ == module.__name__
    ]


@pytest.mark.parametrize(
    "module_name", [*[c for c in chapter_ids() if has_module(c, "plots")], *SHARED_PLOTS]
)
def test_every_plot_function_takes_ax_or_axes(module_name: str) -> None:
    functions = _plot_functions(module_name)
    assert functions, f"vgcourse.plots.{module_name} has no public function"
    without = [name for name, f in functions if not {"ax", "axes"} & set(inspect.signature(f).parameters)]
    assert not without, f"vgcourse.plots.{module_name}: {without} take neither ax nor axes"


_CHECKED_CODE = checked_plot(lambda: None).__code__  # every function that @checked returns runs this code


@pytest.mark.parametrize(
    "module_name", [*[c for c in chapter_ids() if has_module(c, "plots")], *SHARED_PLOTS]
)
def test_every_plot_function_checks_its_figure_in_the_book_build(module_name: str) -> None:
    # the book build and the drawing contracts below set VGCOURSE_STRICT_FIGURES=1, which only @checked
    # (vgcourse/plots/_common.py) reads: a plot without it escapes the figure check in both
    unchecked = [name for name, f in _plot_functions(module_name) if f.__code__ is not _CHECKED_CODE]
    assert not unchecked, (
        f"vgcourse.plots.{module_name}: {unchecked} are not wrapped by @checked (from "
        "vgcourse.plots._common): put @checked right above each def, outermost"
    )


# ----------------------------------------------------------------------------------------------------
# Every run returns its result on small arguments, and every plot draws them, alone and into given axes


def _alternatives(annotation: Any) -> tuple[Any, ...]:
    """The members of a union annotation (``A | Sequence[A]``), else the annotation alone."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _value_of(annotation: Any, results: dict[type, list[Any]]) -> Any:
    """A value of type ``annotation`` made of the small results, or None: a result of that type; for a
    sequence (list, tuple) of a result type two results of it (the first two; the first twice if the runs
    made one), for a mapping to a result type the same two under labels; of a union, the first member that
    can be made."""
    for option in _alternatives(annotation):
        origin, args = typing.get_origin(option), typing.get_args(option)
        if option in results:
            return results[option][0]
        if origin in (abc.Sequence, list, tuple) and args and args[0] in results:
            two = (results[args[0]] * 2)[:2]
            return tuple(two) if origin is tuple else two
        if origin in (abc.Mapping, dict) and len(args) == 2 and args[1] in results:
            return {f"result {k + 1}": result for k, result in enumerate((results[args[1]] * 2)[:2])}
    return None


def _class_names(annotation: Any) -> list[str]:
    """The classes an annotation is made of, by name, builtins left out (``Sequence[A] | str`` -> A)."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return [] if annotation.__module__ == "builtins" else [annotation.__name__]
    return [name for arg in typing.get_args(annotation) for name in _class_names(arg)]


def _panels_like(fig: Any) -> tuple[Any, list[Any]]:
    """A new figure of ``fig``'s size with an empty Axes at the grid position of each visible panel of
    ``fig``, in reading order (panels at one position, such as a twin or a colorbar's parent, count once)."""
    import matplotlib.pyplot as plt

    positions: dict[tuple[int, int], Any] = {}
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        if ax.get_visible() and spec is not None:
            top = spec.get_topmost_subplotspec()
            positions.setdefault((top.rowspan.start, top.colspan.start), top)
    assert positions, "the figure has no panel on a grid"
    given = plt.figure(figsize=fig.get_size_inches())
    grid = given.add_gridspec(*next(iter(positions.values())).get_gridspec().get_geometry())
    panels = []
    for _, spec in sorted(positions.items()):
        rows, cols = spec.rowspan, spec.colspan
        panels.append(given.add_subplot(grid[rows.start : rows.stop, cols.start : cols.stop]))
    return given, panels


def _check_draws(name: str, plot: Any, arguments: tuple[Any, ...]) -> None:
    """``plot(*arguments)`` returns a Figure; given an ax (a one-panel plot) or Axes laid out as the panels it
    draws by itself (``axes=``), it returns their figure and draws on each of them, and given anything else
    there (a list as ax, one Axes too many) it raises a TypeError naming the argument; a first argument of
    the wrong type is a TypeError naming the type it takes (unless a builtin: ``str`` may read "a name")."""
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    parameters = inspect.signature(plot).parameters
    try:
        own = plot(*arguments)
        assert isinstance(own, Figure), f"{name} returned {type(own).__name__}, not a Figure"
        if "ax" in parameters:
            given, ax = plt.subplots(figsize=own.get_size_inches())
            panels = [ax]
            assert plot(*arguments, ax=ax) is given, f"{name} did not draw into the given ax"
            wrong = {"ax": [ax]}  # a list, not an Axes
        else:
            given, panels = _panels_like(own)
            assert plot(*arguments, axes=panels) is given, f"{name} did not draw into the given axes"
            wrong = {"axes": [*panels, given.add_subplot(9, 9, 81)]}  # one Axes too many
        empty = [k for k, ax in enumerate(panels) if not ax.has_data()]
        assert not empty, f"{name} drew nothing on the given panel(s) {empty} of {len(panels)}"
        with pytest.raises(TypeError, match=next(iter(wrong))):
            plot(*arguments, **wrong)
        expected = _class_names(typing.get_type_hints(plot)[next(iter(parameters))])
        try:
            plot(object(), *arguments[1:])
        except TypeError as error:
            named = not expected or any(n in str(error) for n in expected)
            assert named, f"{name}: {error!r} names none of {expected}"
        except Exception as error:
            pytest.fail(f"{name}: a first argument of the wrong type raised {error!r}, not a TypeError")
        else:
            pytest.fail(f"{name} accepted a first argument of the wrong type (object())")
    finally:
        plt.close("all")


def _check_plots(
    module_name: str, results: dict[type, list[Any]], plot_arguments: dict[str, Any], source: str
) -> None:
    """Every public plot of ``vgcourse.plots.<module_name>`` draws (`_check_draws`) its ``plot_arguments``
    entry, else its first argument made of ``results`` (`_value_of`); a plot that gets neither fails, and
    so does an entry that names no plot. ``source``: the file that holds both, for the messages."""
    functions = dict(_plot_functions(module_name))
    where = f"vgcourse.plots.{module_name}"
    unknown = sorted(set(plot_arguments) - set(functions))
    assert not unknown, f"{source}: PLOT_ARGUMENTS names {unknown}, which are not public plots of {where}"
    first_results = {cls: found[0] for cls, found in results.items()}
    calls: dict[str, tuple[Any, ...]] = {}
    for name, plot in functions.items():
        if name in plot_arguments:
            calls[name] = tuple(plot_arguments[name](first_results))
            continue
        first, *rest = inspect.signature(plot).parameters.values()
        value = _value_of(typing.get_type_hints(plot)[first.name], results)
        needs_more = any(p.default is p.empty for p in rest)
        if value is not None and not needs_more:
            calls[name] = (value,)
    undrawn = sorted(set(functions) - set(calls))
    assert not undrawn, (
        f"{where}: {undrawn} drawn by nothing: the first argument is no small result (nor a sequence or "
        f"mapping of one), or more arguments are needed; add their entries to PLOT_ARGUMENTS in {source}"
    )
    for name, arguments in calls.items():
        _check_draws(f"{where}.{name}", functions[name], arguments)


@pytest.mark.parametrize("chapter_id", [c for c in chapter_ids() if has_module(c, "experiments")])
def test_every_run_returns_its_result_on_small_arguments_and_its_plots_draw_it(
    chapter_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    import torch

    monkeypatch.setenv(STRICT_FIGURES_ENV, "1")  # every figure also passes the book's figure check
    module = importlib.import_module(chapter(chapter_id).module("experiments"))
    runs = {
        name: fn
        for name, fn in inspect.getmembers(module, inspect.isfunction)
        if name.startswith("run") and fn.__module__ == module.__name__
    }
    small = small_runs.load(chapter_id)
    assert set(small.SMALL_RUNS) == set(runs), (
        f"tests/small_runs/{chapter_id}.py: missing {sorted(set(runs) - set(small.SMALL_RUNS))}, "
        f"not a run {sorted(set(small.SMALL_RUNS) - set(runs))}"
    )
    results: dict[type, list[Any]] = {}
    for name, arguments in small.SMALL_RUNS.items():
        torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()  # noqa: NPY002
        result = runs[name](arguments)
        returns = typing.get_type_hints(runs[name])["return"]
        assert isinstance(result, typing.get_origin(returns) or returns), (name, type(result))
        # no hidden global state: every random number comes from the config's seed (CONTRIBUTING step 3)
        assert torch.equal(torch.random.get_rng_state(), torch_state), (
            f"{name} drew from torch's global generator: build models with seed= or generator="
        )
        # the legacy global state hidden use would change: its key array, and the position in it (a few
        # draws move only the position)
        numpy_now = np.random.get_state()  # noqa: NPY002
        assert np.array_equal(numpy_now[1], numpy_state[1]) and numpy_now[2:] == numpy_state[2:], (
            f"{name} drew from NumPy's global generator"
        )
        for one in result if isinstance(result, list) else [result]:
            assert dataclasses.is_dataclass(one) and type(one).__dataclass_params__.frozen, (
                f"{name}: {type(one).__name__} must be a frozen dataclass"
            )
            results.setdefault(type(one), []).append(one)
    if has_module(chapter_id, "plots"):
        _check_plots(chapter_id, results, getattr(small, "PLOT_ARGUMENTS", {}), small.__file__)


def _shared_plot_arguments() -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Small arguments for the shared plot modules' plots, which take the package's own types rather than a
    chapter's results: the values to draw by type (a ``diagnose`` report of a small tanh MLP and its record)
    and PLOT_ARGUMENTS ("module.plot" -> a function of those values by type returning the arguments)."""
    import torch
    from torch import nn

    from vgcourse.diagnose import diagnose
    from vgcourse.models import MLP

    model = MLP(4, 3, depth=2, width=4, activation="tanh", seed=0)
    x, y = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 3
    report = diagnose(model, nn.CrossEntropyLoss(), (x, y), steps=2)
    model(x).sum().backward()  # weight gradients for grad_histograms
    plot_arguments = {
        "activations.activation_curves": lambda results: (("sigmoid", "relu"),),
        "layers.grad_histograms": lambda results: (model,),
    }
    return (report, report.record), plot_arguments


@pytest.mark.parametrize("module_name", SHARED_PLOTS)
def test_every_shared_plot_draws_small_arguments_alone_and_into_given_axes(
    module_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STRICT_FIGURES_ENV, "1")  # every figure also passes the book's figure check
    values, plot_arguments = _shared_plot_arguments()
    assert {key.split(".")[0] for key in plot_arguments} <= set(SHARED_PLOTS), plot_arguments
    results: dict[type, list[Any]] = {}
    for value in values:
        results.setdefault(type(value), []).append(value)
    prefix = f"{module_name}."
    mine = {key[len(prefix) :]: f for key, f in plot_arguments.items() if key.startswith(prefix)}
    _check_plots(module_name, results, mine, "_shared_plot_arguments() in tests/test_contracts.py")


# ----------------------------------------------------------------------------------------------------
# Every explorer builds, and updates at both ends and in the middle of every control


def _ends(control: Any) -> list[Any]:
    """The first and last value a control offers (a log slider's are base**min and base**max)."""
    import ipywidgets as widgets

    if isinstance(control, widgets.FloatLogSlider):
        return [control.base**control.min, control.base**control.max]
    if isinstance(control, (widgets.FloatSlider, widgets.IntSlider)):
        return [control.min, control.max]
    if isinstance(control, (widgets.Checkbox, widgets.ToggleButton)):
        return [False, True]
    options = getattr(control, "options", None)
    if options:
        values = [value for _, value in widgets.widget_selection._make_options(options)]
        return [values[0], values[-1]]
    return []


def _middle(control: Any, default: Any) -> Any:
    """The value to try a control at alone: a slider's step nearest the middle of its range (a log slider's
    in exponents), the middle option of three or more; of a control with two values (a checkbox, two
    options, a slider of one step), the one that is not ``default``; None for a single value."""
    import ipywidgets as widgets

    slider = isinstance(control, (widgets.FloatLogSlider, widgets.FloatSlider, widgets.IntSlider))
    steps = round((control.max - control.min) / control.step) if slider else 0
    if steps >= 2:
        middle = control.min + steps // 2 * control.step
        if isinstance(control, widgets.FloatLogSlider):
            return control.base ** round(middle, 12)
        return middle if isinstance(control, widgets.IntSlider) else round(middle, 12)
    options = getattr(control, "options", None)
    if not slider and options and len(options) > 2:
        values = [value for _, value in widgets.widget_selection._make_options(options)]
        return values[len(values) // 2]
    first, last = _ends(control) or (default, default)
    return None if first == last else (last if first == default else first)


def _clear_caches(explorer: Any) -> None:
    """Empty every cache the explorer's view can come from, without knowing its internals: its own functions'
    and every ``cache_clear`` of a function (or a class's attribute) of a loaded vgcourse module."""
    found = [explorer.run, explorer.make_config, explorer.plot]
    for name, module in list(sys.modules.items()):
        if name == "vgcourse" or name.startswith("vgcourse."):
            for value in list(vars(module).values()):
                found += [value, *(vars(value).values() if isinstance(value, type) else ())]
    for value in found:
        clear = getattr(value, "cache_clear", None)
        if callable(clear) and str(getattr(value, "__module__", "")).startswith("vgcourse"):
            clear()


def _view_under_global_seed(explorer: Any, seed: int) -> bytes:
    """The explorer's PNG at its current settings, computed afresh (every vgcourse cache cleared) with
    Python's, NumPy's and torch's global generators seeded with ``seed``; their states are restored
    afterwards."""
    import random

    import numpy as np
    import torch

    python_state, numpy_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)  # noqa: NPY002 (the legacy global state is what hidden use would read)
        torch.manual_seed(seed)
        _clear_caches(explorer)
        explorer.update(**explorer.values())  # a control set: the run is redone (update() alone reuses it)
    random.setstate(python_state)
    np.random.set_state(numpy_state)  # noqa: NPY002
    return explorer.png


def _explorer_cases() -> list[Any]:
    from vgcourse.explorers import explorer_functions

    found = explorer_functions()
    cases = [pytest.param(label, id=label) for label in found]
    for c in BEING_WRITTEN:
        if not has_module(c, "explorers") or not any(label.startswith(f"{c}.") for label in found):
            marks = pytest.mark.xfail(reason="chapter being written", strict=True)
            cases.append(pytest.param(f"{c}.<missing>", id=f"{c}.<missing>", marks=marks))
    return cases


@pytest.mark.parametrize("label", _explorer_cases())
def test_every_explorer_updates_at_its_defaults_and_at_both_corners_of_its_controls(label: str) -> None:
    # corners: every control at its first value at once, then every control at its last value (each
    # control's end, in the company of the others' ends: where a run is smallest, largest or most extreme)
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from vgcourse.explorers import explorer_functions

    explorer = explorer_functions()[label]()
    # no hidden global state: the view is the same whatever the global random generators hold
    assert _view_under_global_seed(explorer, 1) == _view_under_global_seed(explorer, 2), label
    assert isinstance(explorer.update(), Figure)
    every = {**explorer.controls, **explorer.view_controls}
    ends = {name: _ends(control) for name, control in every.items()}
    unknown = [name for name, values in ends.items() if not values]
    assert not unknown, f"{label}: no range known for controls {unknown}"
    for corner in (0, 1):
        values = {name: pair[corner] for name, pair in ends.items()}
        assert isinstance(explorer.update(**values), Figure), (label, values)
        assert explorer.values() == {name: values[name] for name in explorer.controls}
        assert explorer.png.startswith(b"\x89PNG")
    plt.close("all")


def test_the_global_seed_check_sees_a_draw_behind_a_package_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # a toy explorer shaped like the transformers chapter's warmup explorer: its run is not cached itself
    # but calls a vgcourse module's lru_cache, which draws from torch's global generator
    import functools

    import ipywidgets as widgets
    import torch
    from matplotlib.figure import Figure

    from vgcourse.widgets import Explorer

    toy = types.ModuleType("vgcourse._toy_cached_draw")

    @functools.lru_cache(maxsize=8)
    def cached_draw(n: int) -> float:
        return float(torch.rand(()))  # hidden global state

    cached_draw.__module__ = toy.__name__
    toy.cached_draw = cached_draw  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, toy.__name__, toy)

    def plot(value: float) -> Figure:
        figure = Figure(figsize=(2, 2))
        figure.add_subplot().bar([0], [value])
        return figure

    n = widgets.IntSlider(value=1, min=1, max=2)
    explorer = Explorer({"n": n}, lambda n: n, lambda n: toy.cached_draw(n), plot)  # type: ignore[attr-defined]
    assert _view_under_global_seed(explorer, 1) != _view_under_global_seed(explorer, 2)


@pytest.mark.parametrize("label", _explorer_cases())
def test_every_explorer_updates_at_a_middle_value_of_each_control(
    label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one control at a time at a value inside its range (_middle; a control with two values at the one
    # that is not its default), the others at their defaults: the view passes the book's figure check,
    # shows the run of the controls' config (a result keeps its config) and its readout, and differs from
    # the defaults' view where the value differs from the default; back at the defaults, the same view
    import matplotlib.pyplot as plt

    from vgcourse.explorers import explorer_functions
    from vgcourse.plots.figure_check import check_figure

    monkeypatch.setenv(STRICT_FIGURES_ENV, "1")  # every figure also passes the book's figure check
    explorer = explorer_functions()[label]()
    start = {**explorer.values(), **explorer.view()}

    def shown(figure: Any, settings: dict[str, Any], layout: bool = False) -> tuple[bytes, str]:
        # the plots' own check (strict) lays out only their first figures per process: here the defaults'
        # view in full, and every view's series and text (a view updated in place, such as
        # relu_dying_units' LiveView, included)
        check_figure(figure, layout=layout)
        assert {**explorer.values(), **explorer.view()} == settings, label
        assert explorer.result.config == explorer.make_config(**explorer.values()), (label, settings)
        assert explorer.text.value == (explorer.readout(explorer.result) if explorer.readout else "")
        return explorer.png, explorer.text.value

    default = shown(explorer.update(), start, layout=True)
    middles = {name: m for name, c in explorer.every.items() if (m := _middle(c, start[name])) is not None}
    assert middles, f"{label}: no control has a middle value"
    previous: dict[str, Any] = {}  # the control set before, back to its default in the same update
    for name, middle in middles.items():
        view = shown(explorer.update(**previous, **{name: middle}), {**start, name: middle})
        assert (view != default) == (middle != start[name]), (
            f"{label}: {name}={middle!r} (default {start[name]!r}): the view must change with the value"
        )
        previous = {name: start[name]}
    assert shown(explorer.update(**previous), start) == default, f"{label}: the defaults' view changed"
    plt.close("all")


# Controls that set no single config field, built by hand (every other control of an explorer is built by
# vgcourse.widgets.control from its field's declared constraint); view controls choose what the plot shows.
HAND_BUILT = {
    "recurrent_networks.lag_profile_explorer": {"arch"},  # "all" or one architecture: the archs tuple
    "residual_networks.layer_profile_explorer": {"skip", "norm", "branch"},  # together: the NetworkSpec
    "transformers.warmup_explorer": {"layout", "warmup"},  # together: the variant and warmup_steps
}


@pytest.mark.parametrize("label", _explorer_cases())
def test_every_explorer_control_stays_inside_its_config_fields_declared_constraint(label: str) -> None:
    # each control derived from a field offers only values the field's constraint accepts, and its first
    # and last values reach that field of the config the explorer builds
    from vgcourse.explorers import explorer_functions

    explorer = explorer_functions()[label]()
    derived = {name: c for name, c in explorer.controls.items() if hasattr(c, "config_field")}
    assert set(explorer.controls) - set(derived) == HAND_BUILT.get(label, set()), label
    for name, control in derived.items():
        cls, field = control.config_field
        rule = constraints(cls)[field]
        element = rule.each if rule.kind == "tuple" and rule.each is not None else rule
        offered = list(getattr(control, "_options_values", ())) or _ends(control)
        for value in offered:
            element.check(f"{label}: {name}", value)  # a ValueError or TypeError names the control
        for value in _ends(control):
            config = explorer.make_config(**{**explorer.values(), name: value})
            held = getattr(config, field)
            assert isinstance(config, cls) and (value in held if rule.kind == "tuple" else held == value), (
                label,
                name,
                value,
            )
