"""Small arguments for every run of this chapter: tests/test_contracts.py runs each one, checks that
it returns the result its signature names, and draws every plot of the chapter with the results;
PLOT_ARGUMENTS gives the arguments of the plots that need more than one result."""

from vgcourse.experiments import normalization_and_optimizers as ex

SMALL_RUNS = {
    "run_jacobian_check": ex.JacobianCheckConfig(width=2, batch_size=2),
    "run_train_eval": ex.TrainEvalConfig(batch_sizes=(2, 4), width=1, n_batches=1),
    "run_norm_profile": ex.NormProfileConfig(depth=2, width=2, batch_size=2),
    "run_batch_size_growth": ex.BatchSizeConfig(
        norms=("batch",), activations=("relu",), batch_sizes=(2,), depth=12, width=2, n_seeds=1
    ),
    "run_scale_invariance": ex.ScaleInvarianceConfig(width=2, scales=(1.0, 2.0), batch_size=2),
    "run_same_path": ex.SamePathConfig(width=2, steps=3, batch_size=2),
    "run_norm_growth": ex.NormGrowthConfig(width=2, weight_decays=(0.0, 0.02), steps=3, batch_size=2),
    "run_shift": ex.ShiftConfig(depth=1, width=2, steps=1, batch_size=2),
    "run_optimizer_grid": ex.OptimizerGridConfig(
        momentum_lrs=(0.1,), adam_lrs=(0.01,), grid_seeds=(0,), seeds=(0,)
    ),
    "run_adam_first_step": ex.AdamFirstStepConfig(depth=1, seeds=(0,)),
    "run_far_lag": ex.FarLagConfig(seq_len=3, hidden_size=1, batch_size=1, far_from=1, seeds=(0,)),
    "run_dead_units": ex.DeadUnitsConfig(steps=1, seeds=(0,)),
    "run_diagnose": ex.DiagnoseConfig(batch_size=2),
    "run_norm_diagnose": ex.NormDiagnoseConfig(depth=1, width=2, batch_size=2),
}

PLOT_ARGUMENTS = {
    "scale_invariance": lambda results: (results[ex.ScaleInvarianceResult], results[ex.SamePathResult]),
}
