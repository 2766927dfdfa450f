"""The chapter on normalization layers and adaptive optimizers: the Jacobian formulas vs autograd, and
every number the chapter states (first half: normalization; second half: adaptive optimizers).

The chapter runs each experiment at seed 0 (the batch-size sweep at seeds 0, 1, 2); the claim tests rerun
them at each seed of ``claims.SEEDS``, so every stated margin holds on each of those networks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from claims import SEEDS, expect, within
from matplotlib.figure import Figure

from vgcourse.experiments import normalization_and_optimizers as no
from vgcourse.explorers import normalization_and_optimizers as explorers
from vgcourse.meanfield import gaussian_moments, predicted_growth
from vgcourse.models import RMSNorm, make_norm
from vgcourse.plots import normalization_and_optimizers as plots

# --- Normalization (N1) ---


def test_rms_norm_matches_definition_and_torch():
    x = torch.randn(5, 7, dtype=torch.float64)
    norm = RMSNorm(7).double()
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps)
    assert torch.allclose(norm(x), expected)
    if hasattr(torch.nn, "RMSNorm"):
        reference = torch.nn.RMSNorm(7, eps=norm.eps).double()
        assert torch.allclose(norm(x), reference(x))


def test_make_norm_kinds_and_errors():
    assert make_norm("none", 4) is None and make_norm(None, 4) is None
    assert isinstance(make_norm("batch", 4), torch.nn.BatchNorm1d)
    assert isinstance(make_norm("layer", 4), torch.nn.LayerNorm)
    assert isinstance(make_norm("rms", 4), RMSNorm)
    with pytest.raises(ValueError, match="norm"):
        make_norm("group", 4)
    with pytest.raises(ValueError):
        no.ScaleInvarianceConfig(scales=(2.0, 4.0))


def test_gaussian_moments_of_relu_and_tanh():
    d2, var, second = gaussian_moments("relu")
    assert (d2, second) == (0.5, 0.5) and math.isclose(var, 0.5 - 1 / (2 * math.pi))
    assert math.isclose(predicted_growth("batch", "relu"), math.sqrt(math.pi / (math.pi - 1)))
    d2, var, second = gaussian_moments("tanh")
    rng = np.random.default_rng(0)
    z = rng.standard_normal(400_000)
    assert abs(second - np.mean(np.tanh(z) ** 2)) < 3e-3
    assert abs(d2 - np.mean((1 - np.tanh(z) ** 2) ** 2)) < 3e-3
    # the Gaussian Poincaré inequality Var φ(z) <= E[φ'(z)²]: batch norm's growth is >= 1 for both
    for act in no.ACTIVATIONS:
        assert predicted_growth("batch", act) > 1.0
    assert math.isnan(predicted_growth("none", "relu"))


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_jacobian_formulas_match_autograd(seed):
    result = no.run_jacobian_check(no.JacobianCheckConfig(seed=seed))
    for kind in ("batch", "layer", "rms"):
        expect(f"norm: {kind} Jacobian formula vs autograd", result.relative_error[kind], "<", 1e-12)
        expect(f"norm: {kind} Jacobian kills x", result.gain_along_x[kind], "<", 1e-4)
        within(f"norm: {kind} Jacobian scales as 1/sigma", result.scale_ratio[kind], 1 - 1e-4, 1 + 1e-4)
    for kind in ("batch", "layer"):
        expect(f"norm: {kind} Jacobian kills the mean", result.gain_along_ones[kind], "<", 1e-12)
    expect("norm: rms Jacobian keeps the mean direction", result.gain_along_ones["rms"], ">", 0.1)
    assert list(result.to_frame()["normalization"]) == ["batch", "layer", "rms"]


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_batch_norm_train_eval_difference(seed):
    result = no.run_train_eval(no.TrainEvalConfig(seed=seed))
    at = {b: result.relative_difference.sel(batch_size=b) for b in (2, 4, 256)}
    expect("norm: BN train/eval difference at B=4", at[4], ">", 0.4)
    expect("norm: BN train/eval difference at B=256", at[256], "<", 0.15)
    expect("norm: BN train/eval difference at B=2", at[2], ">", 0.8)
    expect("norm: BN train/eval difference, B=4 over B=256", at[4] / at[256], ">", 3.0)


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_norm_profiles_follow_mean_field(seed):
    profiles = {
        (n, a): no.run_norm_profile(no.NormProfileConfig(norm=n, activation=a, seed=seed))
        for a in no.ACTIVATIONS
        for n in no.NORM_KINDS
    }
    for (norm, act), p in profiles.items():
        assert p.backward.shape == (p.config.depth,) and np.all(np.isfinite(p.backward))
        if norm != "none":
            gap = abs(p.growth_per_layer - predicted_growth(norm, act))
            expect(f"norm: {norm} {act} growth per layer vs mean field", gap, "<", 0.08)
            # the forward signal is normalized: no drift over the layers
            within(f"norm: {norm} {act} forward rms, last layer", p.forward[-1], 0.4, 2.0)
    bn = profiles[("batch", "relu")]
    expect("norm: BN relu gradient ratio over 50 layers", bn.grad_ratio, ">", 1e3)
    expect("norm: LN relu gradient ratio over 50 layers", profiles[("layer", "relu")].grad_ratio, "<", 20)


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_batch_size_growth(seed):
    result = no.run_batch_size_growth(no.BatchSizeConfig(n_seeds=1, seed=seed))
    bn = result.growth.sel(norm="batch", activation="relu")
    expect("norm: BN relu growth, B=4 minus B=256", bn.sel(batch_size=4) - bn.sel(batch_size=256), ">", 0.15)
    gap = abs(bn.sel(batch_size=256) - predicted_growth("batch", "relu"))
    expect("norm: BN relu growth at B=256 vs mean field", gap, "<", 0.04)
    ln = result.growth.sel(norm="layer", activation="relu").values
    expect("norm: LN relu growth, spread over batch sizes", ln.max() - ln.min(), "<", 0.05)


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_scale_invariance(seed):
    for norm in ("batch", "layer", "rms"):
        result = no.run_scale_invariance(no.ScaleInvarianceConfig(norm=norm, seed=seed))
        expect(f"norm: {norm} loss unchanged by scaling W", result.loss_spread, "<", 1e-4)
        expect(f"norm: {norm} gradient scales as 1/c", result.inverse_scaling_error, "<", 1e-3)
        expect(f"norm: {norm} gradient orthogonal to W", np.abs(result.cosine.values).max(), "<", 1e-4)


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_same_path_and_norm_growth(seed):
    path = no.run_same_path(no.SamePathConfig(seed=seed))
    expect("norm: (cW, c^2 lr) follows (W, lr)", path.max_difference, "<", 1e-3)
    first, _, slow = path.final_losses
    expect("norm: (cW, lr) final loss over (W, lr)", slow / first, ">", 1.5)
    growth = no.run_norm_growth(no.NormGrowthConfig(seed=seed))
    expect("norm: |W|^2 grows by lr^2 |g|^2", growth.growth_error, "<", 1e-5)
    norm_at_end, tail = growth.norm_at_end.sel, growth.tail_ratio.sel
    expect("norm: |W| growth without weight decay", norm_at_end(weight_decay=0.0), ">", 4.0)
    for wd in growth.config.weight_decays[1:]:
        ratio = tail(weight_decay=wd) / growth.predicted_ratio.sel(weight_decay=wd)
        within(f"norm: update ratio over sqrt(2 lr wd), wd={wd}", ratio, 0.9, 1.1)
        relative = norm_at_end(weight_decay=wd) / norm_at_end(weight_decay=0.0)
        expect(f"norm: |W| with wd={wd} below no decay", relative, "<", 0.8)
    expect(
        "norm: update ratio without weight decay",
        tail(weight_decay=0.0),
        "<",
        0.5 * tail(weight_decay=0.005),
    )


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_injected_shift_trains_like_batch_norm(seed):
    result = no.run_shift(no.ShiftConfig(seed=seed))
    # without normalization: diverged (inf), or collapsed to chance. At chance the loss ends near ln 10 = 2.30
    # from either side (2.3051 and 2.3063 where it did not diverge: default kernels at seed 4, avx2 at seed 1
    # of one AMD EPYC), so the threshold is 0.9 ln 10, far above the normalized networks' 0.15
    none = result.final_loss["none"]
    expect(
        "norm: no-norm final loss (inf: diverged)",
        none if math.isfinite(none) else math.inf,
        ">",
        0.9 * math.log(10),
    )
    if seed == no.ShiftConfig().seed:  # the chapter's run: "(here it diverges)"
        assert not math.isfinite(none), none
    # both train, from ln 10 = 2.30 to below 0.15: the chapter quotes the two losses, not their ratio. The
    # ratio of two such small losses is not a claim: 0.45 to 3.55 over seeds 0-2 and the avx512, avx2 and
    # default kernels of one AMD EPYC (within 0.5-1.6 on an Intel CPU's)
    expect("norm: noisy BN final loss", result.final_loss["noisy batch"], "<", 0.15)
    expect("norm: BN final loss", result.final_loss["batch"], "<", 0.15)


def test_layer_profiles_draw_a_row_per_activation_and_mean_field_only_for_normalized_nets():
    profiles = [
        no.run_norm_profile(no.NormProfileConfig(norm=n, activation=a, depth=12, batch_size=16))
        for a in no.ACTIVATIONS
        for n in no.NORM_KINDS
    ]
    fig = plots.layer_profiles(profiles)
    titles = [f"{a}: {side} signal" for a in no.ACTIVATIONS for side in ("forward", "backward")]
    assert [ax.get_title() for ax in fig.axes] == titles
    for backward in fig.axes[1::2]:  # dashed: predicted_growth, which a network without a norm lacks
        dashed = [line for line in backward.get_lines() if line.get_linestyle() == "--"]
        assert len(dashed) == len(no.NORM_KINDS) - 1


def test_explorer_readout_and_batch_sizes():
    explorer = explorers.norm_profile_explorer(depth=10)
    assert "growth per layer" in explorers.norm_profile_readout(
        explorer.run(explorer.make_config(**explorer.values()))
    )
    with pytest.raises(ValueError):
        explorers.norm_profile_explorer(batch_size=5)


# --- Adaptive optimizers (N2) ---

ADAM_BEST_LR = 0.03
"""The Adam learning rate the chapter finds best in its grid at seeds 0-2 (the grid's middle value)."""


@pytest.fixture(scope="module", params=SEEDS)
def optimizer_grid(request):
    return no.run_optimizer_grid(no.OptimizerGridConfig(seeds=(request.param,), grid_seeds=(request.param,)))


def _first_to_output(grid, optimizer, lr):
    """Layer 1's step size over the output layer's at one learning rate of the grid (the first seed)."""
    steps = grid.grid_update_size[optimizer].sel(lr=lr).values[0]
    return steps[0] / steps[-1]


@pytest.mark.claim
def test_adam_trains_the_sigmoid_circles_network_that_sgd_leaves_at_chance(optimizer_grid):
    grid = optimizer_grid
    for lr in grid.config.momentum_lrs:
        accuracy = grid.grid_accuracy["momentum"].sel(lr=lr).values[0]
        within("adam: SGD+momentum stays at chance", accuracy, 0.45, 0.55)
    adam = grid.grid_accuracy["adam"].sel(lr=ADAM_BEST_LR).values[0]
    expect("adam: Adam at the chapter's best lr", adam, ">", 0.62)
    best = grid.accuracy.values[:, 0]  # momentum, adam at their best learning rates
    expect("adam: Adam's best gain over SGD's best", best[1] - best[0], ">", 0.12)
    # the step: Adam moves layer 1 about as far as the output layer, SGD hundreds of times less
    within("adam: Adam's layer-1 step / output step", _first_to_output(grid, "adam", ADAM_BEST_LR), 0.5, 10)
    for lr in grid.config.momentum_lrs:
        expect("adam: SGD's layer-1 step / output step", _first_to_output(grid, "momentum", lr), "<", 0.01)
    frame = grid.to_frame()
    assert len(frame) == len(grid.config.momentum_lrs) + len(grid.config.adam_lrs)
    assert "validation accuracy" in frame.columns


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_adam_first_step_is_lr_above_eps_and_g_over_eps_below(seed):
    result = no.run_adam_first_step(no.AdamFirstStepConfig(seeds=(seed,)))
    g, step, pred = result.grad_rms[0], result.step[0], result.predicted[0]
    expect("adam: layers of the depth-20 network below eps", int((g < no.ADAM_EPS).sum()), ">=", 5)
    expect(
        "adam: first step of layers with rms g > 100 eps, in lr", step[g > 100 * no.ADAM_EPS].min(), ">", 0.95
    )
    expect("adam: layer 1's first step, in lr", step[0], "<", 1e-4)
    big = pred > 1e-3
    expect("adam: first step vs g/(g+eps)", np.abs(step[big] / pred[big] - 1).max(), "<", 0.01)
    # below float32's resolution the step is lost: never larger than the rule's value
    expect("adam: float32 step never above the rule", (step / pred)[~big].max(initial=0.0), "<", 1.2)


def test_first_step_draws_a_network_deep_enough_that_gradients_underflow_to_zero(monkeypatch):
    monkeypatch.setenv("VGCOURSE_STRICT_FIGURES", "1")  # the book's figure limits
    result = no.run_adam_first_step(no.AdamFirstStepConfig(depth=100, seeds=(0,)))  # the declared maximum
    assert (result.grad_rms == 0).any() and (result.grad_rms > 0).any()
    assert isinstance(plots.first_step(result), Figure)  # the g/(g + ε) curve spans the nonzero gradients


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_far_lags_are_as_small_a_share_of_adams_step_as_of_sgds(seed):
    result = no.run_far_lag(no.FarLagConfig(seeds=(seed,)))
    expect("adam: lag split of dL/dW_hh vs autograd", result.autograd_error[0], "<", 1e-5)
    expect("adam: far-lag share of SGD's step", result.sgd_share[0], "<", 1e-3)
    expect("adam: far-lag share of Adam's first step", result.adam_share[0], "<", 1e-3)
    expect("adam: Adam's far share / SGD's", result.adam_share[0] / result.sgd_share[0], "<", 1.0)
    profile = result.lag_norm[0]
    expect("adam: lag term 20 / lag term 0", profile[20] / profile[0], "<", 1e-3)


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_adam_leaves_silent_dead_units_bit_identical(seed):
    result = no.run_dead_units(no.DeadUnitsConfig(seeds=(seed,)))
    expect("adam: units dead at init", int(result.dead_at_start[0]), ">=", 20)
    expect("adam: dead units silent for the whole run", int(result.silent[0]), ">=", 10)
    assert result.silent_identical[0] == result.silent[0]  # an exact 0 gradient: an exact 0 step
    assert result.revived[0] + result.silent[0] == result.dead_at_start[0]
    expect("adam: alive units' movement, in lr", float(result.alive_moved[0]), ">", 1.0)


def test_adaptive_config_rule_and_plots_within_the_books_figure_limits(optimizer_grid, monkeypatch):
    monkeypatch.setenv("VGCOURSE_STRICT_FIGURES", "1")  # the book's figure limits
    with pytest.raises(ValueError):
        no.FarLagConfig(seq_len=10, far_from=10)
    with pytest.raises(KeyError, match="not on the grid"):
        optimizer_grid.grid_accuracy["adam"].sel(lr=0.5)
    assert isinstance(plots.optimizer_grid(optimizer_grid), Figure)  # the chapter's grid, at each seed


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_diagnose_reads_the_update_column_under_adam(seed):
    result = no.run_diagnose(no.DiagnoseConfig(seed=seed))
    sgd, adam = result.reports["momentum"], result.reports["adam"]
    assert "layer 1" in sgd.flagged["update_too_small"] and "layer 1" not in adam.flagged["update_too_small"]
    kinds = {name: [f.kind for f in report.findings] for name, report in result.reports.items()}
    assert "adaptive" in kinds["adam"] and "adaptive" not in kinds["momentum"]
    sgd_ratio, adam_ratio = sgd.columns["update_ratio"], adam.columns["update_ratio"]
    expect("adam: diagnose, SGD's layer-1 update ratio", float(sgd_ratio[0]), "<", 1e-5)
    expect("adam: diagnose, Adam's median update ratio", float(np.median(adam_ratio)), ">", 0.03)
    # the same network and batch: the gradient column is the same under both optimizers
    assert np.array_equal(sgd.columns["grad_rms"], adam.columns["grad_rms"])


def test_diagnose_update_ratio_misses_a_same_signed_adam_step():
    """At seed 1 Adam's first step moves layer 1's weights by about lr each, nearly all in the same
    direction, so std(ΔW), the update:data ratio's numerator, is tiny (a single setting, no claim)."""
    result = no.run_diagnose(no.DiagnoseConfig(seed=1))
    ratios = result.reports["adam"].columns["update_ratio"]
    assert ratios[0] < 1e-3 < 0.03 < ratios[1:].min()
    assert result.reports["adam"].columns["grad_rms"][0] > 1e3 * no.ADAM_EPS  # so each weight moved by ≈ lr


@pytest.mark.parametrize("seed", SEEDS)
def test_diagnose_normalized_note_prints_lr_over_w_squared(seed):
    result = no.run_norm_diagnose(no.NormDiagnoseConfig(seed=seed))
    report = result.report
    assert report.healthy and [f.kind for f in report.findings] == ["normalized"]
    (note,) = report.findings
    assert list(note.layers) == [f"layer {i}" for i in range(1, result.config.depth + 1)]
    low, high = result.effective_lr.min(), result.effective_lr.max()
    assert f"{low:.2g} to {high:.2g}" in note.message  # the note's range is lr/‖W‖², computed directly
