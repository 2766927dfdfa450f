"""Small arguments for every run of this chapter: tests/test_contracts.py runs each one, checks that
it returns the result its signature names, and draws every plot of the chapter with the results."""

from vgcourse.experiments import linear_chain as ex

SMALL_RUNS = {
    "run_gradient_check": ex.GradientCheckConfig(n_chains=4, max_depth=3, max_width=3, n_scalar=1),
    "run_geometric": ex.GeometricConfig(factors=(0.99, 1.01), depths=(0, 3)),
    "run_chain_depth_sweep": ex.ChainDepthSweepConfig(max_depth=3, width=4, scales=(1.0,), n_seeds=1),
    "run_width_sweep": ex.WidthSweepConfig(widths=(4,), max_depth=3, n_seeds=2),
    "run_layer_gain": ex.LayerGainConfig(widths=(4,), n_samples=2),
    "run_product_spectrum": ex.ProductSpectrumConfig(max_depth=3, width=4),
    "run_float_limits": ex.FloatLimitsConfig(dtypes=("float16",), factors=(0.5, 0.9, 2.0), max_depth=100),
    "run_first_steps": ex.FirstStepsConfig(gradients=(1.0, 1e-20)),
    "run_layer_profile": ex.LayerProfileConfig(depth=3, width=4),
}
