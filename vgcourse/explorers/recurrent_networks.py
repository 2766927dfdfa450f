"""Explorer of chapter 6: architecture × sequence length × spectral radius of W_hh → gradient against lag."""

from __future__ import annotations

import ipywidgets as widgets

from vgcourse._validation import check_choice, check_float, check_int
from vgcourse.experiments.recurrent_networks import (
    ARCHS,
    LagProfileConfig,
    LagProfileResult,
    run_lag_profile,
)
from vgcourse.plots import recurrent_networks as plots
from vgcourse.widgets import Explorer

__all__ = ["ARCH_CHOICES", "lag_profile_explorer", "lag_profile_readout"]

ARCH_CHOICES = ("all", *ARCHS)
"""The explorer's architecture buttons: all three at once, or one of ``ARCHS``."""
RADIUS_RANGE = (0.25, 4.0)


def lag_profile_readout(result: LagProfileResult) -> str:
    """One line of HTML per architecture: its per-step factor and the gradient at the longest lag."""
    last = result.config.seq_len - 1
    parts = [
        f"<b>{arch.upper()}</b>: factor per step {result.rate(arch):.3f}, "
        f"‖∂L/∂x<sub>T−{last}</sub>‖ / ‖∂L/∂x<sub>T</sub>‖ = {result.ratio(arch):.2e}"
        for arch in result.config.archs
    ]
    return " &nbsp;·&nbsp; ".join(parts)


def lag_profile_explorer(
    arch: str = "all",
    seq_len: int = 60,
    spectral_radius: float = 1.0,
    *,
    hidden_size: int = 32,
    batch_size: int = 32,
    max_seq_len: int = 150,
    seed: int = 0,
) -> Explorer:
    """Buttons for the architecture, sliders for T and ρ(W_hh); shows ``plots.lag_profile``.

    Each change runs ``run_lag_profile``: one forward and one backward pass per architecture, at
    initialization, with every H×H gate block of W_hh rescaled to spectral radius ρ (for the GRU and the
    LSTM each gate's recurrent matrix, and the candidate's, gets the same ρ).

    Args:
        arch: the initial architecture, "all", "rnn", "gru" or "lstm".
        seq_len: the initial sequence length T.
        spectral_radius: the initial ρ, in [0.25, 4].
        hidden_size: H (fixed).
        batch_size: sequences per pass (fixed).
        max_seq_len: the T slider's upper end.
        seed: seed of the weights and the batch (fixed).
    """
    check_choice("arch", arch, ARCH_CHOICES)
    check_int("max_seq_len", max_seq_len, minimum=5, maximum=1000)
    check_int("seq_len", seq_len, minimum=5, maximum=max_seq_len)
    check_float("spectral_radius", spectral_radius, *RADIUS_RANGE)
    check_int("hidden_size", hidden_size, minimum=1, maximum=512)
    check_int("batch_size", batch_size, minimum=1, maximum=1024)
    check_int("seed", seed, minimum=0)
    controls = {
        "arch": widgets.ToggleButtons(options=list(ARCH_CHOICES), value=arch, description="network"),
        "seq_len": widgets.IntSlider(
            value=seq_len, min=5, max=max_seq_len, step=5, description="length T", continuous_update=False
        ),
        # steps of 0.05 from 0.25: ρ = 1 and the sweep's 0.5, 1.5, 3 are exact slider positions
        "spectral_radius": widgets.FloatSlider(
            value=spectral_radius,
            min=RADIUS_RANGE[0],
            max=RADIUS_RANGE[1],
            step=0.05,
            readout_format=".2f",
            description="ρ(W_hh)",
            continuous_update=False,
        ),
    }

    def make_config(arch: str, seq_len: int, spectral_radius: float) -> LagProfileConfig:
        return LagProfileConfig(
            archs=ARCHS if arch == "all" else (arch,),
            seq_len=int(seq_len),
            spectral_radius=float(spectral_radius),
            hidden_size=hidden_size,
            batch_size=batch_size,
            seed=seed,
        )

    return Explorer(
        controls,
        make_config,
        run_lag_profile,
        plots.lag_profile,
        readout=lag_profile_readout,
        title="Gradient against lag at initialization",
        # the static page: 4 network choices x 3 lengths x 10 radii = 120 views
        page_grid={
            "arch": list(ARCH_CHOICES),
            "seq_len": sorted({30, 60, 120, seq_len} & set(range(5, max_seq_len + 1, 5))),
            "spectral_radius": sorted({0.5, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0, spectral_radius}),
        },
    )
