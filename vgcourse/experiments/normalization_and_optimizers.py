"""Experiments of the chapter on normalization layers and adaptive optimizers: the Jacobians of BatchNorm,
LayerNorm and RMSNorm, BatchNorm's train/eval gap, the per-layer signals of deep normalized networks, scale
invariance and weight decay, injected covariate shift; then Adam against SGD."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vgcourse import models
from vgcourse.bptt import lag_terms
from vgcourse.config import Config, Grid, check_config, integer, nonempty, one_of, positive, real, seed_field
from vgcourse.data import DataSplit, circles, random_batches, shared_digits
from vgcourse.diagnose import diagnose
from vgcourse.experiments import recurrent_networks, relu_dying_units, sigmoid_bound
from vgcourse.initializers import initialize
from vgcourse.models import MLP, NormMLP, initial_weights, keep_outputs, make_norm
from vgcourse.training import SGDW, Callback, StepEvent, StepSizes, TrainConfig, train

NORM_KINDS = ("none", "batch", "layer", "rms")
ACTIVATIONS = ("relu", "tanh")
SCALE_INVARIANT = ("batch", "layer", "rms")  # the norms after which f(cW) = f(W)
_QUIET = {"monitor_every": None, "device": "cpu"}  # TrainConfig fields of every run here


# -- 1. Jacobians --------------------------------------------------------------------------------------------
class JacobianCheckConfig(Config):
    """Each normalization's Jacobian at x = mean + scale · N(0, 1) (float64), by formula and by autograd."""

    width: int = integer(16, low=2, high=256)  # features n
    batch_size: int = integer(8, low=2, high=256)  # examples B (batch norm's Jacobian couples them)
    mean: float = real(0.5)
    scale: float = positive(2.0)
    seed: int = seed_field()  # the inputs and γ ~ 1 + 0.3 N(0, 1)


@dataclass(frozen=True)
class JacobianCheckResult:
    config: JacobianCheckConfig
    relative_error: dict[str, float]  # per normalization: max |formula − autograd| / max |autograd|
    gain_along_x: dict[str, float]  # ‖J x‖ / (‖J‖₂ ‖x‖)
    gain_along_ones: dict[str, float]  # ‖J 1‖ / (‖J‖₂ ‖1‖)
    scale_ratio: dict[str, float]  # ‖J(10x)‖₂ · 10 / ‖J(x)‖₂ (1 when ‖J‖ ∝ 1/σ)

    def to_frame(self):
        import pandas as pd

        columns = {"max relative error vs autograd": self.relative_error, "gain along x": self.gain_along_x}
        columns |= {"gain along 1": self.gain_along_ones, "‖J(10x)‖·10 / ‖J(x)‖": self.scale_ratio}
        return pd.DataFrame(columns).rename_axis("normalization").reset_index()


def run_jacobian_check(config: JacobianCheckConfig) -> JacobianCheckResult:
    check_config(config, JacobianCheckConfig)
    gen = torch.Generator().manual_seed(config.seed)
    n, batch = config.width, config.batch_size
    x = config.mean + config.scale * torch.randn(batch, n, generator=gen, dtype=torch.float64)
    gamma = 1.0 + 0.3 * torch.randn(n, generator=gen, dtype=torch.float64)
    errors, along_x, along_ones, scale_ratio = {}, {}, {}, {}
    for kind in SCALE_INVARIANT:
        module = make_norm(kind, n).double().train()  # batch statistics
        with torch.no_grad():
            module.weight.copy_(gamma)

        def apply(v: Tensor, module: nn.Module = module, kind: str = kind) -> Tensor:
            return module(v) if kind == "batch" else module(v[None])[0]

        sample = x if kind == "batch" else x[0]
        m = sample.numel()
        jf = models.norm_jacobian(kind, sample, gamma, float(module.eps)).reshape(m, m)
        ja = torch.autograd.functional.jacobian(apply, sample).reshape(m, m)
        errors[kind] = float((jf - ja).abs().max() / ja.abs().max())
        spectral = float(torch.linalg.matrix_norm(ja, ord=2))
        flat = sample.reshape(-1)
        for v, gains in ((flat, along_x), (torch.ones_like(flat), along_ones)):  # ‖J v‖ / (‖J‖₂ ‖v‖)
            gains[kind] = float((ja @ v).norm() / (spectral * v.norm()))
        ja10 = torch.autograd.functional.jacobian(apply, 10.0 * sample).reshape(m, m)
        scale_ratio[kind] = float(torch.linalg.matrix_norm(ja10, ord=2)) * 10.0 / spectral
    return JacobianCheckResult(config, errors, along_x, along_ones, scale_ratio)


# -- 2. BatchNorm in training and in evaluation mode ---------------------------------------------------------
class TrainEvalConfig(Config):
    """Linear(64 → width) + BatchNorm1d on digits (running statistics: the training split's), in training
    vs evaluation mode on random small batches."""

    batch_sizes: tuple[int, ...] = nonempty(
        integer(low=2, high=1024), default=(2, 4, 8, 16, 32, 64, 128, 256)
    )
    width: int = integer(64, low=1, high=512)
    n_batches: int = positive(20, integer=True)  # random batches per batch size
    seed: int = seed_field()


@dataclass(frozen=True)
class TrainEvalResult:
    config: TrainEvalConfig
    relative_difference: Grid  # (batch_size,) mean over batches of ‖y_train − y_eval‖ / ‖y_eval‖


def run_train_eval(config: TrainEvalConfig) -> TrainEvalResult:
    check_config(config, TrainEvalConfig)
    data = shared_digits()
    gen = torch.Generator().manual_seed(config.seed)
    with initial_weights(config.seed):
        linear = nn.Linear(data.in_features, config.width)
        norm = nn.BatchNorm1d(config.width, momentum=0.0)  # 0: training-mode calls keep running statistics
    out = []
    with torch.no_grad():
        h = linear(data.x_train)
        norm.running_mean.copy_(h.mean(0))
        norm.running_var.copy_(h.var(0, unbiased=True))
        for b in config.batch_sizes:
            diffs = []
            for _ in range(config.n_batches):
                hb = linear(data.x_train[torch.randperm(data.n_train, generator=gen)[:b]])
                y_train, y_eval = norm.train()(hb), norm.eval()(hb)
                diffs.append(float((y_train - y_eval).norm() / y_eval.norm()))
            out.append(float(np.mean(diffs)))
    return TrainEvalResult(config, Grid(out, name="relative difference", batch_size=config.batch_sizes))


# -- 3. Deep plain networks with each normalization: per-layer forward and backward signals ------------------
class NormProfileConfig(Config):
    """One forward and backward pass (cross-entropy) of a fresh ``models.NormMLP`` on a batch of digits."""

    norm: str = one_of(*NORM_KINDS, default="batch")
    activation: str = one_of(*ACTIVATIONS, default="relu")
    depth: int = integer(50, low=2, high=500)
    width: int = integer(64, low=2, high=512)
    batch_size: int = integer(64, low=2, high=1024)
    seed: int = seed_field()  # the weights and the batch


@dataclass(frozen=True)
class NormProfileResult:
    """Per layer l = 1..L: rms of h_l, ‖∂J/∂h_l‖ (Frobenius over the batch) and ‖∂J/∂W_l‖."""

    config: NormProfileConfig
    forward: np.ndarray
    backward: np.ndarray
    weight_grad: np.ndarray
    loss: float
    grad_ratio: float  # ‖∂J/∂h_1‖ / ‖∂J/∂h_L‖
    growth_per_layer: float  # geometric-mean growth of ‖∂J/∂h_l‖ per layer, layers L−5 down to 6


def run_norm_profile(config: NormProfileConfig) -> NormProfileResult:
    check_config(config, NormProfileConfig)
    data = shared_digits()
    sizes = data.in_features, data.n_classes, config.depth, config.width
    model = NormMLP(*sizes, config.activation, config.norm, seed=config.seed)
    x, y = random_batches(data, config.batch_size, config.seed + 1)()
    with keep_outputs(model.linears) as record:  # h_l = W_l x_{l−1}
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
    forward = np.array([float(h.detach().double().pow(2).mean().sqrt()) for h in record])
    b = np.array([float(h.grad.double().norm()) for h in record])  # float64: no overflow of Σg²
    weight_grad = np.array([float(lin.weight.grad.double().norm()) for lin in model.linears])
    lo, hi = (5, len(b) - 6) if len(b) - 6 > 5 else (0, len(b) - 1)  # leave out the ends, not typical
    growth = float(np.exp((np.log(b[lo]) - np.log(b[hi])) / (hi - lo)))
    return NormProfileResult(config, forward, b, weight_grad, loss.item(), float(b[0] / b[-1]), growth)


class BatchSizeConfig(Config):
    """Growth per layer of the backward signal against the batch size, geometric mean over networks."""

    norms: tuple[str, ...] = nonempty(one_of(*NORM_KINDS), default=("batch", "layer"))
    activations: tuple[str, ...] = nonempty(one_of(*ACTIVATIONS), default=("relu", "tanh"))
    batch_sizes: tuple[int, ...] = nonempty(integer(low=2, high=1024), default=(4, 8, 16, 64, 256))
    depth: int = integer(40, low=12, high=500)
    width: int = integer(64, low=2, high=512)
    n_seeds: int = positive(3, integer=True)  # networks per setting: seeds seed, seed + 1, ...
    seed: int = seed_field()


@dataclass(frozen=True)
class BatchSizeResult:
    config: BatchSizeConfig
    growth: Grid  # (norm, activation, batch_size) geometric mean over seeds of the growth per layer


def run_batch_size_growth(config: BatchSizeConfig) -> BatchSizeResult:
    check_config(config, BatchSizeConfig)

    def growth(norm: str, act: str, b: int) -> float:
        c = NormProfileConfig(norm=norm, activation=act, depth=config.depth, width=config.width, batch_size=b)
        seeds = range(config.seed, config.seed + config.n_seeds)
        growths = [run_norm_profile(dataclasses.replace(c, seed=s)).growth_per_layer for s in seeds]
        if not all(0.0 < g < math.inf for g in growths):  # ‖∂J/∂h_l‖ underflowed, overflowed or is NaN
            at = f"depth {config.depth}, width {config.width} ({norm}, {act}, batch size {b})"
            raise ValueError(f"the backward signal leaves float32's range at {at}: try a smaller depth")
        return math.exp(float(np.mean([math.log(g) for g in growths])))

    values = [
        [[growth(n, a, b) for b in config.batch_sizes] for a in config.activations] for n in config.norms
    ]
    axes = {"norm": config.norms, "activation": config.activations, "batch_size": config.batch_sizes}
    return BatchSizeResult(config, Grid(values, name="growth per layer", **axes))


# -- 4. Scale invariance -------------------------------------------------------------------------------------
def _one_norm_net(config: Any, scale: float = 1.0) -> nn.Sequential:
    """digits → cW (no bias) → config.norm → ReLU → head, float64: f(cW) = f(W) for c > 0 (up to the ε)."""
    norm, width = config.norm, config.width
    with initial_weights(config.seed):
        model = nn.Sequential(
            nn.Linear(64, width, bias=False), make_norm(norm, width), nn.ReLU(), nn.Linear(width, 10)
        ).double()
    with torch.no_grad():
        model[0].weight.mul_(scale)  # in float64, as the runs did; c = 1: exactly W
    return model


class _WeightNorm(Callback):
    """Per step: ‖W‖ after it, lr_w‖g‖/‖W‖ and |Δ‖W‖² − lr_w²‖g‖²| / ‖W‖² (the growth law's error, λ = 0)."""

    def __init__(self, w: Tensor, lr_w: float) -> None:
        self.w, self.lr_w, self.rows = w, lr_w, []

    def on_backward(self, event: StepEvent) -> None:
        self.before, self.g2 = float(self.w.detach().norm()) ** 2, float(self.w.grad.norm()) ** 2

    def on_step(self, event: StepEvent) -> None:
        after, lr_w = float(self.w.detach().norm()), self.lr_w
        if after == 0.0:  # a vanished gradient and the decay shrank W below float64's range
            raise ValueError(f"‖W‖ reached 0 in float64 after step {event.step + 1}: try fewer steps")
        ratio = lr_w * math.sqrt(self.g2) / math.sqrt(self.before)
        self.rows.append((after, ratio, abs(after**2 - self.before - lr_w**2 * self.g2) / after**2))


def _sgd(model: nn.Sequential, config: Any, lr_w: float, wd: float = 0.0) -> tuple[np.ndarray, ...]:
    """SGDW on ``_one_norm_net``: W ← (1 − lr_w λ) W − lr_w g, the rest ← − lr g, one random batch per step.
    Per step: the loss and ``_WeightNorm``'s three columns."""
    w = model[0].weight
    rest = [p for p in model.parameters() if p is not w]
    optimizer = SGDW([{"params": [w], "lr": lr_w, "weight_decay": wd}, {"params": rest}], lr=config.lr)
    record = _WeightNorm(w, lr_w)
    sgd = TrainConfig(steps=config.steps, loss="cross_entropy", stop_on_divergence=False, **_QUIET)
    batches = random_batches(shared_digits(), config.batch_size, config.seed + 1, torch.float64)
    history = train(model, batches, sgd, optimizer=optimizer, callbacks=[record])
    return history.loss, *np.array(record.rows).T


class ScaleInvarianceConfig(Config):
    """Loss and gradient of W → norm → ReLU → head at W scaled by c (float64)."""

    norm: str = one_of(*SCALE_INVARIANT, default="batch")
    width: int = integer(64, low=2, high=512)
    scales: tuple[float, ...] = nonempty(positive(), default=(0.25, 0.5, 1.0, 2.0, 4.0, 8.0))  # the c
    batch_size: int = integer(128, low=2, high=1024)
    seed: int = seed_field()

    def check(self) -> None:
        if 1.0 not in self.scales:
            raise ValueError(f"scales must hold 1.0 (the reference); got {self.scales}")


@dataclass(frozen=True)
class ScaleInvarianceResult:
    config: ScaleInvarianceConfig
    grad_norm: Grid  # (scale,) ‖∇_W J(cW)‖
    cosine: Grid  # (scale,) cos(∇_W J(cW), W)
    loss_spread: float  # max |J(cW) − J(W)| / J(W)
    inverse_scaling_error: float  # max |c ‖∇J(cW)‖ / ‖∇J(W)‖ − 1|: 0 when the gradient scales as 1/c


def run_scale_invariance(config: ScaleInvarianceConfig) -> ScaleInvarianceResult:
    check_config(config, ScaleInvarianceConfig)
    model = _one_norm_net(config)
    x, y = random_batches(shared_digits(), config.batch_size, config.seed + 1, torch.float64)()
    base = model[0].weight.detach().clone()
    rows = []
    for c in config.scales:
        with torch.no_grad():
            model[0].weight.copy_(c * base)
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        g, w = model[0].weight.grad, model[0].weight.detach()
        rows.append((float(loss.detach()), float(g.norm()), float((g * w).sum() / (g.norm() * w.norm()))))
    loss, norm, cosine = np.array(rows).T
    ref = config.scales.index(1.0)
    spread = float(np.abs(loss - loss[ref]).max() / loss[ref])
    error = float(np.abs(np.asarray(config.scales) * norm / norm[ref] - 1.0).max())
    scale = {"scale": config.scales}
    grids = Grid(norm, name="grad_norm", **scale), Grid(cosine, name="cosine", **scale)
    return ScaleInvarianceResult(config, *grids, spread, error)


class SamePathConfig(Config):
    """SGD on ``_one_norm_net`` from (W, lr), (cW, c² lr) and (cW, lr), lr on W (the head: lr)."""

    norm: str = one_of(*SCALE_INVARIANT, default="batch")
    width: int = integer(64, low=2, high=512)
    scale: float = positive(4.0)  # c
    lr: float = positive(0.1)
    steps: int = integer(200, low=1, high=100_000)
    batch_size: int = integer(64, low=2, high=1024)
    seed: int = seed_field()


@dataclass(frozen=True)
class SamePathResult:
    config: SamePathConfig
    losses: np.ndarray  # (run, step) the runs (W, lr), (cW, c² lr), (cW, lr)
    max_difference: float  # max over steps of |loss₁ − loss₀| / min loss₀
    final_losses: tuple[float, float, float]  # mean loss over the last 20 steps of each run


def run_same_path(config: SamePathConfig) -> SamePathResult:
    check_config(config, SamePathConfig)
    c = config.scale
    runs = ((1.0, config.lr), (c, c * c * config.lr), (c, config.lr))  # (scale of W, lr on W)
    losses = np.array([_sgd(_one_norm_net(config, s), config, lr)[0] for s, lr in runs])
    difference = float(np.abs(losses[1] - losses[0]).max() / losses[0].min())
    tail = losses[:, -20:].mean(axis=1)
    return SamePathResult(config, losses, difference, tuple(float(t) for t in tail))


class NormGrowthConfig(Config):
    """SGD (no momentum) on W → norm → ReLU → head with decoupled weight decay λ on W only, for each λ."""

    norm: str = one_of(*SCALE_INVARIANT, default="batch")
    width: int = integer(16, low=2, high=512)
    weight_decays: tuple[float, ...] = nonempty(real(low=0.0), default=(0.0, 0.005, 0.02))  # λ, 0 = none
    lr: float = positive(1.0)
    steps: int = integer(800, low=1, high=100_000)
    batch_size: int = integer(16, low=2, high=1024)
    seed: int = seed_field()

    def check(self) -> None:
        largest = max(self.weight_decays)
        if self.lr * largest >= 1.0:  # the decay factor 1 − lr λ must stay positive
            raise ValueError(f"lr × weight_decays must be < 1; got {self.lr:g} × {largest:g}")


@dataclass(frozen=True)
class NormGrowthResult:
    config: NormGrowthConfig
    weight_norm: np.ndarray  # (weight_decay, step) ‖W‖ after each step
    update_ratio: np.ndarray  # (weight_decay, step) lr‖g‖/‖W‖ (``vgcourse.diagnose``'s ratio)
    initial_norm: float
    growth_error: float  # max over steps at λ = 0 of |‖W_{t+1}‖² − ‖W_t‖² − lr²‖g_t‖²| / ‖W_{t+1}‖²
    norm_at_end: Grid  # (weight_decay,) ‖W‖ at the end / at the start
    tail_ratio: Grid  # rms of the update ratio over the last quarter of the steps
    predicted_ratio: Grid  # at (1 − lr λ)²‖W‖² + lr²‖g‖² = ‖W‖² (van Laarhoven 2017): √(2 lr λ − (lr λ)²)


def run_norm_growth(config: NormGrowthConfig) -> NormGrowthResult:
    check_config(config, NormGrowthConfig)
    initial = float(_one_norm_net(config)[0].weight.detach().norm())  # W₀, the same for every λ
    runs = [_sgd(_one_norm_net(config), config, config.lr, wd)[1:] for wd in config.weight_decays]
    weight_norm, update_ratio, error = (np.array(column) for column in zip(*runs, strict=True))
    growth_error = float(np.max(error[np.equal(config.weight_decays, 0.0)], initial=0.0))
    wds = {"weight_decay": config.weight_decays}
    tails = [float(np.sqrt((row[int(len(row) * 0.75) :] ** 2).mean())) for row in update_ratio]
    predicted = [math.sqrt(2 * a - a * a) for a in np.multiply(config.lr, config.weight_decays)]
    grids = (
        Grid(weight_norm[:, -1] / initial, name="‖W‖ at the end / at the start", **wds),
        Grid(tails, name="update ratio (rms)", **wds),
        Grid(predicted, name="equilibrium update ratio", **wds),
    )
    return NormGrowthResult(config, weight_norm, update_ratio, initial, growth_error, *grids)


# -- 5. Internal covariate shift: batch norm with injected random shifts (after Santurkar et al. 2018) -------
SHIFT_NETWORKS = ("none", "batch", "noisy batch")


class ShiftConfig(Config):
    """Plain ReLU networks (He-normal, biases) by SGD with momentum 0.9 on digits, per SHIFT_NETWORKS."""

    depth: int = integer(10, low=1, high=100)
    width: int = integer(64, low=2, high=512)
    lr: float = positive(0.1)
    steps: int = integer(300, low=1, high=100_000)
    batch_size: int = integer(64, low=2, high=1024)
    amplitude: float = real(0.25, low=0.0, high=1.0)  # scale U(1 ± amplitude), offset N(0, amplitude²)
    seed: int = seed_field()  # the weights, the batches and the noise


@dataclass(frozen=True)
class ShiftResult:
    config: ShiftConfig
    final_loss: dict[str, float]  # per SHIFT_NETWORKS: training-split loss in eval mode (inf: diverged)


def run_shift(config: ShiftConfig) -> ShiftResult:
    check_config(config, ShiftConfig)
    data = shared_digits()
    sgd = TrainConfig(steps=config.steps, lr=config.lr, optimizer="momentum", loss="cross_entropy", **_QUIET)
    final = {}
    for name in SHIFT_NETWORKS:
        generator = torch.Generator().manual_seed(config.seed)
        amplitude = config.amplitude if name == "noisy batch" else 0.0
        layers: list[nn.Module] = []
        with initial_weights(config.seed):  # the constructors' default draws; the weights come from generator
            for i in range(config.depth):
                layers.append(nn.Linear(64 if i == 0 else config.width, config.width))
                if name != "none":
                    layers.append(models.NoisyBatchNorm(config.width, amplitude, generator))
                layers.append(nn.ReLU())
            model = nn.Sequential(*layers, nn.Linear(config.width, 10))
        initialize(model, "he_normal", activation="relu", generator=generator)  # N(0, 2/n_in), zero biases
        batches = torch.Generator().manual_seed(config.seed + 1)

        def batch(_step: int, gen: torch.Generator = batches) -> Any:
            idx = torch.randint(0, data.n_train, (config.batch_size,), generator=gen)  # with replacement
            return data.x_train[idx], data.y_train[idx]

        history = train(model, batch, sgd)  # stops, no update, at a non-finite loss
        model.eval()
        with torch.no_grad():
            value = float(nn.functional.cross_entropy(model(data.x_train), data.y_train))
        final[name] = value if math.isfinite(value) and history.diverged_step is None else math.inf
    return ShiftResult(config, final)


# -- 6. Adaptive optimizers ----------------------------------------------------------------------------------
ADAM_EPS = 1e-8  # Adam's ε: PyTorch's default, which ``vgcourse.training`` uses
OPTIMIZER_NAMES = {"momentum": "SGD, momentum 0.9", "adam": "Adam"}
_ADAM = {"optimizer": "adam", **_QUIET}  # Adam runs' TrainConfig


def _circles_net(seed: int, depth: int | None = None) -> tuple[sigmoid_bound.CirclesConfig, DataSplit, MLP]:
    """The sigmoid chapter's ``CirclesConfig()``, two-circles data and network (``depth`` hidden layers)."""
    c = sigmoid_bound.CirclesConfig()
    data = circles(n_samples=c.n_samples, noise=c.noise, seed=c.data_seed)
    model = MLP(data.in_features, data.n_classes, depth or c.depth, c.width, "sigmoid", seed=seed)
    initialize(model, c.init, activation="sigmoid", generator=torch.Generator().manual_seed(seed))
    return c, data, model


class OptimizerGridConfig(Config):
    """The sigmoid chapter's two-circles run (``sigmoid_bound.CirclesConfig()``) by SGD with momentum 0.9
    and by Adam: each over its learning rates at ``grid_seeds``, then at its best at ``seeds``."""

    momentum_lrs: tuple[float, ...] = nonempty(positive(), default=(0.01, 0.1, 1.0), unique=True)
    adam_lrs: tuple[float, ...] = nonempty(positive(), default=(0.01, 0.03, 0.1), unique=True)
    grid_seeds: tuple[int, ...] = nonempty(integer(low=0), default=(0,), unique=True)
    seeds: tuple[int, ...] = nonempty(integer(low=0), default=(0, 1, 2), unique=True)
    every: int = integer(25, low=1)  # measure the step sizes every this many steps


@dataclass(frozen=True)
class OptimizerGridResult:
    """Validation accuracy after the last epoch and std(ΔW)/lr per weight matrix (mean over the run): over
    each lr grid at the grid seeds, and at the best lr (highest mean accuracy, the smallest on a tie)."""

    config: OptimizerGridConfig
    layer_names: tuple[str, ...]  # "layer 1" ... "layer 4", "output"
    grid_accuracy: dict[str, Grid]
    grid_update_size: dict[str, Grid]
    best_lr: dict[str, float]
    accuracy: Grid
    update_size: Grid

    def to_frame(self) -> object:
        """One row per optimizer and learning rate of the grid, means over the grid seeds."""
        import pandas as pd

        rows = []
        for o, label in OPTIMIZER_NAMES.items():
            accuracy, steps = self.grid_accuracy[o].mean("seed"), self.grid_update_size[o].mean("seed").values
            for lr, mean, step in zip(accuracy.axes["lr"], accuracy.values, steps, strict=True):
                rows.append((label, lr, mean, step[0], step[-1]))  # step: (L+1,) per layer
        columns = ("optimizer", "learning rate", "validation accuracy", "step of layer 1 / lr")
        return pd.DataFrame(rows, columns=[*columns, "step of the output layer / lr"])


def _circles_run(config: OptimizerGridConfig, optimizer: str, lr: float, seed: int) -> tuple[float, Any]:
    """(validation accuracy, (L+1,) mean std(ΔW)/lr) of the sigmoid chapter's two-circles run at ``seed``."""
    c, data, model = _circles_net(seed)
    steps = StepSizes([m.weight for _, m in models.named_layers(model)], config.every)
    setup = dataclasses.replace(c, optimizer=optimizer, lr=lr, device="cpu").train_config(seed)
    history = train(model, data, dataclasses.replace(setup, monitor_every=None), callbacks=[steps])
    return history.final_val_accuracy, np.mean(steps.rows, axis=0) / lr


def run_optimizer_grid(config: OptimizerGridConfig) -> OptimizerGridResult:
    check_config(config, OptimizerGridConfig)
    grid_acc, grid_upd, best_lr, acc, upd = {}, {}, {}, [], []
    for optimizer, lrs in zip(OPTIMIZER_NAMES, (config.momentum_lrs, config.adam_lrs), strict=True):
        runs = {(lr, s): _circles_run(config, optimizer, lr, s) for lr in lrs for s in config.grid_seeds}
        axes = {"lr": lrs, "seed": config.grid_seeds}
        accuracy = np.array([[runs[lr, s][0] for s in config.grid_seeds] for lr in lrs])
        grid_acc[optimizer] = Grid(accuracy, name="validation accuracy", **axes)
        steps = np.array([[runs[lr, s][1] for s in config.grid_seeds] for lr in lrs])
        grid_upd[optimizer] = Grid(steps, name="std(ΔW) / lr", **axes)
        best = best_lr[optimizer] = lrs[int(np.argmax(accuracy.mean(axis=1)))]
        at_best = [runs.get((best, s)) or _circles_run(config, optimizer, best, s) for s in config.seeds]
        acc.append([a for a, _ in at_best])
        upd.append([u for _, u in at_best])
    names = (*(f"layer {i + 1}" for i in range(sigmoid_bound.CirclesConfig().depth)), "output")
    axes = {"optimizer": tuple(OPTIMIZER_NAMES), "seed": config.seeds}
    best = Grid(acc, name="validation accuracy", **axes), Grid(upd, name="std(ΔW) / lr", **axes)
    return OptimizerGridResult(config, names, grid_acc, grid_upd, best_lr, *best)


class AdamFirstStepConfig(Config):
    """Adam's first step, layer by layer, in a deeper copy of the sigmoid chapter's two-circles network."""

    depth: int = integer(20, low=1, high=100)  # deep enough that the first layers' gradients fall below ε
    lr: float = positive(0.01)
    seeds: tuple[int, ...] = nonempty(integer(low=0), default=(0, 1, 2), unique=True)  # weights, batch


@dataclass(frozen=True)
class AdamFirstStepResult:
    """Per seed (S) and layer (L+1). At step 1 Adam's m̂ = g and v̂ = g², so each weight moves by
    lr·|g|/(|g| + ε): by lr when |g| ≫ ε, whatever the gradient's size, by lr·|g|/ε when |g| ≪ ε."""

    config: AdamFirstStepConfig
    grad_rms: np.ndarray  # rms of the weight gradient's entries (layers 1..L, then the output layer)
    step: np.ndarray  # rms(ΔW)/lr on the float32 weights (a step below their resolution is lost)
    predicted: np.ndarray  # rms over the entries of |g|/(|g| + ε): the update rule's value


def run_adam_first_step(config: AdamFirstStepConfig) -> AdamFirstStepResult:
    check_config(config, AdamFirstStepConfig)
    grad_rms, step, predicted = [], [], []
    for seed in config.seeds:
        c, data, model = _circles_net(seed, config.depth)
        weights = [m.weight for _, m in models.named_layers(model)]
        before = [w.detach().clone() for w in weights]
        train(model, data, TrainConfig(steps=1, batch_size=c.batch_size, lr=config.lr, seed=seed, **_ADAM))
        with torch.no_grad():
            g = [w.grad.double() for w in weights]
            moved = [(w.detach() - b).double() for w, b in zip(weights, before, strict=True)]
            grad_rms.append([float(x.square().mean().sqrt()) for x in g])
            step.append([float(x.square().mean().sqrt()) / config.lr for x in moved])
            predicted.append([float((x.abs() / (x.abs() + ADAM_EPS)).square().mean().sqrt()) for x in g])
    return AdamFirstStepResult(config, np.array(grad_rms), np.array(step), np.array(predicted))


class FarLagConfig(Config):
    """W_hh's gradient of the recurrent chapter's fresh vanilla RNN on its adding problem, split by lag."""

    seq_len: int = integer(60, low=3, high=1000)  # T
    hidden_size: int = integer(32, low=1, high=512)  # H
    batch_size: int = integer(64, low=1)
    far_from: int = integer(20, low=1)  # lags k >= far_from count as far
    seeds: tuple[int, ...] = nonempty(integer(low=0), default=(0, 1, 2), unique=True)  # weights, batch

    def check(self) -> None:
        if self.far_from >= self.seq_len:
            raise ValueError(f"far_from must be below seq_len ({self.seq_len}); got {self.far_from}")


@dataclass(frozen=True)
class FarLagResult:
    """W_hh's gradient G = Σ_k G_k (G_k = δ_{T-k} h_{T-k-1}^T, the term of lag k) and how much the far terms
    F = Σ_{k >= far_from} G_k change each optimizer's first step: SGD's, -lr·G, by ‖F‖/‖G‖; Adam's,
    -lr·s(G) with s(g) = g/(|g| + ε), by ‖s(G) - s(G - F)‖/‖s(G)‖. Per seed (S)."""

    config: FarLagConfig
    lag_norm: np.ndarray  # (S, T) ‖G_k‖_F for k = 0..T-1
    autograd_error: np.ndarray  # max |Σ_k G_k − autograd's ∂L/∂W_hh| / max |∂L/∂W_hh|
    sgd_share: np.ndarray
    adam_share: np.ndarray


def run_far_lag(config: FarLagConfig) -> FarLagResult:
    check_config(config, FarLagConfig)
    lag_norm, error, sgd, adam = [], [], [], []
    for seed in config.seeds:
        model = recurrent_networks.build_adding_model("rnn", config.hidden_size, seed)
        data = recurrent_networks.adding_problem(
            n_samples=2 * config.batch_size, seq_len=config.seq_len, val_fraction=0.5, seed=seed
        )
        terms, autograd = lag_terms(model, data.x_train, data.y_train)
        total, far = terms.sum(0), terms[config.far_from :].sum(0)
        lag_norm.append(terms.flatten(1).norm(dim=1).numpy())
        error.append(float((total - autograd).abs().max() / autograd.abs().max()))
        sgd.append(float(far.norm() / total.norm()))
        step, rest = total / (total.abs() + ADAM_EPS), total - far  # Adam's first step g/(|g| + ε), in lr
        adam.append(float((step - rest / (rest.abs() + ADAM_EPS)).norm() / step.norm()))
    return FarLagResult(config, np.array(lag_norm), np.array(error), np.array(sgd), np.array(adam))


class DeadUnitsConfig(Config):
    """The ReLU chapter's digits network (``dying_config``), every bias started at ``bias_init``, by Adam."""

    lr: float = positive(1e-3)  # Adam's usual default
    steps: int = integer(300, low=1)
    bias_init: float = real(-2.0)
    seeds: tuple[int, ...] = nonempty(integer(low=0), default=(0,), unique=True)  # weights, batch order

    def dying_config(self, seed: int) -> relu_dying_units.DyingConfig:
        """The ReLU chapter's ``DyingConfig`` of the network (its SGD lr and device are not used here)."""
        return relu_dying_units.DyingConfig(bias_init=self.bias_init, steps=self.steps, seed=seed)


@dataclass(frozen=True)
class DeadUnitsResult:
    """Per seed: hidden units dead at initialization (z <= 0 on the whole training set) and their fate."""

    config: DeadUnitsConfig
    units: int  # hidden units in the network
    dead_at_start: np.ndarray
    silent: np.ndarray  # of those, units that fired on no training batch of the run
    silent_identical: np.ndarray  # of those, units whose incoming weights and bias end bit-identical
    revived: np.ndarray  # units dead at the start that fired at least once
    alive_moved: np.ndarray  # median over the units alive at the start of rms(Δw)/lr over the run


def run_dead_units(config: DeadUnitsConfig) -> DeadUnitsResult:
    """Adam, watching which units fire on each batch: a unit that never fires has gradient 0, so m = v = 0
    and its step lr·m̂/(√v̂ + ε) is exactly 0."""
    check_config(config, DeadUnitsConfig)
    counts, moved, units = [], [], 0
    for seed in config.seeds:
        base = config.dying_config(seed)
        data = shared_digits(base.data_seed)
        model = MLP(data.in_features, data.n_classes, base.depth, base.width, base.activation, seed=seed)
        generator = torch.Generator().manual_seed(seed)
        initialize(model, base.init, activation=base.activation, bias=base.bias_init, generator=generator)
        dead = relu_dying_units.dead_unit_masks(model, data.x_train)
        units = sum(int(mask.numel()) for mask in dead)
        before = [(m.linear.weight.detach().clone(), m.linear.bias.detach().clone()) for m in model.layers]
        fired = [torch.zeros_like(mask) for mask in dead]  # unit j of layer i fired on some training batch
        for m, hit in zip(model.layers, fired, strict=True):
            m.register_forward_hook(partial(relu_dying_units.watch_firing, hit))  # on this run's model only
        adam = TrainConfig(steps=config.steps, batch_size=base.batch_size, lr=config.lr, seed=seed, **_ADAM)
        train(model, data, dataclasses.replace(adam, eval_every=config.steps))
        row = np.zeros(4, dtype=np.int64)
        change = []
        for m, (w, b), mask, hit in zip(model.layers, before, dead, fired, strict=True):
            same = (m.linear.weight.detach() == w).all(dim=1) & (m.linear.bias.detach() == b)
            silent = mask & ~hit
            row += [int(mask.sum()), int(silent.sum()), int((silent & same).sum()), int((mask & hit).sum())]
            change.append((m.linear.weight.detach() - w).square().mean(dim=1).sqrt()[~mask] / config.lr)
        counts.append(row)
        moved.append(float(torch.cat(change).median()))
    return DeadUnitsResult(config, units, *np.array(counts).T, np.array(moved))


# -- 7. vgcourse.diagnose under Adam and on a normalized network ---------------------------------------------
class DiagnoseConfig(Config):
    """``vgcourse.diagnose`` on a fresh ``_circles_net`` per optimizer, on the first ``batch_size`` points."""

    momentum_lr: float = positive(0.01)  # SGD with momentum 0.9
    adam_lr: float = positive(0.03)
    batch_size: int = integer(64, low=2)
    seed: int = seed_field()  # the weights


@dataclass(frozen=True)
class DiagnoseResult:
    config: DiagnoseConfig
    reports: dict[str, Any]  # {"momentum": report, "adam": report} (``vgcourse.diagnose.DiagnosisReport``)


def run_diagnose(config: DiagnoseConfig) -> DiagnoseResult:
    check_config(config, DiagnoseConfig)
    _, data, model = _circles_net(config.seed)
    batch = (data.x_train[: config.batch_size], data.y_train[: config.batch_size])
    reports = {
        name: diagnose(model, nn.CrossEntropyLoss(), batch, optimizer=name, lr=lr)
        for name, lr in (("momentum", config.momentum_lr), ("adam", config.adam_lr))
    }
    return DiagnoseResult(config, reports)


class NormDiagnoseConfig(Config):
    """``vgcourse.diagnose`` (plain SGD) on a ReLU ``models.NormMLP`` and the first ``batch_size`` digits."""

    depth: int = integer(8, low=1, high=64)
    width: int = integer(32, low=2, high=256)
    norm: str = one_of(*SCALE_INVARIANT, default="batch")
    lr: float = positive(0.1)  # plain SGD
    batch_size: int = integer(128, low=2)
    seed: int = seed_field()  # the weights


@dataclass(frozen=True)
class NormDiagnoseResult:
    config: NormDiagnoseConfig
    report: Any  # the ``DiagnosisReport``
    effective_lr: np.ndarray  # (L,) lr/‖W_l‖² of the layers feeding a normalization, computed directly


def run_norm_diagnose(config: NormDiagnoseConfig) -> NormDiagnoseResult:
    check_config(config, NormDiagnoseConfig)
    data = shared_digits(0)
    sizes = data.in_features, data.n_classes, config.depth, config.width
    model = NormMLP(*sizes, "relu", config.norm, seed=config.seed)
    batch = (data.x_train[: config.batch_size], data.y_train[: config.batch_size])
    report = diagnose(model, nn.CrossEntropyLoss(), batch, optimizer="sgd", lr=config.lr)
    with torch.no_grad():
        squares = [float(linear.weight.double().square().sum()) for linear in model.linears]
    return NormDiagnoseResult(config, report, config.lr / np.array(squares))
