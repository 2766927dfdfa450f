"""The residual-networks chapter: the Jacobian derivation vs autograd, and every number the chapter states.

The chapter-size experiments measure several networks per setting (the chapter: ``n_seeds`` = 3, seeds 0, 1,
2; here one network per seed of ``claims.SEEDS``), so the margins below are checked on each of those networks,
not only on their mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from claims import SEEDS, expect, within
from matplotlib.figure import Figure
from torch import Tensor

import vgcourse.exercises.residual_networks as exercises
from vgcourse.exercises import check
from vgcourse.experiments import residual_networks as rn
from vgcourse.explorers import residual_networks as explorers
from vgcourse.models import initial_weights
from vgcourse.plots import residual_networks as plots

F64 = torch.float64
N_NETWORKS = dict(
    n_seeds=len(SEEDS), seed=min(SEEDS)
)  # the module experiments: seeds min(SEEDS), min + 1, ...


# ----------------------------------------------------------------------------------------------------
# The derivation: one block's Jacobian is I + αJ, and the product expands into paths


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("spec", [rn.RESIDUAL, rn.RESIDUAL_SCALED, rn.PLAIN], ids=lambda s: s.label)
def test_block_jacobian_is_identity_plus_branch(seed: int, spec: rn.NetworkSpec) -> None:
    model = rn.build_network(
        spec, depth=4, width=6, in_features=6, out_features=2, seed=seed, dtype="float64"
    )
    x = torch.randn(6, dtype=F64, generator=torch.Generator().manual_seed(seed))
    block = model.blocks[1]
    auto = torch.autograd.functional.jacobian(block, x)
    mask = (block.fc1(x) > 0).to(F64)
    branch = block.fc2.weight @ torch.diag(mask) @ block.fc1.weight  # J = W2 D W1
    expected = torch.eye(6, dtype=F64) + spec.alpha(4) * branch if spec.skip else branch
    torch.testing.assert_close(auto, expected, rtol=1e-12, atol=1e-14)


def test_two_blocks_expand_into_four_paths() -> None:
    """(I + J2)(I + J1) = I + J1 + J2 + J2 J1: the identity, two paths of length 1 and one of length 2."""
    result = rn.run_path_expansion(rn.PathExpansionConfig(depth=2, width=5, networks=(rn.RESIDUAL,), seed=3))
    model = rn.build_network(
        rn.RESIDUAL, depth=2, width=5, in_features=5, out_features=1, seed=3, dtype="float64"
    )
    x0 = torch.randn(5, dtype=F64, generator=torch.Generator().manual_seed(3 + 10_000))
    jacobians, h = [], x0
    with torch.no_grad():
        for block in model.blocks:
            jacobians.append(block.fc2.weight @ torch.diag((block.fc1(h) > 0).to(F64)) @ block.fc1.weight)
            h = block(h)
    j1, j2 = jacobians
    expected = [torch.eye(5, dtype=F64), j1 + j2, j2 @ j1]
    for k in range(3):
        gain = result.path_gain.sel(network=rn.RESIDUAL, length=k)
        assert gain == pytest.approx(float(expected[k].norm()) / math.sqrt(5), rel=1e-12)
    # C(2, k) = 1, 2, 1 paths of gain 1 each (α² g = 1): the RMS prediction √C(2, k)
    np.testing.assert_allclose(result.predicted_gain.values[0], np.sqrt([1, 2, 1]))


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_path_expansion_matches_autograd_and_the_chapter(seed: int) -> None:
    result = rn.run_path_expansion(rn.PathExpansionConfig(seed=seed))
    depth = result.config.depth
    assert result.relative_error.max() < 1e-12  # Σ_k P_k is autograd's Jacobian
    gains = {spec: result.path_gain.sel(network=spec).values for spec in result.config.networks}
    plain = gains[rn.PLAIN]
    assert np.all(plain[:-1] == 0) and plain[-1] > 0  # the plain net has a single path, of length L
    for spec in (rn.RESIDUAL, rn.RESIDUAL_SCALED):
        assert gains[spec][0] == pytest.approx(1.0, rel=1e-12)  # the identity path
    # measured vs the RMS prediction: within a factor 2 for the short paths, 10 for every path
    predicted = result.predicted_gain.values
    for i in (1, 2):
        log_ratio = np.abs(np.log(result.path_gain.values[i] / predicted[i]))
        expect(
            "residual: path gain, max |ln measured/predicted|, lengths <= 10",
            log_ratio[:11].max(),
            "<",
            math.log(2),
        )
        expect(
            "residual: path gain, max |ln measured/predicted|, every length",
            log_ratio.max(),
            "<",
            math.log(10),
        )

    # α = 1: paths of length near L/2 dominate; α = 1/√L: the short ones do
    def share_up_to_3(gain):
        return float((gain[:4] ** 2).sum() / (gain**2).sum())

    expect(
        "residual: α=1, |typical path length - L/2|",
        abs(int(gains[rn.RESIDUAL].argmax()) - depth / 2),
        "<=",
        2,
    )
    expect("residual: α=1, share of paths of length <= 3", share_up_to_3(gains[rn.RESIDUAL]), "<", 0.01)
    # lengths 0 and 1 have the same predicted gain and length 2 has 0.7 of it: the argmax is 0 or 1 at
    # seeds 0-4 (margin report), 2 would still be a short path
    expect("residual: α=1/√L, typical path length", int(gains[rn.RESIDUAL_SCALED].argmax()), "<=", 2)
    expect(
        "residual: α=1/√L, share of paths of length <= 3",
        share_up_to_3(gains[rn.RESIDUAL_SCALED]),
        ">",
        0.95,
    )
    total = result.total_gain
    expect(
        "residual: α=1, |ln total gain / 2^(L/2)|",
        abs(math.log(total[1] / 2 ** (depth / 2))),
        "<",
        math.log(3),
    )
    within("residual: α=1/√L, total gain", total[2], 1.2, 2.2)  # ≈ (1 + 1/L)^(L/2) ≈ √e
    # the plain product: size 1 on average, a wide (log-normal) spread, so the claim is on the log scale
    within("residual: plain, log10 total gain", math.log10(total[0]), -1, math.log10(3))


# ----------------------------------------------------------------------------------------------------
# Initialization and one block's gain


def test_init_network_variances_and_zero_branches() -> None:
    n = 256
    he = rn.build_network(rn.RESIDUAL, depth=2, width=n, in_features=128, out_features=64, seed=0)
    assert he.stem.weight.var().item() == pytest.approx(1 / 128, rel=0.05)
    assert he.blocks[0].fc1.weight.var().item() == pytest.approx(1 / n, rel=0.05)
    assert he.blocks[0].fc2.weight.var().item() == pytest.approx(2 / n, rel=0.05)
    assert he.head.weight.var().item() == pytest.approx(1 / n, rel=0.05)
    assert all(not b.fc1.bias.any() for b in he.blocks)
    kaiming = rn.build_network(
        rn.RESIDUAL_KAIMING, depth=2, width=n, in_features=128, out_features=64, seed=0
    )
    assert kaiming.blocks[0].fc1.weight.var().item() == pytest.approx(2 / n, rel=0.05)
    zero = rn.build_network(rn.RESIDUAL_ZERO, depth=3, width=8, in_features=4, out_features=2, seed=0)
    assert all(not b.fc2.weight.any() and not b.fc2.bias.any() for b in zero.blocks)
    zero_bn = rn.build_network(
        rn.NetworkSpec(norm="batch", zero_init_last=True), depth=2, width=8, in_features=4, out_features=2
    )
    assert all(not b.norm2.weight.any() and b.fc2.weight.any() for b in zero_bn.blocks)
    with pytest.raises(TypeError):
        rn.init_residual_network(torch.nn.Linear(2, 2))


def test_same_seed_gives_the_plain_and_residual_twins_the_same_weights() -> None:
    kw = dict(depth=3, width=8, in_features=4, out_features=2, seed=5)
    plain, residual = rn.build_network(rn.PLAIN, **kw), rn.build_network(rn.RESIDUAL, **kw)
    for (name, p), (_, q) in zip(plain.named_parameters(), residual.named_parameters(), strict=True):
        assert torch.equal(p, q), name


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("init", "gain"), [("he", 1.0), ("kaiming_all", 2.0)])
def test_one_branch_has_gain_g(seed: int, init: str, gain: float) -> None:
    """E‖F(x)‖² / E‖x‖² = g (1 for He as the chapter applies it, 2 with Kaiming on every layer)."""
    spec = rn.NetworkSpec(init=init)
    model = rn.build_network(
        spec, depth=1, width=512, in_features=8, out_features=2, seed=seed, dtype="float64"
    )
    x = torch.randn(512, 512, dtype=F64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        measured = model.blocks[0].branch(x).square().mean() / x.square().mean()
    expect("residual: one branch, |measured gain / g - 1|", abs(float(measured) / gain - 1), "<", 0.08)
    assert spec.growth_per_block(1) == 1 + gain


def test_growth_per_block_closed_forms() -> None:
    assert rn.RESIDUAL.growth_per_block(50) == 2.0
    assert rn.RESIDUAL_KAIMING.growth_per_block(50) == 3.0
    assert rn.RESIDUAL_SCALED.growth_per_block(50) == pytest.approx(1 + 1 / 50)
    assert rn.RESIDUAL_ZERO.growth_per_block(50) == 1.0
    assert rn.PLAIN.growth_per_block(50) == 1.0
    assert rn.RESIDUAL_BN.growth_per_block(50) is None
    assert rn.NetworkSpec(branch_scale=0.5).alpha(10) == 0.5
    assert rn.PLAIN.alpha(10) == 1.0
    assert rn.n_linear_layers(8) == 18 and rn.n_linear_layers(16) == 34


def test_stream_pass_matches_autograd_and_the_monitor_names() -> None:
    model = rn.build_network(rn.RESIDUAL_BN, depth=3, width=8, in_features=64, out_features=10, seed=1)
    data = rn.load_image_data()
    result = rn.stream_pass(model, data.x_train[:16], data.y_train[:16])
    assert result.weight_grad.shape == (len(model.layer_names()),) == (8,)  # stem, 3 × (fc1, fc2), head
    np.testing.assert_allclose(result.weight_grad[0], model.stem.weight.grad.norm().item(), rtol=1e-6)
    np.testing.assert_allclose(result.weight_grad[-1], model.head.weight.grad.norm().item(), rtol=1e-6)
    assert result.stream_grad.shape == result.second_moment.shape == (4,)
    assert result.grad_ratio == pytest.approx(result.stream_grad[0] / result.stream_grad[-1])
    assert np.isfinite(result.loss)


# ----------------------------------------------------------------------------------------------------
# Forward growth: the chapter's experiment (3 networks per setting), checked network by network


@pytest.fixture(scope="module")
def forward() -> rn.ForwardVarianceResult:
    return rn.run_forward_variance(rn.ForwardVarianceConfig(**N_NETWORKS))


@pytest.mark.claim
def test_forward_variance_grows_as_predicted(forward: rn.ForwardVarianceResult) -> None:
    depth = forward.config.depth
    nets = forward.config.networks
    moments = forward.second_moment.values
    final = moments[:, :, -1] / moments[:, :, 0]  # (spec, network)
    typical = forward.ratio.mean("seed", geometric=True).sel(block=depth)
    per_block = final ** (1 / depth)
    he, kaiming = nets.index(rn.RESIDUAL), nets.index(rn.RESIDUAL_KAIMING)
    within("residual: forward, He, growth per block (each network)", per_block[he], 1.9, 2.08)  # ≈ 2
    within(
        "residual: forward, Kaiming, growth per block (each network)", per_block[kaiming], 2.8, 3.15
    )  # ≈ 3
    he_typical = typical.sel(network=rn.RESIDUAL) ** (1 / depth)
    within("residual: forward, He, growth per block (typical)", he_typical, 1.92, 2.04)
    kaiming_typical = typical.sel(network=rn.RESIDUAL_KAIMING) ** (1 / depth)
    within("residual: forward, Kaiming, growth per block (typical)", kaiming_typical, 2.85, 3.08)
    within("residual: forward, He, final ratio / 2^L", typical.sel(network=rn.RESIDUAL) / 2**depth, 0.1, 1.2)
    scaled = final[nets.index(rn.RESIDUAL_SCALED)]
    within("residual: forward, α=1/√L, final ratio", scaled, 2.0, 3.0)  # (1 + 1/50)^50 = 2.69 <= e
    np.testing.assert_array_equal(
        moments[nets.index(rn.RESIDUAL_ZERO)],
        moments[nets.index(rn.RESIDUAL_ZERO)][:, :1].repeat(depth + 1, axis=1),
    )
    bn = nets.index(rn.RESIDUAL_BN)
    predicted_bn = forward.predicted.values[bn, -1]
    # q_0 + l: linear, not exponential
    expect(
        "residual: forward, BN, |final ratio / predicted - 1|",
        np.abs(final[bn] / predicted_bn - 1),
        "<",
        0.15,
    )
    within("residual: forward, BN, predicted final ratio", predicted_bn, 20, 150)
    plain = final[nets.index(rn.PLAIN)]
    # the mean is preserved; the typical network drifts down (log-normal across networks: log scale)
    within("residual: forward, plain, log10 final ratio", np.log10(plain), math.log10(0.03), math.log10(3.0))
    np.testing.assert_allclose(forward.predicted.values[he], 2.0 ** np.arange(depth + 1))


# ----------------------------------------------------------------------------------------------------
# Depth sweep: the chapter's experiment (3 networks per setting and depth), checked network by network


@pytest.fixture(scope="module")
def sweep() -> rn.StreamDepthSweepResult:
    return rn.run_stream_depth_sweep(rn.StreamDepthSweepConfig(**N_NETWORKS))


@pytest.mark.claim
def test_depth_sweep_numbers_the_chapter_states(sweep: rn.StreamDepthSweepResult) -> None:
    nets = sweep.config.networks
    ratios = sweep.grad_ratio.values  # (network, seed, depth)
    at100 = {spec: ratios[nets.index(spec), :, -1] for spec in nets}  # every network at L = 100
    assert sweep.config.depths[-1] == 100
    # log-normal across networks: the claim is on the log scale
    within(
        "residual: sweep L=100, plain, log10 gradient ratio",
        np.log10(at100[rn.PLAIN]),
        math.log10(0.02),
        math.log10(2.0),
    )
    # BatchNorm in a plain stack explodes the gradient
    expect("residual: sweep L=100, plain + BN, log10 gradient ratio", np.log10(at100[rn.PLAIN_BN]), ">", 7)
    log_error = np.abs(np.log(at100[rn.RESIDUAL] / 2.0**50))  # (1 + 1)^(L/2)
    expect("residual: sweep L=100, α=1, |ln gradient ratio / 2^50|", log_error, "<", math.log(4))
    within("residual: sweep L=100, residual + BN, gradient ratio", at100[rn.RESIDUAL_BN], 15, 80)
    within("residual: sweep L=100, α=1/√L, gradient ratio", at100[rn.RESIDUAL_SCALED], 1.3, 2.2)
    np.testing.assert_allclose(ratios[nets.index(rn.RESIDUAL_ZERO)], 1.0, rtol=1e-12)
    # typical values at 10 blocks, and polynomial (not exponential) growth of residual + BN
    at10 = {spec: ratios[nets.index(spec), :, 0] for spec in nets}
    within("residual: sweep L=10, plain + BN, gradient ratio", at10[rn.PLAIN_BN], 4, 30)
    within("residual: sweep L=10, residual + BN, gradient ratio", at10[rn.RESIDUAL_BN], 3, 12)
    typical = sweep.grad_ratio.mean("seed", geometric=True)
    rbn = typical.sel(network=rn.RESIDUAL_BN).values
    within(
        "residual: sweep, residual + BN, typical ratio L=100 / L=10", rbn[-1] / rbn[0], 3, 10
    )  # polynomial
    plain_bn_steps = np.diff(np.log(typical.sel(network=rn.PLAIN_BN).values))
    expect("residual: sweep, plain + BN, smallest ln-step of the typical ratio", plain_bn_steps.min(), ">", 1)
    predicted = sweep.predicted_grad_ratio
    np.testing.assert_allclose(
        predicted.sel(network=rn.RESIDUAL).values, 2.0 ** (np.array(sweep.config.depths) / 2)
    )
    assert np.isnan(predicted.sel(network=rn.RESIDUAL_BN).values).all()
    assert typical.sel(network=rn.RESIDUAL_SCALED, depth=100) == pytest.approx(
        np.exp(np.log(at100[rn.RESIDUAL_SCALED]).mean())
    )
    with pytest.raises(KeyError, match="not on the grid"):
        typical.sel(network=rn.RESIDUAL, depth=30)
    with pytest.raises(KeyError, match="not on the grid"):
        typical.sel(network=rn.RESIDUAL_KAIMING, depth=100)


# ----------------------------------------------------------------------------------------------------
# Degradation: the chapter's configuration at each seed of claims.SEEDS


@pytest.fixture(scope="module")
def degradation_runs() -> list[rn.DegradationResult]:
    return [rn.run_degradation(rn.DegradationConfig(seed=seed, device="cpu")) for seed in SEEDS]


@pytest.mark.claim
def test_deep_plain_trains_worse_and_its_residual_twin_does_not(degradation_runs) -> None:
    for result in degradation_runs:
        p18, p34, r34 = result.runs
        assert (p18.name, p34.name, r34.name) == ("plain-18", "plain-34", "residual-34")
        assert not any(run.history.diverged for run in result.runs)
        # degradation: deeper plain trains worse; the residual twin of plain-34 trains best
        expect(
            "residual: degradation, train loss plain-34 / plain-18", p34.train_loss / p18.train_loss, ">", 2.5
        )
        expect(
            "residual: degradation, train loss residual-34 / plain-18",
            r34.train_loss / p18.train_loss,
            "<",
            0.5,
        )
        expect("residual: degradation, plain-34 train accuracy", p34.train_accuracy, "<", 0.85)
        expect("residual: degradation, plain-18 train accuracy", p18.train_accuracy, ">", 0.9)
        expect("residual: degradation, residual-34 train accuracy", r34.train_accuracy, ">", 0.97)
        gap = r34.train_accuracy - p18.train_accuracy
        expect("residual: degradation, train accuracy residual-34 - plain-18", gap, ">", 0)
        gap = p18.val_accuracy - p34.val_accuracy
        expect("residual: degradation, val accuracy plain-18 - plain-34", gap, ">", 0)
        gap = r34.val_accuracy - p18.val_accuracy
        expect("residual: degradation, val accuracy residual-34 - plain-18", gap, ">", 0)
        # plain + BN: deeper, larger gradient ratio; residual + BN: about the same
        ratio = p34.init_grad_ratio / p18.init_grad_ratio
        expect("residual: degradation, init gradient ratio plain-34 / plain-18", ratio, ">", 3)
        ratio = r34.init_grad_ratio / p18.init_grad_ratio
        expect("residual: degradation, init gradient ratio residual-34 / plain-18", ratio, "<", 2)
    frame = degradation_runs[0].to_frame()
    assert list(frame.index) == ["plain-18", "plain-34", "residual-34"]
    assert list(frame["Linear layers"]) == [18, 34, 34]


def test_degradation_runs_on_the_mnist_split() -> None:
    """The shipped MNIST test split (vgcourse/datasets/mnist): no download, no $VGCOURSE_DATA."""
    config = rn.DegradationConfig(
        shallow_depth=1, deep_depth=2, width=8, steps=3, dataset="mnist", device="cpu"
    )
    result = rn.run_degradation(config)
    assert [run.history.steps_run for run in result.runs] == [3, 3, 3]
    assert all(np.isfinite(run.train_loss) for run in result.runs)
    # the runs saw MNIST: the shallow plain network's gradient ratio at initialization, recomputed on the
    # first batch of the MNIST split (784 inputs), is the one recorded
    data = rn.load_image_data("mnist")
    assert data.in_features == 784
    order = torch.randperm(data.n_train, generator=torch.Generator().manual_seed(config.seed))
    x, y = data.x_train[order[: config.batch_size]], data.y_train[order[: config.batch_size]]
    spec = rn.NetworkSpec(skip=False, norm=config.norm)
    model = rn.build_network(spec, depth=1, width=8, in_features=784, out_features=10, seed=config.seed)
    ratio = rn.stream_pass(model, x, y).grad_ratio
    assert result.runs[0].init_grad_ratio == pytest.approx(ratio, rel=1e-6)


def test_a_diverged_run_is_kept_not_raised() -> None:
    config = rn.DegradationConfig(
        shallow_depth=1, deep_depth=12, width=16, norm=None, steps=20, lr=5.0, device="cpu"
    )
    result = rn.run_degradation(config)
    deep_residual = result.runs[2]
    assert deep_residual.history.diverged
    assert math.isnan(deep_residual.train_loss)


# ----------------------------------------------------------------------------------------------------
# Exercises of the chapter


def test_exercises_of_the_chapter() -> None:
    assert check("residual_networks.variance_after_blocks", 2**exercises.VARIANCE_DEPTH).correct
    assert not check("residual_networks.variance_after_blocks", exercises.VARIANCE_DEPTH + 1).correct
    # the chapter's α = 1/√L grows the stream by about e: more than the exercise's window allows
    assert exercises.forward_growth(1 / math.sqrt(exercises.SCALE_DEPTH)) > exercises.TAMED[1]
    assert check("residual_networks.branch_scale", 0.105).correct
    assert not check("residual_networks.branch_scale", 0.5).correct


# ----------------------------------------------------------------------------------------------------
# Configs reject bad input


# Each field's declared constraint (ranges, choices, non-empty, types) is checked for every Config by
# tests/test_contracts.py; here: the rules between fields (Config.check) and the chapter's helpers.
@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: rn.NetworkSpec(branch_scale=-1.0), ValueError),
        (lambda: rn.NetworkSpec(branch_scale="1/L"), ValueError),
        (lambda: rn.NetworkSpec(skip=False, branch_scale=0.5), ValueError),
        (lambda: rn.NetworkSpec(skip=False, zero_init_last=True), ValueError),
        (lambda: rn.PathExpansionConfig(networks=(rn.RESIDUAL_BN,)), ValueError),
        (lambda: rn.StreamDepthSweepConfig(depths=(20, 10)), ValueError),
        (lambda: rn.DegradationConfig(shallow_depth=16, deep_depth=8), ValueError),
        (lambda: rn.load_image_data("cifar"), ValueError),
        (lambda: rn.build_network("plain", depth=2, width=4, in_features=2, out_features=2), TypeError),
        (
            lambda: rn.build_network(rn.PLAIN, depth=2, width=4, in_features=2, out_features=2, dtype="half"),
            ValueError,
        ),
    ],
)
def test_bad_input_is_rejected(make, error) -> None:
    with pytest.raises(error):
        make()


# ----------------------------------------------------------------------------------------------------
# Plots and the explorer


# A Figure alone and into a given ax or axes, a TypeError for a wrong result or wrong axes: every plot, on
# small results, in tests/test_contracts.py; here the plots' own options, layouts and argument checks.
@pytest.fixture(scope="module")
def small_results() -> dict[str, object]:
    return {
        "forward": rn.run_forward_variance(
            rn.ForwardVarianceConfig(depth=5, width=8, batch_size=16, n_seeds=2)
        ),
        "sweep": rn.run_stream_depth_sweep(
            rn.StreamDepthSweepConfig(depths=(2, 4), width=8, batch_size=16, n_seeds=2)
        ),
        "degradation": rn.run_degradation(
            rn.DegradationConfig(shallow_depth=1, deep_depth=2, width=8, steps=12, device="cpu")
        ),
        "profile": rn.run_block_profile(rn.BlockProfileConfig(depth=4, width=8)),
    }


def test_panel_plots(small_results) -> None:
    assert len(plots.forward_variance_panels(small_results["forward"]).axes) == 2
    assert len(plots.depth_sweep_panels(small_results["sweep"]).axes) == 2
    assert isinstance(plots.depth_sweep(small_results["sweep"], "variance_ratio"), Figure)
    assert isinstance(plots.degradation(small_results["degradation"], window=1), Figure)
    fig = plots.layer_profile_grid([small_results["profile"]] * 3)  # 2 x 2: the fourth panel hidden
    assert len(fig.axes) == 4 and sum(ax.get_visible() for ax in fig.axes) == 3
    fig, axes = plt.subplots(2, 2)
    plots.forward_variance_panels(small_results["forward"], axes=axes[0])
    plots.depth_sweep_panels(small_results["sweep"], axes=axes[1])
    assert axes[1, 0].get_legend() is not None and len(fig.axes) == 4  # given axes: a legend, none added
    plt.close("all")
    with pytest.raises(ValueError, match="valid choices"):
        plots.depth_sweep(small_results["sweep"], "loss")
    with pytest.raises(ValueError, match="not in the result"):
        plots.forward_variance(small_results["forward"], networks=[rn.PLAIN_BN])
    with pytest.raises(TypeError):
        plots.layer_profile_grid([])


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_small_multiples_numbers_the_chapter_states(seed: int) -> None:
    """Residual at L = 100: flat weight gradients under a huge backward ratio; plain at width 32 fades."""
    residual = rn.run_block_profile(rn.BlockProfileConfig(network=rn.RESIDUAL, depth=100, seed=seed))
    spread = residual.fc2_grad.max() / residual.fc2_grad.min()
    expect("residual: profile L=100, α=1, largest / smallest fc2 gradient", spread, "<", 30)
    within(
        "residual: profile L=100, α=1, log10 gradient ratio", math.log10(residual.stream.grad_ratio), 12, 18
    )
    plain = rn.run_block_profile(rn.BlockProfileConfig(network=rn.PLAIN, depth=100, seed=seed))
    within(
        "residual: profile L=100, plain, log10 gradient ratio", math.log10(plain.stream.grad_ratio), -4, -1
    )


def test_explorer_builds_the_chosen_network_and_shows_its_ratio() -> None:
    # the Figure at its defaults and with every control at its first, then its last value:
    # tests/test_contracts.py; here the networks the controls build and the text the explorer shows
    explorer = explorers.layer_profile_explorer()
    explorer.show()
    for values in (
        {"skip": "off", "norm": "batch", "depth": 100},
        {"skip": "off", "branch": "zero-init"},  # ignored without skips
        {"skip": "on", "norm": "layer", "branch": "1/sqrt(L)"},
        {"skip": "on", "norm": "none", "branch": "zero-init", "depth": 1},
        {"norm": "batch", "branch": "1", "depth": 100},
    ):
        explorer.update(**values)
        assert "‖∂J/∂x₀‖" in explorer.text.value
    assert isinstance(explorer.result, rn.BlockProfileResult)
    assert explorer.result.config.network == rn.RESIDUAL_BN
    explorer.update(skip="on", norm="none", branch="zero-init", depth=5)
    assert "exactly 0" in explorer.text.value
    assert np.all(explorer.result.fc1_grad == 0)
    assert explorers.network_spec("off", "none", "zero-init") == rn.PLAIN
    with pytest.raises(ValueError):
        explorers.layer_profile_explorer(depth=200)
    with pytest.raises(ValueError, match="valid choices"):
        explorers.layer_profile_explorer(norm="group")


# ----------------------------------------------------------------------------------------------------
# Where the ReLU sits: the original block φ(x + F(x)) against the clean block x + F(x)


@dataclass(frozen=True)
class TorchvisionBlockCheck:
    """Autograd's Jacobian J of a block of torchvision's ResNet-18 against the two block Jacobians."""

    block: str  # e.g. "layer1.0 (BasicBlock)"
    n_inputs: int  # entries of the input (J is n_inputs × n_inputs)
    output_min: float  # the smallest entry of the output (0 when a ReLU follows the addition)
    negative_share: float  # share of the entries of x + F(x) that are negative (the 0s of D)
    error_original: float  # max |J − D(I + ∂F/∂x)|, the original (post-activation) block
    error_clean: float  # max |J − (I + ∂F/∂x)|, the clean (pre-activation) block


def check_torchvision_block(seed: int = 0, size: int = 2) -> TorchvisionBlockCheck:
    """Compare autograd's Jacobian of ``resnet18(weights=None).layer1[0]`` (a 64-channel ``BasicBlock``,
    eval mode, float64) at a random input (1, 64, size, size) with D(I + ∂F/∂x) and I + ∂F/∂x, where
    F = bn2 ∘ conv2 ∘ relu ∘ bn1 ∘ conv1 and D = diag(1[x + F(x) > 0]); ``seed`` seeds weights and input."""
    import torchvision

    with initial_weights(seed):  # torchvision's default initialization from seed, global RNG untouched
        block = torchvision.models.resnet18(weights=None).layer1[0].double().eval()
    if block.downsample is not None:  # pragma: no cover - layer1.0 keeps the shape
        raise RuntimeError("expected a BasicBlock without downsampling")
    x = torch.randn(1, 64, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))

    def branch(h: Tensor) -> Tensor:
        return block.bn2(block.conv2(block.relu(block.bn1(block.conv1(h)))))

    n = x.numel()
    with torch.no_grad():
        out = block(x)
        pre = x + branch(x)
    jacobian = torch.autograd.functional.jacobian(block, x, vectorize=True).reshape(n, n)
    branch_jacobian = torch.autograd.functional.jacobian(branch, x, vectorize=True).reshape(n, n)
    clean = torch.eye(n, dtype=torch.float64) + branch_jacobian
    mask = (pre.reshape(n) > 0).to(torch.float64)
    original = mask[:, None] * clean
    return TorchvisionBlockCheck(
        block=f"layer1.0 ({type(block).__name__})",
        n_inputs=n,
        output_min=float(out.min()),
        negative_share=float(1.0 - mask.mean()),
        error_original=float((jacobian - original).abs().max()),
        error_clean=float((jacobian - clean).abs().max()),
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_post_activation_block_jacobian_is_mask_times_identity_plus_branch(seed: int) -> None:
    """φ(x + F(x)) has Jacobian D(I + ∂F/∂x), D = diag(1[x + F(x) > 0])."""
    model = rn.build_network(
        rn.POST_ACTIVATION, depth=3, width=6, in_features=6, out_features=2, seed=seed, dtype="float64"
    )
    x = torch.randn(6, dtype=F64, generator=torch.Generator().manual_seed(seed))
    block = model.blocks[1]
    auto = torch.autograd.functional.jacobian(block, x)
    branch = block.fc2.weight @ torch.diag((block.fc1(x) > 0).to(F64)) @ block.fc1.weight
    mask = torch.diag((x + block.branch(x) > 0).to(F64))
    torch.testing.assert_close(auto, mask @ (torch.eye(6, dtype=F64) + branch), rtol=1e-12, atol=1e-14)
    assert 0 < int(mask.diag().sum()) < 6  # the mask removes some entries here: the test can tell D from I
    assert float(block(x).detach().min()) >= 0.0
    clean = rn.build_network(rn.RESIDUAL, depth=3, width=6, in_features=6, out_features=2, seed=seed)
    post = rn.build_network(rn.POST_ACTIVATION, depth=3, width=6, in_features=6, out_features=2, seed=seed)
    for a, b in zip(clean.parameters(), post.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the same weights: only the ReLU differs


def test_torchvision_resnet18_uses_the_original_post_activation_block() -> None:
    source = rn.torchvision_block_source()
    assert source.addition == "out += identity"
    assert source.after_addition == ["out = self.relu(out)"]
    assert any("relu" in line for line in rn.torchvision_block_source("Bottleneck").after_addition)
    check = check_torchvision_block(seed=0)
    assert check.block == "layer1.0 (BasicBlock)"
    assert check.output_min == 0.0
    assert 0.2 < check.negative_share < 0.8
    assert check.error_original < 1e-12  # J = D(I + ∂F/∂x) exactly
    assert check.error_clean > 0.1  # and not I + ∂F/∂x
    with pytest.raises(ValueError, match="valid choices"):
        rn.torchvision_block_source("PreActBlock")


@pytest.fixture(scope="module")
def placement() -> rn.PlacementResult:
    return rn.run_placement(rn.PlacementConfig(**N_NETWORKS))


@pytest.mark.claim
def test_placement_numbers_the_chapter_states(placement: rn.PlacementResult) -> None:
    nets, depth = placement.config.networks, placement.config.depth
    first = {spec: placement.stream_grad.sel(network=spec, block=0).values for spec in nets}  # per network
    growth = {spec: first[spec] ** (1 / depth) for spec in nets}
    within("residual: placement, clean, gradient growth per block", growth[rn.RESIDUAL], 1.3, 1.52)
    within(
        "residual: placement, ReLU after +, gradient growth per block", growth[rn.POST_ACTIVATION], 1.15, 1.38
    )
    expect(
        "residual: placement, log10 gradient ratio clean / ReLU after +",
        np.log10(first[rn.RESIDUAL] / first[rn.POST_ACTIVATION]),
        ">",
        1,
    )
    within(
        "residual: placement, BN, gradient ratio ReLU after + / clean",
        first[rn.POST_ACTIVATION_BN] / first[rn.RESIDUAL_BN],
        1.5,
        6,
    )
    active = {spec: placement.active.sel(network=spec).values.mean(axis=1) for spec in nets}
    within(
        "residual: placement, ReLU after +, share of entries kept by D",
        active[rn.POST_ACTIVATION],
        0.62,
        0.78,
    )
    within(
        "residual: placement, BN, ReLU after +, share of entries kept by D",
        active[rn.POST_ACTIVATION_BN],
        0.8,
        0.93,
    )
    share = {spec: placement.identity_share.sel(network=spec, block=0).values for spec in nets}
    expect(
        "residual: placement, ReLU after +, identity path share at x_0", share[rn.POST_ACTIVATION], "<", 0.01
    )
    within(
        "residual: placement, BN, ReLU after +, identity path share at x_0",
        share[rn.POST_ACTIVATION_BN],
        0.04,
        0.2,
    )
    for spec in (rn.RESIDUAL, rn.RESIDUAL_BN):
        assert np.all(placement.identity_share.sel(network=spec).values == 1.0)
        assert np.all(placement.active.sel(network=spec).values == 1.0)
    typical = placement.stream_grad.mean("seed", geometric=True)
    assert typical.sel(network=rn.RESIDUAL, block=0) == pytest.approx(
        np.exp(np.log(first[rn.RESIDUAL]).mean())
    )
    assert np.all(placement.stream_grad.sel(block=depth).values == 1.0)


# ----------------------------------------------------------------------------------------------------
# Shattered gradients


def test_lag1_autocorrelation() -> None:
    t = np.linspace(0, 1, 256)
    assert rn.lag1_autocorrelation(np.sin(2 * np.pi * t)) > 0.99
    noise = np.random.default_rng(0).standard_normal(4096)
    assert abs(rn.lag1_autocorrelation(noise)) < 0.05
    assert rn.lag1_autocorrelation(np.array([1.0, -1.0] * 8)) < -0.9
    assert math.isnan(rn.lag1_autocorrelation(np.ones(5)))
    with pytest.raises(ValueError, match="1-D"):
        rn.lag1_autocorrelation(np.ones((3, 3)))


@pytest.fixture(scope="module")
def shattered() -> rn.ShatteredResult:
    return rn.run_shattered(rn.ShatteredConfig(**N_NETWORKS))


@pytest.mark.claim
def test_shattered_numbers_the_chapter_states(shattered: rn.ShatteredResult) -> None:
    nets, depths = shattered.config.networks, list(shattered.config.depths)
    rho = {spec: shattered.autocorrelation.sel(network=spec).values for spec in nets}  # (seeds, depths)
    one, twenty, fifty = depths.index(1), depths.index(20), depths.index(50)
    for spec in nets:
        expect(f"residual: shattered, {spec.label}, L=1, lag-1 autocorrelation", rho[spec][:, one], ">", 0.95)
    within(
        "residual: shattered, plain + BN, L=10, lag-1 autocorrelation",
        rho[rn.PLAIN_BN][:, depths.index(10)],
        0.1,
        0.6,
    )
    for index, depth in ((twenty, 20), (fifty, 50)):
        expect(
            f"residual: shattered, plain + BN, L={depth}, |lag-1 autocorrelation|",
            np.abs(rho[rn.PLAIN_BN][:, index]),
            "<",
            0.35,
        )
    expect(
        "residual: shattered, residual + BN, L=50, lag-1 autocorrelation",
        rho[rn.RESIDUAL_BN][:, fifty],
        ">",
        0.4,
    )
    gap = rho[rn.RESIDUAL_BN][:, fifty] - rho[rn.PLAIN_BN][:, fifty]
    expect("residual: shattered, L=50, residual - plain lag-1 autocorrelation", gap, ">", 0.3)
    mean = shattered.autocorrelation.mean("seed")
    assert mean.sel(network=rn.PLAIN_BN, depth=50) == pytest.approx(rho[rn.PLAIN_BN][:, fifty].mean())
    assert shattered.gradient.values.shape == (2, shattered.config.n_points)
    with pytest.raises(KeyError, match="not on the grid"):
        mean.sel(network=rn.PLAIN_BN, depth=30)


def test_shattered_gradient_is_each_points_own_derivative() -> None:
    """With BatchNorm's statistics frozen, df/dx at a point matches a finite difference of f there."""
    config = rn.ShatteredConfig(depths=(3,), width=8, n_points=16, n_seeds=1)
    result = rn.run_shattered(config)
    model = rn.build_network(rn.PLAIN_BN, depth=3, width=8, in_features=1, out_features=1, dtype="float64")
    x = torch.linspace(-2, 2, 16, dtype=F64)[:, None]
    (gradient,) = rn._prefix_input_gradients(model, x, (3,))  # model is now in eval mode, statistics frozen
    np.testing.assert_allclose(gradient, result.gradient.values[0])
    h = 1e-6
    with torch.no_grad():
        numeric = (model(x + h) - model(x - h))[:, 0].numpy() / (2 * h)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-7)


# Each field's declared constraint (ranges, choices, non-empty, types) is checked for every Config by
# tests/test_contracts.py; here: the rules between fields (Config.check) and the chapter's helpers.
@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: rn.NetworkSpec(skip=False, post_activation=True), ValueError),
        (lambda: rn.PlacementConfig(networks=(rn.PLAIN,)), ValueError),
        (lambda: rn.ShatteredConfig(depths=(5, 2)), ValueError),
    ],
)
def test_new_configs_reject_bad_input(make, error) -> None:
    with pytest.raises(error):
        make()


def test_placement_and_shattered_plots() -> None:
    placement = rn.run_placement(rn.PlacementConfig(depth=4, width=8, batch_size=16, n_seeds=2))
    assert len(plots.relu_placement(placement).axes) == 2
    shattered = rn.run_shattered(rn.ShatteredConfig(depths=(1, 3), width=8, n_points=32, n_seeds=2))
    assert len(plots.shattered_gradients(shattered).axes) == 2
    fig, axes = plt.subplots(2, 2)
    plots.relu_placement(placement, axes=axes[0])
    plots.shattered_gradients(shattered, axes=axes[1])
    assert axes[0, 0].get_legend() is not None and len(fig.axes) == 4  # given axes: a legend, none added
    plt.close(fig)
