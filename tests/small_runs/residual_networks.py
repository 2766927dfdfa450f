"""Small arguments for every run of this chapter: tests/test_contracts.py runs each one, checks that
it returns the result its signature names, and draws every plot of the chapter with the results."""

from vgcourse.experiments import residual_networks as ex

SMALL_RUNS = {
    "run_path_expansion": ex.PathExpansionConfig(depth=3, width=4),
    "run_forward_variance": ex.ForwardVarianceConfig(depth=3, width=8, batch_size=8, n_seeds=1),
    "run_stream_depth_sweep": ex.StreamDepthSweepConfig(depths=(1, 2), width=8, batch_size=8, n_seeds=1),
    "run_degradation": ex.DegradationConfig(
        shallow_depth=1, deep_depth=2, width=8, steps=3, batch_size=16, device="cpu"
    ),
    "run_block_profile": ex.BlockProfileConfig(depth=3, width=8, batch_size=8),
    "run_placement": ex.PlacementConfig(depth=3, width=8, batch_size=8, n_seeds=1),
    "run_shattered": ex.ShatteredConfig(depths=(1, 2), width=8, n_points=16, n_seeds=1),
}
