"""Small arguments for every run of this chapter: tests/test_contracts.py runs each one, checks that
it returns the result its signature names, and draws every plot of the chapter with the results;
PLOT_ARGUMENTS gives the arguments of the plots that need more than one result."""

from vgcourse import meanfield
from vgcourse.experiments import initialization as ex

SMALL_RUNS = {
    "run_variance_profile": ex.VarianceConfig(depth=3, width=8, batch_size=8, seeds=(0,)),
    "run_scheme_sweep": ex.SchemeSweepConfig(depth=3, width=8, batch_size=8, seeds=(0,)),
    "run_gain_sweep": ex.GainSweepConfig(depth=3, width=8, batch_size=8, seeds=(0,), grid=2),
    "run_backprop_histograms": ex.BackpropHistogramConfig(depth=2, width=8, n_examples=16, seeds=(0,)),
    "run_deep_training": ex.DeepTrainingConfig(
        depth=2, width=8, steps=3, batch_size=16, seeds=(0,), tail=2, device="cpu"
    ),
    "run_critical_profile": ex.CriticalConfig(depth=3, width=8, batch_size=8, seeds=(0,)),
    "run_symmetry": ex.SymmetryConfig(depth=1, width=4, steps=3, batch_size=16, seeds=(0,), device="cpu"),
}

PLOT_ARGUMENTS = {
    # tanh's critical line (a vgcourse.meanfield computation, no run) and the measured critical profile
    "critical_phase": lambda results: (meanfield.critical_line([0.0, 0.1]), results[ex.CriticalProfile]),
}
