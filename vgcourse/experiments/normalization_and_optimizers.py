"""Experiments of chapter 7, normalization layers and adaptive optimizers.

First half (normalization): the Jacobians of BatchNorm, LayerNorm and RMSNorm checked against autograd,
BatchNorm's train/eval difference, per-layer forward and backward signals of deep plain networks with
each normalization, and scale invariance (gradient ∝ 1/‖W‖, effective learning rate lr/‖W‖², weight
decay's equilibrium). Second half: adaptive optimizers.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vgcourse._validation import check_choice, check_float, check_int
from vgcourse.config import Config, integer, nonempty, one_of, positive, real, seed_field
from vgcourse.data import DataSplit, circles, shared_digits
from vgcourse.experiments import recurrent_networks, relu_dying_units, sigmoid_bound
from vgcourse.initializers import initialize
from vgcourse.models import MLP, initial_weights
from vgcourse.training import Callback, StepEvent, TrainConfig, train

__all__ = [
    "ACTIVATIONS",
    "NORM_KINDS",
    "BatchSizeConfig",
    "BatchSizeResult",
    "JacobianCheckConfig",
    "JacobianCheckResult",
    "NormGrowthConfig",
    "NormGrowthResult",
    "NormProfileConfig",
    "NormProfileResult",
    "RMSNorm",
    "SHIFT_NETWORKS",
    "SamePathConfig",
    "SamePathResult",
    "ScaleInvarianceConfig",
    "ScaleInvarianceResult",
    "ShiftConfig",
    "ShiftResult",
    "TrainEvalConfig",
    "TrainEvalResult",
    "gaussian_moments",
    "make_norm",
    "plain_normalized_stack",
    "predicted_growth",
    "run_batch_size_growth",
    "run_jacobian_check",
    "run_norm_growth",
    "run_norm_profile",
    "run_same_path",
    "run_scale_invariance",
    "run_shift",
    "run_train_eval",
]

NORM_KINDS = ("none", "batch", "layer", "rms")
"""The normalizations of the chapter: none, BatchNorm1d, LayerNorm and RMSNorm."""

ACTIVATIONS = ("relu", "tanh")


class RMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich 2019): y = γ ⊙ x / sqrt(mean(x²) + ε) over the last dimension, no centring
    and no shift (``torch.nn.RMSNorm`` from torch 2.4 computes the same; this one runs on older torch)."""

    def __init__(self, width: int, eps: float = 1e-5):
        super().__init__()
        check_int("width", width, minimum=1)
        self.eps = check_float("eps", eps, minimum=0.0)
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


def make_norm(kind: str, width: int) -> nn.Module | None:
    """The normalization layer ``kind`` over ``width`` features (None for "none").

    batch: y = γ (x − μ_B) / sqrt(σ_B² + ε) + β with μ_B, σ_B² per feature over the batch;
    layer: the same with μ, σ² per example over its features; rms: y = γ x / sqrt(mean(x²) + ε).
    """
    check_choice("norm", kind, NORM_KINDS)
    check_int("width", width, minimum=1)
    if kind == "none":
        return None
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    return RMSNorm(width)


# ----------------------------------------------------------------------------------------------------
# 1. Jacobians
# ----------------------------------------------------------------------------------------------------


def _layer_norm_jacobian(x: Tensor, gamma: Tensor, eps: float) -> Tensor:
    """J = diag(γ)/σ (I − 11ᵀ/n − x̂x̂ᵀ/n) for one example x of n features."""
    n = x.numel()
    sigma = torch.sqrt(x.var(unbiased=False) + eps)
    xhat = (x - x.mean()) / sigma
    eye = torch.eye(n, dtype=x.dtype)
    return gamma[:, None] / sigma * (eye - torch.ones(n, n, dtype=x.dtype) / n - torch.outer(xhat, xhat) / n)


def _rms_norm_jacobian(x: Tensor, gamma: Tensor, eps: float) -> Tensor:
    """J = diag(γ)/rms (I − x̂x̂ᵀ/n), x̂ = x / rms, for one example x of n features."""
    n = x.numel()
    rms = torch.sqrt((x**2).mean() + eps)
    xhat = x / rms
    return gamma[:, None] / rms * (torch.eye(n, dtype=x.dtype) - torch.outer(xhat, xhat) / n)


def _batch_norm_jacobian(x: Tensor, gamma: Tensor, eps: float) -> Tensor:
    """∂y[b, j] / ∂x[c, k] = δ_jk γ_j/σ_j (δ_bc − 1/B − x̂[b, j] x̂[c, k] / B): the layer-norm formula applied
    to each feature over the batch; features do not mix, examples do. Shape (B, n, B, n)."""
    batch, n = x.shape
    jac = torch.zeros(batch, n, batch, n, dtype=x.dtype)
    for j in range(n):
        jac[:, j, :, j] = _layer_norm_jacobian(x[:, j], gamma[j].expand(batch), eps)
    return jac


class JacobianCheckConfig(Config):
    """The Jacobians of the three normalizations at a random input, by formula and by autograd (float64).

    Args:
        width: features n.
        batch_size: examples B (batch norm's Jacobian couples them).
        mean: the inputs' mean (x = mean + scale · N(0, 1)).
        scale: the inputs' standard deviation.
        seed: random seed of the inputs and of γ.
    """

    width: int = integer(16, low=2, high=256)
    batch_size: int = integer(8, low=2, high=256)
    mean: float = real(0.5)
    scale: float = positive(2.0)
    seed: int = seed_field()


@dataclass(frozen=True)
class JacobianCheckResult:
    """Per normalization ("batch", "layer", "rms"): the largest |formula − autograd| over the largest
    |autograd| entry (``relative_error``), the gain of the Jacobian along the input's own direction
    ``‖J x‖ / (‖J‖₂ ‖x‖)`` (``gain_along_x``), along the constant direction 1 (``gain_along_ones``), and
    ``‖J(c x)‖₂ · c / ‖J(x)‖₂`` for c = 10 (``scale_ratio``, 1 when ‖J‖ ∝ 1/σ)."""

    config: JacobianCheckConfig
    relative_error: dict[str, float]
    gain_along_x: dict[str, float]
    gain_along_ones: dict[str, float]
    scale_ratio: dict[str, float]

    def to_frame(self):
        """One row per normalization, readable column names."""
        import pandas as pd

        return pd.DataFrame(
            {
                "normalization": list(self.relative_error),
                "max relative error vs autograd": list(self.relative_error.values()),
                "gain along x": list(self.gain_along_x.values()),
                "gain along 1": list(self.gain_along_ones.values()),
                "‖J(10x)‖·10 / ‖J(x)‖": list(self.scale_ratio.values()),
            }
        )


def _flat_jacobian(module: nn.Module, x: Tensor) -> Tensor:
    jac = torch.autograd.functional.jacobian(module, x)
    return jac.reshape(x.numel(), x.numel())


def run_jacobian_check(config: JacobianCheckConfig) -> JacobianCheckResult:
    """Compare each normalization's Jacobian formula with ``torch.autograd.functional.jacobian`` (float64,
    training-mode batch statistics, random γ around 1), and measure what the Jacobian does to the input's
    own direction, to the constant direction and under scaling of the input."""
    gen = torch.Generator().manual_seed(config.seed)
    n, batch = config.width, config.batch_size
    x = config.mean + config.scale * torch.randn(batch, n, generator=gen, dtype=torch.float64)
    gamma = 1.0 + 0.3 * torch.randn(n, generator=gen, dtype=torch.float64)
    errors, along_x, along_ones, scale_ratio = {}, {}, {}, {}
    for kind in ("batch", "layer", "rms"):
        module = make_norm(kind, n).double().train()
        with torch.no_grad():
            module.weight.copy_(gamma)
        eps = float(module.eps)

        def apply(v: Tensor, module: nn.Module = module, kind: str = kind) -> Tensor:
            return module(v) if kind == "batch" else module(v[None])[0]

        sample = x if kind == "batch" else x[0]
        formula = {"batch": _batch_norm_jacobian, "layer": _layer_norm_jacobian, "rms": _rms_norm_jacobian}
        jf = formula[kind](sample, gamma, eps).reshape(sample.numel(), sample.numel())
        ja = _flat_jacobian(apply, sample)
        errors[kind] = float((jf - ja).abs().max() / ja.abs().max())
        spectral = float(torch.linalg.matrix_norm(ja, ord=2))
        flat = sample.reshape(-1)
        along_x[kind] = float((ja @ flat).norm() / (spectral * flat.norm()))
        ones = torch.ones_like(flat)
        along_ones[kind] = float((ja @ ones).norm() / (spectral * ones.norm()))
        scaled = float(torch.linalg.matrix_norm(_flat_jacobian(apply, 10.0 * sample), ord=2))
        scale_ratio[kind] = scaled * 10.0 / spectral
    return JacobianCheckResult(config, errors, along_x, along_ones, scale_ratio)


# ----------------------------------------------------------------------------------------------------
# 2. BatchNorm in training and in evaluation mode
# ----------------------------------------------------------------------------------------------------


class TrainEvalConfig(Config):
    """A Linear(64 → width) + BatchNorm1d layer on digits whose running statistics are those of the whole
    training split; its output on random small batches in training mode (batch statistics) vs evaluation
    mode (running statistics).

    Args:
        batch_sizes: the batch sizes B.
        width: features of the layer.
        n_batches: random batches per batch size.
        seed: seed of the weights and of the batches.
    """

    batch_sizes: tuple[int, ...] = nonempty(
        integer(low=2, high=1024), default=(2, 4, 8, 16, 32, 64, 128, 256)
    )
    width: int = integer(64, low=1, high=512)
    n_batches: int = positive(20, integer=True)
    seed: int = seed_field()


@dataclass(frozen=True)
class TrainEvalResult:
    """``relative_difference[i]``: the mean over batches of ‖y_train − y_eval‖ / ‖y_eval‖ at
    ``batch_sizes[i]``."""

    config: TrainEvalConfig
    relative_difference: np.ndarray

    def at(self, batch_size: int) -> float:
        """The mean relative difference at one of the configured batch sizes."""
        return float(self.relative_difference[self.config.batch_sizes.index(batch_size)])


def run_train_eval(config: TrainEvalConfig) -> TrainEvalResult:
    """Measure how far BatchNorm's training-mode output (normalized with the batch's own mean and
    variance) is from its evaluation-mode output (running statistics, here the full training split's)."""
    data = shared_digits()
    gen = torch.Generator().manual_seed(config.seed)
    with initial_weights(config.seed):
        linear = nn.Linear(data.in_features, config.width)
        # momentum 0: the training-mode calls below must not overwrite the running statistics
        norm = nn.BatchNorm1d(config.width, momentum=0.0)
    with torch.no_grad():
        h = linear(data.x_train)
        norm.running_mean.copy_(h.mean(0))
        norm.running_var.copy_(h.var(0, unbiased=True))
    out = []
    with torch.no_grad():
        for b in config.batch_sizes:
            diffs = []
            for _ in range(config.n_batches):
                idx = torch.randperm(data.n_train, generator=gen)[:b]
                hb = linear(data.x_train[idx])
                y_train = norm.train()(hb)
                y_eval = norm.eval()(hb)
                diffs.append(float((y_train - y_eval).norm() / y_eval.norm()))
            out.append(float(np.mean(diffs)))
    return TrainEvalResult(config, np.asarray(out))


# ----------------------------------------------------------------------------------------------------
# 3. Deep plain networks with each normalization: per-layer forward and backward signals
# ----------------------------------------------------------------------------------------------------


def gaussian_moments(activation: str, n_points: int = 80) -> tuple[float, float, float]:
    """(E[φ'(z)²], Var φ(z), E[φ(z)²]) for z ~ N(0, 1), by Gauss–Hermite quadrature (ReLU: 1/2,
    1/2 − 1/(2π), 1/2)."""
    check_choice("activation", activation, ACTIVATIONS)
    z, w = np.polynomial.hermite_e.hermegauss(n_points)
    w = w / w.sum()
    if activation == "relu":
        return 0.5, 0.5 - 1.0 / (2.0 * math.pi), 0.5
    phi, dphi = np.tanh(z), 1.0 - np.tanh(z) ** 2
    mean = float(w @ phi)
    second = float(w @ phi**2)
    return float(w @ dphi**2), second - mean**2, second


def predicted_growth(norm: str, activation: str) -> float:
    """Mean-field growth per layer of the backward signal's norm in a deep plain network with the
    normalization ``norm`` before each activation (large width and batch, gradients independent of the
    forward pass): sqrt(E[φ'(z)²] / V) with V = Var φ(z) for batch norm (the batch mean is removed) and
    V = E[φ(z)²] for layer and RMS norm (over units, random weights keep the mean). NaN for "none"."""
    check_choice("norm", norm, NORM_KINDS)
    d2, var, second = gaussian_moments(activation)
    if norm == "none":
        return float("nan")
    return math.sqrt(d2 / (var if norm == "batch" else second))


class _PlainStack(nn.Module):
    """x_l = φ(N(W_l x_{l−1})), l = 1..L, then a linear head; no biases in the W_l (the norms have β)."""

    def __init__(
        self, in_features: int, out_features: int, depth: int, width: int, norm: str, activation: str
    ):
        super().__init__()
        sizes = [in_features] + [width] * depth
        self.linears = nn.ModuleList(nn.Linear(sizes[i], width, bias=False) for i in range(depth))
        norms = [make_norm(norm, width) for _ in range(depth)]
        self.norms = nn.ModuleList(m if m is not None else nn.Identity() for m in norms)
        self.activation = nn.ReLU() if activation == "relu" else nn.Tanh()
        self.head = nn.Linear(width, out_features)
        gain = 2.0 if activation == "relu" else 1.0
        with torch.no_grad():
            for i, linear in enumerate(self.linears):
                fan_in = sizes[i]
                linear.weight.normal_(0.0, math.sqrt((1.0 if i == 0 else gain) / fan_in))
            self.head.weight.normal_(0.0, math.sqrt(1.0 / width))
            self.head.bias.zero_()

    def forward(self, x: Tensor, record: list[Tensor] | None = None) -> Tensor:
        for linear, norm in zip(self.linears, self.norms, strict=True):
            h = linear(x)
            if record is not None:
                h.retain_grad()
                record.append(h)
            x = self.activation(norm(h))
        return self.head(x)


def plain_normalized_stack(
    depth: int, width: int, norm: str, activation: str, in_features: int = 64, out_features: int = 10
) -> nn.Module:
    """A plain network x_l = φ(N(W_l x_{l−1})) of ``depth`` layers with normalization ``norm`` before each
    activation, weights N(0, g/n_in) (g = 2 for ReLU, 1 for tanh; the first layer g = 1: He/LeCun) and no
    biases in the W_l; ``forward(x, record)`` appends each pre-normalization h_l (grad retained)."""
    check_int("depth", depth, minimum=1, maximum=1000)
    check_int("width", width, minimum=2, maximum=1024)
    check_choice("norm", norm, NORM_KINDS)
    check_choice("activation", activation, ACTIVATIONS)
    return _PlainStack(in_features, out_features, depth, width, norm, activation)


class NormProfileConfig(Config):
    """One forward and backward pass (cross-entropy) of a freshly initialized plain network on one
    batch of digits; normalizations in training mode (batch statistics).

    Args:
        norm: "none", "batch", "layer" or "rms".
        activation: "relu" or "tanh".
        depth: layers L.
        width: units per layer.
        batch_size: examples in the batch.
        seed: seed of the weights and of the batch.
    """

    norm: str = one_of(*NORM_KINDS, default="batch")
    activation: str = one_of(*ACTIVATIONS, default="relu")
    depth: int = integer(50, low=2, high=500)
    width: int = integer(64, low=2, high=512)
    batch_size: int = integer(64, low=2, high=1024)
    seed: int = seed_field()


@dataclass(frozen=True)
class NormProfileResult:
    """Per layer l = 1..L: ``forward[l-1]`` = rms of the pre-normalization signal h_l, ``backward[l-1]`` =
    ‖∂J/∂h_l‖ (Frobenius over the batch), ``weight_grad[l-1]`` = ‖∂J/∂W_l‖."""

    config: NormProfileConfig
    forward: np.ndarray
    backward: np.ndarray
    weight_grad: np.ndarray
    loss: float

    @property
    def grad_ratio(self) -> float:
        """‖∂J/∂h_1‖ / ‖∂J/∂h_L‖: how much the backward signal grows from the last layer to the first."""
        return float(self.backward[0] / self.backward[-1])

    def growth_per_layer(self, skip: int = 5) -> float:
        """Geometric-mean growth of ‖∂J/∂h_l‖ per layer toward the input, from layer L − skip down to
        layer skip + 1 (leaving out the layers near the input and the head, which are not typical)."""
        b = self.backward
        lo, hi = skip, len(b) - 1 - skip
        if hi <= lo:
            lo, hi = 0, len(b) - 1
        return float(np.exp((np.log(b[lo]) - np.log(b[hi])) / (hi - lo)))


def run_norm_profile(config: NormProfileConfig) -> NormProfileResult:
    """Measure the forward signal, the backward signal and the weight gradients layer by layer."""
    data = shared_digits()
    with initial_weights(config.seed):
        model = plain_normalized_stack(config.depth, config.width, config.norm, config.activation)
    gen = torch.Generator().manual_seed(config.seed + 1)
    idx = torch.randperm(data.n_train, generator=gen)[: config.batch_size]
    record: list[Tensor] = []
    loss = nn.functional.cross_entropy(model(data.x_train[idx], record), data.y_train[idx])
    loss.backward()
    forward = np.array([float(h.detach().double().pow(2).mean().sqrt()) for h in record])
    backward = np.array([float(h.grad.double().norm()) for h in record])  # float64: no overflow of Σg²
    weight_grad = np.array([float(lin.weight.grad.double().norm()) for lin in model.linears])
    return NormProfileResult(config, forward, backward, weight_grad, float(loss.detach()))


class BatchSizeConfig(Config):
    """Growth per layer of the backward signal against the batch size, averaged over networks.

    Args:
        norms: normalizations compared.
        activations: activations compared.
        batch_sizes: batch sizes.
        depth: layers.
        width: units per layer.
        n_seeds: networks (seeds) per setting; the growth is the geometric mean over them.
        seed: first seed.
    """

    norms: tuple[str, ...] = nonempty(one_of(*NORM_KINDS), default=("batch", "layer"))
    activations: tuple[str, ...] = nonempty(one_of(*ACTIVATIONS), default=("relu", "tanh"))
    batch_sizes: tuple[int, ...] = nonempty(integer(low=2, high=1024), default=(4, 8, 16, 64, 256))
    depth: int = integer(40, low=12, high=500)
    width: int = integer(64, low=2, high=512)
    n_seeds: int = positive(3, integer=True)
    seed: int = seed_field()


@dataclass(frozen=True)
class BatchSizeResult:
    """``growth[(norm, activation)][i]``: geometric mean over seeds of the growth per layer at
    ``batch_sizes[i]``."""

    config: BatchSizeConfig
    growth: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def at(self, norm: str, activation: str, batch_size: int) -> float:
        """The growth per layer of one setting at one of the configured batch sizes."""
        return float(self.growth[(norm, activation)][self.config.batch_sizes.index(batch_size)])


def run_batch_size_growth(config: BatchSizeConfig) -> BatchSizeResult:
    """``run_norm_profile`` for every norm × activation × batch size × seed; growth per layer."""
    growth = {}
    for norm in config.norms:
        for act in config.activations:
            values = []
            for b in config.batch_sizes:
                logs = [
                    math.log(
                        run_norm_profile(
                            NormProfileConfig(
                                norm=norm,
                                activation=act,
                                depth=config.depth,
                                width=config.width,
                                batch_size=b,
                                seed=config.seed + s,
                            )
                        ).growth_per_layer()
                    )
                    for s in range(config.n_seeds)
                ]
                values.append(math.exp(float(np.mean(logs))))
            growth[(norm, act)] = np.asarray(values)
    return BatchSizeResult(config, growth)


# ----------------------------------------------------------------------------------------------------
# 4. Scale invariance
# ----------------------------------------------------------------------------------------------------


class _OneNormNet(nn.Module):
    """digits → W (no bias) → norm → ReLU → head: f(cW) = f(W) for every c > 0 (up to the norm's ε)."""

    def __init__(self, norm: str, width: int, in_features: int = 64, out_features: int = 10):
        super().__init__()
        self.linear = nn.Linear(in_features, width, bias=False)
        self.norm = make_norm(norm, width)
        self.head = nn.Linear(width, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.relu(self.norm(self.linear(x))))


def _one_norm_net(norm: str, width: int, seed: int) -> _OneNormNet:
    with initial_weights(seed):
        return _OneNormNet(norm, width).double()


class ScaleInvarianceConfig(Config):
    """Loss and gradient of a one-hidden-layer network W → norm → ReLU → head at W scaled by c (float64).

    Args:
        norm: "batch", "layer" or "rms".
        width: hidden units.
        scales: the factors c.
        batch_size: examples.
        seed: seed of the weights and of the batch.
    """

    norm: str = one_of("batch", "layer", "rms", default="batch")
    width: int = integer(64, low=2, high=512)
    scales: tuple[float, ...] = nonempty(positive(), default=(0.25, 0.5, 1.0, 2.0, 4.0, 8.0))
    batch_size: int = integer(128, low=2, high=1024)
    seed: int = seed_field()

    def check(self) -> None:
        if 1.0 not in self.scales:
            raise ValueError(f"scales must hold 1.0 (the reference); got {self.scales}")


@dataclass(frozen=True)
class ScaleInvarianceResult:
    """Per scale c: ``loss[i]``, ``grad_norm[i]`` = ‖∇_W J(cW)‖ and ``cosine[i]`` = cos(∇_W J(cW), W)."""

    config: ScaleInvarianceConfig
    loss: np.ndarray
    grad_norm: np.ndarray
    cosine: np.ndarray

    @property
    def loss_spread(self) -> float:
        """max |J(cW) − J(W)| / J(W) over the scales."""
        ref = self.loss[self.config.scales.index(1.0)]
        return float(np.abs(self.loss - ref).max() / ref)

    @property
    def inverse_scaling_error(self) -> float:
        """max |c ‖∇J(cW)‖ / ‖∇J(W)‖ − 1| over the scales: 0 when the gradient scales as 1/c."""
        ref = self.grad_norm[self.config.scales.index(1.0)]
        return float(np.abs(np.asarray(self.config.scales) * self.grad_norm / ref - 1.0).max())


def run_scale_invariance(config: ScaleInvarianceConfig) -> ScaleInvarianceResult:
    """Evaluate J(cW) and ∇_W J(cW) for each c, with the same batch and the other weights fixed."""
    model = _one_norm_net(config.norm, config.width, config.seed)
    data = shared_digits()
    gen = torch.Generator().manual_seed(config.seed + 1)
    idx = torch.randperm(data.n_train, generator=gen)[: config.batch_size]
    x, y = data.x_train[idx].double(), data.y_train[idx]
    base = model.linear.weight.detach().clone()
    losses, norms, cosines = [], [], []
    for c in config.scales:
        with torch.no_grad():
            model.linear.weight.copy_(c * base)
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        g = model.linear.weight.grad
        losses.append(float(loss.detach()))
        norms.append(float(g.norm()))
        w = model.linear.weight.detach()
        cosines.append(float((g * w).sum() / (g.norm() * w.norm())))
    return ScaleInvarianceResult(config, np.asarray(losses), np.asarray(norms), np.asarray(cosines))


class SamePathConfig(Config):
    """Two SGD runs (float64, full-batch-free minibatches shared by both) of W → norm → ReLU → head: one
    from W with learning rate lr, one from cW with lr c² on W (the same lr on the head).

    Args:
        norm: "batch", "layer" or "rms".
        width: hidden units.
        scale: c.
        lr: learning rate of the first run.
        steps: SGD steps.
        batch_size: examples per step.
        seed: seed of the weights and of the batches.
    """

    norm: str = one_of("batch", "layer", "rms", default="batch")
    width: int = integer(64, low=2, high=512)
    scale: float = positive(4.0)
    lr: float = positive(0.1)
    steps: int = integer(200, low=1, high=100_000)
    batch_size: int = integer(64, low=2, high=1024)
    seed: int = seed_field()


@dataclass(frozen=True)
class SamePathResult:
    """``losses[0]``: the run from W; ``losses[1]``: the run from cW with lr c²; ``weight_norms`` the same
    for ‖W‖ (the second run's divided by c); plus a third run from cW with the unchanged lr
    (``losses[2]``, ``weight_norms[2]`` divided by c)."""

    config: SamePathConfig
    losses: np.ndarray
    weight_norms: np.ndarray

    @property
    def max_difference(self) -> float:
        """max over steps of |loss₁ − loss₀| / loss₀."""
        return float(np.abs(self.losses[1] - self.losses[0]).max() / self.losses[0].min())

    @property
    def final_losses(self) -> tuple[float, float, float]:
        """Mean loss over the last 20 steps of the three runs."""
        tail = self.losses[:, -20:].mean(axis=1)
        return float(tail[0]), float(tail[1]), float(tail[2])


def _sgd_path(model: _OneNormNet, lr_w: float, lr: float, steps: int, batches: list[Tensor], data: DataSplit):
    losses, norms = [], []
    x_all, y_all = data.x_train.double(), data.y_train
    for step in range(steps):
        idx = batches[step]
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= (lr_w if p is model.linear.weight else lr) * p.grad
        losses.append(float(loss.detach()))
        norms.append(float(model.linear.weight.detach().norm()))
    return losses, norms


def run_same_path(config: SamePathConfig) -> SamePathResult:
    """Train three copies: (W, lr), (cW, c² lr on W) and (cW, lr); same batches and other weights."""
    data = shared_digits()
    gen = torch.Generator().manual_seed(config.seed + 1)
    batches = [torch.randperm(data.n_train, generator=gen)[: config.batch_size] for _ in range(config.steps)]
    c = config.scale
    runs = []
    for w_scale, lr_w in ((1.0, config.lr), (c, c * c * config.lr), (c, config.lr)):
        model = _one_norm_net(config.norm, config.width, config.seed)
        with torch.no_grad():
            model.linear.weight.mul_(w_scale)
        losses, norms = _sgd_path(model, lr_w, config.lr, config.steps, batches, data)
        runs.append((losses, np.asarray(norms) / w_scale))
    return SamePathResult(config, np.array([r[0] for r in runs]), np.array([r[1] for r in runs]))


class NormGrowthConfig(Config):
    """SGD (no momentum) on W → norm → ReLU → head, with weight decay λ on W only, for each λ.

    Args:
        norm: "batch", "layer" or "rms".
        width: hidden units.
        weight_decays: the λ values (0 = none).
        lr: learning rate.
        steps: SGD steps.
        batch_size: examples per step.
        init_scale: W starts at init_scale × PyTorch's default initialization.
        seed: seed of the weights and of the batches.
    """

    norm: str = one_of("batch", "layer", "rms", default="batch")
    width: int = integer(16, low=2, high=512)
    weight_decays: tuple[float, ...] = nonempty(real(low=0.0), default=(0.0, 0.005, 0.02))
    lr: float = positive(1.0)
    steps: int = integer(800, low=1, high=100_000)
    batch_size: int = integer(16, low=2, high=1024)
    init_scale: float = positive(1.0)
    seed: int = seed_field()


@dataclass(frozen=True)
class NormGrowthResult:
    """Per weight decay (rows) and step (columns): ``weight_norm`` ‖W‖ after the step, ``update_ratio``
    lr‖g‖/‖W‖ (the gradient's part of the step, ``vgcourse.diagnose``'s ratio), ``loss``, and
    ``growth_error``: the max over steps without weight decay of
    |‖W_{t+1}‖² − ‖W_t‖² − lr²‖g_t‖²| / ‖W_{t+1}‖²."""

    config: NormGrowthConfig
    weight_norm: np.ndarray
    update_ratio: np.ndarray
    loss: np.ndarray
    initial_norm: float
    growth_error: float

    @property
    def effective_lr(self) -> np.ndarray:
        """lr / ‖W‖² after each step."""
        return self.config.lr / self.weight_norm**2

    def predicted_ratio(self, weight_decay: float) -> float:
        """The equilibrium update ratio sqrt(2 lr λ − (lr λ)²) (van Laarhoven 2017; exact balance of
        the shrinking (1 − lr λ)² ‖W‖² and the growth lr² ‖g‖²)."""
        a = self.config.lr * weight_decay
        return math.sqrt(2 * a - a * a)

    def tail_ratio(self, weight_decay: float, fraction: float = 0.25) -> float:
        """Root mean square of the update ratio over the last ``fraction`` of the steps (the balance
        of the norm involves the mean of the squared ratio)."""
        row = self.update_ratio[self.config.weight_decays.index(weight_decay)]
        tail = row[int(len(row) * (1 - fraction)) :]
        return float(np.sqrt((tail**2).mean()))

    def norm_at_end(self, weight_decay: float) -> float:
        """‖W‖ after the last step, over ‖W‖ at the start."""
        return float(self.weight_norm[self.config.weight_decays.index(weight_decay), -1] / self.initial_norm)


def run_norm_growth(config: NormGrowthConfig) -> NormGrowthResult:
    """SGD with W ← (1 − lr λ) W − lr g on the normalized layer's W and W ← W − lr g elsewhere; the same
    initial weights and batches for every λ."""
    data = shared_digits()
    gen = torch.Generator().manual_seed(config.seed + 1)
    batches = [torch.randperm(data.n_train, generator=gen)[: config.batch_size] for _ in range(config.steps)]
    x_all, y_all = data.x_train.double(), data.y_train
    norms, ratios, losses = [], [], []
    growth_error = 0.0
    initial = 0.0
    for wd in config.weight_decays:
        model = _one_norm_net(config.norm, config.width, config.seed)
        w = model.linear.weight
        with torch.no_grad():
            w.mul_(config.init_scale)
        initial = float(w.detach().norm())
        row_n, row_r, row_l = [], [], []
        for step in range(config.steps):
            idx = batches[step]
            model.zero_grad()
            loss = nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
            loss.backward()
            with torch.no_grad():
                before = float(w.norm()) ** 2
                g2 = float(w.grad.norm()) ** 2
                row_r.append(config.lr * math.sqrt(g2) / math.sqrt(before))
                w.mul_(1.0 - config.lr * wd)
                for p in model.parameters():
                    p -= config.lr * p.grad
                after = float(w.norm()) ** 2
                if wd == 0.0:
                    growth_error = max(growth_error, abs(after - before - config.lr**2 * g2) / after)
            row_n.append(math.sqrt(after))
            row_l.append(float(loss.detach()))
        norms.append(row_n)
        ratios.append(row_r)
        losses.append(row_l)
    return NormGrowthResult(
        config, np.array(norms), np.array(ratios), np.array(losses), initial, growth_error
    )


# ----------------------------------------------------------------------------------------------------
# 5. Internal covariate shift: batch norm with injected random shifts (after Santurkar et al. 2018)
# ----------------------------------------------------------------------------------------------------

SHIFT_NETWORKS = ("none", "batch", "noisy batch")


class _NoisyBatchNorm(nn.Module):
    """BatchNorm1d whose training-mode output is shifted at random at every call:
    y ← a ⊙ y + b with a_j ~ U(1 − amp, 1 + amp) and b_j ~ N(0, amp²) per unit, fresh each step."""

    def __init__(self, width: int, amplitude: float, generator: torch.Generator):
        super().__init__()
        self.bn = nn.BatchNorm1d(width)
        self.amplitude = amplitude
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn(x)
        if self.training and self.amplitude > 0:
            width = y.shape[1]
            a = 1 + self.amplitude * (2 * torch.rand(1, width, generator=self.generator) - 1)
            b = self.amplitude * torch.randn(1, width, generator=self.generator)
            y = y * a + b
        return y


class ShiftConfig(Config):
    """Plain ReLU networks (He initialization, biases) trained with SGD + momentum 0.9 on digits: without
    normalization, with BatchNorm before each ReLU, and with BatchNorm followed by a random shift
    (``_NoisyBatchNorm``) that changes every layer's input distribution at every step.

    Args:
        depth: hidden layers.
        width: units per layer.
        lr: learning rate.
        steps: SGD steps.
        batch_size: examples per step.
        amplitude: the injected shift's size (scale U(1 ± amplitude), offset N(0, amplitude²)).
        seed: seed of the weights, the batches and the noise.
    """

    depth: int = integer(10, low=1, high=100)
    width: int = integer(64, low=2, high=512)
    lr: float = positive(0.1)
    steps: int = integer(300, low=1, high=100_000)
    batch_size: int = integer(64, low=2, high=1024)
    amplitude: float = real(0.25, low=0.0, high=1.0)
    seed: int = seed_field()


@dataclass(frozen=True)
class ShiftResult:
    """``final_loss[name]``: the cross-entropy on the whole training split after training, in evaluation
    mode (inf when the run diverged), for each of ``SHIFT_NETWORKS``."""

    config: ShiftConfig
    final_loss: dict[str, float]

    def diverged(self, name: str) -> bool:
        """Whether the run ``name`` ended with a non-finite (or chance-level or worse) loss."""
        return not self.final_loss[name] < math.log(10)


def _shift_network(name: str, config: ShiftConfig, generator: torch.Generator) -> nn.Sequential:
    layers: list[nn.Module] = []
    n = 64
    for _ in range(config.depth):
        layers.append(nn.Linear(n, config.width))
        if name == "batch":
            layers.append(nn.BatchNorm1d(config.width))
        elif name == "noisy batch":
            layers.append(_NoisyBatchNorm(config.width, config.amplitude, generator))
        layers.append(nn.ReLU())
        n = config.width
    layers.append(nn.Linear(n, 10))
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                layer.weight.normal_(0.0, math.sqrt(2.0 / layer.in_features), generator=generator)
                layer.bias.zero_()
    return model


def run_shift(config: ShiftConfig) -> ShiftResult:
    """Train the three networks from the same seed on the same batches; evaluate each on the training
    split (BatchNorm with its running statistics, no injected shift)."""
    data = shared_digits()
    final = {}
    for name in SHIFT_NETWORKS:
        generator = torch.Generator().manual_seed(config.seed)
        with initial_weights(config.seed):  # the constructors' default draws; the weights come from generator
            model = _shift_network(name, config, generator)
        batches = torch.Generator().manual_seed(config.seed + 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9)
        loss = torch.tensor(0.0)
        for _ in range(config.steps):
            idx = torch.randint(0, data.n_train, (config.batch_size,), generator=batches)
            loss = nn.functional.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            if not torch.isfinite(loss):
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            value = float(nn.functional.cross_entropy(model(data.x_train), data.y_train))
        final[name] = value if math.isfinite(value) and torch.isfinite(loss) else math.inf
    return ShiftResult(config, final)


# --- Adaptive optimizers (N2) ---

ADAM_EPS = 1e-8
"""Adam's ε: PyTorch's default (``torch.optim.Adam(eps=1e-8)``), which ``vgcourse.training`` uses."""

OPTIMIZER_NAMES = {"momentum": "SGD, momentum 0.9", "adam": "Adam"}
"""Readable names of the optimizers the adaptive half compares."""


class _StepSizes(Callback):
    """``train`` callback: std(ΔW) of each weight matrix at steps 0, k, 2k, ... (ΔW = that step's change),
    from a copy of the weights made after the step before."""

    def __init__(self, weights: list[nn.Parameter], every: int) -> None:
        self.weights, self.every = weights, every
        self.before = [w.detach().clone() for w in weights]
        self.rows: list[list[float]] = []

    def on_step(self, event: StepEvent) -> None:
        if event.step % self.every == 0:
            pairs = zip(self.weights, self.before, strict=True)
            self.rows.append([float((w.detach() - b).std()) for w, b in pairs])
        if (event.step + 1) % self.every == 0:
            self.before = [w.detach().clone() for w in self.weights]


class OptimizerGridConfig(Config):
    """The sigmoid chapter's two-circles network, trained by SGD with momentum and by Adam: each optimizer
    over a grid of learning rates at ``grid_seeds``, then at its best one at every seed of ``seeds``.
    Everything else is ``sigmoid_bound.CirclesConfig()``'s: 4 hidden sigmoid layers of 5 units,
    Xavier-uniform weights, batches of 32, 30 epochs (750 steps).

    Args:
        momentum_lrs: learning rates of SGD with momentum 0.9 (the sigmoid chapter's optimizer).
        adam_lrs: learning rates of Adam (β1 = 0.9, β2 = 0.999, ε = 1e-8: the same momentum, plus the
            per-parameter scaling).
        grid_seeds: the seeds every learning rate runs at; the best is the highest mean accuracy there.
        seeds: the seeds the best learning rate runs at (those also in ``grid_seeds`` are reused).
        every: measure the step sizes at every this many steps.
    """

    momentum_lrs: tuple[float, ...] = nonempty(positive(), default=(0.01, 0.1, 1.0), unique=True)
    adam_lrs: tuple[float, ...] = nonempty(positive(), default=(0.01, 0.03, 0.1), unique=True)
    grid_seeds: tuple[int, ...] = nonempty(integer(low=0), default=(0,), unique=True)
    seeds: tuple[int, ...] = nonempty(integer(low=0), default=(0, 1, 2), unique=True)

    every: int = integer(25, low=1)

    def circles_config(
        self, optimizer: str, lr: float, seeds: tuple[int, ...]
    ) -> sigmoid_bound.CirclesConfig:
        """The sigmoid chapter's ``CirclesConfig`` for one optimizer and learning rate at ``seeds``."""
        return sigmoid_bound.CirclesConfig(
            activations=("sigmoid",),
            seeds=seeds,
            optimizer=optimizer,
            lr=lr,
            monitor_every=self.every,
            device="cpu",
        )


@dataclass(frozen=True)
class OptimizerGridResult:
    """Validation accuracy and per-layer step sizes, per optimizer: over its grid of learning rates (R) at
    the grid seeds (G), and at its best learning rate at every seed (S).

    Args:
        config: the settings.
        optimizers: ("momentum", "adam").
        lrs: each optimizer's learning rates.
        grid_accuracy: per optimizer, (R, G) validation accuracy after the last epoch.
        grid_update_size: per optimizer, (R, G, L+1) std(ΔW)/lr per weight matrix averaged over the run
            (every ``config.every`` steps): how far one step moves a layer's weights, in learning rates.
        best_accuracy: per optimizer, (S,) validation accuracy at its best learning rate.
        best_update_size: per optimizer, (S, L+1) std(ΔW)/lr at its best learning rate.
        layer_names: "layer 1" ... "layer 4", "output".
    """

    config: OptimizerGridConfig
    optimizers: tuple[str, ...]
    lrs: tuple[tuple[float, ...], ...]
    grid_accuracy: tuple[np.ndarray, ...]
    grid_update_size: tuple[np.ndarray, ...]
    best_accuracy: tuple[np.ndarray, ...]
    best_update_size: tuple[np.ndarray, ...]
    layer_names: tuple[str, ...]

    def _o(self, optimizer: str) -> int:
        return self.optimizers.index(check_choice("optimizer", optimizer, self.optimizers))

    def _r(self, optimizer: str, lr: float) -> tuple[int, int]:
        o = self._o(optimizer)
        if lr not in self.lrs[o]:
            raise ValueError(f"lr {lr!r} is not in the grid of {optimizer}: {self.lrs[o]}")
        return o, self.lrs[o].index(lr)

    def best_lr(self, optimizer: str) -> float:
        """The learning rate with the highest validation accuracy averaged over the grid seeds (the first
        on a tie, the grid's smallest)."""
        o = self._o(optimizer)
        return self.lrs[o][int(np.argmax(self.grid_accuracy[o].mean(axis=1)))]

    def accuracy(self, optimizer: str, lr: float | None = None) -> np.ndarray:
        """Validation accuracy: (S,) over ``config.seeds`` at the best learning rate (``lr`` None), or (G,)
        over ``config.grid_seeds`` at ``lr``."""
        if lr is None:
            return self.best_accuracy[self._o(optimizer)]
        o, r = self._r(optimizer, lr)
        return self.grid_accuracy[o][r]

    def updates(self, optimizer: str, lr: float | None = None) -> np.ndarray:
        """std(ΔW)/lr per layer: (S, L+1) over ``config.seeds`` at the best learning rate (``lr`` None), or
        (G, L+1) over ``config.grid_seeds`` at ``lr``."""
        if lr is None:
            return self.best_update_size[self._o(optimizer)]
        o, r = self._r(optimizer, lr)
        return self.grid_update_size[o][r]

    def first_to_output(self, optimizer: str, lr: float | None = None) -> np.ndarray:
        """Layer 1's step size over the output layer's (per seed, as ``updates``)."""
        u = self.updates(optimizer, lr)
        return u[:, 0] / u[:, -1]

    def to_frame(self) -> object:
        """pandas DataFrame, one row per (optimizer, learning rate) of the grid: the validation accuracy and
        the step std(ΔW)/lr of layer 1 and of the output layer, each the mean over the grid seeds."""
        import pandas as pd

        rows = []
        for o, optimizer in enumerate(self.optimizers):
            for r, lr in enumerate(self.lrs[o]):
                upd = self.grid_update_size[o][r]
                rows.append(
                    {
                        "optimizer": OPTIMIZER_NAMES[optimizer],
                        "learning rate": lr,
                        "validation accuracy": self.grid_accuracy[o][r].mean(),
                        "step of layer 1 / lr": upd[:, 0].mean(),
                        "step of the output layer / lr": upd[:, -1].mean(),
                    }
                )
        return pd.DataFrame(rows)


def _circles_runs(config: OptimizerGridConfig, optimizer: str, lr: float, seeds: tuple[int, ...]) -> dict:
    """{seed: (validation accuracy, (L+1,) mean std(ΔW)/lr)} of the sigmoid chapter's two-circles run (its
    data, ``MLP``, initialization and ``train_config``, without the gradient monitor), once per seed."""
    cc = config.circles_config(optimizer, lr, seeds)
    data = circles(n_samples=cc.n_samples, noise=cc.noise, seed=cc.data_seed)
    out = {}
    for seed in seeds:
        model = MLP(data.in_features, data.n_classes, cc.depth, cc.width, "sigmoid")
        initialize(model, cc.init, activation="sigmoid", generator=torch.Generator().manual_seed(seed))
        steps = _StepSizes(
            [*(layer.linear.weight for layer in model.layers), model.head.weight], config.every
        )
        train_config = dataclasses.replace(cc.train_config(seed), monitor_every=None)
        history = train(model, data, train_config, callbacks=[steps])
        out[seed] = (history.final_val_accuracy, np.mean(steps.rows, axis=0) / lr)
    return out


def run_optimizer_grid(config: OptimizerGridConfig) -> OptimizerGridResult:
    """``sigmoid_bound.run_circles`` (sigmoid only) for every optimizer and learning rate of the grid at the
    grid seeds, then at each optimizer's best learning rate at the other seeds."""
    if not isinstance(config, OptimizerGridConfig):
        raise TypeError(f"config must be an OptimizerGridConfig; got {type(config).__name__}")
    optimizers = ("momentum", "adam")
    grids = (config.momentum_lrs, config.adam_lrs)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("acc", "upd", "best_acc", "best_upd")}
    for optimizer, lrs in zip(optimizers, grids, strict=True):
        runs = {lr: _circles_runs(config, optimizer, lr, config.grid_seeds) for lr in lrs}
        out["acc"].append(np.array([[runs[lr][s][0] for s in config.grid_seeds] for lr in lrs]))
        out["upd"].append(np.array([[runs[lr][s][1] for s in config.grid_seeds] for lr in lrs]))
        best = lrs[int(np.argmax(out["acc"][-1].mean(axis=1)))]
        missing = tuple(s for s in config.seeds if s not in config.grid_seeds)
        if missing:
            runs[best].update(_circles_runs(config, optimizer, best, missing))
        out["best_acc"].append(np.array([runs[best][s][0] for s in config.seeds]))
        out["best_upd"].append(np.array([runs[best][s][1] for s in config.seeds]))
    depth = sigmoid_bound.CirclesConfig().depth
    return OptimizerGridResult(
        config=config,
        optimizers=optimizers,
        lrs=grids,
        grid_accuracy=tuple(out["acc"]),
        grid_update_size=tuple(out["upd"]),
        best_accuracy=tuple(out["best_acc"]),
        best_update_size=tuple(out["best_upd"]),
        layer_names=(*(f"layer {i + 1}" for i in range(depth)), "output"),
    )


class AdamFirstStepConfig(Config):
    """Adam's first step, layer by layer, in a deeper copy of the sigmoid chapter's two-circles network
    (hidden sigmoid layers of 5 units, Xavier-uniform weights, a batch of 32).

    Args:
        depth: hidden layers (the sigmoid chapter's network has 4): deep enough that the first layers'
            gradients fall below Adam's ε.
        lr: Adam's learning rate.
        seeds: each seeds the weights and the first minibatch.
    """

    depth: int = integer(20, low=1, high=100)
    lr: float = positive(0.01)
    seeds: tuple[int, ...] = nonempty(integer(low=0), default=(0, 1, 2), unique=True)


@dataclass(frozen=True)
class AdamFirstStepResult:
    """Per layer, the gradient and Adam's first step on it, for each seed (S) and layer (L+1).

    At step 1 Adam's m̂ = g and v̂ = g², so each weight moves by lr·|g|/(|g| + ε): by lr whenever
    |g| ≫ ε, whatever the gradient's size, and by lr·|g|/ε when |g| ≪ ε.

    Args:
        config: the settings.
        layer_names: "layer 1" ... "layer L", "output".
        grad_rms: (S, L+1) root mean square of the weight gradient's entries.
        step: (S, L+1) root mean square of the first step's entries in learning rates, rms(ΔW)/lr,
            measured on the float32 weights (a step below a weight's float32 resolution is lost).
        predicted: (S, L+1) rms over the entries of |g|/(|g| + ε): the update rule's value.
    """

    config: AdamFirstStepConfig
    layer_names: tuple[str, ...]
    grad_rms: np.ndarray
    step: np.ndarray
    predicted: np.ndarray

    @property
    def eps(self) -> float:
        """Adam's ε."""
        return ADAM_EPS

    def layers_below(self, gradient: float) -> np.ndarray:
        """(S,) the number of layers whose gradient rms is below ``gradient``."""
        return (self.grad_rms < check_float("gradient", gradient, 0.0, strict_minimum=True)).sum(axis=1)


def _keep_grad(store: dict[int, Tensor], index: int, grad: Tensor) -> None:
    store[index] = grad.detach().clone()


def run_adam_first_step(config: AdamFirstStepConfig) -> AdamFirstStepResult:
    """One Adam step (``vgcourse.training.train`` with steps=1) of the deep two-circles sigmoid network;
    a tensor hook keeps every weight gradient during the backward pass (each entry enters the prediction)."""
    if not isinstance(config, AdamFirstStepConfig):
        raise TypeError(f"config must be an AdamFirstStepConfig; got {type(config).__name__}")
    base = sigmoid_bound.CirclesConfig()
    data = circles(n_samples=base.n_samples, noise=base.noise, seed=base.data_seed)
    grad_rms, step, predicted = [], [], []
    for seed in config.seeds:
        model = MLP(data.in_features, data.n_classes, config.depth, base.width, "sigmoid")
        initialize(model, base.init, activation="sigmoid", generator=torch.Generator().manual_seed(seed))
        weights = [layer.linear.weight for layer in model.layers] + [model.head.weight]
        before = [w.detach().clone() for w in weights]
        grads: dict[int, Tensor] = {}
        hooks = [w.register_hook(functools.partial(_keep_grad, grads, i)) for i, w in enumerate(weights)]
        try:
            train(
                model,
                data,
                TrainConfig(
                    steps=1,
                    batch_size=base.batch_size,
                    lr=config.lr,
                    optimizer="adam",
                    monitor_every=None,
                    seed=seed,
                    device="cpu",
                ),
            )
        finally:
            for hook in hooks:
                hook.remove()
        with torch.no_grad():
            g = [grads[i].double() for i in range(len(weights))]
            moved = [(w.detach() - b).double() for w, b in zip(weights, before, strict=True)]
            grad_rms.append([float(x.square().mean().sqrt()) for x in g])
            step.append([float(x.square().mean().sqrt()) / config.lr for x in moved])
            predicted.append([float((x.abs() / (x.abs() + ADAM_EPS)).square().mean().sqrt()) for x in g])
    return AdamFirstStepResult(
        config=config,
        layer_names=(*(f"layer {i + 1}" for i in range(config.depth)), "output"),
        grad_rms=np.array(grad_rms),
        step=np.array(step),
        predicted=np.array(predicted),
    )


class FarLagConfig(Config):
    """The recurrent chapter's vanilla RNN (``recurrent_networks.build_adding_model("rnn", ...)``) at
    initialization, on one batch of its adding problem: W_hh's gradient split by lag.

    Args:
        seq_len: T, the sequence length.
        hidden_size: H.
        batch_size: sequences in the batch.
        far_from: lags k >= far_from count as far.
        seeds: each seeds the weights and the batch.
    """

    seq_len: int = integer(60, low=3, high=1000)
    hidden_size: int = integer(32, low=1, high=512)
    batch_size: int = integer(64, low=1)
    far_from: int = integer(20, low=1)
    seeds: tuple[int, ...] = nonempty(integer(low=0), default=(0, 1, 2), unique=True)

    def check(self) -> None:
        if self.far_from >= self.seq_len:
            raise ValueError(f"far_from must be below seq_len ({self.seq_len}); got {self.far_from}")


@dataclass(frozen=True)
class FarLagResult:
    """W_hh's gradient G = Σ_k G_k, with G_k = δ_{T-k} h_{T-k-1}^T the term of lag k, and how much the far
    terms F = Σ_{k >= far_from} G_k change each optimizer's first step.

    SGD's step is -lr·G, so the far terms change it by ‖F‖/‖G‖. Adam's first step is -lr·s(G) with
    s(g) = g/(|g| + ε) entrywise, so they change it by ‖s(G) - s(G - F)‖/‖s(G)‖.

    Args:
        config: the settings.
        lag_norm: (S, T) ‖G_k‖_F for the lags k = 0..T-1.
        autograd_error: (S,) max |Σ_k G_k - autograd's ∂L/∂W_hh| / max |∂L/∂W_hh|: the split's check.
        sgd_share: (S,) ‖F‖/‖G‖.
        adam_share: (S,) ‖s(G) - s(G - F)‖/‖s(G)‖.
    """

    config: FarLagConfig
    lag_norm: np.ndarray
    autograd_error: np.ndarray
    sgd_share: np.ndarray
    adam_share: np.ndarray


def _lag_terms(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(T, H, H) the term of each lag k = 0..T-1 in ∂L/∂W_hh (float64), and autograd's ∂L/∂W_hh.

    The RNN is unrolled by hand, h_t = tanh(W_ih x_t + b_ih + W_hh^(t) h_{t-1} + b_hh), with its own copy
    W_hh^(t) of the same matrix at each step t, so ∂L/∂W_hh^(t) is step t's term (lag T - t).
    """
    rnn, head = model.rnn, model.head
    w_ih = rnn.weight_ih_l0.detach().double()
    w_hh = rnn.weight_hh_l0.detach().double()
    bias = (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach().double()
    xd = x.double()
    copies = [w_hh.clone().requires_grad_(True) for _ in range(x.shape[1])]
    h = torch.zeros(x.shape[0], w_hh.shape[0], dtype=torch.float64)
    for t, w in enumerate(copies):
        h = torch.tanh(xd[:, t] @ w_ih.T + h @ w.T + bias)
    out = h @ head.weight.detach().double().T + head.bias.detach().double()
    terms = torch.autograd.grad(torch.nn.functional.mse_loss(out, y.double()), copies)
    model.zero_grad(set_to_none=True)
    torch.nn.functional.mse_loss(model(x), y).backward()
    return torch.stack(terms[::-1]), rnn.weight_hh_l0.grad.detach().double()


def _adam_direction(g: Tensor) -> Tensor:
    """Adam's first step in learning rates, g/(|g| + ε) entrywise."""
    return g / (g.abs() + ADAM_EPS)


def run_far_lag(config: FarLagConfig) -> FarLagResult:
    """Split ∂L/∂W_hh of a fresh vanilla RNN by lag at each seed (one backward pass, no training)."""
    if not isinstance(config, FarLagConfig):
        raise TypeError(f"config must be a FarLagConfig; got {type(config).__name__}")
    lag_norm, error, sgd, adam = [], [], [], []
    for seed in config.seeds:
        model = recurrent_networks.build_adding_model("rnn", config.hidden_size, seed)
        data = recurrent_networks.adding_problem(
            n_samples=2 * config.batch_size, seq_len=config.seq_len, val_fraction=0.5, seed=seed
        )
        terms, autograd = _lag_terms(model, data.x_train, data.y_train)
        total, far = terms.sum(0), terms[config.far_from :].sum(0)
        lag_norm.append(terms.flatten(1).norm(dim=1).numpy())
        error.append(float((total - autograd).abs().max() / autograd.abs().max()))
        sgd.append(float(far.norm() / total.norm()))
        step = _adam_direction(total)
        adam.append(float((step - _adam_direction(total - far)).norm() / step.norm()))
    return FarLagResult(
        config=config,
        lag_norm=np.array(lag_norm),
        autograd_error=np.array(error),
        sgd_share=np.array(sgd),
        adam_share=np.array(adam),
    )


class DeadUnitsConfig(Config):
    """The ReLU chapter's digits network with every bias started at ``bias_init`` (its frozen-units
    setting: 4 hidden ReLU layers of 64 units, He-normal weights, bias -2), trained by Adam.

    Args:
        lr: Adam's learning rate (its usual default, 1e-3).
        steps: Adam steps, batches of 64.
        bias_init: the value every bias starts at.
        seeds: each seeds the weights and the minibatch order.
    """

    lr: float = positive(1e-3)
    steps: int = integer(300, low=1)
    bias_init: float = real(-2.0)
    seeds: tuple[int, ...] = nonempty(integer(low=0), default=(0,), unique=True)

    def dying_config(self, seed: int) -> relu_dying_units.DyingConfig:
        """The ReLU chapter's ``DyingConfig`` of the network (its SGD learning rate is not used here)."""
        return relu_dying_units.DyingConfig(
            bias_init=self.bias_init, steps=self.steps, seed=seed, device="cpu"
        )


@dataclass(frozen=True)
class DeadUnitsResult:
    """Units dead at initialization (z <= 0 on the whole training set) and what Adam did to them, per seed.

    Args:
        config: the settings.
        units: hidden units in the network.
        dead_at_start: (S,) hidden units dead at initialization.
        silent: (S,) of those, units that did not fire on any training batch of the run.
        silent_identical: (S,) of those, units whose incoming weights and bias are bit-identical at the end.
        revived: (S,) units dead at the start that fired at least once (their inputs changed).
        alive_moved: (S,) median over the units alive at the start of rms(Δw)/lr, how far their incoming
            weights moved over the run, in learning rates.
        val_accuracy: (S,) validation accuracy at the end.
    """

    config: DeadUnitsConfig
    units: int
    dead_at_start: np.ndarray
    silent: np.ndarray
    silent_identical: np.ndarray
    revived: np.ndarray
    alive_moved: np.ndarray
    val_accuracy: np.ndarray


def _watch_firing(store: list[Tensor], index: int, module: nn.Module, args: object, output: Tensor) -> None:
    if torch.is_grad_enabled():  # training forward passes only (evaluation runs without grad)
        store[index] |= (output > 0).any(dim=0)


def run_dead_units(config: DeadUnitsConfig) -> DeadUnitsResult:
    """Train with Adam (``vgcourse.training.train``), watching which units fire on every training batch.

    A unit that never fires has f'(z) = 0 on every batch, so its incoming weights get gradient exactly 0
    at every step: Adam's m and v stay 0 and its step lr·m̂/(√v̂ + ε) is exactly 0.
    """
    if not isinstance(config, DeadUnitsConfig):
        raise TypeError(f"config must be a DeadUnitsConfig; got {type(config).__name__}")
    counts, moved, accuracy = [], [], []
    units = 0
    for seed in config.seeds:
        base = config.dying_config(seed)
        data = shared_digits(base.data_seed)
        model = MLP(data.in_features, data.n_classes, base.depth, base.width, base.activation)
        initialize(
            model,
            base.init,
            activation=base.activation,
            bias=base.bias_init,
            generator=torch.Generator().manual_seed(seed),
        )
        dead = relu_dying_units.dead_unit_masks(model, data.x_train)
        units = sum(int(mask.numel()) for mask in dead)
        before = [(m.linear.weight.detach().clone(), m.linear.bias.detach().clone()) for m in model.layers]
        fired = [torch.zeros_like(mask) for mask in dead]
        handles = [
            m.register_forward_hook(functools.partial(_watch_firing, fired, i))
            for i, m in enumerate(model.layers)
        ]
        try:
            history = train(
                model,
                data,
                TrainConfig(
                    steps=config.steps,
                    batch_size=base.batch_size,
                    lr=config.lr,
                    optimizer="adam",
                    monitor_every=None,
                    eval_every=config.steps,
                    seed=seed,
                    device="cpu",
                ),
            )
        finally:
            for handle in handles:
                handle.remove()
        row = np.zeros(4, dtype=np.int64)
        change = []
        for m, (w, b), mask, hit in zip(model.layers, before, dead, fired, strict=True):
            same = (m.linear.weight.detach() == w).all(dim=1) & (m.linear.bias.detach() == b)
            silent = mask & ~hit
            row += [int(mask.sum()), int(silent.sum()), int((silent & same).sum()), int((mask & hit).sum())]
            change.append((m.linear.weight.detach() - w).square().mean(dim=1).sqrt()[~mask] / config.lr)
        counts.append(row)
        moved.append(float(torch.cat(change).median()))
        accuracy.append(history.final_val_accuracy)
    table = np.array(counts)
    return DeadUnitsResult(
        config=config,
        units=units,
        dead_at_start=table[:, 0],
        silent=table[:, 1],
        silent_identical=table[:, 2],
        revived=table[:, 3],
        alive_moved=np.array(moved),
        val_accuracy=np.array(accuracy),
    )


__all__ = sorted(
    [
        *__all__,
        "ADAM_EPS",
        "DeadUnitsConfig",
        "DeadUnitsResult",
        "FarLagConfig",
        "FarLagResult",
        "AdamFirstStepConfig",
        "AdamFirstStepResult",
        "OPTIMIZER_NAMES",
        "OptimizerGridConfig",
        "OptimizerGridResult",
        "run_dead_units",
        "run_far_lag",
        "run_adam_first_step",
        "run_optimizer_grid",
    ]
)


class DiagnoseConfig(Config):
    """``vgcourse.diagnose`` on the sigmoid chapter's two-circles network at initialization, once per
    optimizer: one step on one batch of training points.

    Args:
        momentum_lr: learning rate of SGD with momentum 0.9.
        adam_lr: learning rate of Adam.
        batch_size: training points in the batch (the first ones of the training split).
        seed: seeds the weights.
    """

    momentum_lr: float = positive(0.01)
    adam_lr: float = positive(0.03)
    batch_size: int = integer(64, low=2)
    seed: int = integer(0, low=0)


@dataclass(frozen=True)
class DiagnoseResult:
    """The two reports, SGD with momentum first.

    Args:
        config: the settings.
        reports: {"momentum": report, "adam": report} (``vgcourse.diagnose.DiagnosisReport``).
    """

    config: DiagnoseConfig
    reports: dict[str, Any]

    def update_ratios(self, optimizer: str) -> np.ndarray:
        """(L+1,) the update:data ratio of each layer under ``optimizer``."""
        check_choice("optimizer", optimizer, tuple(self.reports))
        return self.reports[optimizer].values("update_ratio")

    def kinds(self, optimizer: str) -> list[str]:
        """The kinds of the findings (problems and notes) under ``optimizer``, most urgent first."""
        check_choice("optimizer", optimizer, tuple(self.reports))
        return [finding.kind for finding in self.reports[optimizer].findings]


def run_diagnose(config: DiagnoseConfig) -> DiagnoseResult:
    """``diagnose(model, CrossEntropyLoss(), batch, optimizer=..., lr=...)`` for SGD with momentum and Adam,
    on the same fresh network (``diagnose`` works on a copy) and batch."""
    if not isinstance(config, DiagnoseConfig):
        raise TypeError(f"config must be a DiagnoseConfig; got {type(config).__name__}")
    from vgcourse.diagnose import diagnose

    base = sigmoid_bound.CirclesConfig()
    data = circles(n_samples=base.n_samples, noise=base.noise, seed=base.data_seed)
    model = MLP(data.in_features, data.n_classes, base.depth, base.width, "sigmoid")
    initialize(model, base.init, activation="sigmoid", generator=torch.Generator().manual_seed(config.seed))
    batch = (data.x_train[: config.batch_size], data.y_train[: config.batch_size])
    reports = {
        name: diagnose(model, nn.CrossEntropyLoss(), batch, optimizer=name, lr=lr)
        for name, lr in (("momentum", config.momentum_lr), ("adam", config.adam_lr))
    }
    return DiagnoseResult(config=config, reports=reports)


__all__ = sorted([*__all__, "DiagnoseConfig", "DiagnoseResult", "run_diagnose"])


class NormDiagnoseConfig(Config):
    """``vgcourse.diagnose`` on the first half's plain batch-normalized network (``plain_normalized_stack``,
    digits): one SGD step on one batch.

    Args:
        depth: layers.
        width: units per layer.
        norm: the normalization, one of ``NORM_KINDS`` other than "none".
        lr: plain SGD's learning rate.
        batch_size: training images in the batch (the first ones of the split).
        seed: seeds the weights (``models.initial_weights``).
    """

    depth: int = integer(8, low=1, high=64)
    width: int = integer(32, low=2, high=256)
    norm: str = one_of("batch", "layer", "rms", default="batch")
    lr: float = positive(0.1)
    batch_size: int = integer(128, low=2)
    seed: int = integer(0, low=0)


@dataclass(frozen=True)
class NormDiagnoseResult:
    """The report and, computed directly from the weights, each normalization-fed layer's lr/‖W‖².

    Args:
        config: the settings.
        report: the ``DiagnosisReport``.
        effective_lr: (L,) lr/‖W_l‖² of the layers feeding a normalization, input to output.
    """

    config: NormDiagnoseConfig
    report: Any
    effective_lr: np.ndarray


def run_norm_diagnose(config: NormDiagnoseConfig) -> NormDiagnoseResult:
    """``diagnose(model, CrossEntropyLoss(), batch, optimizer="sgd", lr=...)`` on a fresh
    ``plain_normalized_stack`` (ReLU), and lr/‖W‖² of its normalization-fed weights."""
    if not isinstance(config, NormDiagnoseConfig):
        raise TypeError(f"config must be a NormDiagnoseConfig; got {type(config).__name__}")
    from vgcourse.diagnose import diagnose
    from vgcourse.models import initial_weights

    data = shared_digits(0)
    with initial_weights(config.seed):
        model = plain_normalized_stack(config.depth, config.width, config.norm, "relu")
    batch = (data.x_train[: config.batch_size], data.y_train[: config.batch_size])
    report = diagnose(model, nn.CrossEntropyLoss(), batch, optimizer="sgd", lr=config.lr)
    with torch.no_grad():
        squares = [float(linear.weight.double().square().sum()) for linear in model.linears]
    return NormDiagnoseResult(config=config, report=report, effective_lr=config.lr / np.array(squares))


__all__ = sorted([*__all__, "NormDiagnoseConfig", "NormDiagnoseResult", "run_norm_diagnose"])
