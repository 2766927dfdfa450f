"""The shared plot functions' own behaviour (lines per layer, histograms, activation curves, their
argument checks, log-axis labels) and that none calls plt.show(). That each returns a Figure, draws
into a given ax and refuses a wrong first argument or ax is a contract: tests/test_contracts.py."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from vgcourse import plots
from vgcourse.monitor import METRICS, MonitorRecord


@pytest.fixture(autouse=True)
def no_show_and_close(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("plt.show() must not be called")

    monkeypatch.setattr(plt, "show", fail)
    yield
    plt.close("all")


def make_record(n_steps: int = 4, n_layers: int = 3) -> MonitorRecord:
    """Gradient norms that fall by 10x per layer towards the input, growing slowly with the step."""
    steps = np.arange(n_steps) * 5
    grid = np.outer(1 + 0.1 * np.arange(n_steps), 10.0 ** np.arange(-n_layers + 1, 1))
    values = {metric: grid.copy() for metric in METRICS}
    values["grad_mean"] = grid - grid.mean()  # has negative values
    values["dead_frac"] = np.full_like(grid, np.nan)
    return MonitorRecord([f"layer {i + 1}" for i in range(n_layers)], steps, **values)


def test_metric_over_training_draws_on_the_given_panel_only() -> None:
    _, axes = plt.subplots(1, 2)
    plots.metric_over_training(make_record(), ax=axes[1])
    assert axes[1].has_data() and not axes[0].has_data()


def test_metric_over_training_draws_one_line_per_layer() -> None:
    fig = plots.metric_over_training(make_record(n_layers=3), "update_ratio")
    ax = fig.axes[0]
    assert len(ax.lines) == 3 and ax.get_legend() is not None and ax.get_yscale() == "log"
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0, 5, 10, 15])
    many = plots.metric_over_training(make_record(n_layers=12), log=False)
    assert len(many.axes[0].lines) == 12 and len(many.axes) == 2  # a colorbar instead of a legend
    assert many.axes[0].get_yscale() == "linear"


def test_grad_histograms_accepts_dicts_lists_and_models() -> None:
    rng = np.random.default_rng(0)
    grads = {"layer 1": rng.normal(0, 1e-3, 500), "layer 2": rng.normal(0, 1e-1, 20_000)}
    fig = plots.grad_histograms(grads)
    ax = fig.axes[0]
    assert len(ax.collections) >= 2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["layer 1", "layer 2"]
    _, other = plt.subplots()
    assert plots.grad_histograms(list(grads.items()), ax=other, log_abs=True) is other.figure
    assert other.get_ylabel() == "log10 |gradient|"

    from vgcourse.models import MLP

    torch.manual_seed(0)
    model = MLP(3, 2, depth=2, width=4)
    model(torch.randn(5, 3)).sum().backward()
    labels = [t.get_text() for t in plots.grad_histograms(model).axes[0].get_xticklabels()]
    assert labels == model.layer_names()
    with_tensor = plots.grad_histograms([("w", torch.randn(50)), ("empty", np.array([]))])
    assert isinstance(with_tensor, Figure)


def test_activation_curves_draw_each_function_and_its_derivative() -> None:
    fig = plots.activation_curves(("sigmoid", "relu"), x_range=(-3, 3))
    ax = fig.axes[0]
    lines = [line for line in ax.lines if not line.get_label().startswith("_")]  # not the axis lines
    assert [line.get_label() for line in lines] == ["sigmoid", "sigmoid'", "relu", "relu'"]
    x, y = ax.lines[0].get_data()
    np.testing.assert_allclose(y, torch.sigmoid(torch.as_tensor(x)).numpy(), rtol=1e-6)
    _, dy = ax.lines[1].get_data()
    assert max(dy) == pytest.approx(0.25, abs=1e-4)
    assert ax.lines[1].get_color() == ax.lines[0].get_color() and ax.lines[1].get_linestyle() == "--"
    assert x.min() == -3 and x.max() == 3
    _, other = plt.subplots()
    assert plots.activation_curves("tanh", derivative=False, ax=other) is other.figure
    assert [line.get_label() for line in other.lines if not line.get_label().startswith("_")] == ["tanh"]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda r: plots.metric_over_training(r, metric="grad_nrom"), ValueError, "unknown metric"),
        (lambda r: plots.metric_over_training(r, log="yes"), TypeError, "log"),
        (lambda r: plots.metric_over_training(r, metric=None), TypeError, "metric"),
        (lambda r: plots.metric_over_training(r, "loss"), ValueError, "valid choices"),
        (lambda r: plots.metric_over_training(MonitorRecord(["a"], [], **EMPTY)), ValueError, "empty"),
        (lambda r: plots.grad_histograms({}), ValueError, "empty"),
        (lambda r: plots.grad_histograms([np.zeros(3)]), TypeError, "pair"),
        (lambda r: plots.grad_histograms({"a": [1.0, 2.0]}, max_points=1), ValueError, "max_points"),
        (lambda r: plots.grad_histograms(nn.Linear(2, 2)), ValueError, "backward"),
        (lambda r: plots.activation_curves(("sigmoid", "swish")), ValueError, "unknown activation"),
        (lambda r: plots.activation_curves(3), TypeError, "activations"),
        (lambda r: plots.activation_curves(x_range=(2, -2)), ValueError, "low < high"),
        (lambda r: plots.activation_curves(x_range=3), TypeError, "x_range"),
        (lambda r: plots.activation_curves(derivative="yes"), TypeError, "derivative"),
    ],
)
def test_bad_arguments_are_rejected(call, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call(make_record())


EMPTY = {metric: np.empty((0, 1)) for metric in METRICS}


# ----------------------------------------------------------------------------------------------------
# Log axes: plain-text tick labels (no mathtext to parse on every draw)


def _tick_labels(ax, minor: bool = False) -> list[str]:
    ax.figure.canvas.draw()
    return [t.get_text() for t in ax.yaxis.get_ticklabels(minor=minor) if t.get_text()]


def _mantissas(locations: np.ndarray) -> set[int]:
    return {round(float(x / 10 ** np.floor(np.log10(x)))) for x in locations}


def test_plain_log_formatter_writes_powers_with_superscripts() -> None:
    from matplotlib.ticker import LogFormatterSciNotation

    from vgcourse.plots._common import PlainLogFormatter

    plain, mathtext = PlainLogFormatter(), LogFormatterSciNotation()
    for formatter in (plain, mathtext):
        formatter.create_dummy_axis()
        formatter.set_locs([1e-3, 1e5])
    assert plain(1e-3) == "10⁻³"
    assert plain(1.0) == "10⁰"
    assert plain(1e12) == "10¹²"
    assert mathtext(1e-3) == "$\\mathdefault{10^{-3}}$"  # what it replaces


def test_log_scale_labels_decades_and_minor_ticks_without_mathtext() -> None:
    from vgcourse.plots._common import log_scale

    _fig, ax = plt.subplots()
    log_scale(ax, "y")
    ax.set_ylim(1e-6, 1e2)
    labels = _tick_labels(ax)
    assert "10⁻⁶" in labels and "10²" in labels
    assert not any("$" in label for label in labels)
    assert _mantissas(ax.yaxis.get_minorticklocs()) == {2, 5}  # sparse on 8 decades
    ax.set_ylim(1.5e-4, 9e-4)  # less than a decade: minor ticks at 2..9 × 10^k carry the labels
    assert _mantissas(ax.yaxis.get_minorticklocs()) == set(range(2, 10))
    minor = _tick_labels(ax, minor=True)
    assert "2×10⁻⁴" in minor and len(minor) >= 3
    assert not any("$" in label for label in minor)


def test_log_scale_base_and_axis() -> None:
    from vgcourse.plots._common import log_scale

    fig, ax = plt.subplots()
    log_scale(ax, "x", base=2)
    ax.set_xlim(1, 64)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert "2⁶" in labels and ax.get_xscale() == "log"
    with pytest.raises(ValueError, match="valid choices: x, y"):
        log_scale(ax, "z")
