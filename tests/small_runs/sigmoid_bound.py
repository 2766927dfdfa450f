"""Small arguments for every run of this chapter: tests/test_contracts.py runs each one, checks that
it returns the result its signature names, and draws every plot of the chapter with the results."""

from vgcourse.experiments import sigmoid_bound as ex

SMALL_RUNS = {
    "run_derivative_maxima": ex.DerivativeMaxConfig(n_points=101),
    "run_init_gradients": ex.InitGradientConfig(depth=2, width=8, batch_size=8),
    "run_depth_sweep": ex.DepthSweepConfig(
        activations=("sigmoid",), depths=(2,), seeds=(0,), width=8, batch_size=8
    ),
    "run_saturation_sweep": ex.SaturationConfig(
        weight_scales=(1.0,), input_scales=(1.0,), seeds=(0,), depth=2, width=8, batch_size=8
    ),
    "run_circles": ex.CirclesConfig(
        activations=("sigmoid",), depth=1, width=4, epochs=1, n_samples=40, monitor_every=1, device="cpu"
    ),
    "run_mnist": ex.MnistConfig(depth=1, width=8, steps=3, snapshot_size=16, bins=3, device="cpu"),
}
