"""Small arguments for every run of this chapter: tests/test_contracts.py runs each one, checks that
it returns the result its signature names, and draws every plot of the chapter with the results."""

from vgcourse.experiments import detecting_and_fixing as ex

cells = (ex.BASELINE, ex.Remedy("relu", "he", skip=True, norm="batch", clip=True))
SMALL_RUNS = {
    "run_calibration": ex.CalibrationConfig(depth=2, width=1),
    "run_warning_signs": ex.WarningSignsConfig(
        depth=1, width=1, steps=1, batch_size=1, diagnose_steps=1, device="cpu"
    ),
    "run_sanity_checks": ex.WarningSignsConfig(depth=1, width=1, device="cpu"),
    "run_monitored_remedies": ex.MonitoredRemediesConfig(
        remedies=cells,
        blocks=1,
        width=1,
        steps=1,
        batch_size=2,
        eval_every=1,
        monitor_every=1,
        device="cpu",
    ),
    "run_robust_remedies": ex.RobustRemediesConfig(
        remedies=cells, blocks=1, width=1, steps=1, batch_size=2, eval_every=1, lrs=(0.01,), seeds=(0,)
    ),
    "run_remedy_diagnosis": ex.RemedyDiagnosisConfig(blocks=1, width=1),
}
