"""Small arguments for every run of this chapter: tests/test_contracts.py runs each one, checks that
it returns the result its signature names, and draws every plot of the chapter with the results."""

from vgcourse.experiments import relu_dying_units as ex

tiny = ex.DyingConfig(depth=1, width=8, steps=2, batch_size=16, measure_every=1, device="cpu")
SMALL_RUNS = {
    "run_gradient_flow": ex.GradientFlowConfig(
        activations=("relu",), depth=2, width=8, batch_size=16, n_seeds=1, device="cpu"
    ),
    "run_dying": tiny,
    "run_dying_stacked": [tiny],
    "run_dying_sweep": ex.DyingSweepConfig(lrs=(0.3,), bias_inits=(0.0,), base=tiny),
    "run_frozen_units": ex.FrozenUnitsConfig(base=tiny, steps_a=1, steps_b=1),
    "run_remedies": ex.RemediesConfig(negative_bias=tiny, large_step=tiny, remedies=("relu",), n_seeds=1),
    "run_ranking": ex.RankingConfig(
        base=tiny, activations=("relu",), inits=("default",), lrs=(0.3,), n_seeds=1
    ),
}
