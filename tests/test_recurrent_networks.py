"""The recurrent-networks chapter: the closed forms against autograd, and every number the chapter states.

The chapter's runs use seed 0; each claim is checked at the seeds of ``claims.SEEDS`` (0, 1 and 2 unless
VGCOURSE_CLAIM_SEEDS says otherwise) through ``claims.expect``, so ``benchmarks/claim_margins.py`` can
report its margin across seeds and CPU kernel families. The training runs are the slow part: the
adding-problem runs are made once per seed in module fixtures and shared by the tests.
"""

from __future__ import annotations

import dataclasses
import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from claims import SEEDS, expect

import vgcourse.exercises.recurrent_networks as exercises
from vgcourse import bptt
from vgcourse.data import adding_problem
from vgcourse.exercises import check
from vgcourse.experiments import recurrent_networks as rn
from vgcourse.explorers import recurrent_networks as explorers
from vgcourse.models import SequenceModel
from vgcourse.plots import recurrent_networks as plots

matplotlib.use("Agg")

F64 = torch.float64


def between(name: str, value: object, low: float, high: float) -> None:
    """The claim ``low < value < high``, as two recorded claims (each side has its own margin)."""
    expect(f"{name} > {low:g}", value, ">", low)
    expect(f"{name} < {high:g}", value, "<", high)


def far(profile: rn.LagProfileResult, arch: str) -> float:
    """g_{T-1} / g_0: the gradient at the longest lag relative to the last step's."""
    return profile.relative.sel(arch=arch, lag=profile.config.seq_len - 1)


# ----------------------------------------------------------------------------------------------------
# Bad inputs to the building blocks (each Config's field constraints: tests/test_contracts.py)


def test_bad_arguments_of_the_building_blocks() -> None:
    with pytest.raises(ValueError, match="arch"):
        rn.build_adding_model("cnn")
    with pytest.raises(ValueError, match="lstm"):
        rn.build_adding_model("gru", forget_bias=1.0)
    with pytest.raises(TypeError):
        bptt.recurrent_blocks(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="rnn"):
        bptt.rnn_state_jacobians(rn.build_adding_model("lstm", 4), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="gates"):
        bptt.cell_path_jacobians(rn.build_adding_model("rnn", 4), torch.zeros(3, 2))
    with pytest.raises(ValueError):
        bptt.gate_trajectory(rn.build_adding_model("rnn", 4), torch.zeros(2))
    with pytest.raises(ValueError):
        bptt.spectral_radius(torch.zeros(2, 3))
    with pytest.raises(ValueError):
        bptt.fit_rate(np.ones(3), first=1, last=1)


# ----------------------------------------------------------------------------------------------------
# Building blocks


@pytest.mark.parametrize("arch", rn.ARCHS)
def test_build_adding_model_is_repeatable_and_uses_pytorchs_default_range(arch: str) -> None:
    a, b, c = (
        rn.build_adding_model(arch, 16, 3),
        rn.build_adding_model(arch, 16, 3),
        rn.build_adding_model(arch, 16, 4),
    )
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc)
        assert pa.abs().max() <= 1 / math.sqrt(16)
    assert isinstance(a, SequenceModel) and a.arch == arch


@pytest.mark.parametrize("arch", rn.ARCHS)
def test_every_gate_block_is_rescaled_to_the_spectral_radius(arch: str) -> None:
    model = rn.build_adding_model(arch, 12, 0, spectral_radius=1.7)
    blocks = bptt.recurrent_blocks(model)
    assert len(blocks) == {"rnn": 1, "gru": 3, "lstm": 4}[arch]
    for block in blocks:
        assert bptt.spectral_radius(block) == pytest.approx(1.7, rel=1e-5)


def test_forget_bias_sets_the_lstm_forget_gate() -> None:
    model = rn.build_adding_model("lstm", 8, 0, forget_bias=1.0)
    total = model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0
    torch.testing.assert_close(total[8:16], torch.ones(8))
    trajectory = bptt.gate_trajectory(model, torch.zeros(5, 2))
    # with zero input the forget gate is σ(1 + W_hf h); h stays small, so f ≈ σ(1)
    assert abs(float(trajectory["f"].mean()) - 1 / (1 + math.exp(-1))) < 0.05


@pytest.mark.parametrize("arch", rn.ARCHS)
def test_hand_unroll_matches_pytorch(arch: str) -> None:
    model = rn.build_adding_model(arch, 6, 1)
    x = torch.randn(4, 9, 2, generator=torch.Generator().manual_seed(0))
    trajectory = bptt.gate_trajectory(model, x)
    out, _ = model.rnn(x)
    torch.testing.assert_close(trajectory["h"][:, 1:], out.double(), rtol=1e-5, atol=1e-6)
    single = bptt.gate_trajectory(model, x[2])
    torch.testing.assert_close(single["h"], trajectory["h"][2])


def test_input_gradient_profile_matches_autograd() -> None:
    model = rn.build_adding_model("gru", 8, 0)
    x, y = rn._adding_batch(12, 16, 0)
    profile = bptt.input_gradient_profile(model, x, y)
    leaf = x.clone().requires_grad_(True)
    F.mse_loss(model(leaf), y).backward()
    expected = leaf.grad.norm(dim=(0, 2)).numpy()[::-1]
    np.testing.assert_allclose(profile, expected, rtol=1e-5)


def test_fit_rate_recovers_a_geometric_rate() -> None:
    lags = np.arange(40)
    assert bptt.fit_rate(3.0 * 0.7**lags) == pytest.approx(0.7, rel=1e-10)
    assert bptt.fit_rate(np.r_[5.0, 2.0 * 1.3 ** lags[1:]]) == pytest.approx(1.3, rel=1e-10)


def test_adding_baseline_is_the_variance_of_the_target() -> None:
    data = adding_problem(n_samples=20000, seq_len=10, seed=0)
    assert rn.adding_baseline(data) == pytest.approx(2 / 12, rel=0.05)
    with pytest.raises(TypeError, match="data must be a DataSplit; got tuple"):
        rn.adding_baseline((data.x_val, data.y_val))


# ----------------------------------------------------------------------------------------------------
# The closed forms against autograd


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_bptt_products_match_autograd(seed: int) -> None:
    result = rn.run_bptt_check(rn.BPTTCheckConfig(seed=seed))
    # the chapter: "float64 rounding"
    errors = np.r_[result.rnn_errors.max(), result.lstm_errors.max(), result.gru_errors.max()]
    expect("recurrent: BPTT closed forms vs autograd, max relative error", errors, "<", 1e-12)
    assert result.rnn_bound_holds.all()
    frame = result.to_frame()
    assert frame["Jacobians"].sum() == 3 * result.config.n_models * result.config.seq_len
    assert frame["max relative error"].max() == errors.max()


def test_the_gated_path_is_not_the_whole_lstm_jacobian() -> None:
    """Detaching h where it enters the gates matters: the full Jacobian has other paths too."""
    model = rn.build_adding_model("lstm", 5, 0, spectral_radius=1.0)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
    full = bptt.state_jacobians_autograd(model, x)
    cell = bptt.cell_path_jacobians(model, x)
    assert not torch.allclose(full[0], torch.diag(cell[0]), rtol=1e-3)
    torch.testing.assert_close(cell[-1], torch.ones(5, dtype=F64))


def test_rnn_jacobian_of_a_single_step_is_d_times_w() -> None:
    model = rn.build_adding_model("rnn", 4, 2)
    x = torch.randn(1, 2, generator=torch.Generator().manual_seed(0))
    h = bptt.gate_trajectory(model, x)["h"]
    w_hh = model.rnn.weight_hh_l0.detach().double()
    torch.testing.assert_close(bptt.rnn_state_jacobians(model, x)[0], torch.diag(1 - h[1] ** 2) @ w_hh)


# ----------------------------------------------------------------------------------------------------
# Spectral radius and rate (the chapter's sweep: T = 60, H = 32)


@pytest.fixture(scope="module", params=SEEDS)
def sweep(request) -> rn.SpectralSweepResult:
    return rn.run_spectral_sweep(rn.SpectralSweepConfig(seed=request.param))


@pytest.mark.claim
def test_rate_follows_the_spectral_radius_below_one(sweep: rn.SpectralSweepResult) -> None:
    between(
        "recurrent: rnn rate at rho 0.5", sweep.rate.sel(arch="rnn", radius=0.5), 0.45, 0.5
    )  # just under ρ: tanh' < 1
    between("recurrent: rnn rate at rho 0.8", sweep.rate.sel(arch="rnn", radius=0.8), 0.70, 0.8)
    # near 1 at ρ = 1; whether one weight draw lands below 1 is tight (0.79 to 0.97 over seeds 0-7, spread
    # 0.055 from the draw, not the kernels), so "below 1" is claimed for the mean over seeds (next test)
    expect("recurrent: rnn rate at rho 1 > 0.75", sweep.rate.sel(arch="rnn", radius=1.0), ">", 0.75)
    expect("recurrent: rnn far/near ratio at rho 0.5", far(sweep.profiles[0.5], "rnn"), "<", 1e-16)


@pytest.mark.claim
def test_tanh_takes_a_little_off_every_step_at_rho_one() -> None:
    """At ρ = 1 a linear recurrence neither shrinks nor grows; tanh' < 1 takes a little off every step."""
    rates = [
        rn.run_spectral_sweep(rn.SpectralSweepConfig(seed=seed, archs=("rnn",), radii=(1.0,))).rate.sel(
            arch="rnn", radius=1.0
        )
        for seed in SEEDS
    ]
    expect("recurrent: rnn rate at rho 1, mean over seeds", np.mean(rates), "<", 1.0)


@pytest.mark.claim
def test_saturation_tempers_but_does_not_stop_the_explosion(sweep: rn.SpectralSweepResult) -> None:
    between(
        "recurrent: rnn rate at rho 3", sweep.rate.sel(arch="rnn", radius=3.0), 1.15, 1.5
    )  # far below ρ = 3, above 1
    # log10 for the ratios that span decades: their spread across seeds is multiplicative
    expect(
        "recurrent: log10 rnn far/near ratio at rho 3", math.log10(far(sweep.profiles[3.0], "rnn")), ">", 5
    )
    # gated factors rise with ρ
    gated = sweep.rate.values.T[1:]  # (gru, lstm) x radius
    expect("recurrent: gated rate step between radii", np.diff(gated, axis=1), ">", -0.02)
    # the clipping section's ρ = 2 is in the exploding regime
    expect("recurrent: rnn rate at rho 2", sweep.rate.sel(arch="rnn", radius=2.0), ">", 1.0)


@pytest.mark.claim
def test_gates_limit_the_explosion(sweep: rn.SpectralSweepResult) -> None:
    """At ρ = 3 the gated networks' factors stay near 1 while the RNN's grows (the clipping section)."""
    rnn = sweep.rate.sel(arch="rnn", radius=3.0)
    for arch in ("gru", "lstm"):
        # widths from seeds 0-4 under default/avx2/avx512: gru 0.99-1.07, lstm 0.92-1.09 (rnn 1.22-1.38);
        # their ratios over 59 steps span -1.7 to 1.6 decades (rnn above 6)
        expect(
            f"recurrent: rnn rate - {arch} rate at rho 3", rnn - sweep.rate.sel(arch=arch, radius=3.0), ">", 0
        )
        between(f"recurrent: {arch} rate at rho 3", sweep.rate.sel(arch=arch, radius=3.0), 0.8, 1.2)
        ratio = math.log10(far(sweep.profiles[3.0], arch))
        between(f"recurrent: log10 {arch} far/near ratio at rho 3", ratio, -3, 3)


@pytest.mark.claim
def test_default_scale_forgets_in_every_architecture(sweep: rn.SpectralSweepResult) -> None:
    # circular law: 1/√3 ≈ 0.577
    between("recurrent: default-scale rnn spectral radius", sweep.default.radius.sel(arch="rnn"), 0.5, 0.75)
    for arch in rn.ARCHS:
        # the claim is the upper bound (fast forgetting); the lower one only says the fit is sane (0.53 to
        # 0.67 across seeds 0-4 and kernels)
        between(f"recurrent: default-scale {arch} rate", sweep.default.rate.sel(arch=arch), 0.4, 0.72)
        expect(f"recurrent: default-scale {arch} far/near ratio", far(sweep.default, arch), "<", 1e-10)
    frame = sweep.rate.to_frame()
    assert list(frame.columns) == ["radius", "arch", "factor per step"] and len(frame) == 7 * 3


# ----------------------------------------------------------------------------------------------------
# The forget gate


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_forget_bias_of_one(seed: int) -> None:
    result = rn.run_forget_gate(rn.ForgetGateConfig(seed=seed))
    last = result.config.seq_len - 1
    between("recurrent: mean forget gate, default bias", result.forget_mean.sel(bias=None), 0.47, 0.52)
    between("recurrent: mean forget gate, bias 1", result.forget_mean.sel(bias=1.0), 0.72, 0.74)
    cell = result.cell_path
    expect("recurrent: cell path at the far end, default bias", cell.sel(bias=None, lag=last), "<", 1e-16)
    between("recurrent: cell path at the far end, bias 1", cell.sel(bias=1.0, lag=last), 3e-9, 3e-8)
    for k, (label, sigma) in enumerate((("default bias", 0.5), ("bias 1", 1 / (1 + math.exp(-1))))):
        error = abs(bptt.fit_rate(result.cell_path.values[k]) - sigma)  # ∏ f ≈ σ(b_f)^k
        expect(f"recurrent: |cell-path rate - sigma(b_f)|, {label}", error, "<", 0.02)
    default, one = result.profiles[None], result.profiles[1.0]
    expect("recurrent: lstm far/near ratio, default bias", far(default, "lstm"), "<", 1e-10)
    expect("recurrent: log10 lstm far/near ratio, bias 1", math.log10(far(one, "lstm")), ">", -7)
    gain = far(one, "lstm") / far(default, "lstm")
    expect("recurrent: log10 lstm far/near ratio, bias 1 / default", math.log10(gain), ">", 6)
    expect("recurrent: lstm rate, default bias", default.rate.sel(arch="lstm"), "<", 0.7)
    between("recurrent: lstm rate, bias 1", one.rate.sel(arch="lstm"), 0.75, 0.92)
    assert list(result.to_frame().index) == ["default", "1"]


# ----------------------------------------------------------------------------------------------------
# The adding problem (chapter size: T = 30, 800 Adam steps)


class Adding:
    """The adding-problem runs of one seed. Seed 0 is the chapter's run (800 steps each). At seeds 1 and 2
    a reduced size that still shows the claim, to keep the file fast on a CPU: the LSTM, which is slowest
    to learn, keeps its 800 steps; the GRU, which solves the task well before step 300, gets 300; the
    vanilla RNN gets 400 (at 800 steps it stayed at the baseline at seeds 0 to 5 when this was written)."""

    def __init__(self, seed: int) -> None:
        config = rn.LongRangeConfig(seed=seed, device="cpu")
        if seed == 0:
            self.results = [rn.run_long_range(config)]
        else:
            self.results = [
                rn.run_long_range(dataclasses.replace(config, archs=("rnn",), steps=400)),
                rn.run_long_range(dataclasses.replace(config, archs=("gru",), steps=300)),
                rn.run_long_range(dataclasses.replace(config, archs=("lstm",))),
            ]
        self.baseline = self.results[0].baseline
        self.config = config

    def run(self, arch: str) -> rn.LongRangeRun:
        return next(r.runs[arch] for r in self.results if arch in r.config.archs)


@pytest.fixture(scope="module", params=SEEDS)
def adding(request) -> Adding:
    return Adding(request.param)


@pytest.fixture(scope="module", params=SEEDS)
def clipped_rnn(request) -> rn.LongRangeResult:
    """The chapter's run (400 steps) at each seed."""
    return rn.run_long_range(
        rn.LongRangeConfig(archs=("rnn",), clip_norm=1.0, steps=400, seed=request.param, device="cpu")
    )


class TestAddingProblem:
    """Training runs on the adding problem (a class, so that pytest-xdist can run it beside the rest)."""

    @pytest.mark.claim
    def test_gated_networks_solve_the_adding_problem_and_the_rnn_does_not(self, adding: Adding) -> None:
        between("recurrent: adding-problem baseline MSE", adding.baseline, 0.14, 0.19)
        rel = {arch: adding.run(arch).val_loss / adding.baseline for arch in rn.ARCHS}
        # 0.95 to 1.28 across seeds 0-4 and kernels: "does not learn" is a threshold of 0.8 with a margin
        expect("recurrent: adding, rnn val MSE / baseline", rel["rnn"], ">", 0.8)
        expect("recurrent: adding, gru val MSE / baseline", rel["gru"], "<", 0.02)
        expect("recurrent: adding, lstm val MSE / baseline", rel["lstm"], "<", 0.05)
        first = {arch: adding.run(arch).history.val_loss[0] / adding.baseline for arch in rn.ARCHS}
        assert adding.run("gru").history.eval_steps[0] + 1 == adding.config.eval_every
        # the GRU leaves the baseline first
        expect("recurrent: adding, gru first val MSE / baseline", first["gru"], "<", 0.9)
        expect("recurrent: adding, lstm first val MSE / baseline", first["lstm"], ">", 0.9)

    @pytest.mark.claim
    def test_training_opens_the_gated_path(self, adding: Adding) -> None:
        rnn, gru, lstm = (adding.run(arch) for arch in rn.ARCHS)
        expect("recurrent: adding, rnn far ratio at init", rnn.far_init, "<", 1e-3)
        expect("recurrent: adding, gru far ratio at init", gru.far_init, "<", 1e-3)
        # the forget bias's head start
        far = math.log10(lstm.far_init)
        between("recurrent: adding, log10 lstm far ratio at init", far, -4, -1)
        expect("recurrent: adding, gru far ratio trained", gru.far_trained, ">", 0.3)
        expect("recurrent: adding, lstm far ratio trained", lstm.far_trained, ">", 0.3)
        # No claim on the RNN's trained far ratio: it ranged from 2e-10 to 1.6 times the gated networks'
        # across seeds 0-4 and kernels (0.8 at seed 0 under avx2), and the chapter says so.
        frame = adding.results[0].to_frame()
        assert frame.loc["rnn", "validation MSE"] == rnn.val_loss

    @pytest.mark.claim
    def test_truncated_bptt_sends_nothing_to_the_far_lags(self, adding: Adding) -> None:
        result = next(r for r in adding.results if "gru" in r.config.archs)
        k = 10
        truncated, full = result.truncated_profile("gru", k), result.runs["gru"].profile_trained
        far = slice(result.config.seq_len // 2, None)
        assert np.all(truncated[k:] == 0) and np.all(truncated[far] == 0)
        near = float(np.abs(truncated[:k] / full[:k] - 1).max())
        expect("recurrent: truncated bptt, max relative difference below k", near, "<", 1e-4)
        expect("recurrent: trained gru, min far/near ratio", float((full[far] / full[0]).min()), ">", 0.05)

    @pytest.mark.claim
    def test_clipping_does_not_cure_vanishing(self, clipped_rnn: rn.LongRangeResult) -> None:
        run = clipped_rnn.runs["rnn"]
        expect(
            "recurrent: adding, clipped rnn val MSE / baseline", run.val_loss / clipped_rnn.baseline, ">", 0.9
        )
        # clipping did act, on a good share of the steps
        clipped = float(np.mean(run.history.grad_norm_total > 1.0))
        between("recurrent: adding, clipped rnn fraction of steps clipped", clipped, 0.2, 0.8)


def test_long_range_passes_clip_norm_to_training() -> None:
    """LongRangeConfig.clip_norm reaches train(), which the clipped RNN's claims rest on: a threshold below
    every raw norm changes the path (a rescaling that differs from step to step changes Adam's steps), one
    above every raw norm leaves it bit-identical."""
    base = rn.LongRangeConfig(
        archs=("rnn",),
        seq_len=6,
        steps=8,
        hidden_size=8,
        batch_size=16,
        n_samples=64,
        eval_every=8,
        n_profile=8,
        device="cpu",
    )

    def history(clip_norm: float | None):
        return rn.run_long_range(dataclasses.replace(base, clip_norm=clip_norm)).runs["rnn"].history

    free = history(None)
    clipped = history(0.5 * float(free.grad_norm_total.min()))
    assert clipped.loss[0] == free.loss[0] and clipped.grad_norm_total[0] == free.grad_norm_total[0]
    assert np.all(np.abs(clipped.loss[2:] / free.loss[2:] - 1) > 1e-4)
    np.testing.assert_array_equal(history(1e6).loss, free.loss)


# ----------------------------------------------------------------------------------------------------
# Exploding gradients and clipping (T = 10, ρ = 2, SGD with momentum 0.9, lr 0.3, τ = 0.1)


@pytest.fixture(scope="module", params=SEEDS)
def clipping(request) -> rn.ClippingResult:
    return rn.run_clipping(rn.ClippingConfig(seed=request.param, device="cpu"))


@pytest.fixture(scope="module", params=SEEDS)
def cliff(request) -> rn.CliffResult:
    return rn.run_cliff(rn.CliffConfig(base=rn.ClippingConfig(seed=request.param, device="cpu")))


class TestClipping:
    """The exploding RNN with and without clipping (a class, so that pytest-xdist can run it apart)."""

    @pytest.mark.claim
    def test_norm_clipping_turns_a_diverging_run_into_one_that_learns(
        self, clipping: rn.ClippingResult
    ) -> None:
        none, norm, value = (clipping.histories[m] for m in rn.CLIP_METHODS)
        assert none.diverged and none.steps_run == none.diverged_step + 1
        # diverged within the budget (18 to 19 steps of 800 at seeds 0-4)
        expect("recurrent: exploding rnn, steps run before divergence", none.steps_run, "<", 100)
        assert not np.isfinite(none.loss[-1]) or not np.isfinite(none.grad_norm_total[-1])
        # the control at the default scale diverges too at this learning rate
        assert clipping.control.diverged
        expect("recurrent: control, steps run before divergence", clipping.control.steps_run, "<", 100)
        for history in (norm, value):
            assert not history.diverged and history.steps_run == clipping.config.steps
        # "learns": the clipped run ends well below predicting the mean (0.21 to 0.27 at seeds 0-2)
        rel = norm.val_loss[-1] / clipping.baseline
        expect("recurrent: norm-clipped val MSE / baseline", rel, "<", 0.5)
        # the threshold heuristic: the average raw norm over steps 100.. is many times τ, and clipping acts
        # on (almost) every step
        average = rn.average_grad_norm(norm, 100) / clipping.config.clip_norm
        expect("recurrent: log10 average raw norm / tau", math.log10(average), ">", 0.5)
        acted = float(np.mean(norm.grad_norm_total > clipping.config.clip_norm))
        expect("recurrent: norm clipping, fraction of steps clipped", acted, ">", 0.9)
        # log10 for the gradient norms at ρ = 2 against the default scale: a factor 2.5 to 4.6 at seeds 0-2
        gain = (clipping.grad_norm / clipping.grad_norm_default).mean()
        expect("recurrent: log10 gradient norm at rho 2 / default scale", math.log10(gain), ">", 0.1)
        between("recurrent: gradient norm at default scale", clipping.grad_norm_default.mean(), 2, 6)
        between("recurrent: clipping, default spectral radius", clipping.default_radius, 0.5, 0.75)
        frame = clipping.to_frame()
        assert list(frame["diverged"]) == [True, False, False, True]
        assert frame["validation MSE / baseline"].iloc[1] == pytest.approx(rel)

    @pytest.mark.claim
    def test_norm_clipping_keeps_the_direction_value_clipping_turns_it(
        self, clipping: rn.ClippingResult
    ) -> None:
        expect("recurrent: norm clipping, min cosine", clipping.cosine_norm.min(), ">", 1 - 1e-6)
        between("recurrent: value clipping, mean cosine", clipping.cosine_value.mean(), 0.35, 0.85)
        expect("recurrent: value clipping, max cosine", clipping.cosine_value.max(), "<", 0.9)
        expect("recurrent: value clipping, mean fraction clipped", clipping.value_clipped.mean(), ">", 0.8)

    @pytest.mark.claim
    def test_the_unclipped_steps_climb_a_cliff(self, cliff: rn.CliffResult) -> None:
        # the loss first falls along the line, then ends many times higher; the gradient norm spikes
        dip, rise = cliff.loss.min() / cliff.loss[0], cliff.loss[-1] / cliff.loss[0]
        expect("recurrent: cliff, min loss on the line / start", dip, "<", 1)
        expect("recurrent: cliff, log10 loss at the end / start", math.log10(rise), ">", 0.5)
        grad_rise = cliff.grad_norm.max() / cliff.grad_norm[0]
        expect("recurrent: cliff, log10 max gradient norm / start", math.log10(grad_rise), ">", 0.5)
        ratio = math.log10(cliff.distance[-1] / cliff.clipped_distance)
        expect("recurrent: cliff, log10 unclipped / clipped distance", ratio, ">", 1)
        assert cliff.distance[0] == 0 and len(cliff.loss) == len(cliff.grad_norm) == len(cliff.distance)


def test_average_grad_norm_and_bad_arguments() -> None:
    history = rn.run_clipping(
        rn.ClippingConfig(methods=("norm",), seq_len=4, steps=6, n_samples=40, n_batches=1, control=False)
    ).histories["norm"]
    assert rn.average_grad_norm(history) == pytest.approx(history.grad_norm_total.mean())
    assert rn.average_grad_norm(history, 2, 4) == pytest.approx(history.grad_norm_total[2:4].mean())
    with pytest.raises(ValueError):
        rn.average_grad_norm(history, 4, 4)
    with pytest.raises(TypeError):
        rn.average_grad_norm([1.0])
    with pytest.raises(ValueError, match="n_points must be >= 2"):
        rn.CliffConfig(n_points=1)  # the cliff's options are a config's declared fields
    with pytest.raises(TypeError, match="base must be a ClippingConfig"):
        rn.CliffConfig(base=rn.LongRangeConfig())
    with pytest.raises(TypeError, match="config must be a CliffConfig; got ClippingConfig"):
        rn.run_cliff(rn.ClippingConfig())


@pytest.mark.parametrize("arch", rn.ARCHS)
def test_truncated_bptt_profile_is_the_full_one_below_k_and_zero_beyond(arch: str) -> None:
    data = adding_problem(n_samples=32, seq_len=9, seed=0)
    model = rn.build_adding_model(arch, 6, 0, spectral_radius=1.3)
    full = bptt.input_gradient_profile(model, data.x_train, data.y_train)
    truncated = bptt.truncated_input_gradient_profile(model, data.x_train, data.y_train, 4)
    np.testing.assert_allclose(truncated[:4], full[:4], rtol=1e-5)
    assert np.all(truncated[4:] == 0) and np.all(full[4:] > 0)
    whole = bptt.truncated_input_gradient_profile(model, data.x_train, data.y_train, 9)
    np.testing.assert_allclose(whole, full, rtol=1e-5)
    with pytest.raises(ValueError):
        bptt.truncated_input_gradient_profile(model, data.x_train, data.y_train, 10)
    with pytest.raises(ValueError):
        bptt.truncated_input_gradient_profile(model, data.x_train[0], data.y_train, 2)


def test_clipping_directions_match_a_hand_computation() -> None:
    """run_clipping's directions at initialization against a hand computation on the same first batches:
    cos(g, clamp(g, -c, c)), the share of entries with |g_i| > c, ‖g‖ at ρ = 2 and at the default scale, and
    norm clipping g min(1, τ/‖g‖), which keeps the direction (cos = 1)."""
    config = rn.ClippingConfig(
        methods=("norm",),
        seq_len=5,
        steps=1,
        hidden_size=6,
        batch_size=8,
        n_samples=40,
        n_batches=3,
        control=False,
        device="cpu",
    )
    result = rn.run_clipping(config)
    data = adding_problem(n_samples=config.n_samples, seq_len=config.seq_len, seed=config.seed)
    c, tau = config.clip_value, config.clip_norm
    for radius, norms in ((config.spectral_radius, result.grad_norm), (None, result.grad_norm_default)):
        model = rn.build_adding_model("rnn", config.hidden_size, config.seed, spectral_radius=radius)
        for b in range(config.n_batches):
            batch = slice(b * config.batch_size, (b + 1) * config.batch_size)
            model.zero_grad()
            F.mse_loss(model(data.x_train[batch]), data.y_train[batch]).backward()
            g = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
            assert norms[b] == pytest.approx(float(g.norm()), rel=1e-5)
            if radius is None:
                continue
            value = g.clamp(-c, c)
            cosine = float(g @ value / (g.norm() * value.norm()))
            assert result.cosine_value[b] == pytest.approx(cosine, rel=1e-5)
            assert result.value_clipped[b] == pytest.approx(float((g.abs() > c).double().mean()))
            assert float(g.norm()) > tau and result.cosine_norm[b] == pytest.approx(1.0, abs=1e-6)
    # the chapter's point on these batches: value clipping turns the direction, norm clipping does not
    assert result.cosine_value.max() < 0.99 and result.value_clipped.min() > 0


# ----------------------------------------------------------------------------------------------------
# Explorer, plots, exercises


def test_explorer_views_pass_the_figure_check_and_name_the_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    # the Figure at its defaults and with every control at its first, then its last value:
    # tests/test_contracts.py; here every view passes the book's figure check and the text names the factor
    monkeypatch.setenv("VGCOURSE_STRICT_FIGURES", "1")
    explorer = explorers.lag_profile_explorer()
    explorer.show()
    for values in (
        {"arch": "rnn", "seq_len": 5, "spectral_radius": 0.25},
        {"arch": "lstm", "seq_len": 150, "spectral_radius": 4.0},
        {"arch": "gru", "seq_len": 150, "spectral_radius": 0.25},
        {"arch": "all", "seq_len": 5, "spectral_radius": 4.0},
    ):
        explorer.update(**values)
        assert "factor per step" in explorer.text.value
    with pytest.raises(ValueError):
        explorers.lag_profile_explorer(arch="cnn")
    with pytest.raises(ValueError):
        explorers.lag_profile_explorer(spectral_radius=10.0)


@pytest.fixture(scope="module")
def small_sweep() -> rn.SpectralSweepResult:
    return rn.run_spectral_sweep(rn.SpectralSweepConfig(radii=(0.5, 1.0, 3.0), seq_len=12, batch_size=8))


def test_plots_pass_the_figure_check_at_the_chapters_radii(
    small_sweep: rn.SpectralSweepResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a Figure alone and into given axes that passes the book's figure check, a TypeError for a wrong
    # result or wrong axes: every plot, on small results at the default scale, in tests/test_contracts.py;
    # here the figure check (strict mode raises otherwise) with the ρ^k line of rescaled profiles at the
    # chapter's radii (3^k leaves the axes, clipped on purpose), and the grid's shared y range and arguments
    monkeypatch.setenv("VGCOURSE_STRICT_FIGURES", "1")
    plots.lag_profile(small_sweep.profiles[1.0])
    plots.lag_profile_grid(list(small_sweep.profiles.values()), ncols=2)
    grid_fig, grid = plt.subplots(1, len(small_sweep.profiles), figsize=(7.2, 3))
    assert plots.lag_profile_grid(list(small_sweep.profiles.values()), axes=grid) is grid_fig
    assert len({ax.get_ylim() for ax in grid}) == 1  # one y range, as on a new figure
    with pytest.raises(TypeError):
        plots.lag_profile_grid([])


def test_training_plots_on_small_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # a Figure alone and into given axes that passes the book's figure check, a TypeError for a wrong
    # result or wrong axes: every plot, on small results, in tests/test_contracts.py; here the figure check
    # (strict mode raises otherwise) with a diverged run in the clipping figure and that setting's cliff
    monkeypatch.setenv("VGCOURSE_STRICT_FIGURES", "1")
    clipping = rn.run_clipping(
        rn.ClippingConfig(seq_len=6, steps=60, n_samples=100, n_batches=2, device="cpu")
    )
    assert clipping.histories["none"].diverged
    plots.clipping(clipping)
    cliff = rn.run_cliff(rn.CliffConfig(base=clipping.config, n_points=5, n_eval=16))
    plots.cliff(cliff)


def test_exercise_helpers_and_the_setting_window() -> None:
    # solutions and typical mistakes of every exercise: tests/test_exercises.py (tests/exercise_solutions.py)
    # the accepted window of the setting exercise is wide enough to find with a slider
    assert check("recurrent_networks.edge_radius", 1.3).correct
    assert check("recurrent_networks.edge_radius", 1.6).correct
    assert exercises.edge_ratio(1.0) < 0.1 < exercises.edge_ratio(1.3) < 10 < exercises.edge_ratio(2.0)
    # the slider's ends: a gradient that underflows to 0 still gets a hint, not an error
    assert "increase" in check("recurrent_networks.edge_radius", 0.25).message
    assert "decrease" in check("recurrent_networks.edge_radius", 4.0).message
