"""Explorer of the recurrent-networks chapter: architecture × sequence length × spectral radius of W_hh
→ gradient against lag."""

from __future__ import annotations

from vgcourse.experiments.recurrent_networks import (
    ARCHS,
    LagProfileConfig,
    LagProfileResult,
    run_lag_profile,
)
from vgcourse.plots import recurrent_networks as plots
from vgcourse.widgets import Explorer, control, select

ARCH_CHOICES = ("all", *ARCHS)
"""The explorer's architecture buttons: all three at once, or one of ``ARCHS``."""
RADIUS_RANGE = (0.25, 4.0)


def lag_profile_readout(result: LagProfileResult) -> str:
    """One line of HTML per architecture: its per-step factor and the gradient at the longest lag."""
    last = result.config.seq_len - 1
    parts = [
        f"<b>{arch.upper()}</b>: factor per step {result.rate.sel(arch=arch):.3f}, "
        f"‖∂L/∂x<sub>T−{last}</sub>‖ / ‖∂L/∂x<sub>T</sub>‖ = {result.relative.sel(arch=arch, lag=last):.2e}"
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

    The arguments are the controls' starting values (ρ in [0.25, 4]), the T slider's upper end and the
    fixed H, batch and seed. The architecture buttons ("all" or one of ``ARCHS``) set ``archs``.
    """
    controls = {
        "arch": select("arch", arch, ARCH_CHOICES, "network"),
        "seq_len": control(LagProfileConfig, "seq_len", seq_len, "length T", low=5, high=max_seq_len, step=5),
        # steps of 0.05 from 0.25: ρ = 1 and the sweep's 0.5, 1.5, 3 are exact slider positions
        "spectral_radius": control(
            LagProfileConfig,
            "spectral_radius",
            spectral_radius,
            "ρ(W_hh)",
            low=RADIUS_RANGE[0],
            high=RADIUS_RANGE[1],
            step=0.05,
            readout_format=".2f",
        ),
    }

    def make_config(arch: str, seq_len: int, spectral_radius: float) -> LagProfileConfig:
        return LagProfileConfig(
            archs=ARCHS if arch == "all" else (arch,),
            seq_len=seq_len,
            spectral_radius=spectral_radius,
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
