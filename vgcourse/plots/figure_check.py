"""Checks that a figure can be read where the book shows it: every series inside its axes, the figure no
wider than the text column, no text below the legibility limit (issues 16 and 18).

PNGs saved at 100 dpi show at 1 CSS px per pixel in a 757 px column: at most 7.57 in wide; the smallest
text, 70 % of the 16 px body text, is 8.06 pt. ``allow_clipping(artist)`` exempts a series clipped on
purpose (say so in the caption).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text

INLINE_DPI = 100.0  # the inline backend's figure.dpi in the chapter kernels
COLUMN_PX = 757.0  # the site's text column on a 1366 px desktop, CSS px
BODY_TEXT_PX = 16.0  # the site's body text, CSS px
MIN_TEXT_FRACTION = 0.7  # issue 18: no text below this fraction of the body text
MAX_WIDTH_IN = COLUMN_PX / INLINE_DPI  # widest saved figure (tight box plus padding): 7.57 in
MIN_FONT_PT = MIN_TEXT_FRACTION * BODY_TEXT_PX * 72.0 / INLINE_DPI  # 8.06 pt
CLIPPED_GID = "vgcourse-clipped"  # exempts an artist from the inside-the-axes check (allow_clipping)
TOLERANCE = 1e-3  # how far outside the axes a point may lie, as a fraction of their width or height
PAD_IN = 0.1  # the inline backend's padding around the tight box (savefig.pad_inches)


def allow_clipping(*artists: Artist) -> None:
    """Mark artists (e.g. a reference line) as clipped on purpose: ``check_figure`` then ignores whether
    they lie inside their axes. Say in the caption or prose that they leave the axes."""
    for artist in artists:
        if not isinstance(artist, Artist):
            raise TypeError(f"allow_clipping takes matplotlib artists; got {type(artist).__name__}")
        artist.set_gid(CLIPPED_GID)


def _axes_name(ax: Axes) -> str:
    title = ax.get_title() or ax.get_title("left") or ax.get_title("right")
    if title:
        return f"axes {title!r}"
    return f"axes #{ax.figure.axes.index(ax) + 1} (untitled)"


def _series_name(artist: Artist) -> str:
    label = artist.get_label()
    kind = type(artist).__name__
    if label and not label.startswith("_"):
        return f"{kind} {label!r}"
    return f"{kind} (unlabelled)"


def _outside(ax: Axes, points: np.ndarray, transform: object) -> tuple[int, int]:
    """(finite points, points outside ``ax``), compared in axes coordinates (handles log axes, axhline)."""
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    if points.size == 0:
        return 0, 0
    with np.errstate(all="ignore"):
        in_axes = (transform - ax.transAxes).transform(points)  # type: ignore[operator]
    finite = np.all(np.isfinite(in_axes), axis=1)
    # A point that is not finite in data space (NaN gaps) or <= 0 on a log axis is not drawn.
    finite &= np.all(np.isfinite(points), axis=1)
    try:
        in_data = transform.contains_branch_seperately(ax.transData)  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        in_data = (False, False)
    scales = (ax.get_xscale(), ax.get_yscale())
    for column, (uses_data, scale) in enumerate(zip(in_data, scales, strict=True)):
        if uses_data and scale == "log":
            finite &= points[:, column] > 0
    inside = in_axes[finite]
    out = np.any((inside < -TOLERANCE) | (inside > 1 + TOLERANCE), axis=1)
    return int(finite.sum()), int(out.sum())


def _series(ax: Axes) -> Iterator[tuple[Artist, np.ndarray, object]]:
    for line in ax.lines:
        yield line, line.get_xydata(), line.get_transform()
    for collection in ax.collections:
        # Scatter points are offsets in data coordinates; other collections (fill_between, vlines) keep
        # a default offset of (0, 0) in pixels that is not a data point.
        offset_transform = collection.get_offset_transform()
        if any(offset_transform.contains_branch_seperately(ax.transData)):
            yield collection, np.asarray(collection.get_offsets()), offset_transform


def _texts(artist: Artist) -> Iterator[Text]:
    """The non-empty Text artists under ``artist`` that are visible, with every parent visible."""
    if not artist.get_visible():
        return
    if isinstance(artist, Text) and artist.get_text().strip():
        yield artist
    for child in artist.get_children():
        yield from _texts(child)


def _all_tick_labels(fig: Figure) -> set[int]:
    labels: set[int] = set()
    for ax in fig.axes:
        for axis in ax._axis_map.values():
            for tick in axis.majorTicks + axis.minorTicks:
                labels.update((id(tick.label1), id(tick.label2)))
    return labels


def figure_problems(fig: Figure, *, layout: bool = True) -> list[str]:
    """Every violation of the limits, one sentence each, after laying the figure out as a tight ``savefig``
    does; ``layout=False`` skips the layout (most of the cost), the width and the tick labels."""
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure; got {type(fig).__name__}")
    problems: list[str] = []
    if layout and fig.get_layout_engine() is not None:
        fig.draw_without_rendering()
    width_in = fig.get_tightbbox().width + 2 * PAD_IN if layout else 0.0  # updates ticks and labels
    if width_in > MAX_WIDTH_IN + 1e-9:
        problems.append(
            f"the figure is {width_in:.2f} in wide as saved (tight box + padding), "
            f"{width_in * INLINE_DPI:.0f} px at {INLINE_DPI:.0f} dpi; the text column allows "
            f"{MAX_WIDTH_IN:.2f} in ({COLUMN_PX:.0f} px):"
            " use fewer columns and more rows"
        )

    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for artist, points, transform in _series(ax):
            if not artist.get_visible() or artist.get_gid() == CLIPPED_GID:
                continue
            n, out = _outside(ax, points, transform)
            if out:
                xlim, ylim = ax.get_xlim(), ax.get_ylim()
                problems.append(
                    f"{_axes_name(ax)}: {_series_name(artist)} has {out} of {n} points outside the axes "
                    f"(x limits {xlim[0]:.3g} to {xlim[1]:.3g}, y limits {ylim[0]:.3g} to {ylim[1]:.3g}); "
                    f"widen the limits, or mark it with allow_clipping() if that is intended"
                )

    tick_labels = _all_tick_labels(fig)
    for text in _texts(fig):
        kind = "tick label" if id(text) in tick_labels else "text"
        size = float(text.get_fontsize())
        if size < MIN_FONT_PT - 1e-9:
            where = _axes_name(text.axes) if text.axes is not None else "the figure"
            problems.append(
                f"{where}: {kind} {text.get_text()!r} is {size:.3g} pt "
                f"({size * INLINE_DPI / 72:.1f} px), below the legibility limit of {MIN_FONT_PT:.2f} pt "
                f"({MIN_TEXT_FRACTION:.0%} of the {BODY_TEXT_PX:.0f} px body text)"
            )
    return problems


def check_figure(fig: Figure, *, layout: bool = True) -> None:
    """ValueError naming each axes and item of ``fig`` that breaks a limit (see ``figure_problems``)."""
    problems = figure_problems(fig, layout=layout)
    if problems:
        title = fig.get_suptitle() if hasattr(fig, "get_suptitle") else ""
        name = f"figure {title!r}" if title else "figure"
        raise ValueError(f"{name} breaks the book's figure limits:\n- " + "\n- ".join(problems))
