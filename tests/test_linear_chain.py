"""The linear-chain chapter: the derivation against autograd, and every number the chapter states."""

from __future__ import annotations

import math
from fractions import Fraction

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from claims import SEEDS, expect

from vgcourse.activations import max_derivative
from vgcourse.experiments import linear_chain as lc
from vgcourse.explorers import linear_chain as explorers
from vgcourse.plots import linear_chain as plots
from vgcourse.plots.figure_check import check_figure

F64 = torch.float64


# ----------------------------------------------------------------------------------------------------
# The derivation: closed forms vs autograd


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_jacobian_products_match_autograd_on_random_chains(seed: int) -> None:
    result = lc.run_gradient_check(lc.GradientCheckConfig(seed=seed))
    # the chapter: "agree up to rounding". The largest error over the chains is heavy-tailed across seeds
    # (11 to 203 machine epsilons at seeds 0-4, margin report): 1000 epsilons is still rounding, not a bug
    eps = torch.finfo(F64).eps
    expect(
        "linear chain: gradient check, max relative error / eps", result.max_relative_error / eps, "<", 1000
    )
    assert {c.activation for c in result.chains} == {"identity", "tanh", "sigmoid", "relu"}
    assert all(all(n == 1 for n in c.widths) for c in result.chains[: result.config.n_scalar])
    assert result.n_layers == sum(len(c.widths) - 1 for c in result.chains)
    frame = result.to_frame()
    assert frame["chains"].sum() == result.config.n_chains
    assert frame["max relative error"].max() == result.max_relative_error


def test_jacobian_products_match_autograd_for_every_activation() -> None:
    config = lc.GradientCheckConfig(n_chains=24, activations=lc.ACTIVATIONS, n_scalar=2, seed=7)
    assert lc.run_gradient_check(config).max_relative_error < 1e-12


@pytest.mark.parametrize("seed", SEEDS)
def test_scalar_chain_formula(seed: int) -> None:
    """∂J/∂w_k = x · ∏_{l≠k} w_l for h_l = w_l h_{l-1}, J = h_L."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(7, generator=gen, dtype=F64)
    x = torch.randn(1, generator=gen, dtype=F64)
    grads = lc.autograd_gradients([wl.reshape(1, 1) for wl in w], x, torch.ones(1, dtype=F64))
    for k, grad in enumerate(grads):
        expected = x * torch.prod(torch.cat([w[:k], w[k + 1 :]]))
        torch.testing.assert_close(grad.reshape(1), expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_matrix_chain_with_one_repeated_matrix_is_a_matrix_power(seed: int) -> None:
    """All W_l = W: ∂J/∂W_1 = (W^(L-1))^T g x^T."""
    gen = torch.Generator().manual_seed(seed)
    (w,) = lc.random_weights([4, 4], "gaussian", generator=gen)
    x, g = torch.randn(4, generator=gen, dtype=F64), torch.randn(4, generator=gen, dtype=F64)
    depth = 6
    grads = lc.autograd_gradients([w] * depth, x, g)
    expected = torch.outer(torch.linalg.matrix_power(w, depth - 1).T @ g, x)
    torch.testing.assert_close(grads[0], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("init", lc.INITS)
def test_random_weights_shapes_and_scales(init: str) -> None:
    gen = torch.Generator().manual_seed(0)
    weights = lc.random_weights([3, 5, 5, 2], init, 1.5, generator=gen)
    assert [tuple(w.shape) for w in weights] == [(5, 3), (5, 5), (2, 5)]
    if init == "orthogonal":
        torch.testing.assert_close(weights[0].T @ weights[0], 1.5**2 * torch.eye(3, dtype=F64))  # tall
        torch.testing.assert_close(weights[1].T @ weights[1], 1.5**2 * torch.eye(5, dtype=F64))
        torch.testing.assert_close(weights[2] @ weights[2].T, 1.5**2 * torch.eye(2, dtype=F64))  # wide
    big = lc.random_weights([400, 400], init, 1.0, generator=gen)[0]
    assert big.var().item() == pytest.approx(1 / 400, rel=0.02)


# ----------------------------------------------------------------------------------------------------
# Geometric behaviour


def test_geometric_table() -> None:
    result = lc.run_geometric(lc.GeometricConfig(factors=(0.9, 0.99, 1.01, 1.1)))
    for s in result.config.factors:
        for depth in result.config.depths:
            assert result.powers.sel(factor=s, depth=depth) == pytest.approx(s**depth, rel=1e-14)
    assert result.powers.sel(factor=0.99, depth=100) == pytest.approx(0.366, abs=1e-3)
    assert result.powers.sel(factor=1.01, depth=300) == pytest.approx(19.79, abs=1e-2)
    ratio = result.powers.sel(factor=1.01, depth=100) / result.powers.sel(factor=0.99, depth=100)
    assert ratio == pytest.approx(7.39, abs=0.01)
    assert result.halving_depths.sel(factor=0.99) == pytest.approx(
        68.97, abs=0.01
    )  # 0.99 halves every ~69 layers
    assert result.halving_depths.sel(factor=1.01) == pytest.approx(
        69.66, abs=0.01
    )  # 1.01 doubles every ~70 layers
    assert list(result.to_frame().index) == [3, 7, 100, 300]
    with pytest.raises(KeyError, match="factor takes"):
        result.powers.sel(factor=0.5, depth=100)


@pytest.mark.parametrize("seed", SEEDS)
def test_orthogonal_depth_sweep_is_exactly_s_to_the_depth_minus_one(seed: int) -> None:
    result = lc.run_chain_depth_sweep(lc.ChainDepthSweepConfig(seed=seed))
    ratio = result.grad_norm.values / result.predicted_norm.values[:, None, :]
    assert np.abs(ratio - 1).max() < 1e-12
    assert result.quantiles.sel(q=0.5, scale=0.9, depth=100) == pytest.approx(0.9**99, rel=1e-12)
    assert result.quantiles.sel(q=0.5, scale=1.1, depth=100) == pytest.approx(1.1**99, rel=1e-12)
    np.testing.assert_allclose(result.predicted_log_std, 0.0)


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_gaussian_depth_sweep_median_vanishes_with_a_wide_spread(seed: int) -> None:
    result = lc.run_chain_depth_sweep(lc.ChainDepthSweepConfig(init="gaussian", seed=seed))
    at_100 = result.quantiles.sel(scale=1.0, depth=100)
    median, low, high = (at_100.sel(q=q) for q in (0.5, 0.1, 0.9))
    # typical network: smaller than s^(L-1) = 1
    expect("linear chain: gaussian L=100 s=1, median norm (lower bound)", median, ">", 0.15)
    expect("linear chain: gaussian L=100 s=1, median norm (upper bound)", median, "<", 0.95)
    # the middle 80% of networks span a wide range (a factor 4.4 to 10.0 at seeds 0-4, margin report)
    expect("linear chain: gaussian L=100 s=1, 90th / 10th percentile", high / low, ">", 2)
    typical = math.exp(result.predicted_log_mean.sel(scale=1.0, depth=100))
    assert typical == pytest.approx(math.exp(99 * lc.log_gain_drift(64, "gaussian")))
    # mean of ln-norm within 4 standard errors of (L-1)(ln s + c_n), at every scale
    logs = np.log(result.grad_norm.values[:, :, -1]).mean(axis=1)
    se = result.predicted_log_std[-1] / math.sqrt(result.config.n_seeds)
    expect(
        "linear chain: gaussian L=100, |mean ln-norm - predicted| / SE",
        np.abs(logs - result.predicted_log_mean.values[:, -1]) / se,
        "<",
        4,
    )


def test_depth_sweep_reads_every_depth_off_one_stack_exactly() -> None:
    """The depth-L network (the top L layers of the stack, fed with x) gives the same ‖∂J/∂W_1‖."""
    config = lc.ChainDepthSweepConfig(
        max_depth=6, width=5, scales=(0.7, 1.3), init="gaussian", n_seeds=2, seed=3
    )
    result = lc.run_chain_depth_sweep(config)
    gen = torch.Generator().manual_seed(config.seed)
    base = lc.random_weights([5] * 7, "gaussian", generator=gen, batch=(2,))
    x = torch.randn(2, 5, generator=gen, dtype=F64)
    g = torch.randn(2, 5, generator=gen, dtype=F64)
    x, g = x / x.norm(dim=-1, keepdim=True), g / g.norm(dim=-1, keepdim=True)
    for i, s in enumerate(config.scales):
        for k in range(2):
            for depth in range(1, 7):
                weights = [s * w[k] for w in base[6 - depth :]]
                grad = lc.autograd_gradients(weights, x[k], g[k])[0]
                assert result.grad_norm.values[i, k, depth - 1] == pytest.approx(
                    grad.norm().item(), rel=1e-12
                )


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_layer_gain_needs_std_one_over_sqrt_n(seed: int) -> None:
    result = lc.run_layer_gain(lc.LayerGainConfig(seed=seed))
    unscaled = np.abs(result.unscaled_gain.values / np.sqrt(result.config.widths) - 1)
    expect("linear chain: layer gain with std 1, |gain / √n - 1|", unscaled, "<", 0.08)
    expect(
        "linear chain: layer gain with std 1/√n, |gain - 1|", np.abs(result.scaled_gain.values - 1), "<", 0.08
    )
    assert list(result.to_frame().columns) == ["√n", "gain, std 1", "gain, std 1/√n"]


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_width_sweep_matches_the_log_normal_prediction(seed: int) -> None:
    result = lc.run_width_sweep(lc.WidthSweepConfig(seed=seed))
    n_seeds = result.config.n_seeds
    for n in result.config.widths:
        sigma = result.predicted_log_std.sel(width=n, depth=100)
        measured = result.log_mean.sel(width=n, depth=100)
        predicted = result.predicted_log_mean.sel(width=n, depth=100)
        error = abs(measured - predicted) / (sigma / math.sqrt(n_seeds))
        expect("linear chain: width sweep L=100, |ln typical - predicted| / SE", error, "<", 4)
        spread = result.log_std.sel(width=n, depth=100) / sigma
        expect(
            "linear chain: width sweep L=100, measured / predicted std of ln-norm (lower bound)",
            spread,
            ">",
            0.5,
        )
        expect(
            "linear chain: width sweep L=100, measured / predicted std of ln-norm (upper bound)",
            spread,
            "<",
            1.6,
        )
    typical = list(np.exp(result.predicted_log_mean.sel(depth=100).values))
    assert typical == sorted(typical)  # wider layers: the typical gradient vanishes less
    assert typical[0] < 0.01 and typical[-1] > 0.5


def test_log_gain_drift_is_about_minus_one_over_two_n() -> None:
    for n in (8, 64, 512):
        drift = lc.log_gain_drift(n, "gaussian")
        assert -1 / (2 * n) * 1.3 < drift < -1 / (2 * n) * 0.95
    assert lc.log_gain_drift(64, "orthogonal") == 0.0


# ----------------------------------------------------------------------------------------------------
# Singular values of the product


@pytest.mark.parametrize("seed", SEEDS)
def test_gradient_norm_lies_between_the_extreme_singular_values(seed: int) -> None:
    for init in lc.INITS:
        result = lc.run_product_spectrum(lc.ProductSpectrumConfig(init=init, seed=seed))
        low, high, grads = result.sigma_min * (1 - 1e-12), result.sigma_max * (1 + 1e-12), result.grad_norm
        assert ((low <= grads) & (grads <= high)).all() and result.bound_holds.all()


@pytest.mark.parametrize("seed", SEEDS)
def test_orthogonal_product_is_perfectly_conditioned(seed: int) -> None:
    result = lc.run_product_spectrum(lc.ProductSpectrumConfig(init="orthogonal", scale=0.95, seed=seed))
    predicted = 0.95**result.depths
    np.testing.assert_allclose(result.sigma_max, predicted, rtol=1e-12)
    np.testing.assert_allclose(result.sigma_min, predicted, rtol=1e-12)
    np.testing.assert_allclose(result.grad_norm, predicted, rtol=1e-12)
    assert result.unresolved_depth is None


@pytest.mark.parametrize("seed", SEEDS)
def test_orthogonal_product_at_scale_one_as_in_the_chapter(seed: int) -> None:
    result = lc.run_product_spectrum(lc.ProductSpectrumConfig(init="orthogonal", width=32, seed=seed))
    assert np.abs(result.condition - 1).max() < 1e-12
    np.testing.assert_allclose(result.grad_norm, 1.0, rtol=1e-12)


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_gaussian_product_becomes_numerically_singular_within_a_few_layers(seed: int) -> None:
    result = lc.run_product_spectrum(lc.ProductSpectrumConfig(seed=seed))
    expect(
        "linear chain: gaussian product, log10 condition number at L=10",
        np.log10(result.condition[9]),
        ">",
        6,
    )
    expect(
        "linear chain: gaussian product, first unresolved depth (lower bound)",
        result.unresolved_depth,
        ">=",
        6,
    )
    expect(
        "linear chain: gaussian product, first unresolved depth (upper bound)",
        result.unresolved_depth,
        "<=",
        20,
    )
    log_max = np.log10(result.sigma_max)
    expect(
        "linear chain: gaussian product, log10 smallest σ_max over depths",
        log_max.min(),
        ">",
        math.log10(0.05),
    )
    expect("linear chain: gaussian product, log10 largest σ_max over depths", log_max.max(), "<", 2)


def test_product_spectrum_gradient_matches_the_product_matrix() -> None:
    result = lc.run_product_spectrum(lc.ProductSpectrumConfig(max_depth=5, width=4, seed=1))
    gen = torch.Generator().manual_seed(1)
    weights = lc.random_weights([4] * 6, "gaussian", generator=gen)
    torch.randn(4, generator=gen, dtype=F64)  # x
    g = torch.randn(4, generator=gen, dtype=F64)
    g = g / g.norm()
    product = torch.eye(4, dtype=F64)
    for depth, w in enumerate(weights, start=1):
        product = w @ product
        assert result.grad_norm[depth - 1] == pytest.approx((product.T @ g).norm().item(), rel=1e-12)


# ----------------------------------------------------------------------------------------------------
# Floating-point limits


@pytest.fixture(scope="module")
def float_limits() -> lc.FloatLimitsResult:
    return lc.run_float_limits(lc.FloatLimitsConfig())


def test_float_limits_measured_depths_match_predictions(float_limits: lc.FloatLimitsResult) -> None:
    for limit in float_limits.limits.values():
        assert limit.agrees, limit
        if limit.predicted_depth is not None:
            assert abs(limit.measured_depth - limit.predicted_depth) <= 2
        if limit.measured_depth is not None:
            assert limit.confirmed is True
    assert all(limit.measured_depth == limit.predicted_depth for limit in float_limits.limits.values())


def test_float_limits_numbers_the_chapter_states(float_limits: lc.FloatLimitsResult) -> None:
    def get(dtype: str, factor: float) -> lc.FloatLimit:
        return float_limits.limits[dtype, factor]

    assert get("float16", 0.5).measured_depth == 26  # 2^-25: half the smallest subnormal 2^-24
    assert get("float16", 2.0).measured_depth == 17  # 2^16 > 65504
    assert get("float32", 0.5).measured_depth == 151
    assert get("bfloat16", 2.0).measured_depth == get("float32", 2.0).measured_depth == 129
    assert get("bfloat16", 1.1).measured_depth < get("float32", 1.1).measured_depth
    assert get("bfloat16", 0.9).stored_factor == 0.8984375
    assert get("bfloat16", 1.1).stored_factor == 1.1015625
    for dtype in lc.DTYPES:
        stall = get(dtype, 0.9)
        assert stall.measured_depth is None and stall.predicted_depth is None  # never exactly 0
        assert 1 <= stall.floor <= 1 / (2 * (1 - stall.stored_factor)) + 1e-9
        assert stall.floor_depth > stall.subnormal_depth
        assert np.all(stall.trace[stall.floor_depth - 1 :] == stall.trace[stall.floor_depth - 1])
    assert get("float16", 0.9).floor == 4
    assert get("float16", 0.9).floor_depth == 143
    assert get("float64", 0.9).floor == 5  # float64's 0.9 is stored a hair above 0.9
    assert (
        Fraction(get("float32", 0.9).stored_factor)
        < Fraction(9, 10)
        < Fraction(get("float64", 0.9).stored_factor)
    )
    assert (get("bfloat16", 1.1).measured_depth, get("float32", 1.1).measured_depth) == (919, 932)
    bf16 = get("bfloat16", 0.9)
    assert (bf16.subnormal_depth, bf16.predicted_subnormal_depth) == (820, 817)
    assert abs(bf16.subnormal_depth - bf16.predicted_subnormal_depth) <= lc.rounding_slack(
        0.9, "bfloat16", 817
    )
    formats = float_limits.formats_frame()
    assert formats.loc["float16", "largest finite"] == 65504
    assert formats.loc["float16", "smallest subnormal"] == 2.0**-24
    assert list(formats["mantissa bits"]) == [10, 7, 23, 52]
    assert list(formats["exponent bits"]) == [5, 8, 8, 11]
    frame = float_limits.to_frame()
    assert frame.loc["float16", "0.5 → 0"] == "26 (26)"
    assert frame.loc["float64", "0.9 → 0"] == "never (never)"


def test_flush_to_zero_turns_the_stalled_gradient_into_zero(float_limits: lc.FloatLimitsResult) -> None:
    """Issue 16 item 8: the 0.9 chain that never reaches 0 does reach it where the CPU flushes subnormal
    results to zero, exactly at the depth where it would have become subnormal (float32, float64); the
    mode is switched off again afterwards."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormals to zero")
    for dtype in ("float32", "float64"):
        limit = float_limits.limits[dtype, 0.9]
        assert limit.measured_depth is None  # without flush-to-zero: never 0
        assert lc.flush_to_zero_depth(0.9, dtype, float_limits.config.max_depth) == limit.subnormal_depth
    assert lc.first_layer_gradient(0.9, 900, "float32") > 0  # the mode is off again
    # float16 products are computed in float32 on the CPU, where float16's subnormals are normal numbers
    assert lc.flush_to_zero_depth(0.9, "float16", 400) is None
    # a caller who flushes already keeps flushing: the mode found is put back, not switched off
    torch.set_flush_denormal(True)
    try:
        lc.flush_to_zero_depth(0.9, "float32", 400)
        assert lc.first_layer_gradient(0.9, 900, "float32") == 0
    finally:
        torch.set_flush_denormal(False)


def test_adam_moves_small_gradients_as_far_as_large_ones_down_to_its_epsilon() -> None:
    steps = lc.run_first_steps(lc.FirstStepsConfig(gradients=(1.0, 1e-6, 1e-20), lr=1e-3, eps=1e-8))
    np.testing.assert_allclose(steps.sgd_step.values, [1.0, 1e-6, 1e-20], rtol=1e-12)
    gradients = steps.adam_step.axes["gradient"]
    # The update rule is PyTorch's: one step of torch.optim.Adam / SGD moves the weight as computed.
    for optimizer, computed in ((torch.optim.Adam, steps.adam_step), (torch.optim.SGD, steps.sgd_step)):
        for g, expected in zip(gradients, computed.values, strict=True):
            weight = torch.zeros((), dtype=torch.float64, requires_grad=True)
            opt = (
                optimizer([weight], lr=1e-3, eps=1e-8)
                if optimizer is torch.optim.Adam
                else optimizer([weight], lr=1e-3)
            )
            weight.grad = torch.tensor(g, dtype=torch.float64)
            opt.step()
            assert abs(float(weight.detach())) / 1e-3 == pytest.approx(expected, rel=1e-9)
    adam = steps.adam_step.sel
    for g in gradients:
        assert adam(gradient=g) == pytest.approx(g / (g + steps.config.eps), rel=1e-9)
    assert adam(gradient=1e-6) > 0.99 and adam(gradient=1.0) > 0.999
    assert adam(gradient=1e-20) == pytest.approx(1e-12, rel=1e-6)
    assert steps.sgd_step.sel(gradient=1e-20) == pytest.approx(1e-20)
    with pytest.raises(KeyError, match="gradient"):
        adam(gradient=0.5)
    with pytest.raises(ValueError, match="beta1 must be < 1"):
        lc.FirstStepsConfig(beta1=1.0)


def test_sigmoid_bound_quoted_in_the_chapter() -> None:
    assert max_derivative("sigmoid") == 0.25


def test_first_layer_gradient_of_fresh_chains() -> None:
    assert lc.first_layer_gradient(0.5, 25, "float16") == 2.0**-24
    assert lc.first_layer_gradient(0.5, 26, "float16") == 0.0
    assert lc.first_layer_gradient(2.0, 16, "float16") == 2.0**15
    assert math.isinf(lc.first_layer_gradient(2.0, 17, "float16"))
    assert lc.first_layer_gradient(3.0, 1, "float64") == 1.0


def test_rounding_slack_and_predictions() -> None:
    assert lc.rounding_slack(0.5, "float16", 26) == 2
    assert lc.rounding_slack(0.9, "bfloat16", 817) > 3
    assert lc.predicted_depth(0.9, "float32", "zero") is None
    assert lc.predicted_depth(0.25, "float16", "zero") == 14
    assert lc.predicted_depth(0.5, "float64", "subnormal") == 1024
    assert lc.predicted_depth(2.0, "float16", "inf") == 17
    with pytest.raises(ValueError, match="never becomes inf"):
        lc.predicted_depth(0.5, "float32", "inf")
    with pytest.raises(ValueError, match="never becomes subnormal"):
        lc.predicted_depth(0.99999, "bfloat16", "subnormal")  # rounds to 1 in bfloat16
    with pytest.raises(ValueError, match="valid choices"):
        lc.predicted_depth(0.5, "float32", "nan")
    with pytest.raises(ValueError, match="valid choices"):
        lc.float_format("float8")


def test_small_float_limits_run_without_confirmation() -> None:
    result = lc.run_float_limits(
        lc.FloatLimitsConfig(dtypes=("float16",), factors=(0.25, 3.0), max_depth=40, confirm=False)
    )
    assert all(limit.confirmed is None for limit in result.limits.values())
    assert all(limit.agrees for limit in result.limits.values())
    assert set(result.limits) == {("float16", 0.25), ("float16", 3.0)}


# ----------------------------------------------------------------------------------------------------
# Per-layer profile (the explorer's experiment)


@pytest.mark.parametrize("seed", SEEDS)
def test_layer_profile_weight_gradient_is_backward_times_forward(seed: int) -> None:
    for init in lc.INITS:
        result = lc.run_layer_profile(lc.LayerProfileConfig(init=init, scale=1.1, seed=seed))
        np.testing.assert_allclose(
            result.weight_grad_norm, result.backward_norm * result.input_norm, rtol=1e-12
        )
    orth = lc.run_layer_profile(lc.LayerProfileConfig(scale=0.9, seed=seed))
    depth = orth.config.depth
    np.testing.assert_allclose(orth.weight_grad_norm, 0.9 ** (depth - 1), rtol=1e-12)  # flat across layers
    np.testing.assert_allclose(orth.backward_norm, 0.9 ** (depth - orth.layers), rtol=1e-12)
    np.testing.assert_allclose(orth.input_norm, 0.9 ** (orth.layers - 1), rtol=1e-12)


# ----------------------------------------------------------------------------------------------------
# Configs reject bad input


# Each field's declared constraint (ranges, choices, non-empty, types) is checked for every Config by
# tests/test_contracts.py; here: the rules between fields (Config.check) and the chapter's helpers.
@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: lc.GradientCheckConfig(n_scalar=50), ValueError),
        (lambda: lc.random_weights([3], "gaussian"), ValueError),
        (lambda: lc.forward_chain([], torch.zeros(2), "swish"), ValueError),
    ],
)
def test_bad_input_is_rejected(make, error) -> None:
    with pytest.raises(error):
        make()


# ----------------------------------------------------------------------------------------------------
# Plots and the explorer


@pytest.fixture(scope="module")
def small_results() -> dict[str, object]:
    return {
        "sweep": lc.run_chain_depth_sweep(
            lc.ChainDepthSweepConfig(max_depth=10, width=8, init="gaussian", n_seeds=4)
        ),
        "spectrum": lc.run_product_spectrum(lc.ProductSpectrumConfig(max_depth=30, width=8)),
        "floats": lc.run_float_limits(lc.FloatLimitsConfig(dtypes=("float16", "bfloat16"), max_depth=1200)),
        "profile": lc.run_layer_profile(lc.LayerProfileConfig(depth=8, width=8)),
    }


# Every plot returns a Figure that passes the book's figure check, draws into a given ax or given axes (every
# panel drawn on) and refuses another type as its first argument: test_contracts'
# test_every_run_returns_its_result_on_small_arguments_and_its_plots_draw_it. Here: the number of panels,
# where the legend goes, and the arguments the contract does not try.
def test_grid_plots(small_results) -> None:
    sweep, profile = small_results["sweep"], small_results["profile"]
    assert len(plots.depth_sweeps([sweep, sweep]).axes) == 2
    assert len(plots.product_spectra([small_results["spectrum"]] * 2).axes) == 2
    assert len(plots.float_limits_grid(small_results["floats"]).axes) == 2
    fig = plots.layer_profile_grid([profile] * 5, ncols=3)
    assert sum(ax.get_visible() for ax in fig.axes) == 5
    fig, axes = plt.subplots(2, 2)
    plots.float_limits_grid(small_results["floats"], axes=axes[1])  # given axes: the legend on the first
    assert axes[1, 0].get_legend() is not None and len(fig.axes) == 4
    with pytest.raises(TypeError, match="2 matplotlib Axes"):
        plots.float_limits_grid(small_results["floats"], axes=axes)
    plt.close("all")
    with pytest.raises(TypeError):
        plots.layer_profile_grid([])
    with pytest.raises(TypeError):
        plots.depth_sweeps([profile])
    with pytest.raises(ValueError):
        plots.float_limits(small_results["floats"], "float64")


def test_layer_profile_grid_shows_every_line_of_the_chapters_panels() -> None:
    """Issue 16 item 7: with one y axis per panel, the weight gradient and the s^(L-1) line of the s = 0.9
    and s = 1.1 panels lie inside their axes (a shared axis pushed them off the scale)."""
    profiles = [
        lc.run_layer_profile(lc.LayerProfileConfig(depth=30, scale=s, init=init))
        for s in (0.9, 1.0, 1.1)
        for init in lc.INITS
    ]
    fig = plots.layer_profile_grid(profiles)
    check_figure(fig)
    for profile, ax in zip(profiles, fig.axes, strict=True):
        low, high = ax.get_ylim()
        assert low < profile.predicted_weight_grad_norm < high
        assert low < profile.weight_grad_norm.min() and profile.weight_grad_norm.max() < high


def test_layer_profile_keeps_the_prediction_on_the_scale() -> None:
    # Gaussian weights at L = 100, s = 1.25 (a setting of the explorer's page grid): s^(L-1) lies
    # decades above every measured norm; the axes still show it.
    far = lc.run_layer_profile(lc.LayerProfileConfig(depth=100, scale=1.25, init="gaussian", width=32))
    assert far.predicted_weight_grad_norm > 3 * far.weight_grad_norm.max()
    fig = plots.layer_profile(far)
    check_figure(fig)
    assert fig.axes[0].get_ylim()[1] > far.predicted_weight_grad_norm


def test_layer_profile_of_a_flat_chain_spans_a_decade() -> None:
    # s = 1 with orthogonal weights: every norm is 1 up to float rounding, which must not fill the axes
    flat = lc.run_layer_profile(lc.LayerProfileConfig(scale=1.0, init="orthogonal", depth=12, width=8))
    ax = plots.layer_profile(flat).axes[0]
    low, high = ax.get_ylim()
    assert np.log10(high / low) == pytest.approx(1.0)
    assert low < 1.0 < high
    steep = lc.run_layer_profile(lc.LayerProfileConfig(scale=0.5, depth=12, width=8))
    ax = plots.layer_profile(steep).axes[0]
    low, high = ax.get_ylim()
    assert np.log10(high / low) > 3  # data over many decades: the limits are matplotlib's


def test_explorer_reads_out_layer_1_and_refuses_values_off_its_sliders() -> None:
    # updating at the defaults and at both corners of the controls: test_contracts'
    # test_every_explorer_updates_at_its_defaults_and_at_both_corners_of_its_controls
    explorer = explorers.layer_profile_explorer()
    explorer.show()
    for values in ({"init": "gaussian", "depth": 100, "scale": 2.0}, {"init": "orthogonal", "depth": 1}):
        explorer.update(**values)
        assert "layer 1" in explorer.text.value
        assert explorer.text.value == explorers.layer_profile_readout(explorer.result)
    assert isinstance(explorer.result, lc.LayerProfileResult)
    with pytest.raises(ValueError):
        explorers.layer_profile_explorer(scale=3.0)
    with pytest.raises(ValueError):
        explorers.layer_profile_explorer(depth=200)
