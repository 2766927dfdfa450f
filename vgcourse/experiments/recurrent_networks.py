"""The recurrent-networks chapter: back propagation through time, gates, and gradient clipping, measured.

The BPTT math and its tools (Jacobians through time, the float64 unroll, ‖∂L/∂x_{T-k}‖ by lag) are in
``vgcourse.bptt``; here are the adding-problem networks and the chapter's runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vgcourse import bptt
from vgcourse._validation import check_choice, check_int
from vgcourse.config import (
    Config,
    Grid,
    check_config,
    derive,
    device_field,
    flag,
    geometric_mean,
    instance_of,
    integer,
    nonempty,
    one_of,
    positive,
    real,
    relative_error,
    seed_field,
)
from vgcourse.data import DataSplit, adding_problem
from vgcourse.device import pick_device
from vgcourse.models import SEQUENCE_ARCHS, SequenceModel
from vgcourse.training import History, TrainConfig, train

ARCHS = SEQUENCE_ARCHS  # "rnn" (vanilla, tanh), "gru", "lstm"
INPUT_SIZE = 2  # the adding problem's channels: a value and a marker
CLIP_METHODS = ("none", "norm", "value")  # no clipping, clip_grad_norm_, clip_grad_value_


# The adding problem's networks
def build_adding_model(
    arch: str,
    hidden_size: int = 32,
    seed: int = 0,
    *,
    spectral_radius: float | None = None,
    forget_bias: float | None = None,
) -> SequenceModel:
    """A ``SequenceModel`` for the adding problem (2 inputs, 1 output) whose every parameter is drawn from
    U(-1/√H, 1/√H) with a generator seeded by ``seed``; W_hh optionally rescaled to ``spectral_radius``,
    and (LSTM only) the forget-gate bias b_f set to ``forget_bias`` (None: random, ≈ 0)."""
    model = SequenceModel(arch, INPUT_SIZE, hidden_size, 1, seed=seed)  # checks the arguments; redrawn below
    generator = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(hidden_size)
    with torch.no_grad():
        for param in model.parameters():
            param.uniform_(-bound, bound, generator=generator)
    if spectral_radius is not None:
        bptt.scale_recurrent_weights(model, spectral_radius)
    if forget_bias is not None:
        model.set_forget_bias(forget_bias)  # ValueError for rnn/gru
    return model


def adding_baseline(data: DataSplit) -> float:
    """Validation MSE of always predicting the training mean of y (≈ Var(y) = 2/12 for the adding problem)."""
    check_config(data, DataSplit, "data")
    return float(((data.y_val - data.y_train.mean()) ** 2).mean())


def _archs() -> Any:
    return nonempty(one_of(*ARCHS), default=ARCHS, unique=True)


# The closed forms against autograd
class BPTTCheckConfig(Config):
    """Random small networks (float64): model m of each architecture (seed ``seed + m``) gets W_hh rescaled
    to ``radii[m % len(radii)]``; sequences of T = ``seq_len`` steps, H = ``hidden_size``."""

    n_models: int = positive(6, integer=True)
    seq_len: int = integer(12, low=2)
    hidden_size: int = positive(6, integer=True)
    radii: tuple[float, ...] = nonempty(positive(), default=(0.5, 1.0, 2.0))
    seed: int = seed_field()


@dataclass(frozen=True)
class BPTTCheckResult:
    """Relative errors ‖J_formula − J_autograd‖_F / ‖J_autograd‖_F, (n_models, T) each, t = 0..T-1."""

    config: BPTTCheckConfig
    rnn_errors: np.ndarray  # ∂h_T/∂h_t = ∏ D_k W_hh
    lstm_errors: np.ndarray  # ∂c_T/∂c_t = diag(∏ f_k), against autograd with the gates fixed
    gru_errors: np.ndarray  # ∂h_T/∂h_t = diag(∏ z_k), against autograd with the gates fixed
    rnn_bound_holds: np.ndarray  # ‖∂h_T/∂h_t‖₂ <= ‖W_hh‖₂^(T-t)

    def to_frame(self) -> Any:
        """One row per formula: Jacobians compared and the largest relative error."""
        import pandas as pd

        rows = {
            "RNN: ∂h_T/∂h_t = ∏ D_k W_hh": self.rnn_errors,
            "LSTM cell path: ∂c_T/∂c_t = diag(∏ f_k)": self.lstm_errors,
            "GRU direct path: ∂h_T/∂h_t = diag(∏ z_k)": self.gru_errors,
        }
        columns = {
            "Jacobians": [e.size for e in rows.values()],
            "max relative error": [e.max() for e in rows.values()],
        }
        return pd.DataFrame(columns, index=pd.Index(list(rows), name="formula"))


def _relative_error(value: Tensor, reference: Tensor) -> float:
    return relative_error(float(torch.linalg.norm(value - reference)), float(torch.linalg.norm(reference)))


def run_bptt_check(config: BPTTCheckConfig) -> BPTTCheckResult:
    """Compare ``rnn_state_jacobians`` and ``cell_path_jacobians`` with autograd on random networks."""
    c = check_config(config, BPTTCheckConfig)
    steps = c.seq_len
    rnn_err, lstm_err, gru_err, bound = (np.zeros((c.n_models, steps)) for _ in range(4))
    for m in range(c.n_models):
        radius, seed = c.radii[m % len(c.radii)], c.seed + m
        x = torch.randn(steps, INPUT_SIZE, generator=torch.Generator().manual_seed(seed + 10_000))
        rnn = build_adding_model("rnn", c.hidden_size, seed, spectral_radius=radius)
        closed, auto = bptt.rnn_state_jacobians(rnn, x), bptt.state_jacobians_autograd(rnn, x)
        w_norm = float(torch.linalg.matrix_norm(rnn.rnn.weight_hh_l0.detach().double(), ord=2))
        for t in range(steps):
            rnn_err[m, t] = _relative_error(closed[t], auto[t])
            norm = float(torch.linalg.matrix_norm(closed[t], ord=2))
            bound[m, t] = norm <= w_norm ** (steps - t) * (1 + 1e-12)
        for arch, errors in (("lstm", lstm_err), ("gru", gru_err)):
            model = build_adding_model(arch, c.hidden_size, seed, spectral_radius=radius)
            diag = bptt.cell_path_jacobians(model, x)
            fixed = bptt.state_jacobians_autograd(model, x, gated_path_only=True)
            for t in range(steps):
                errors[m, t] = _relative_error(torch.diag(diag[t]), fixed[t])
    return BPTTCheckResult(c, rnn_err, lstm_err, gru_err, bound.astype(bool))


# The gradient against the lag, at initialization
def _adding_batch(seq_len: int, batch_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """``batch_size`` sequences of the adding problem (the training half of a 2·batch_size split)."""
    data = adding_problem(n_samples=2 * batch_size, seq_len=seq_len, val_fraction=0.5, seed=seed)
    return data.x_train, data.y_train


class _AtInit(Config):
    """Networks at initialization on one batch of the adding problem of length T = ``seq_len``."""

    seq_len: int = integer(60, low=3)
    hidden_size: int = positive(32, integer=True)
    batch_size: int = positive(64, integer=True)
    seed: int = seed_field()  # seeds the weights and the batch


class LagProfileConfig(_AtInit):
    """One forward and backward pass per architecture."""

    archs: tuple[str, ...] = _archs()
    spectral_radius: float | None = positive(None, optional=True)  # rescale W_hh to ρ (None: default scale)
    forget_bias: float | None = real(None, optional=True)  # the LSTM's b_f (None: default ≈ 0)


@dataclass(frozen=True)
class LagProfileResult:
    """g_k = ‖∂L/∂x_{T-k}‖ against the lag k = 0..T-1, per architecture."""

    config: LagProfileConfig
    grad_norm: Grid  # g_k, axes arch, lag
    relative: Grid  # g_k / g_0, axes arch, lag
    rate: Grid  # the per-step factor (``fit_rate`` over lags 1..T-1), axis arch
    radius: Grid  # ρ(W_hh), the largest over the gate blocks, axis arch


def run_lag_profile(config: LagProfileConfig) -> LagProfileResult:
    """Measure ‖∂L/∂x_{T-k}‖ for every lag k at initialization, for each architecture (one pass each)."""
    c = check_config(config, LagProfileConfig)
    x, y = _adding_batch(c.seq_len, c.batch_size, c.seed)
    rows, radii = [], []
    for arch in c.archs:
        forget_bias = c.forget_bias if arch == "lstm" else None
        model = build_adding_model(
            arch, c.hidden_size, c.seed, spectral_radius=c.spectral_radius, forget_bias=forget_bias
        )
        radii.append(max(bptt.spectral_radius(block) for block in bptt.recurrent_blocks(model)))
        rows.append(bptt.input_gradient_profile(model, x, y))
    grad, axes = np.array(rows), {"arch": c.archs, "lag": range(c.seq_len)}
    return LagProfileResult(
        c,
        Grid(grad, name="‖∂L/∂x_{T-k}‖", **axes),
        Grid(grad / grad[:, :1], name="g_k / g_0", **axes),
        Grid([bptt.fit_rate(row) for row in grad], name="factor per step", arch=c.archs),
        Grid(radii, name="ρ(W_hh)", arch=c.archs),
    )


class SpectralSweepConfig(_AtInit):
    """``run_lag_profile`` at each spectral radius ρ of W_hh and once at PyTorch's default scale, with the
    same weights and batch for every ρ: only the scale of W_hh changes."""

    archs: tuple[str, ...] = _archs()
    radii: tuple[float, ...] = nonempty(positive(), default=(0.5, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0), unique=True)


@dataclass(frozen=True)
class SpectralSweepResult:
    """Lag profiles over ρ, and the fitted per-step factor of each."""

    config: SpectralSweepConfig
    profiles: dict[float, LagProfileResult]  # by ρ
    default: LagProfileResult  # at PyTorch's default scale (W_hh ~ U(-1/√H, 1/√H))
    rate: Grid  # the per-step factor, axes radius, arch


def run_spectral_sweep(config: SpectralSweepConfig) -> SpectralSweepResult:
    """``run_lag_profile`` at each ρ of ``config.radii`` and at the default scale."""
    check_config(config, SpectralSweepConfig)
    profiles = {r: run_lag_profile(derive(LagProfileConfig, config, spectral_radius=r)) for r in config.radii}
    rates = [profile.rate.values for profile in profiles.values()]
    default = run_lag_profile(derive(LagProfileConfig, config, spectral_radius=None))
    rate = Grid(rates, name="factor per step", radius=config.radii, arch=config.archs)
    return SpectralSweepResult(config, profiles, default, rate)


# The LSTM's forget gate at initialization
class ForgetGateConfig(_AtInit):
    """LSTMs (the same weights) that differ only in the forget-gate bias b_f; None is PyTorch's default
    (b_ih + b_hh, each U(-1/√H, 1/√H), so ≈ 0)."""

    biases: tuple[float | None, ...] = nonempty(real(optional=True), default=(None, 1.0), unique=True)


@dataclass(frozen=True)
class ForgetGateResult:
    """Forget gates, the cell path and ‖∂L/∂x_t‖ of LSTMs with different forget-gate biases."""

    config: ForgetGateConfig
    forget_mean: Grid  # the mean forget gate over the batch, the steps and the units, axis bias
    cell_path: Grid  # geometric mean over batch and units of ∏_{j>T-k} f_j = ∂c_T/∂c_{T-k}, axes bias, lag
    profiles: dict[float | None, LagProfileResult]  # ‖∂L/∂x_{T-k}‖ through every path (arch "lstm"), by bias

    def to_frame(self) -> Any:
        """One row per bias: mean f, σ(b_f), ∏ f and g_k/g_0 at the longest lag, the per-step factors."""
        import pandas as pd

        last = self.config.seq_len - 1
        rows = [
            {
                "forget-gate bias b_f": "default" if bias is None else f"{bias:g}",
                "σ(b_f)": 1 / (1 + math.exp(-bias)) if bias is not None else 0.5,
                "mean forget gate": float(self.forget_mean.values[k]),
                f"∏ f over {last} steps": float(self.cell_path.values[k, last]),
                f"g_{last}/g_0": self.profiles[bias].relative.sel(arch="lstm", lag=last),
                "cell-path factor": bptt.fit_rate(self.cell_path.values[k]),
                "‖∂L/∂x‖ factor": self.profiles[bias].rate.sel(arch="lstm"),
            }
            for k, bias in enumerate(self.config.biases)
        ]
        return pd.DataFrame(rows).set_index("forget-gate bias b_f")


def run_forget_gate(config: ForgetGateConfig) -> ForgetGateResult:
    """Measure the forget gates, the cell path and the input-gradient profile for each forget-gate bias."""
    c = check_config(config, ForgetGateConfig)
    x, _ = _adding_batch(c.seq_len, c.batch_size, c.seed)
    means, paths, profiles = [], [], {}
    for bias in c.biases:
        model = build_adding_model("lstm", c.hidden_size, c.seed, forget_bias=bias)
        f = bptt.gate_trajectory(model, x)["f"]  # (N, T, H)
        means.append(float(f.mean()))
        # lag k: sum of ln f over the last k steps, averaged over the batch and the units, then exp
        log_suffix = torch.cumsum(torch.flip(torch.log(f), [1]), dim=1).mean(dim=(0, 2))
        paths.append(np.exp(np.concatenate([[0.0], log_suffix[:-1].numpy()])))
        profiles[bias] = run_lag_profile(derive(LagProfileConfig, c, archs=("lstm",), forget_bias=bias))
    return ForgetGateResult(
        c,
        Grid(means, name="mean forget gate", bias=c.biases),
        Grid(paths, name="cell path", bias=c.biases, lag=range(c.seq_len)),
        profiles,
    )


# A long-range task: the adding problem
class LongRangeConfig(Config):
    """Train each architecture on one adding problem (first marked value T/2 to T - 1 steps back; 80/20 split)
    with Adam; ‖∂L/∂x_t‖ on ``n_profile`` validation sequences before and after training."""

    archs: tuple[str, ...] = _archs()
    seq_len: int = integer(30, low=4)
    steps: int = positive(800, integer=True)
    hidden_size: int = positive(32, integer=True)
    batch_size: int = positive(32, integer=True)
    lr: float = positive(0.02)
    forget_bias: float | None = real(1.0, optional=True)  # the LSTM's b_f (None: default ≈ 0)
    clip_norm: float | None = positive(None, optional=True)  # clip the total gradient norm (None: no)
    n_samples: int = integer(2000, low=10)
    eval_every: int = positive(100, integer=True)
    n_profile: int = positive(256, integer=True)
    seed: int = seed_field()
    device: str = device_field("auto")


@dataclass(frozen=True)
class LongRangeRun:
    """One architecture's training run; g_k = ‖∂L/∂x_{T-k}‖ on validation sequences, by lag k."""

    arch: str
    history: History
    profile_init: np.ndarray  # g_k before training
    profile_trained: np.ndarray  # g_k after training
    val_loss: float  # the validation MSE at the end of training
    far_init: float  # geometric mean of g_k / g_0 over the lags T/2..T-1 (the first marked value's), at init
    far_trained: float  # the same after training
    model: SequenceModel  # the trained network


def _far_ratio(profile: np.ndarray) -> float:
    """Geometric mean of the far half of a lag profile over its first value (0 if one underflowed to 0)."""
    return geometric_mean(profile[len(profile) // 2 :] / profile[0])


@dataclass(frozen=True)
class LongRangeResult:
    """Training runs of several architectures on one adding problem."""

    config: LongRangeConfig
    baseline: float  # validation MSE of predicting the mean (``adding_baseline``), ≈ 0.167
    runs: dict[str, LongRangeRun]  # by architecture, in ``config.archs`` order

    def truncated_profile(self, arch: str, truncation: int) -> np.ndarray:
        """The trained network's g_k on the profile sequences under truncated BPTT (``profile_trained`` below
        lag ``truncation``, 0 from it on)."""
        model, c = self.runs[check_choice("arch", arch, self.config.archs)].model, self.config
        data = adding_problem(n_samples=c.n_samples, seq_len=c.seq_len, seed=c.seed)
        return bptt.truncated_input_gradient_profile(
            model, data.x_val[: c.n_profile], data.y_val[: c.n_profile], truncation
        )

    def to_frame(self) -> Any:
        """One row per architecture: validation MSE (and relative to the baseline), and the gradient reaching
        lags T/2..T-1 relative to the last step, before and after training."""
        import pandas as pd

        rows = [
            {
                "architecture": run.arch,
                "validation MSE": run.val_loss,
                "validation MSE / baseline": run.val_loss / self.baseline,
                "far-lag gradient at initialization": run.far_init,
                "far-lag gradient after training": run.far_trained,
            }
            for run in self.runs.values()
        ]
        return pd.DataFrame(rows).set_index("architecture")


def run_long_range(config: LongRangeConfig) -> LongRangeResult:
    """Train every architecture of ``config.archs`` on the adding problem; measure before and after."""
    c = check_config(config, LongRangeConfig)
    data = adding_problem(n_samples=c.n_samples, seq_len=c.seq_len, seed=c.seed)
    x_prof, y_prof = data.x_val[: c.n_profile], data.y_val[: c.n_profile]
    device = pick_device(c.device)
    train_config = derive(TrainConfig, c, optimizer="adam", monitor_every=None)
    runs = {}
    for arch in c.archs:
        forget_bias = c.forget_bias if arch == "lstm" else None
        model = build_adding_model(arch, c.hidden_size, c.seed, forget_bias=forget_bias).to(device)
        init = bptt.input_gradient_profile(model, x_prof, y_prof)
        history = train(model, data, train_config)
        trained = bptt.input_gradient_profile(model, x_prof, y_prof)
        far = _far_ratio(init), _far_ratio(trained)
        runs[arch] = LongRangeRun(arch, history, init, trained, float(history.val_loss[-1]), *far, model)
    return LongRangeResult(c, adding_baseline(data), runs)


# Exploding gradients and clipping
class ClippingConfig(Config):
    """A vanilla RNN with W_hh scaled to explode, trained with each clipping method (a diverging run stops
    early); ``control`` also trains it at PyTorch's default scale (ρ ≈ 0.6) without clipping."""

    methods: tuple[str, ...] = nonempty(one_of(*CLIP_METHODS), default=CLIP_METHODS, unique=True)
    seq_len: int = integer(10, low=2)
    spectral_radius: float = positive(2.0)
    steps: int = positive(800, integer=True)
    lr: float = positive(0.3)
    optimizer: str = one_of("sgd", "momentum", default="momentum")  # momentum: TrainConfig's 0.9
    batch_size: int = positive(64, integer=True)
    hidden_size: int = positive(32, integer=True)
    clip_norm: float = positive(0.1)  # clip_grad_norm_'s threshold τ
    clip_value: float = positive(0.01)  # clip_grad_value_'s threshold c
    n_samples: int = integer(1000, low=10)
    n_batches: int = positive(8, integer=True)
    eval_every: int = positive(200, integer=True)
    control: bool = flag(True)
    seed: int = seed_field()
    device: str = device_field("auto")


@dataclass(frozen=True)
class ClippingResult:
    """Training runs with each clipping method, and the clipped gradients' directions; the (n_batches,)
    arrays are measured at initialization on the first training batches."""

    config: ClippingConfig
    baseline: float  # validation MSE of predicting the mean
    histories: dict[str, History]  # by method
    grad_norm: np.ndarray  # ‖g‖ of the raw gradient, ρ(W_hh) = spectral_radius
    grad_norm_default: np.ndarray  # ‖g‖ on the same batches at PyTorch's default scale of W_hh
    cosine_norm: np.ndarray  # cos(g, clip_norm(g))
    cosine_value: np.ndarray  # cos(g, clip_value(g))
    value_clipped: np.ndarray  # fraction of the entries with |g_i| > clip_value
    default_radius: float  # ρ(W_hh) at the default scale
    control: History | None  # the control run (default scale, no clipping)

    def to_frame(self) -> Any:
        """One row per run (the methods, then the control); the validation MSE is NaN after divergence."""
        import pandas as pd

        runs = [(f"{m}, ρ = {self.config.spectral_radius:g}", h) for m, h in self.histories.items()]
        if self.control is not None:
            runs.append((f"none, default ρ = {self.default_radius:.2f}", self.control))
        val = [math.nan if h.diverged else float(h.val_loss[-1]) for _, h in runs]
        columns = {
            "diverged": [h.diverged for _, h in runs],
            "steps run": [h.steps_run for _, h in runs],
            "first loss": [float(h.loss[0]) for _, h in runs],
            "loss, last 50 steps": [float(np.mean(h.loss[-50:])) for _, h in runs],
            "validation MSE": val,
            "validation MSE / baseline": [v / self.baseline for v in val],
        }
        return pd.DataFrame(columns, index=pd.Index([name for name, _ in runs], name="clipping"))


def _flat_grad(model: torch.nn.Module) -> Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])


def run_clipping(config: ClippingConfig) -> ClippingResult:
    """Train the exploding RNN with each method; compare clipped and raw gradients at initialization."""
    c = check_config(config, ClippingConfig)
    data = adding_problem(n_samples=c.n_samples, seq_len=c.seq_len, seed=c.seed)
    device = pick_device(c.device)

    def model_at(radius: float | None) -> SequenceModel:
        return build_adding_model("rnn", c.hidden_size, c.seed, spectral_radius=radius).to(device)

    # directions: raw gradient vs its clipped versions, on the first n_batches training batches
    model, default = model_at(c.spectral_radius), model_at(None)
    norms, norms_default, cos_norm, cos_value, clipped = ([] for _ in range(5))
    n_batches = min(c.n_batches, max(1, data.n_train // c.batch_size))
    for b in range(n_batches):
        xb = data.x_train[b * c.batch_size : (b + 1) * c.batch_size].to(device)
        yb = data.y_train[b * c.batch_size : (b + 1) * c.batch_size].to(device)
        for net, out in ((model, norms), (default, norms_default)):
            net.zero_grad(set_to_none=True)
            F.mse_loss(net(xb), yb).backward()
            out.append(float(_flat_grad(net).norm()))
        raw = _flat_grad(model)  # clip_grad_value_ would clamp each entry to [-c, c]
        cos_value.append(float(F.cosine_similarity(raw, raw.clamp(-c.clip_value, c.clip_value), dim=0)))
        clipped.append(float((raw.abs() > c.clip_value).double().mean()))
        torch.nn.utils.clip_grad_norm_(model.parameters(), c.clip_norm)
        cos_norm.append(float(F.cosine_similarity(raw, _flat_grad(model), dim=0)))

    def train_config(method: str) -> TrainConfig:
        clip_norm = c.clip_norm if method == "norm" else None
        clip_value = c.clip_value if method == "value" else None
        return derive(TrainConfig, c, clip_norm=clip_norm, clip_value=clip_value, monitor_every=None)

    histories = {m: train(model_at(c.spectral_radius), data, train_config(m)) for m in c.methods}
    control = train(model_at(None), data, train_config("none")) if c.control else None
    arrays = map(np.array, (norms, norms_default, cos_norm, cos_value, clipped))
    radius = bptt.spectral_radius(default.rnn.weight_hh_l0)
    return ClippingResult(c, adding_baseline(data), histories, *arrays, radius, control)


def average_grad_norm(history: History, start: int = 0, stop: int | None = None) -> float:
    """The mean raw gradient norm (before clipping) over steps start..stop-1 (default: to the last step run):
    Pascanu et al. (2013) suggest a clipping threshold around this average over a long stretch."""
    check_config(history, History, "history")
    stop = history.steps_run if stop is None else stop
    check_int("start", start, 0, history.steps_run - 1)
    check_int("stop", stop, start + 1, history.steps_run)
    return float(np.mean(history.grad_norm_total[start:stop]))


class CliffConfig(Config):
    """Walk the line θ₀ → θ_k of ``base``'s unclipped run (its network, data and optimizer, on the CPU)."""

    base: ClippingConfig = instance_of(ClippingConfig, default=ClippingConfig())
    unclipped_steps: int = positive(2, integer=True)  # k
    n_points: int = integer(31, low=2)  # evenly spaced points on the line (and 10 more over its first tenth)
    n_eval: int = positive(256, integer=True)  # validation sequences in the fixed batch


@dataclass(frozen=True)
class CliffResult:
    """The loss and gradient norm along the straight line from the initial weights θ₀ to θ_k, where k
    unclipped steps took them (Pascanu et al., 2013's cliff); (n,) arrays along the line."""

    config: CliffConfig
    distance: np.ndarray  # ‖θ − θ₀‖ at each point, from 0 to ‖θ_k − θ₀‖
    loss: np.ndarray  # the MSE on a fixed batch of validation sequences
    grad_norm: np.ndarray  # ‖∇L‖ on the same batch
    clipped_distance: float  # ‖θ'_k − θ₀‖ after k steps of the norm-clipped run from the same start


def run_cliff(config: CliffConfig) -> CliffResult:
    """Walk the line θ₀ → θ_k of the unclipped run (``run_clipping``'s first k steps) at ``n_points`` points
    and 10 more over its first tenth; compare with the norm-clipped run's k steps."""
    c, k = check_config(config, CliffConfig).base, config.unclipped_steps
    data = adding_problem(n_samples=c.n_samples, seq_len=c.seq_len, seed=c.seed)
    x, y = data.x_val[: config.n_eval], data.y_val[: config.n_eval]

    def weights_after(clip_norm: float | None) -> Tensor:
        model = build_adding_model("rnn", c.hidden_size, c.seed, spectral_radius=c.spectral_radius)
        settings = dict(steps=k, clip_norm=clip_norm, clip_value=None, monitor_every=None)
        train(model, data, derive(TrainConfig, c, **settings, eval_every=k, device="cpu"))
        return torch.nn.utils.parameters_to_vector(model.parameters()).detach()

    model = build_adding_model("rnn", c.hidden_size, c.seed, spectral_radius=c.spectral_radius)
    params = list(model.parameters())
    start = torch.nn.utils.parameters_to_vector(params).detach().clone()
    end, clipped = weights_after(None), weights_after(c.clip_norm)
    losses, norms = [], []
    # evenly spaced points, and a finer grid over the first tenth of the line, where the loss dips
    fractions = np.unique(np.concatenate([np.linspace(0.0, 1.0, config.n_points), np.linspace(0.0, 0.1, 11)]))
    for s in fractions:
        torch.nn.utils.vector_to_parameters(start + float(s) * (end - start), params)
        model.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x), y)
        loss.backward()
        losses.append(float(loss.detach()))
        norms.append(float(_flat_grad(model).norm()))
    distance = fractions * float((end - start).norm())
    return CliffResult(config, distance, np.array(losses), np.array(norms), float((clipped - start).norm()))
