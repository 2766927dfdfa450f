"""vgcourse.plots.figure_check: series inside their axes, width and font limits, and the strict mode of
the plot functions (VGCOURSE_STRICT_FIGURES=1)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from vgcourse.plots import _common
from vgcourse.plots.figure_check import (
    INLINE_DPI,
    MAX_WIDTH_IN,
    MIN_FONT_PT,
    allow_clipping,
    check_figure,
    figure_problems,
)


def compliant(width: float = 6.4) -> Figure:
    fig, ax = plt.subplots(figsize=(width, 3.5))
    x = np.arange(1, 31)
    ax.plot(x, 0.5**x, label="0.5^l")
    ax.scatter(x, 0.9**x, label="0.9^l")
    ax.axhline(1e-3, ls="--", label="reference")
    ax.set_yscale("log")
    ax.set_title("compliant")
    ax.set_xlabel("layer")
    ax.set_ylabel("norm")
    ax.legend()
    fig.tight_layout()
    return fig


def test_limits_follow_from_the_inline_backend_and_the_page() -> None:
    """The inline backend overrides no rc default (matplotlib-inline >= 0.1.4), so it renders at
    matplotlib's figure.dpi and saves with a tight bounding box: the derivation in the docstring holds."""
    from matplotlib_inline.config import InlineBackend

    backend = InlineBackend()
    assert backend.rc == {}
    assert backend.print_figure_kwargs.get("bbox_inches") == "tight"
    assert matplotlib.rcParamsDefault["figure.dpi"] == INLINE_DPI
    assert MAX_WIDTH_IN == pytest.approx(7.57)
    assert MIN_FONT_PT == pytest.approx(0.7 * 16 * 72 / 100)
    assert 8.0 < MIN_FONT_PT < 8.1


def test_a_compliant_figure_passes() -> None:
    fig = compliant()
    assert figure_problems(fig) == []
    assert check_figure(fig) is None


def test_a_line_outside_its_axes_is_named_with_the_axes_title() -> None:
    fig = compliant()
    ax = fig.axes[0]
    ax.set_ylim(1e-6, 1)  # 0.5^l falls below 1e-6 from l = 20 on
    with pytest.raises(ValueError, match=r"axes 'compliant': Line2D '0\.5\^l' has 11 of 30 points outside"):
        check_figure(fig)


def test_a_reference_line_off_scale_and_scatter_points_are_caught() -> None:
    fig = compliant()
    ax = fig.axes[0]
    ax.axhline(1e3, label="far reference")  # above every data point: autoscale does not follow axhline
    ax.scatter([5.0], [1e5], label="outlier point")
    ax.set_ylim(1e-10, 10)
    problems = figure_problems(fig)
    assert any("Line2D 'far reference'" in p for p in problems)
    assert any("PathCollection 'outlier point' has 1 of 1 points" in p for p in problems)


def test_allow_clipping_exempts_a_series_and_nan_gaps_are_ignored() -> None:
    fig = compliant()
    ax = fig.axes[0]
    (line,) = ax.plot([1, 2, 3], [1.0, 1e9, np.nan], label="clipped on purpose")
    ax.plot([1, 2, 3], [np.nan, -1.0, 0.5], label="non-positive on a log axis")  # not drawn there
    ax.set_ylim(1e-10, 10)
    assert any("clipped on purpose" in p for p in figure_problems(fig))
    allow_clipping(line)
    assert figure_problems(fig) == []
    with pytest.raises(TypeError, match="artists"):
        allow_clipping("not an artist")  # type: ignore[arg-type]


def test_small_text_is_flagged_and_the_limit_is_sharp() -> None:
    fig = compliant()
    ax = fig.axes[0]
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=8)
    ax.annotate("note", (5, 0.5), fontsize=8.5)
    problems = figure_problems(fig)
    assert any("tick label" in p and "7 pt" in p for p in problems)
    assert any("text '0.5^l' is 8 pt" in p for p in problems)  # legend text
    assert not any("'note'" in p for p in problems)  # 8.5 pt is above the limit


def test_hidden_text_is_not_flagged() -> None:
    fig = compliant()
    ax = fig.axes[0]
    ax.text(0.5, 0.5, "hidden", fontsize=5, visible=False)
    legend = ax.legend(fontsize=5)
    legend.set_visible(False)
    assert figure_problems(fig) == []


def test_a_figure_wider_than_the_column_is_flagged() -> None:
    fig, axes = plt.subplots(1, 3, figsize=(10.2, 3.0))
    for ax in axes:
        ax.plot([0, 1], [0, 1])
    problems = figure_problems(fig)
    assert len(problems) == 1 and "the text column allows 7.57 in" in problems[0]
    narrow, axes = plt.subplots(1, 3, figsize=(7.0, 3.0))
    narrow.tight_layout()
    assert figure_problems(narrow) == []


def test_check_figure_rejects_non_figures() -> None:
    with pytest.raises(TypeError, match="Figure"):
        check_figure("figure")  # type: ignore[arg-type]


def test_strict_mode_checks_the_outermost_plot_function_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Figure] = []

    @_common.checked
    def panel(ax: object = None) -> Figure:
        fig, ax = _common.figure_and_axes(ax)  # type: ignore[arg-type]
        ax.plot([0, 1], [0, 1])
        ax.set_ylim(0, 0.5)  # the line leaves the axes
        return fig

    @_common.checked
    def grid() -> Figure:
        fig, axes = plt.subplots(1, 2, figsize=(6, 3))
        for ax in axes:
            panel(ax)
            ax.set_ylim(0, 1)  # fixed once the panel is drawn
        return fig

    def spy(fig: Figure, *, layout: bool) -> None:
        calls.append(fig)
        check_figure(fig, layout=layout)

    monkeypatch.setattr(_common, "check_figure", spy)
    monkeypatch.setattr(_common, "_checked_counts", {})
    monkeypatch.delenv(_common.STRICT_FIGURES_ENV, raising=False)
    panel()
    assert calls == []
    monkeypatch.setenv(_common.STRICT_FIGURES_ENV, "1")
    with pytest.raises(ValueError, match=r"panel: figure breaks the book's figure limits"):
        panel()
    calls.clear()
    fig = grid()
    assert calls == [fig]
    # Past FULL_CHECKS figures of one function, the series are still checked (without the layout).
    for _ in range(_common.FULL_CHECKS + 1):
        with pytest.raises(ValueError, match="outside the axes"):
            panel()


def test_the_check_without_layout_skips_width_and_tick_labels_only() -> None:
    fig, axes = plt.subplots(1, 3, figsize=(10.2, 3.0))
    axes[0].plot([0, 1], [0, 1])
    axes[0].set_ylim(0, 0.5)
    axes[0].tick_params(labelsize=6)
    axes[1].set_title("tiny title", fontsize=6)
    problems = figure_problems(fig, layout=False)
    assert len(problems) == 2
    assert "outside the axes" in problems[0] and "'tiny title' is 6 pt" in problems[1]
    full = figure_problems(fig)
    assert any("text column" in p for p in full) and any("tick label" in p for p in full)
