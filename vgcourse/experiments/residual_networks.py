"""The residual-networks chapter: why a skip connection lets the gradient through, measured.

A block computes x_{l+1} = x_l + α F(x_l), Jacobian I + α J_l; L blocks multiply to ∏_l (I + α J_l), a sum
over the 2^L paths that take the identity or the branch at each block (the plain twin keeps J_L⋯J_1).
A He-initialized branch has gain g = E‖F(x)‖²/E‖x‖² = 1 and is uncorrelated with x, so an unnormalized
stack grows E‖x‖² by 1 + α² g per block: 2^L at α = 1, at most e at α = 1/√L, 1 with zero-init branches.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vgcourse._validation import check_choice, check_int, check_tensor
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
    relative_error,
    seed_field,
)
from vgcourse.data import DataSplit, mnist, shared_digits
from vgcourse.models import NORMS, ResidualMLP, check_norm_sizes, keep_outputs, named_layers
from vgcourse.training import OPTIMIZERS, History, TrainConfig, evaluate, train

INITS = ("he", "kaiming_all")
DTYPES = ("float32", "float64")
DATASETS = ("digits", "mnist")
_BRANCH_GAIN = {"he": 1.0, "kaiming_all": 2.0}  # E‖F(x)‖² / E‖x‖² of one branch at initialization


# Networks: what to build, how to initialize it, one forward and backward pass along the stream
class NetworkSpec(Config):
    """One kind of ``ResidualMLP`` (ReLU) of the chapter. ``post_activation``: the original ResNet block
    φ(x_l + α F(x_l)), Jacobian D(I + α ∂F/∂x); False: the clean path I + α ∂F/∂x (pre-activation ResNet)."""

    skip: bool = flag(True)  # x_{l+1} = x_l + α F(x_l); False: the plain twin x_{l+1} = F(x_l)
    norm: str | None = one_of(*NORMS, default=None, optional=True)  # a norm after each Linear inside F
    # α: None (1), a number > 0, or "inv_sqrt_depth" (1/√L)
    branch_scale: float | str | None = positive(None, names=("inv_sqrt_depth",), optional=True)
    zero_init_last: bool = flag(False)  # each branch's last layer (or its norm's weight) starts at 0
    init: str = one_of(*INITS, default="he")  # Var(W) = 2/n_in after a ReLU, else 1/n_in; kaiming_all: 2/n_in
    post_activation: bool = flag(False)  # a ReLU after the addition

    def check(self) -> None:
        if not self.skip and (self.branch_scale is not None or self.zero_init_last or self.post_activation):
            raise ValueError(
                "branch_scale, zero_init_last and post_activation need skip=True: a plain network has no "
                "branch to scale and no addition to follow"
            )

    @property
    def label(self) -> str:
        """A short name for legends: "plain", "residual + BN", "residual, α = 1/√L", ..."""
        scale = self.branch_scale
        parts = [
            ("residual" if self.skip else "plain") + {None: "", "batch": " + BN"}.get(self.norm, " + LN"),
            "" if scale is None else "α = " + ("1/√L" if scale == "inv_sqrt_depth" else f"{scale:g}"),
            "zero-init" * self.zero_init_last,
            "Kaiming on every layer" * (self.init == "kaiming_all"),
            "ReLU after the addition" * self.post_activation,
        ]
        return ", ".join(part for part in parts if part)

    def alpha(self, depth: int) -> float:
        """The branch scale α of a network of ``depth`` blocks (1 for the plain twin)."""
        if self.branch_scale is None or not self.skip:
            return 1.0
        return 1.0 / math.sqrt(depth) if self.branch_scale == "inv_sqrt_depth" else float(self.branch_scale)

    def growth_per_block(self, depth: int) -> float | None:
        """Predicted factor of E‖x‖² per block at initialization: 1 + α² g with skip, g without, 1 with
        zero-init; None with a norm (it adds a constant instead) or a ReLU after the addition."""
        if self.norm is not None or self.post_activation:
            return None
        g = _BRANCH_GAIN[self.init]
        return 1.0 if self.zero_init_last else (1.0 + self.alpha(depth) ** 2 * g if self.skip else g)


PLAIN = NetworkSpec(skip=False)
PLAIN_BN = NetworkSpec(skip=False, norm="batch")
RESIDUAL = NetworkSpec()
RESIDUAL_BN = NetworkSpec(norm="batch")
RESIDUAL_SCALED = NetworkSpec(branch_scale="inv_sqrt_depth")
RESIDUAL_ZERO = NetworkSpec(zero_init_last=True)
RESIDUAL_KAIMING = NetworkSpec(init="kaiming_all")
POST_ACTIVATION = NetworkSpec(post_activation=True)
POST_ACTIVATION_BN = NetworkSpec(norm="batch", post_activation=True)
SWEEP_NETWORKS = (PLAIN, PLAIN_BN, RESIDUAL, RESIDUAL_BN, RESIDUAL_SCALED, RESIDUAL_ZERO)
VARIANCE_NETWORKS = (RESIDUAL_KAIMING, RESIDUAL, RESIDUAL_BN, RESIDUAL_SCALED, RESIDUAL_ZERO, PLAIN)


def n_linear_layers(depth: int) -> int:
    """Linear layers of a ``ResidualMLP`` with ``depth`` blocks: stem + 2 per block + head = 2L + 2."""
    return 2 * check_int("depth", depth, minimum=1) + 2


def init_residual_network(
    model: ResidualMLP, init: str = "he", *, generator: torch.Generator | None = None
) -> ResidualMLP:
    """Draw every Linear weight from N(0, gain/n_in) in place, biases 0; norms and all-zero layers are kept.
    "he": gain 2 after a ReLU (each fc2), else 1: each layer keeps E[x²]; "kaiming_all": gain 2 everywhere."""
    check_config(model, ResidualMLP, "model")
    check_choice("init", init, INITS)
    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, nn.Linear) or not module.weight.any():
                continue
            gain = 2.0 if (name.endswith("fc2") or init == "kaiming_all") else 1.0
            module.weight.normal_(0.0, math.sqrt(gain / module.in_features), generator=generator)
            if module.bias is not None:
                module.bias.zero_()
    return model


def build_network(
    spec: NetworkSpec,
    *,
    depth: int,
    width: int,
    in_features: int,
    out_features: int,
    seed: int = 0,
    dtype: str = "float32",
) -> ResidualMLP:
    """A ``ResidualMLP`` as ``spec`` says, weights by ``init_residual_network`` from ``seed`` (shared by
    networks of one seed, depth and width whatever their skip and norm)."""
    check_config(spec, NetworkSpec, "spec")
    check_int("seed", seed, minimum=0)
    check_choice("dtype", dtype, DTYPES)
    keys = ("norm", "skip", "branch_scale", "zero_init_last", "post_activation")
    model = ResidualMLP(
        in_features, out_features, depth, width, "relu", **{k: getattr(spec, k) for k in keys}, seed=seed
    )
    init_residual_network(model, spec.init, generator=torch.Generator().manual_seed(seed))
    return model.to(getattr(torch, dtype))


@dataclass(frozen=True)
class StreamPass:
    """One forward and backward pass read along the stream: x_0 the stem's output, x_l block l's output.
    Where the signal leaves the float range (deep unnormalized stacks) E[x_l²] is inf, what follows NaN."""

    second_moment: np.ndarray  # (L + 1,) E[x_l²] over the batch and the units
    stream_grad: np.ndarray  # (L + 1,) ‖∂J/∂x_l‖ (Frobenius norm over the batch)
    weight_grad: np.ndarray  # (2L + 2,) ‖∂J/∂W‖ of each of named_layers(model): stem, block 1 fc1, ..., head
    loss: float  # the cross-entropy J
    grad_ratio: float  # ‖∂J/∂x_0‖ / ‖∂J/∂x_L‖: the backward signal entering the first block over the last's
    variance_ratio: float  # E[x_L²] / E[x_0²]: how much the blocks grow the forward signal


def stream_pass(model: ResidualMLP, x: Tensor, y: Tensor) -> StreamPass:
    """Cross-entropy of ``model`` on (x, y) in training mode, back-propagated: E[x_l²] and ‖∂J/∂x_l‖ along
    the stream, ‖∂J/∂W‖ per layer. The weights do not change (their .grad is left filled)."""
    check_config(model, ResidualMLP, "model")
    check_tensor("x", x, ndim=2)
    check_tensor("y", y, ndim=1)
    weight = model.stem.weight
    x = x.to(device=weight.device, dtype=weight.dtype)
    model.train()
    model.zero_grad(set_to_none=True)
    with torch.enable_grad(), keep_outputs([model.stem, *model.blocks]) as stream:
        loss = F.cross_entropy(model(x), y.to(weight.device))
        loss.backward()
    moments = np.array([float(h.detach().double().square().mean()) for h in stream])
    grads = np.array([float(torch.linalg.vector_norm(h.grad.double())) for h in stream])
    layers = [module for _, module in named_layers(model)]
    weight_grads = np.array([float(torch.linalg.vector_norm(m.weight.grad.double())) for m in layers])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = float(grads[0] / grads[-1]), float(moments[-1] / moments[0])
    return StreamPass(moments, grads, weight_grads, float(loss.detach()), *ratios)


def load_image_data(dataset: str = "digits", seed: int = 0) -> DataSplit:
    """sklearn's 8×8 "digits" (one copy per process) or the shipped 10,000-image "mnist"; ``seed`` splits."""
    check_choice("dataset", dataset, DATASETS)
    return shared_digits(seed) if dataset == "digits" else mnist(seed=seed)


def _networks(default: tuple[NetworkSpec, ...]) -> Any:
    return nonempty(instance_of(NetworkSpec), default=default, unique=True)


def _check_increasing(depths: tuple[int, ...]) -> None:
    if list(depths) != sorted(set(depths)):
        raise ValueError(f"depths must be increasing and distinct; got {depths}")


def _build(spec: NetworkSpec, data: Any, **options: Any) -> ResidualMLP:
    """``build_network`` sized for ``data`` (a ``DataSplit``, or (in_features, out_features))."""
    n_in, n_out = data if isinstance(data, tuple) else (data.in_features, data.n_classes)
    return build_network(spec, in_features=n_in, out_features=n_out, **options)


class _Seeds(Config):
    """Each of ``networks`` built ``n_seeds`` times, from seeds seed, seed + 1, ..."""

    networks: tuple[NetworkSpec, ...] = _networks(SWEEP_NETWORKS)
    width: int = integer(64, low=1, high=2048)
    n_seeds: int = positive(3, integer=True)
    seed: int = seed_field()

    def check(self) -> None:
        check_norm_sizes((spec.norm for spec in self.networks), self.width)

    def _model(self, spec: NetworkSpec, s: int, data: Any, depth: int, dtype: str = "float64") -> ResidualMLP:
        return _build(spec, data, depth=depth, width=self.width, seed=self.seed + s, dtype=dtype)

    def _grid(self, values: Any, name: str, last: str, coords: Any) -> Grid:
        """A (network, seed, ``last``) Grid of one value per network and seed."""
        seeds = tuple(range(self.seed, self.seed + self.n_seeds))
        return Grid(values, name=name, network=self.networks, seed=seeds, **{last: tuple(coords)})


# The product of block Jacobians, expanded by path length
class PathExpansionConfig(Config):
    """Expand ∂x_L/∂x_0 = ∏_l (I + α J_l) of one input by path length, for unnormalized networks (BatchNorm
    couples a batch's examples: no per-example Jacobian). ``seed`` seeds the weights and the input."""

    depth: int = integer(20, low=1, high=200)
    width: int = integer(64, low=1, high=1024)
    networks: tuple[NetworkSpec, ...] = _networks((PLAIN, RESIDUAL, RESIDUAL_SCALED))
    seed: int = seed_field()

    def check(self) -> None:
        for spec in self.networks:
            if spec.norm is not None:
                raise ValueError(f"the path expansion needs unnormalized networks; {spec.label!r} has a norm")


@dataclass(frozen=True)
class PathExpansionResult:
    """‖P_k‖_F / √n, the RMS gain of the paths through exactly k branches (float64): P_k sums the
    α^k-weighted ordered products of k of the L branch Jacobians, and ∂x_L/∂x_0 = Σ_k P_k."""

    config: PathExpansionConfig
    path_gain: Grid  # axes network, length k = 0..L
    predicted_gain: Grid  # √C(L, k) (α² g)^(k/2) (residual), g^(L/2) at k = L (plain), 1 at k = 0 (zero-init)
    total_gain: np.ndarray  # (n_networks,) ‖∂x_L/∂x_0‖_F / √n
    relative_error: np.ndarray  # (n_networks,) ‖Σ_k P_k − J‖_F / ‖J‖_F, J autograd's (0 if equal; inf: J = 0)


def run_path_expansion(config: PathExpansionConfig) -> PathExpansionResult:
    """Build J_l = W_2 diag(1[W_1 x_l + b_1 > 0]) W_1 for one input and accumulate P_k ← P_k + α J_l P_{k-1}
    (plain: P_k ← J_l P_{k-1}) block by block; compare Σ_k P_k with autograd's Jacobian of the blocks."""
    check_config(config, PathExpansionConfig)
    depth, n = config.depth, config.width
    gen = torch.Generator().manual_seed(config.seed + 10_000)
    x0 = torch.randn(n, dtype=torch.float64, generator=gen)
    lengths = np.arange(depth + 1)
    n_paths = np.array([math.comb(depth, k) for k in range(depth + 1)], dtype=float)
    gains, predicted, totals, errors = [], [], [], []
    for spec in config.networks:
        model = _build(spec, (n, 1), depth=depth, width=n, seed=config.seed, dtype="float64")
        alpha = spec.alpha(depth)
        eye = torch.eye(n, dtype=torch.float64)
        paths = [eye] + [torch.zeros(n, n, dtype=torch.float64) for _ in range(depth)]
        h = x0
        with torch.no_grad():
            for block in model.blocks:
                mask = (block.fc1(h) > 0).to(torch.float64)
                jac = block.fc2.weight @ (mask[:, None] * block.fc1.weight)
                if spec.skip:  # P_k + α J P_{k-1} for k = 1..L
                    paths = paths[:1] + [p + alpha * jac @ q for p, q in zip(paths[1:], paths, strict=False)]
                else:
                    paths = [torch.zeros_like(eye)] + [jac @ q for q in paths[:-1]]
                h = block(h)
            total = torch.stack(paths).sum(0)
        reference = torch.autograd.functional.jacobian(nn.Sequential(*model.blocks), x0)
        gains.append([float(torch.linalg.norm(p)) / math.sqrt(n) for p in paths])
        scale = float(torch.linalg.norm(reference))
        totals.append(scale / math.sqrt(n))
        errors.append(relative_error(float(torch.linalg.norm(total - reference)), scale))
        g, rms = _BRANCH_GAIN[spec.init], np.zeros(depth + 1)
        if not spec.skip:
            rms[depth] = g ** (depth / 2)
        elif spec.zero_init_last:
            rms[0] = 1.0
        else:
            rms[:] = np.sqrt(n_paths * (alpha**2 * g) ** lengths)
        predicted.append(rms)
    axes = {"network": config.networks, "length": tuple(range(depth + 1))}
    return PathExpansionResult(
        config,
        Grid(np.array(gains), name="path gain", **axes),
        Grid(np.array(predicted), name="predicted path gain", **axes),
        np.array(totals),
        np.array(errors),
    )


# Forward: E[x_l²] block by block
class ForwardVarianceConfig(_Seeds):
    """E[x_l²] after each block at initialization on a digits batch (float64); seeds seed, seed + 1, ..."""

    depth: int = integer(50, low=1, high=500)
    networks: tuple[NetworkSpec, ...] = _networks(VARIANCE_NETWORKS)
    width: int = integer(128, low=1, high=2048)
    batch_size: int = integer(256, low=2, high=1437)


@dataclass(frozen=True)
class ForwardVarianceResult:
    """E[x_l²] of each network after l blocks (l = 0: the stem's output)."""

    config: ForwardVarianceConfig
    second_moment: Grid  # E[x_l²], axes network, seed, block l = 0..L
    ratio: Grid  # E[x_l²] / E[x_0²], same axes
    predicted: Grid  # (1 + α² g)^l; normalized branch (E[F²] = 1): (q_0 + α² l)/q_0, q_0 the measured E[x_0²]


def run_forward_variance(config: ForwardVarianceConfig) -> ForwardVarianceResult:
    """Run each network forward (training mode, no gradients) and record E[x_l²] after every block."""
    check_config(config, ForwardVarianceConfig)
    data = load_image_data("digits")
    x = data.x_train[: config.batch_size].double()
    depth, blocks = config.depth, np.arange(config.depth + 1)
    out = np.empty((len(config.networks), config.n_seeds, depth + 1))
    predicted = np.empty((len(config.networks), depth + 1))
    for i, spec in enumerate(config.networks):
        for s in range(config.n_seeds):
            model = config._model(spec, s, data, depth)
            with torch.no_grad(), keep_outputs([model.stem, *model.blocks]) as stream:
                model(x)
            out[i, s] = torch.stack([h.square().mean() for h in stream]).numpy()
        growth = spec.growth_per_block(depth)
        if growth is not None:
            predicted[i] = growth**blocks
        else:
            q0 = geometric_mean(out[i, :, 0])
            predicted[i] = (q0 + spec.alpha(depth) ** 2 * blocks) / q0
    return ForwardVarianceResult(
        config,
        config._grid(out, "E[x_l²]", "block", blocks),
        config._grid(out / out[:, :, :1], "E[x_l²] / E[x_0²]", "block", blocks),
        Grid(predicted, name="predicted E[x_l²] / E[x_0²]", network=config.networks, block=tuple(blocks)),
    )


# Depth sweep: gradient ratio and forward growth against depth
class StreamDepthSweepConfig(_Seeds):
    """``stream_pass`` on a digits batch per network, depth L and seed (float64: 2^L overflows float32)."""

    depths: tuple[int, ...] = nonempty(integer(low=1, high=1000), default=(10, 20, 50, 100))
    batch_size: int = integer(128, low=2, high=1437)
    dtype: str = one_of(*DTYPES, default="float64")

    def check(self) -> None:
        super().check()
        _check_increasing(self.depths)


@dataclass(frozen=True)
class StreamDepthSweepResult:
    """Per network, seed and depth L: the two ratios of ``StreamPass`` (0, inf or NaN where a signal left the
    float range)."""

    config: StreamDepthSweepConfig
    grad_ratio: Grid  # ‖∂J/∂x_0‖ / ‖∂J/∂x_L‖, axes network, seed, depth
    variance_ratio: Grid  # E[x_L²] / E[x_0²], same axes
    predicted_grad_ratio: Grid  # (1 + α² g)^(L/2) (unnormalized specs; NaN otherwise), axes network, depth


def run_stream_depth_sweep(config: StreamDepthSweepConfig) -> StreamDepthSweepResult:
    """``stream_pass`` on every network, depth and seed; keep the two ratios."""
    check_config(config, StreamDepthSweepConfig)
    data = load_image_data("digits")
    x, y = data.x_train[: config.batch_size], data.y_train[: config.batch_size]
    grad, var = np.empty((2, len(config.networks), config.n_seeds, len(config.depths)))
    predicted = np.full((len(config.networks), len(config.depths)), np.nan)
    for i, spec in enumerate(config.networks):
        for s in range(config.n_seeds):
            for d, depth in enumerate(config.depths):
                result = stream_pass(config._model(spec, s, data, depth, config.dtype), x, y)
                grad[i, s, d], var[i, s, d] = result.grad_ratio, result.variance_ratio
        for d, depth in enumerate(config.depths):
            growth = spec.growth_per_block(depth)
            if growth is not None:
                predicted[i, d] = growth ** (depth / 2)
    return StreamDepthSweepResult(
        config,
        config._grid(grad, "gradient ratio", "depth", config.depths),
        config._grid(var, "variance ratio", "depth", config.depths),
        Grid(predicted, name="predicted gradient ratio", network=config.networks, depth=config.depths),
    )


# Degradation: a deeper plain network trains worse; its residual twin does not
class DegradationConfig(Config):
    """Train a shallow plain, a deep plain and a deep residual network (same width, norm and recipe): by
    default He et al.'s plain-18 / plain-34 / ResNet-34 in Linear layers, BatchNorm in every block."""

    shallow_depth: int = integer(8, low=1, high=500)
    deep_depth: int = integer(16, low=2, high=500)
    width: int = integer(32, low=1, high=4096)
    norm: str | None = one_of(*NORMS, default="batch", optional=True)
    # the residual network's α (see NetworkSpec)
    branch_scale: float | str | None = positive(None, names=("inv_sqrt_depth",), optional=True)
    steps: int = positive(150, integer=True)
    batch_size: int = positive(64, integer=True)
    lr: float = positive(0.05)
    optimizer: str = one_of(*OPTIMIZERS, default="momentum")
    dataset: str = one_of(*DATASETS, default="digits")
    seed: int = seed_field()
    device: str = device_field("auto")

    def check(self) -> None:
        if self.deep_depth <= self.shallow_depth:
            raise ValueError(
                f"deep_depth must exceed shallow_depth; got {self.deep_depth} <= {self.shallow_depth}"
            )
        check_norm_sizes([self.norm], self.width, self.batch_size)


@dataclass(frozen=True)
class TrainingRun:
    """One trained network of ``run_degradation``; losses and accuracies on the whole sets (eval mode), NaN
    after divergence (and init_grad_ratio where the gradient at initialization already is NaN)."""

    name: str  # e.g. "plain-18": kind and number of Linear layers
    spec: NetworkSpec
    depth: int  # blocks
    history: History
    train_loss: float
    train_accuracy: float
    val_accuracy: float
    init_grad_ratio: float  # ‖∂J/∂x_0‖ / ‖∂J/∂x_L‖ at initialization, on the first training batch


@dataclass(frozen=True)
class DegradationResult:
    """The three runs, in the order shallow plain, deep plain, deep residual."""

    config: DegradationConfig
    runs: tuple[TrainingRun, ...]

    def to_frame(self) -> Any:
        """One row per network: layers, training loss and accuracy, validation accuracy, gradient ratio."""
        import pandas as pd

        columns = {
            "Linear layers": [n_linear_layers(run.depth) for run in self.runs],
            "training loss": [run.train_loss for run in self.runs],
            "training accuracy": [run.train_accuracy for run in self.runs],
            "validation accuracy": [run.val_accuracy for run in self.runs],
            "gradient ratio ‖∂J/∂x₀‖/‖∂J/∂x_L‖ at initialization": [run.init_grad_ratio for run in self.runs],
        }
        return pd.DataFrame(columns, index=pd.Index([run.name for run in self.runs], name="network"))


def run_degradation(config: DegradationConfig) -> DegradationResult:
    """Build the three networks from one seed (deep plain and residual share their weights), record their
    gradient ratio at initialization, train each and evaluate on the whole sets (NaN after divergence)."""
    check_config(config, DegradationConfig)
    data = load_image_data(config.dataset)
    train_config = derive(TrainConfig, config, monitor_every=None, eval_every=config.steps)
    first = torch.randperm(data.n_train, generator=torch.Generator().manual_seed(config.seed))
    x, y = data.x_train[first[: config.batch_size]], data.y_train[first[: config.batch_size]]
    plain = NetworkSpec(skip=False, norm=config.norm)
    residual = NetworkSpec(norm=config.norm, branch_scale=config.branch_scale)
    shallow, deep, runs = config.shallow_depth, config.deep_depth, []
    for spec, depth in ((plain, shallow), (plain, deep), (residual, deep)):
        model = _build(spec, data, depth=depth, width=config.width, seed=config.seed)
        # on a copy: the pass would leave BatchNorm running statistics and .grad in the trained model
        ratio = stream_pass(copy.deepcopy(model), x, y).grad_ratio
        history = train(model, data, train_config)
        if history.diverged:
            train_loss = train_acc = val_acc = math.nan
        else:
            train_loss, train_acc = evaluate(model, data.x_train, data.y_train)
            val_acc = history.final_val_accuracy
        name = f"{'residual' if spec.skip else 'plain'}-{n_linear_layers(depth)}"
        runs.append(TrainingRun(name, spec, depth, history, train_loss, train_acc, val_acc, ratio))
    return DegradationResult(config, tuple(runs))


# One network, block by block (the explorer)
class BlockProfileConfig(Config):
    """One forward and backward pass of one network on a batch of digits (float32), read block by block."""

    network: NetworkSpec = instance_of(NetworkSpec, default=RESIDUAL)
    depth: int = integer(30, low=1, high=500)
    width: int = integer(32, low=1, high=1024)
    batch_size: int = integer(64, low=2, high=1437)
    seed: int = seed_field()

    def check(self) -> None:
        check_norm_sizes([self.network.norm], self.width)


@dataclass(frozen=True)
class BlockProfileResult:
    """The ``StreamPass`` of one network, with the weight gradients of each block's fc1 and fc2 (NaN, as
    its own, where the signal left the float range)."""

    config: BlockProfileConfig
    stream: StreamPass
    fc1_grad: np.ndarray  # (L,) ‖∂J/∂W‖ of each block's first Linear
    fc2_grad: np.ndarray  # (L,) of each block's second Linear


def run_block_profile(config: BlockProfileConfig) -> BlockProfileResult:
    """Build the network and run ``stream_pass`` on the first ``batch_size`` training digits."""
    check_config(config, BlockProfileConfig)
    data = load_image_data("digits")
    model = _build(config.network, data, depth=config.depth, width=config.width, seed=config.seed)
    stream = stream_pass(model, data.x_train[: config.batch_size], data.y_train[: config.batch_size])
    return BlockProfileResult(config, stream, stream.weight_grad[1:-1:2], stream.weight_grad[2:-1:2])


# Where the ReLU sits: the original block φ(x + F(x)) against the clean block x + F(x)
class PlacementConfig(_Seeds):
    """``stream_pass`` on a digits batch (float64) per network and seed; by default pairs of shared weights,
    clean x + F(x) and original φ(x + F(x)), without and with BatchNorm."""

    depth: int = integer(50, low=1, high=500)
    networks: tuple[NetworkSpec, ...] = _networks(
        (RESIDUAL, POST_ACTIVATION, RESIDUAL_BN, POST_ACTIVATION_BN)
    )
    batch_size: int = integer(128, low=2, high=1437)

    def check(self) -> None:
        super().check()
        if not all(spec.skip for spec in self.networks):
            raise ValueError(
                "every network of a PlacementConfig needs skip=True (the ReLU follows the addition)"
            )


@dataclass(frozen=True)
class PlacementResult:
    """Per network, seed and block; D_l = diag(1[x_{l-1} + α F(x_{l-1}) > 0]) (I for a clean block)."""

    config: PlacementConfig
    stream_grad: Grid  # ‖∂J/∂x_l‖ / ‖∂J/∂x_L‖, axes network, seed, block l = 0..L
    identity_share: Grid  # mean entry of D_L ⋯ D_{l+1}: where the identity path alone reaches x_l; same axes
    active: Grid  # share of the 1s of D_l, axes network, seed, block l = 1..L


def run_placement(config: PlacementConfig) -> PlacementResult:
    """``stream_pass`` on every network and seed (float64); the masks D_l are read from the same pass (x_l > 0
    exactly where x_{l-1} + αF > 0). Networks of one seed share their weights."""
    check_config(config, PlacementConfig)
    data = load_image_data("digits")
    x, y = data.x_train[: config.batch_size], data.y_train[: config.batch_size]
    n, depth = len(config.networks), config.depth
    grads, share = np.empty((2, n, config.n_seeds, depth + 1))
    active = np.empty((n, config.n_seeds, depth))
    for i, spec in enumerate(config.networks):
        for s in range(config.n_seeds):
            model = config._model(spec, s, data, depth)
            with keep_outputs(model.blocks if spec.post_activation else ()) as outputs:
                result = stream_pass(model, x, y)
            masks = [out.detach() > 0 for out in outputs]  # x_l = φ(pre) > 0 exactly where pre > 0: D_l's 1s
            grads[i, s] = result.stream_grad / result.stream_grad[-1]
            if not spec.post_activation:  # a clean block has no mask: D = I
                active[i, s], share[i, s] = 1.0, 1.0
                continue
            active[i, s] = [float(m.double().mean()) for m in masks]
            survive = torch.stack(masks[::-1]).double().cumprod(0)  # row j: D_L ⋯ D_{L-j} kept the entry
            share[i, s] = [*survive.mean(dim=(1, 2)).numpy()[::-1], 1.0]
    return PlacementResult(
        config,
        config._grid(grads, "‖∂J/∂x_l‖ / ‖∂J/∂x_L‖", "block", range(depth + 1)),
        config._grid(share, "identity path share", "block", range(depth + 1)),
        config._grid(active, "share kept by D_l", "block", range(1, depth + 1)),
    )


# Shattered gradients: df/dx along a line of inputs, plain against residual
def lag1_autocorrelation(values: np.ndarray) -> float:
    """ρ = Σ_i (v_i − v̄)(v_{i+1} − v̄) / Σ_i (v_i − v̄)²: near 1 for a smooth curve, 0 for white noise."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 3:
        raise ValueError(f"values must be a 1-D sequence of at least 3 numbers; got shape {v.shape}")
    v = v - v.mean()
    denominator = float(v @ v)
    return float(v[1:] @ v[:-1]) / denominator if denominator != 0.0 else math.nan


class ShatteredConfig(_Seeds):
    """Networks R → R at ``n_points`` inputs evenly spaced on [−interval, interval] (float64), as Balduzzi et
    al. (2017), at increasing depths L; BatchNorm keeps the statistics of the whole grid."""

    depths: tuple[int, ...] = nonempty(integer(low=1, high=500), default=(1, 2, 5, 10, 20, 50))
    networks: tuple[NetworkSpec, ...] = _networks((PLAIN_BN, RESIDUAL_BN))
    n_points: int = integer(256, low=8, high=100_000)
    interval: float = positive(2.0)

    def check(self) -> None:
        super().check()
        _check_increasing(self.depths)


@dataclass(frozen=True)
class ShatteredResult:
    """The lag-1 autocorrelation of df/dx along the grid, and df/dx itself at the deepest depth."""

    config: ShatteredConfig
    autocorrelation: Grid  # axes network, seed, depth
    gradient: Grid  # df/dx of the first network (seed ``seed``) at the deepest depth, axes network, x


def _prefix_input_gradients(model: ResidualMLP, x: Tensor, depths: tuple[int, ...]) -> list[np.ndarray]:
    """df_L/dx at every point of x (N, 1) for each L in ``depths``, f_L = head ∘ block_L ∘ ⋯ ∘ block_1 ∘ stem.
    BatchNorm statistics come from x, then are frozen, so the gradient of the sum is each point's df/dx."""
    with torch.no_grad():  # every BatchNorm gets the statistics of x, then eval mode
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.momentum = 1.0  # running statistics := those of this one batch
        model.train()(x)
    model.eval()
    x = x.clone().requires_grad_(True)
    outputs = {}
    with torch.enable_grad():
        h = model.stem(x)
        for depth, block in enumerate(model.blocks, start=1):
            h = block(h)
            if depth in depths:
                outputs[depth] = model.head(h).sum()
        grads = [torch.autograd.grad(outputs[d], x, retain_graph=True)[0] for d in depths]
    return [g[:, 0].numpy().copy() for g in grads]


def run_shattered(config: ShatteredConfig) -> ShatteredResult:
    """One network per spec and seed at the deepest depth, cut after L blocks for each depth L."""
    check_config(config, ShatteredConfig)
    x = torch.linspace(-config.interval, config.interval, config.n_points, dtype=torch.float64)[:, None]
    autocorrelation = np.empty((len(config.networks), config.n_seeds, len(config.depths)))
    gradient = np.empty((len(config.networks), config.n_points))
    for i, spec in enumerate(config.networks):
        for s in range(config.n_seeds):
            model = config._model(spec, s, (1, 1), config.depths[-1])
            grads = _prefix_input_gradients(model, x, config.depths)
            autocorrelation[i, s] = [lag1_autocorrelation(g) for g in grads]
            if s == 0:
                gradient[i] = grads[-1]
    points = tuple(np.linspace(-config.interval, config.interval, config.n_points))
    return ShatteredResult(
        config,
        config._grid(autocorrelation, "lag-1 autocorrelation", "depth", config.depths),
        Grid(gradient, name="df/dx", network=config.networks, x=points),
    )


# Which block torchvision's ResNet-18 uses
@dataclass(frozen=True)
class TorchvisionBlockSource:
    """What the installed torchvision's ``forward`` of a ResNet block does after its branch."""

    addition: str  # the statement that adds the identity, e.g. "out += identity"
    after_addition: list[str]  # the statements between it and the return, e.g. ["out = self.relu(out)"]


def torchvision_block_source(class_name: str = "BasicBlock") -> TorchvisionBlockSource:
    """Parse ``class_name``'s ``forward`` ("BasicBlock": ResNet-18, -34; "Bottleneck": ResNet-50 and deeper)
    in the installed torchvision/models/resnet.py without importing torchvision (which takes seconds)."""
    import ast
    import importlib.util
    from pathlib import Path

    check_choice("class_name", class_name, ("BasicBlock", "Bottleneck"))
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("torchvision is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "resnet.py"
    source = path.read_text(encoding="utf-8")
    block = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == class_name)
    body = next(f for f in block.body if isinstance(f, ast.FunctionDef) and f.name == "forward").body
    index = next(i for i, s in enumerate(body) if isinstance(s, ast.AugAssign) and isinstance(s.op, ast.Add))
    text = [ast.get_source_segment(source, s) or "" for s in body]
    after = [text[i] for i in range(index + 1, len(body)) if not isinstance(body[i], ast.Return)]
    return TorchvisionBlockSource(text[index], after)
