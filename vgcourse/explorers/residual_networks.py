"""Explorer of the residual-networks chapter: depth × skip connections × normalization × branch scale
→ per-block norms."""

from __future__ import annotations

import ipywidgets as widgets

from vgcourse._validation import check_choice
from vgcourse.experiments.residual_networks import (
    BlockProfileConfig,
    BlockProfileResult,
    NetworkSpec,
    run_block_profile,
)
from vgcourse.plots import residual_networks as plots
from vgcourse.widgets import Explorer, control, select

SKIPS = ("off", "on")
NORM_CHOICES = ("none", "batch", "layer")
BRANCHES = ("1", "1/sqrt(L)", "zero-init")


def network_spec(skip: str = "on", norm: str = "none", branch: str = "1") -> NetworkSpec:
    """The ``NetworkSpec`` of the explorer's controls. Without skip connections there is no branch to
    scale, so ``branch`` is ignored. ``branch``: "1" (α = 1), "1/sqrt(L)" (α = 1/√L) or "zero-init"
    (each branch's last layer starts at 0).
    """
    check_choice("skip", skip, SKIPS)
    check_choice("norm", norm, NORM_CHOICES)
    check_choice("branch", branch, BRANCHES)
    residual = skip == "on"
    return NetworkSpec(
        skip=residual,
        norm=None if norm == "none" else norm,
        branch_scale="inv_sqrt_depth" if residual and branch == "1/sqrt(L)" else None,
        zero_init_last=residual and branch == "zero-init",
    )


def layer_profile_readout(result: BlockProfileResult) -> str:
    """One line of HTML: the gradient ratio across the blocks, the forward growth and the loss."""
    stream = result.stream
    text = (
        f"‖∂J/∂x₀‖ / ‖∂J/∂x_L‖ = {stream.grad_ratio:.3g} &nbsp;·&nbsp; "
        f"E[x_L²] / E[x₀²] = {stream.variance_ratio:.3g} &nbsp;·&nbsp; loss at init = {stream.loss:.3g}"
    )
    spec = result.config.network
    if spec.zero_init_last and spec.norm is None:
        text += " &nbsp;·&nbsp; fc1 gradients are exactly 0 at init (the zeroed fc2 blocks them)"
    return text


def layer_profile_explorer(
    depth: int = 30,
    skip: str = "on",
    norm: str = "none",
    branch: str = "1",
    *,
    width: int = 32,
    max_depth: int = 100,
    seed: int = 0,
) -> Explorer:
    """Sliders and buttons for depth L, skip connections, normalization and branch scale; shows
    ``plots.layer_profile`` of ``run_block_profile`` (one forward and one backward pass on 64 digits).
    The arguments are the controls' starting values (see ``network_spec``), the depth slider's upper end
    and the fixed stream width and seed. Skip, norm and branch together set the config's ``network``.
    """
    controls = {
        "depth": control(BlockProfileConfig, "depth", depth, "blocks L", high=max_depth),
        "skip": select("skip", skip, SKIPS),
        "norm": select("norm", norm, NORM_CHOICES, kind=widgets.Dropdown),
        "branch": select("branch", branch, BRANCHES, "branch α"),
    }

    def make_config(depth: int, skip: str, norm: str, branch: str) -> BlockProfileConfig:
        return BlockProfileConfig(
            network=network_spec(skip, norm, branch), depth=depth, width=width, seed=seed
        )

    return Explorer(
        controls,
        make_config,
        run_block_profile,
        plots.layer_profile,
        readout=layer_profile_readout,
        title="Residual or plain, normalized or not: per-block norms at initialization",
        # the static page: 5 depths x 2 x 3 x 3 = 90 settings (60 distinct: without skips α is ignored)
        page_grid={
            "depth": sorted({5, 10, 30, 50, max_depth, depth} & set(range(1, max_depth + 1))),
            "skip": list(SKIPS),
            "norm": list(NORM_CHOICES),
            "branch": list(BRANCHES),
        },
    )
