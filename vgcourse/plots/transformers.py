"""Figures of the transformers chapter, from results of ``experiments.transformers``. ``variants``: labels of
``VARIANTS`` (None: every measured one); ``weight``: one of ``WEIGHTS``; ``depth``: default the deepest."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from vgcourse._validation import check_choice
from vgcourse.experiments.transformers import (
    SORT_VOCAB,
    TRAINING_VARIANTS,
    VARIANTS,
    WEIGHTS,
    AttentionEntropyResult,
    GradientProfileResult,
    IdentityPathResult,
    WarmupResult,
)
from vgcourse.plots._common import (
    check_result,
    check_results,
    checked,
    figure_and_axes,
    figure_and_axes_grid,
    legend_below,
    log_scale,
    small_multiples,
)

_WEIGHT_LABELS = {
    "q": "attention W_Q",
    "k": "attention W_K",
    "v": "attention W_V",
    "out": "attention W_O",
    "fc": "MLP W¹ (fc)",
    "proj": "MLP W² (proj)",
}
_COLORS = dict(zip(VARIANTS, ("C3", "C0", "C2", "C4", "C1"), strict=True))


def _variants(result: GradientProfileResult, variants: Sequence[str] | None) -> list[str]:
    if variants is None:
        return list(result.config.variants)
    if isinstance(variants, str) or not isinstance(variants, Sequence) or not variants:
        raise TypeError("variants must be a non-empty sequence of variant labels (or None for all)")
    for label in variants:
        check_choice("variant", label, result.config.variants)
    return list(variants)


@checked
def identity_path(result: IdentityPathResult, *, ax: Axes | None = None) -> Figure:
    """Against depth L (log y): the gradient share reaching x₀ along the identity path alone (Post-LN: 2L LN
    Jacobians, bound ∏ 1/σ; Pre-LN: 1) and ‖∂ℓ/∂x₀‖/‖∂ℓ/∂x_L‖; a marker per seed, lines through the means."""
    check_result(result, IdentityPathResult)
    fig, ax = figure_and_axes(ax, figsize=(6.4, 3.8))
    depths = np.asarray(result.config.depths)
    series = [
        (result.identity_gain, "post", "C3", "-", "o", "Post-LN, identity path only"),
        (result.inverse_sigma, "post", "C3", ":", None, "Post-LN, bound ∏ 1/σ(z)"),
        (result.full_gain, "post", "C3", "--", "s", "Post-LN, every path"),
        (result.identity_gain, "pre", "C0", "-", "o", "Pre-LN, identity path only"),
        (result.full_gain, "pre", "C0", "--", "s", "Pre-LN, every path"),
    ]
    for grid, layout, color, style, marker, label in series:
        values = grid.sel(layout=layout).values
        ax.plot(depths, np.exp(np.log(values).mean(axis=1)), color=color, ls=style, lw=1.5, label=label)
        if marker is not None:
            ax.plot(depths, values, marker, color=color, ms=3.5, alpha=0.6, ls="none")  # a line per seed
    log_scale(ax, "y")
    ax.set_xlabel("blocks L")
    ax.set_ylabel("‖gradient at x₀‖ / ‖∂ℓ/∂x_L‖")
    ax.legend(fontsize=9, loc="lower left")
    fig.tight_layout()
    return fig


@checked
def layer_profile(
    result: GradientProfileResult,
    variant: str | None = None,
    depth: int | None = None,
    weight: str = "proj",
    *,
    ax: Axes | None = None,
) -> Figure:
    """‖∂ℓ/∂W‖_F of ``weight`` in each block of one stack (a line per seed, log y; ``variant`` default the
    first measured), the stream's RMS into each block on the right axis."""
    check_result(result, GradientProfileResult)
    variant = result.config.variants[0] if variant is None else variant
    depth = max(result.config.depths) if depth is None else depth
    check_choice("weight", weight, WEIGHTS)
    profile = result.profile(variant, depth, weight)
    stream = result.stream(variant, depth)
    fig, ax = figure_and_axes(ax, figsize=(6.4, 3.8))
    blocks = np.arange(1, depth + 1)
    ax.plot(blocks, profile.T, "o-", color=_COLORS.get(variant, "C0"), ms=3, lw=1, alpha=0.8)
    log_scale(ax, "y")
    low, high = np.nanmin(profile), np.nanmax(profile)
    ax.set_ylim(min(low, 0.3 * high) / 1.5, max(high, 3 * low) * 1.5)
    ax.set_xlabel("block l (input → output)")
    ax.set_ylabel(f"‖∂ℓ/∂W‖, {_WEIGHT_LABELS[weight]}")
    ax.set_title(f"{variant}, L = {depth}", fontsize=10)
    right = ax.twinx()
    right.plot(blocks, stream[:, :-1].mean(axis=0), color="0.4", ls="--", lw=1.2)
    right.set_ylim(0, max(1.0, float(np.nanmax(stream))) * 1.15)
    right.set_ylabel("RMS of the stream into block l (dashed)", color="0.3")
    fig.tight_layout()
    return fig


@checked
def gradient_profiles(
    result: GradientProfileResult,
    variants: Sequence[str] | None = ("Post-LN", "Pre-LN"),
    weight: str = "proj",
    *,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """One panel per stack: ‖∂ℓ/∂W‖_F of ``weight`` in block l (x: l/L, so depths share an axis), one line
    per depth (seed means, log y, shared y range)."""
    check_result(result, GradientProfileResult)
    chosen = _variants(result, variants)
    check_choice("weight", weight, WEIGHTS)
    fig, flat, own = small_multiples(axes, len(chosen), 2, (3.6, 3.0), width=7.2, sharey=True)
    cmap = plt.get_cmap("viridis")
    depths = result.config.depths
    for ax, variant in zip(flat, chosen, strict=True):
        for k, depth in enumerate(depths):
            mean = result.profile(variant, depth, weight).mean(axis=0)
            position = np.arange(1, depth + 1) / depth
            color = cmap(k / max(1, len(depths) - 1) * 0.85)
            ax.plot(position, mean, "o-", color=color, ms=3, lw=1.2, label=f"L = {depth}")
        log_scale(ax, "y")
        ax.set_title(variant, fontsize=10)
        ax.set_xlabel("block position l / L")
        ax.set_xlim(0, 1.03)
    flat[0].set_ylabel(f"‖∂ℓ/∂W‖, {_WEIGHT_LABELS[weight]}")
    flat[0].legend(fontsize=9, ncols=2)
    if own:
        fig.tight_layout()
    return fig


@checked
def last_block_gradient(
    result: GradientProfileResult,
    variants: Sequence[str] | None = None,
    weight: str = "proj",
    *,
    ax: Axes | None = None,
) -> Figure:
    """The last block's ‖∂ℓ/∂W‖_F against depth L (log-log, seed means with each seed's marker), with a
    dotted 1/√L guide through the Pre-LN value at the smallest depth (the first variant's without Pre-LN)."""
    check_result(result, GradientProfileResult)
    chosen = _variants(result, variants)
    check_choice("weight", weight, WEIGHTS)
    fig, ax = figure_and_axes(ax, figsize=(6.4, 3.8))
    depths = np.asarray(result.config.depths, dtype=float)
    for variant in chosen:
        values = result.last_block(variant, weight)
        color = _COLORS.get(variant)
        ax.plot(depths, values.mean(axis=1), "-", color=color, lw=1.5, label=variant)
        ax.plot(depths, values, "o", color=color, ms=3, alpha=0.6)
    reference = "Pre-LN" if "Pre-LN" in chosen else chosen[0]
    start = result.last_block(reference, weight)[0].mean()
    ax.plot(depths, start * np.sqrt(depths[0] / depths), ":", color="0.3", lw=1.2, label="∝ 1/√L")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(depths, [str(int(d)) for d in depths])
    log_scale(ax, "y")
    ax.set_xlabel("blocks L")
    ax.set_ylabel(f"‖∂ℓ/∂W‖ in block L, {_WEIGHT_LABELS[weight]}")
    ax.legend(fontsize=9, loc="lower left", ncols=2)
    fig.tight_layout()
    return fig


@checked
def stream_growth(result: GradientProfileResult, *, axes: Sequence[Axes] | None = None) -> Figure:
    """At the deepest depth: the RMS of the residual stream x_l against l (left), and how much each block
    changes it, ‖x_l − x_{l−1}‖/‖x_{l−1}‖ (right, log y); seed means."""
    check_result(result, GradientProfileResult)
    depth = max(result.config.depths)
    fig, (left, right), own = figure_and_axes_grid(axes, (1, 2), (7.2, 3.4))
    for variant in result.config.variants:
        color = _COLORS.get(variant)
        style = "--" if variant == "Post-LN" else "-"  # Post-LN and DeepNorm streams both have RMS 1
        cell = {"variant": variant, "depth": depth}
        stream = result.stream(variant, depth)
        left.plot(np.arange(depth + 1), stream.mean(axis=0), color=color, lw=1.5, ls=style)
        right.plot(
            np.arange(1, depth + 1),
            result.update_ratio.sel(**cell).values[:, :depth].mean(axis=0),
            color=color,
            lw=1.5,
            label=variant,
        )
    left.set_xlabel("block l")
    left.set_ylabel(r"RMS of $x_l$")
    left.set_ylim(bottom=0)
    right.set_xlabel("block l")
    right.set_ylabel(r"$\|x_l - x_{l-1}\| \,/\, \|x_{l-1}\|$")
    log_scale(right, "y")
    if own:
        legend_below(fig, right, 0.14, 3, frameon=True)
    return fig


@checked
def token_similarity(result: GradientProfileResult, *, axes: Sequence[Axes] | None = None) -> Figure:
    """At the deepest depth, seed means: the mean cosine similarity between the positions of x_l against l
    (left), and ‖∂ℓ/∂W_Q‖_F in each block (right, log y)."""
    check_result(result, GradientProfileResult)
    depth, weight = max(result.config.depths), "q"
    fig, (left, right), own = figure_and_axes_grid(axes, (1, 2), (7.2, 3.4))
    lowest = 0.0
    for variant in result.config.variants:
        color = _COLORS.get(variant)
        cosine = result.token_cosine.sel(variant=variant, depth=depth).values[:, : depth + 1].mean(axis=0)
        left.plot(np.arange(depth + 1), cosine, color=color, lw=1.5)
        lowest = min(lowest, np.nanmin(cosine))
        right.plot(
            np.arange(1, depth + 1),
            result.profile(variant, depth, weight).mean(axis=0),
            color=color,
            lw=1.5,
            label=variant,
        )
    left.set_xlabel("block l")
    left.set_ylabel(r"cosine between two tokens of $x_l$")
    left.set_ylim(lowest - 0.05, 1.05)  # a cosine can be negative (shallow Post-LN)
    right.set_xlabel("block l")
    right.set_ylabel(f"‖∂ℓ/∂W‖, {_WEIGHT_LABELS[weight]}")
    log_scale(right, "y")
    if own:
        legend_below(fig, right, 0.14, 3, frameon=True)
    return fig


@checked
def attention_saturation(result: AttentionEntropyResult, *, axes: Sequence[Axes] | None = None) -> Figure:
    """Against d_head (log x), logits scaled by 1/√d_head or not: mean attention-row entropy (left; ln T,
    uniform, dotted) and mean ‖diag(p) − ppᵀ‖_F (right). Seed means, a marker per seed."""
    check_result(result, AttentionEntropyResult)
    fig, (left, right), own = figure_and_axes_grid(axes, (1, 2), (7.2, 3.3))
    d = np.asarray(result.config.d_heads, dtype=float)
    labels = {"inv_sqrt_d": "logits scaled by 1/√d_head", "none": "unscaled logits"}
    colors = {"inv_sqrt_d": "C0", "none": "C3"}
    for scale in result.entropy.axes["scale"]:
        for ax, grid in ((left, result.entropy), (right, result.jacobian_norm)):
            values = grid.sel(scale=scale).values
            ax.plot(d, values.mean(axis=1), "-", color=colors[scale], lw=1.5, label=labels[scale])
            ax.plot(d, values, "o", color=colors[scale], ms=3, alpha=0.6)
    left.axhline(result.uniform_entropy, color="0.4", ls=":", lw=1.2, label="uniform row, ln T")
    left.set_ylim(0, result.uniform_entropy * 1.12)
    left.set_ylabel("row entropy (nats)")
    right.set_ylim(bottom=0)
    right.set_ylabel("‖diag(p) − ppᵀ‖_F")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(d, [str(int(v)) for v in d])
        ax.set_xlabel("d_head")
    if own:
        legend_below(fig, left, 0.12, 3, frameon=True)
    return fig


# --- Training, warmup and diagnose (T2) ---

_TRAINING_COLORS = {"Post-LN": "C3", "Post-LN + warmup": "C1", "Pre-LN": "C0", "Pre-LN + warmup": "C2"}


def _moving_average(values: np.ndarray, window: int = 10) -> np.ndarray:
    """Mean of each step and the ``window`` - 1 steps before it (fewer at the start); NaN stays NaN."""
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    end = np.arange(1, len(values) + 1)
    start = np.maximum(0, end - window)
    return (cumulative[end] - cumulative[start]) / (end - start)


@checked
def warmup_curves(
    results: WarmupResult | Sequence[WarmupResult], *, axes: Sequence[Axes] | None = None
) -> Figure:
    """Training loss (10-step moving average) against Adam step, one line per variant and seed, chance loss
    ln V dotted; one panel per learning rate of each result in order (at most three)."""
    items = [results] if isinstance(results, WarmupResult) else check_results(results, WarmupResult)
    panels_of = [(result, j) for result in items for j in range(len(result.config.lrs))]
    if len(panels_of) > 3:
        raise ValueError(f"at most three panels (learning rates) fit the page; got {len(panels_of)}")
    n = len(panels_of)
    fig, panels, own = figure_and_axes_grid(axes, (1, n), (2.4 * n + 0.8, 3.3), sharey=True)
    chance = float(np.log(SORT_VOCAB))
    handles: dict[str, object] = {}
    top = chance * 1.15
    for ax, (result, j) in zip(panels, panels_of, strict=True):
        steps = np.arange(1, result.config.steps + 1)
        for i, variant in enumerate(result.config.variants):
            for s in range(len(result.config.seeds)):
                curve = _moving_average(result.loss.values[i, j, s])
                top = max(top, float(np.nanmax(curve, initial=0.0)) * 1.05)
                (line,) = ax.plot(steps, curve, color=_TRAINING_COLORS.get(variant), lw=1.2, alpha=0.85)
                handles.setdefault(variant, line)
        chance_line = ax.axhline(chance, color="0.4", ls=":", lw=1.2)
        ax.set_title(f"lr = {result.config.lrs[j]:g}", fontsize=10)
        ax.set_xlabel("Adam step")
    for ax in panels:
        ax.set_ylim(0, top)
    panels[0].set_ylabel("training loss")
    order = [label for label in TRAINING_VARIANTS if label in handles]
    handles = {label: handles[label] for label in order} | {f"chance, ln {SORT_VOCAB}": chance_line}
    if own:
        fig.legend(list(handles.values()), list(handles), fontsize=9, loc="lower center", ncols=4)
        fig.tight_layout(rect=(0, 0.13, 1, 1))
    else:
        panels[0].legend(list(handles.values()), list(handles), fontsize=9)
    return fig
