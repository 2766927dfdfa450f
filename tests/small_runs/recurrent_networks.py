"""Small arguments for every run of this chapter: tests/test_contracts.py runs each one, checks that
it returns the result its signature names, and draws every plot of the chapter with the results."""

from vgcourse.experiments import recurrent_networks as ex

SMALL_RUNS = {
    "run_bptt_check": ex.BPTTCheckConfig(n_models=1, seq_len=3, hidden_size=3),
    "run_lag_profile": ex.LagProfileConfig(seq_len=4, hidden_size=4, batch_size=4),
    "run_spectral_sweep": ex.SpectralSweepConfig(seq_len=4, hidden_size=4, batch_size=4, radii=(0.5, 2.0)),
    "run_forget_gate": ex.ForgetGateConfig(seq_len=4, hidden_size=4, batch_size=4),
    "run_long_range": ex.LongRangeConfig(
        seq_len=4, steps=2, hidden_size=4, batch_size=8, n_samples=20, eval_every=1, n_profile=8, device="cpu"
    ),
    "run_clipping": ex.ClippingConfig(
        seq_len=3, steps=4, hidden_size=4, batch_size=8, n_samples=20, n_batches=1, eval_every=2, device="cpu"
    ),
    "run_cliff": ex.CliffConfig(
        base=ex.ClippingConfig(seq_len=3, hidden_size=4, batch_size=8, n_samples=20, device="cpu"),
        n_points=3,
        n_eval=8,
    ),
}
