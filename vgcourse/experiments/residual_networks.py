"""Chapter 5, residual networks: why a skip connection lets the gradient through, measured.

A residual block computes x_{l+1} = x_l + α F(x_l), so its Jacobian is

    ∂x_{l+1}/∂x_l = I + α J_l,   J_l = ∂F/∂x_l,

and the Jacobian of L blocks is the product ∏_l (I + α J_l). Expanded, it is a sum over the 2^L ways of
taking, at each block, either the identity or the branch: Σ_k α^k P_k with P_k the sum of the C(L, k)
ordered products of k branch Jacobians. The plain twin, x_{l+1} = F(x_l), keeps only the single product
J_L⋯J_1. With He initialization each branch preserves the second moment, E‖F(x)‖² = E‖x‖² (gain g = 1),
and F(x) is uncorrelated with x, so an unnormalized residual stack grows it by (1 + α² g) per block:
2^L at α = 1, at most e at α = 1/√L, exactly 1 when the branch's last layer starts at zero.

Experiments (a frozen ``...Config`` and a ``run_...`` function each):

- ``run_path_expansion``: the product ∏(I + αJ_l) expanded by path length k, checked against autograd.
- ``run_forward_variance``: E[x_l²] block by block, against (1 + α² g)^l.
- ``run_stream_depth_sweep``: the gradient ratio ‖∂J/∂x_0‖ / ‖∂J/∂x_L‖ and the forward growth E[x_L²]/E[x_0²]
  against depth, for plain and residual networks with and without BatchNorm and branch scaling.
- ``run_degradation``: He et al.'s (2016) degradation result at CPU scale: plain-18, plain-34 and a
  34-layer residual network trained on the digits data.
- ``run_block_profile``: one forward and backward pass, per-block norms (the explorer).
- ``run_placement``: where the ReLU sits: the original block φ(x + F(x)) (Jacobian D(I + ∂F/∂x)) against the
  clean one x + F(x) (Jacobian I + ∂F/∂x), per-block gradient norms and the share of the identity path
  that survives the masks D.
- ``run_shattered``: Balduzzi et al.'s (2017) shattered gradients: the lag-1 autocorrelation of df/dx
  along a grid of one-dimensional inputs, plain against residual, against depth.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vgcourse._validation import check_choice, check_float, check_int, check_tensor
from vgcourse.config import (
    Config,
    derive,
    device_field,
    flag,
    instance_of,
    integer,
    nonempty,
    one_of,
    positive,
    seed_field,
)
from vgcourse.data import DataSplit, mnist, shared_digits
from vgcourse.models import NORMS, ResidualMLP, initial_weights, named_layers
from vgcourse.training import OPTIMIZERS, History, TrainConfig, evaluate, train

__all__ = [
    "DATASETS",
    "DTYPES",
    "INITS",
    "PLACEMENT_NETWORKS",
    "PLAIN",
    "PLAIN_BN",
    "POST_ACTIVATION",
    "POST_ACTIVATION_BN",
    "RESIDUAL",
    "RESIDUAL_BN",
    "RESIDUAL_KAIMING",
    "RESIDUAL_SCALED",
    "RESIDUAL_ZERO",
    "SHATTER_NETWORKS",
    "SWEEP_NETWORKS",
    "VARIANCE_NETWORKS",
    "DegradationConfig",
    "DegradationResult",
    "StreamDepthSweepConfig",
    "StreamDepthSweepResult",
    "ForwardVarianceConfig",
    "ForwardVarianceResult",
    "BlockProfileConfig",
    "BlockProfileResult",
    "NetworkSpec",
    "PathExpansionConfig",
    "PathExpansionResult",
    "PlacementConfig",
    "PlacementResult",
    "ShatteredConfig",
    "ShatteredResult",
    "StreamPass",
    "TorchvisionBlockCheck",
    "TorchvisionBlockSource",
    "TrainingRun",
    "build_network",
    "check_torchvision_block",
    "torchvision_block_source",
    "init_residual_network",
    "lag1_autocorrelation",
    "load_image_data",
    "n_linear_layers",
    "run_degradation",
    "run_stream_depth_sweep",
    "run_forward_variance",
    "run_block_profile",
    "run_path_expansion",
    "run_placement",
    "run_shattered",
    "stream_pass",
]

INITS = ("he", "kaiming_all")
DTYPES = ("float32", "float64")
DATASETS = ("digits", "mnist")
_BRANCH_GAIN = {"he": 1.0, "kaiming_all": 2.0}  # E‖F(x)‖² / E‖x‖² of one branch at initialization


# ----------------------------------------------------------------------------------------------------
# Networks: what to build, how to initialize it, one forward and backward pass along the stream


class NetworkSpec(Config):
    """One kind of network of the chapter: a ``ResidualMLP`` (ReLU) with or without skips, norm, scaling.

    Args:
        skip: add the identity path, x_{l+1} = x_l + α F(x_l); False gives the plain twin x_{l+1} = F(x_l).
        norm: None, "batch" or "layer": a norm after each Linear inside F.
        branch_scale: α: None (1), a positive number, or "inv_sqrt_depth" (1/√L); needs ``skip``.
        zero_init_last: start each branch's last layer (or its norm's weight) at zero; needs ``skip``.
        init: "he" (Var(W) = 2/n_in after a ReLU, 1/n_in elsewhere: every branch preserves E‖x‖²) or
            "kaiming_all" (2/n_in for every Linear, as ``initialize(model, "kaiming_normal")``: the
            branch doubles E‖x‖²).
        post_activation: a ReLU after the addition, x_{l+1} = φ(x_l + α F(x_l)), the original ResNet's
            block (He et al., 2016a), whose Jacobian is D(I + α ∂F/∂x); False (default) leaves the
            identity path clean, Jacobian I + α ∂F/∂x, as in the pre-activation ResNet (He et al., 2016b).
            Needs ``skip``.
    """

    skip: bool = flag(True)
    norm: str | None = one_of(*NORMS, default=None, optional=True)
    branch_scale: float | str | None = None
    zero_init_last: bool = flag(False)
    init: str = one_of(*INITS, default="he")
    post_activation: bool = flag(False)

    def check(self) -> None:
        if isinstance(self.branch_scale, str):
            check_choice("branch_scale", self.branch_scale, ("inv_sqrt_depth",))
        elif self.branch_scale is not None:
            check_float("branch_scale", self.branch_scale, minimum=0.0, strict_minimum=True)
        if not self.skip and (self.branch_scale is not None or self.zero_init_last or self.post_activation):
            raise ValueError(
                "branch_scale, zero_init_last and post_activation need skip=True: a plain network has no "
                "branch to scale and no addition to follow"
            )

    @property
    def label(self) -> str:
        """A short name for legends: "plain", "residual + BN", "residual, α = 1/√L", ..."""
        text = "residual" if self.skip else "plain"
        if self.norm is not None:
            text += " + BN" if self.norm == "batch" else " + LN"
        if self.branch_scale == "inv_sqrt_depth":
            text += ", α = 1/√L"
        elif self.branch_scale is not None:
            text += f", α = {self.branch_scale:g}"
        if self.zero_init_last:
            text += ", zero-init"
        if self.init == "kaiming_all":
            text += ", Kaiming on every layer"
        if self.post_activation:
            text += ", ReLU after the addition"
        return text

    def alpha(self, depth: int) -> float:
        """The branch scale α of a network of ``depth`` blocks (1 for the plain twin)."""
        check_int("depth", depth, minimum=1)
        if self.branch_scale is None or not self.skip:
            return 1.0
        if self.branch_scale == "inv_sqrt_depth":
            return 1.0 / math.sqrt(depth)
        return float(self.branch_scale)

    def growth_per_block(self, depth: int) -> float | None:
        """Predicted factor of E‖x‖² per block at initialization: 1 + α² g with skip, g without, 1 with
        zero-init; None with a norm (a normalized branch adds a constant instead of multiplying) or a
        ReLU after the addition (no closed form here).

        Args:
            depth: the number of blocks L (α may depend on it).
        """
        if self.norm is not None or self.post_activation:
            return None
        g = _BRANCH_GAIN[self.init]
        if self.zero_init_last:
            return 1.0
        return 1.0 + self.alpha(depth) ** 2 * g if self.skip else g


PLAIN = NetworkSpec(skip=False)
PLAIN_BN = NetworkSpec(skip=False, norm="batch")
RESIDUAL = NetworkSpec()
RESIDUAL_BN = NetworkSpec(norm="batch")
RESIDUAL_SCALED = NetworkSpec(branch_scale="inv_sqrt_depth")
RESIDUAL_ZERO = NetworkSpec(zero_init_last=True)
RESIDUAL_KAIMING = NetworkSpec(init="kaiming_all")
POST_ACTIVATION = NetworkSpec(post_activation=True)
POST_ACTIVATION_BN = NetworkSpec(norm="batch", post_activation=True)
PLACEMENT_NETWORKS = (RESIDUAL, POST_ACTIVATION, RESIDUAL_BN, POST_ACTIVATION_BN)
SHATTER_NETWORKS = (PLAIN_BN, RESIDUAL_BN)
SWEEP_NETWORKS = (PLAIN, PLAIN_BN, RESIDUAL, RESIDUAL_BN, RESIDUAL_SCALED, RESIDUAL_ZERO)
VARIANCE_NETWORKS = (RESIDUAL_KAIMING, RESIDUAL, RESIDUAL_BN, RESIDUAL_SCALED, RESIDUAL_ZERO, PLAIN)


def n_linear_layers(depth: int) -> int:
    """Linear layers of a ``ResidualMLP`` with ``depth`` blocks: stem + 2 per block + head = 2L + 2."""
    return 2 * check_int("depth", depth, minimum=1) + 2


def init_residual_network(
    model: ResidualMLP, init: str = "he", *, generator: torch.Generator | None = None
) -> ResidualMLP:
    """Draw every Linear weight from N(0, gain/n_in) in place, biases 0; norms and zeroed layers are kept.

    "he": gain 2 for a layer whose input comes out of a ReLU (each block's fc2) and 1 for the others
    (the stem and each fc1 read the un-rectified stream; the head feeds the loss), so that every layer,
    and hence every branch, preserves the second moment E[x²] of the signal (He et al., 2015, applied
    to what each layer actually receives). "kaiming_all": gain 2 for every Linear. A Linear whose weight
    is all zero (the last layer of a zero-initialized branch) stays zero.

    Args:
        model: the network, from ``build_network`` or ``ResidualMLP``.
        init: "he" or "kaiming_all".
        generator: random source of the draws (None: torch's global one).
    """
    if not isinstance(model, ResidualMLP):
        raise TypeError(f"model must be a vgcourse.models.ResidualMLP; got {type(model).__name__}")
    check_choice("init", init, INITS)
    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, nn.Linear) or not module.weight.any():
                continue
            after_relu = name.endswith("fc2")
            gain = 2.0 if (after_relu or init == "kaiming_all") else 1.0
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
    """A ``ResidualMLP`` (ReLU) as ``spec`` describes, initialized by ``init_residual_network`` from ``seed``.

    Networks built with the same seed, depth and width start from the same weights whatever their skip
    and norm settings (zero-initialized branches aside), so a plain network and its residual twin differ
    only by the identity paths.

    Args:
        spec: what to build.
        depth: number of blocks L.
        width: size of the residual stream.
        in_features: size of each input.
        out_features: number of classes.
        seed: seed of the weights.
        dtype: "float32" or "float64".
    """
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"spec must be a NetworkSpec; got {type(spec).__name__}")
    check_int("seed", seed, minimum=0)
    check_choice("dtype", dtype, DTYPES)
    model = ResidualMLP(
        in_features,
        out_features,
        depth,
        width,
        "relu",
        norm=spec.norm,
        skip=spec.skip,
        branch_scale=spec.branch_scale,
        zero_init_last=spec.zero_init_last,
        post_activation=spec.post_activation,
    )
    init_residual_network(model, spec.init, generator=torch.Generator().manual_seed(seed))
    return model.to(getattr(torch, dtype))


@dataclass(frozen=True)
class StreamPass:
    """One forward and backward pass of a ``ResidualMLP`` on a batch, read along the residual stream.

    x_0 is the stem's output (the first block's input), x_l the output of block l.

    Args:
        second_moment: (L + 1,) E[x_l²], the mean of x_l² over the batch and the units, l = 0..L.
        stream_grad: (L + 1,) ‖∂J/∂x_l‖ (Frobenius norm over the batch), l = 0..L.
        layer_names: names of ``named_layers(model)``: "input", "block 1 fc1", ..., "output".
        weight_grad: (2L + 2,) ‖∂J/∂W‖ of each of those layers.
        loss: the cross-entropy J.
    """

    second_moment: np.ndarray
    stream_grad: np.ndarray
    layer_names: list[str]
    weight_grad: np.ndarray
    loss: float

    @property
    def grad_ratio(self) -> float:
        """‖∂J/∂x_0‖ / ‖∂J/∂x_L‖: backward signal entering the first block over the one leaving the last."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(self.stream_grad[0] / self.stream_grad[-1])

    @property
    def variance_ratio(self) -> float:
        """E[x_L²] / E[x_0²]: how much the blocks grow the forward signal."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(self.second_moment[-1] / self.second_moment[0])


def stream_pass(model: ResidualMLP, x: Tensor, y: Tensor) -> StreamPass:
    """Run ``model`` on (x, y) in training mode (BatchNorm uses batch statistics), back-propagate the
    cross-entropy, and record E[x_l²] and ‖∂J/∂x_l‖ along the stream and ‖∂J/∂W‖ per layer.

    The weights do not change; their ``.grad`` is left filled (and BatchNorm's running statistics move,
    as in any training-mode forward pass).

    Args:
        model: a ``ResidualMLP``.
        x: inputs (N, in_features), converted to the model's dtype.
        y: int64 class labels (N,).
    """
    if not isinstance(model, ResidualMLP):
        raise TypeError(f"model must be a vgcourse.models.ResidualMLP; got {type(model).__name__}")
    check_tensor("x", x, ndim=2)
    check_tensor("y", y, ndim=1)
    weight = model.stem.weight
    x = x.to(device=weight.device, dtype=weight.dtype)
    model.train()
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        h = model.stem(x)
        stream = [h]
        for block in model.blocks:
            h = block(h)
            stream.append(h)
        for h in stream:
            h.retain_grad()
        loss = F.cross_entropy(model.head(h), y.to(weight.device))
        loss.backward()
    with torch.no_grad():
        moments = torch.stack([h.double().square().mean() for h in stream])
        grads = torch.stack([torch.linalg.vector_norm(h.grad.double()) for h in stream])
        layers = named_layers(model)
        weight_grads = torch.stack(
            [
                torch.linalg.vector_norm(m.weight.grad.double()) if m.weight.grad is not None else _nan()
                for _, m in layers
            ]
        )
    return StreamPass(
        moments.cpu().numpy(),
        grads.cpu().numpy(),
        [name for name, _ in layers],
        weight_grads.cpu().numpy(),
        float(loss.detach()),
    )


def _nan() -> Tensor:
    return torch.tensor(math.nan, dtype=torch.float64)


def load_image_data(dataset: str = "digits", seed: int = 0) -> DataSplit:
    """The chapter's data: "digits" (sklearn's 8×8 digits, shipped) or "mnist" (``vgcourse.data.mnist``: the
    10,000-image test split shipped with the package). Digits splits are cached per seed.

    Args:
        dataset: "digits" or "mnist".
        seed: seed of the train/validation split.
    """
    check_choice("dataset", dataset, DATASETS)
    check_int("seed", seed, minimum=0)
    return shared_digits(seed) if dataset == "digits" else mnist(seed=seed)


def _networks(default: tuple[NetworkSpec, ...]) -> Any:
    return nonempty(instance_of(NetworkSpec), default=default)


def _check_increasing(depths: tuple[int, ...]) -> None:
    if list(depths) != sorted(set(depths)):
        raise ValueError(f"depths must be increasing and distinct; got {depths}")


def _build(
    spec: NetworkSpec, data: Any, *, depth: int, width: int, seed: int, dtype: str = "float32"
) -> ResidualMLP:
    """``build_network`` sized for ``data`` (a ``DataSplit``, or (in_features, out_features))."""
    n_in, n_out = data if isinstance(data, tuple) else (data.in_features, data.n_classes)
    return build_network(
        spec, depth=depth, width=width, in_features=n_in, out_features=n_out, seed=seed, dtype=dtype
    )


def _index(spec: NetworkSpec, networks: tuple[NetworkSpec, ...]) -> int:
    if spec not in networks:
        labels = ", ".join(s.label for s in networks)
        raise ValueError(f"network {spec.label!r} was not measured; measured: {labels}")
    return networks.index(spec)


# ----------------------------------------------------------------------------------------------------
# The product of block Jacobians, expanded by path length


class PathExpansionConfig(Config):
    """Expand ∂x_L/∂x_0 = ∏_l (I + α J_l) of one input by path length, for a few unnormalized networks of
    ``depth`` blocks and stream width n (the per-example Jacobian of a BatchNorm network is not defined:
    BatchNorm couples the examples of a batch). ``seed`` seeds the weights and the input."""

    depth: int = integer(20, low=1, high=200)
    width: int = integer(64, low=1, high=1024)
    networks: tuple[NetworkSpec, ...] = _networks((PLAIN, RESIDUAL, RESIDUAL_SCALED))
    seed: int = seed_field()

    def check(self) -> None:
        for spec in self.networks:
            if spec.norm is not None:
                raise ValueError(
                    f"the path expansion needs unnormalized networks; {spec.label!r} has a norm, which "
                    "couples the examples of a batch"
                )


@dataclass(frozen=True)
class PathExpansionResult:
    """path_gain[i, k] = ‖P_k‖_F / √n: the RMS gain of the paths through exactly k branches (float64).

    P_k is the sum of the α^k-weighted ordered products of k of the L branch Jacobians, so that
    ∂x_L/∂x_0 = Σ_k P_k (for the plain twin only P_L, the product of all L Jacobians, is nonzero).

    Args:
        path_gain: (n_networks, L + 1) array, k = 0..L.
        total_gain: (n_networks,) ‖∂x_L/∂x_0‖_F / √n.
        relative_error: (n_networks,) ‖Σ_k P_k − autograd's Jacobian‖_F / ‖autograd's Jacobian‖_F.
    """

    config: PathExpansionConfig
    path_gain: np.ndarray
    total_gain: np.ndarray
    relative_error: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """The path lengths k = 0..L."""
        return np.arange(self.config.depth + 1)

    def n_paths(self) -> np.ndarray:
        """C(L, k): how many paths go through exactly k of the L branches, k = 0..L."""
        return np.array([math.comb(self.config.depth, k) for k in range(self.config.depth + 1)], dtype=float)

    def predicted_gain(self) -> np.ndarray:
        """RMS prediction √(C(L, k)) (α² g)^(k/2) for residual networks; g^(L/2) at k = L for the plain
        twin (other k: 0). Branches that start at zero give 1 at k = 0 and 0 elsewhere.
        Shape (n_networks, L + 1)."""
        depth = self.config.depth
        out = np.zeros((len(self.config.networks), depth + 1))
        for i, spec in enumerate(self.config.networks):
            g = _BRANCH_GAIN[spec.init]
            if not spec.skip:
                out[i, depth] = g ** (depth / 2)
            elif spec.zero_init_last:
                out[i, 0] = 1.0
            else:
                out[i] = np.sqrt(self.n_paths() * (spec.alpha(depth) ** 2 * g) ** self.lengths)
        return out

    def share_up_to(self, spec: NetworkSpec, k: int) -> float:
        """Σ_{j<=k} ‖P_j‖² / Σ_j ‖P_j‖²: the share of the squared gain carried by paths of length <= k."""
        check_int("k", k, minimum=0, maximum=self.config.depth)
        squares = self.path_gain[_index(spec, self.config.networks)] ** 2
        return float(squares[: k + 1].sum() / squares.sum())

    def typical_length(self, spec: NetworkSpec) -> int:
        """The path length k whose paths carry the largest part ‖P_k‖ of the Jacobian."""
        return int(np.argmax(self.path_gain[_index(spec, self.config.networks)]))

    def get(self, spec: NetworkSpec) -> np.ndarray:
        """The (L + 1,) path gains of one network."""
        return self.path_gain[_index(spec, self.config.networks)]


def run_path_expansion(config: PathExpansionConfig) -> PathExpansionResult:
    """Build J_l = W_2 diag(1[W_1 x_l + b_1 > 0]) W_1 for one input and accumulate the sum by path length.

    Recursion over blocks: after block l, P_k ← P_k + α J_l P_{k-1} (residual) or P_k ← J_l P_{k-1}
    (plain). Σ_k P_k is compared with ``torch.autograd.functional.jacobian`` of the stack of blocks.
    """
    depth, n = config.depth, config.width
    gen = torch.Generator().manual_seed(config.seed + 10_000)
    x0 = torch.randn(n, dtype=torch.float64, generator=gen)
    gains, totals, errors = [], [], []
    for spec in config.networks:
        model = build_network(
            spec, depth=depth, width=n, in_features=n, out_features=1, seed=config.seed, dtype="float64"
        )
        alpha = spec.alpha(depth)
        eye = torch.eye(n, dtype=torch.float64)
        paths = [eye] + [torch.zeros(n, n, dtype=torch.float64) for _ in range(depth)]
        h = x0
        with torch.no_grad():
            for block in model.blocks:
                mask = (block.fc1(h) > 0).to(torch.float64)
                jac = block.fc2.weight @ (mask[:, None] * block.fc1.weight)
                if spec.skip:
                    paths = [paths[0]] + [
                        p + alpha * jac @ q for p, q in zip(paths[1:], paths[:-1], strict=True)
                    ]
                else:
                    paths = [torch.zeros_like(eye)] + [jac @ q for q in paths[:-1]]
                h = block(h)
            total = torch.stack(paths).sum(0)
        reference = torch.autograd.functional.jacobian(functools.partial(_run_blocks, model), x0)
        gains.append([float(torch.linalg.norm(p)) / math.sqrt(n) for p in paths])
        totals.append(float(torch.linalg.norm(reference)) / math.sqrt(n))
        errors.append(float(torch.linalg.norm(total - reference) / torch.linalg.norm(reference)))
    return PathExpansionResult(config, np.array(gains), np.array(totals), np.array(errors))


def _run_blocks(model: ResidualMLP, h: Tensor) -> Tensor:
    for block in model.blocks:
        h = block(h)
    return h


# ----------------------------------------------------------------------------------------------------
# Forward: E[x_l²] block by block


class ForwardVarianceConfig(Config):
    """E[x_l²] after each of ``depth`` blocks of networks at initialization, on a batch of digits
    (float64), ``n_seeds`` independent networks per spec (seeds ``seed``, ``seed + 1``, ...)."""

    depth: int = integer(50, low=1, high=500)
    networks: tuple[NetworkSpec, ...] = _networks(VARIANCE_NETWORKS)
    width: int = integer(128, low=1, high=2048)
    batch_size: int = integer(256, low=2, high=1437)
    n_seeds: int = positive(3, integer=True)
    seed: int = seed_field()


@dataclass(frozen=True)
class ForwardVarianceResult:
    """second_moment[i, s, l] = E[x_l²] of network s of spec i after l blocks (l = 0 is the stem's output).

    Args:
        second_moment: (n_networks, n_seeds, L + 1) array.
    """

    config: ForwardVarianceConfig
    second_moment: np.ndarray

    @property
    def blocks(self) -> np.ndarray:
        """Block indices l = 0..L."""
        return np.arange(self.config.depth + 1)

    def ratio(self) -> np.ndarray:
        """E[x_l²] / E[x_0²], geometric mean over the networks of each spec: (n_networks, L + 1)."""
        with np.errstate(divide="ignore"):
            logs = np.log(self.second_moment / self.second_moment[:, :, :1])
        return np.exp(logs.mean(axis=1))

    def growth_per_block(self, spec: NetworkSpec) -> float:
        """(E[x_L²] / E[x_0²])^(1/L), geometric mean over networks: the measured factor per block."""
        return float(self.ratio()[_index(spec, self.config.networks), -1] ** (1.0 / self.config.depth))

    def final_ratio(self, spec: NetworkSpec) -> float:
        """E[x_L²] / E[x_0²] of one spec (geometric mean over networks)."""
        return float(self.ratio()[_index(spec, self.config.networks), -1])

    def predicted_ratio(self) -> np.ndarray:
        """(1 + α² g)^l for unnormalized specs (``NetworkSpec.growth_per_block``); for a normalized branch,
        whose output has E[F²] = 1, (E[x_0²] + l) / E[x_0²] with the measured E[x_0²]. (n_networks, L + 1)."""
        out = np.empty((len(self.config.networks), self.config.depth + 1))
        for i, spec in enumerate(self.config.networks):
            growth = spec.growth_per_block(self.config.depth)
            if growth is not None:
                out[i] = growth**self.blocks
            else:
                q0 = np.exp(np.log(self.second_moment[i, :, 0]).mean())
                out[i] = (q0 + spec.alpha(self.config.depth) ** 2 * self.blocks) / q0
        return out


def run_forward_variance(config: ForwardVarianceConfig) -> ForwardVarianceResult:
    """Run each network forward (training mode, no gradients) and record E[x_l²] after every block."""
    data = load_image_data("digits")
    x = data.x_train[: config.batch_size].double()
    out = np.empty((len(config.networks), config.n_seeds, config.depth + 1))
    for i, spec in enumerate(config.networks):
        for s in range(config.n_seeds):
            model = _build(
                spec, data, depth=config.depth, width=config.width, seed=config.seed + s, dtype="float64"
            ).train()
            with torch.no_grad():
                h = model.stem(x)
                moments = [h.square().mean()]
                for block in model.blocks:
                    h = block(h)
                    moments.append(h.square().mean())
            out[i, s] = torch.stack(moments).numpy()
    return ForwardVarianceResult(config, out)


# ----------------------------------------------------------------------------------------------------
# Depth sweep: gradient ratio and forward growth against depth


class StreamDepthSweepConfig(Config):
    """One forward and backward pass (cross-entropy on a digits batch) per network, depth L (increasing)
    and seed (``n_seeds`` networks per spec and depth: seeds ``seed``, ``seed + 1``, ...). ``dtype``
    "float64" by default: 2^L growth overflows float32 beyond L ≈ 120."""

    depths: tuple[int, ...] = nonempty(integer(low=1, high=1000), default=(10, 20, 50, 100))
    networks: tuple[NetworkSpec, ...] = _networks(SWEEP_NETWORKS)
    width: int = integer(64, low=1, high=2048)
    batch_size: int = integer(128, low=2, high=1437)
    n_seeds: int = positive(3, integer=True)
    seed: int = seed_field()
    dtype: str = one_of(*DTYPES, default="float64")

    def check(self) -> None:
        _check_increasing(self.depths)


@dataclass(frozen=True)
class StreamDepthSweepResult:
    """grad_ratio[i, s, d] = ‖∂J/∂x_0‖ / ‖∂J/∂x_L‖ and variance_ratio[i, s, d] = E[x_L²] / E[x_0²] of
    network s of spec i at depth ``depths[d]``.

    Args:
        grad_ratio: (n_networks, n_seeds, n_depths) array.
        variance_ratio: (n_networks, n_seeds, n_depths) array.
    """

    config: StreamDepthSweepConfig
    grad_ratio: np.ndarray
    variance_ratio: np.ndarray

    @property
    def depths(self) -> np.ndarray:
        """The depths L."""
        return np.array(self.config.depths)

    def typical(self, metric: str = "grad_ratio") -> np.ndarray:
        """Geometric mean over networks of "grad_ratio" or "variance_ratio": (n_networks, n_depths)."""
        values = getattr(self, check_choice("metric", metric, ("grad_ratio", "variance_ratio")))
        return np.exp(np.log(values).mean(axis=1))

    def at(self, spec: NetworkSpec, depth: int, metric: str = "grad_ratio") -> float:
        """The geometric mean over networks of ``metric`` for one spec and depth."""
        if depth not in self.config.depths:
            raise ValueError(f"depth {depth} was not measured; measured: {self.config.depths}")
        return float(
            self.typical(metric)[_index(spec, self.config.networks), self.config.depths.index(depth)]
        )

    def predicted_grad_ratio(self) -> np.ndarray:
        """(1 + α² g)^(L/2) for unnormalized specs: the backward signal grows through the blocks as the
        forward one does; NaN for normalized ones. (n_networks, n_depths)."""
        out = np.full((len(self.config.networks), len(self.config.depths)), np.nan)
        for i, spec in enumerate(self.config.networks):
            for d, depth in enumerate(self.config.depths):
                growth = spec.growth_per_block(depth)
                if growth is not None:
                    out[i, d] = growth ** (depth / 2)
        return out


def run_stream_depth_sweep(config: StreamDepthSweepConfig) -> StreamDepthSweepResult:
    """``stream_pass`` on every network, depth and seed; keep the two ratios."""
    data = load_image_data("digits")
    x, y = data.x_train[: config.batch_size], data.y_train[: config.batch_size]
    shape = (len(config.networks), config.n_seeds, len(config.depths))
    grad, var = np.empty(shape), np.empty(shape)
    for i, spec in enumerate(config.networks):
        for s in range(config.n_seeds):
            for d, depth in enumerate(config.depths):
                model = _build(
                    spec, data, depth=depth, width=config.width, seed=config.seed + s, dtype=config.dtype
                )
                result = stream_pass(model, x, y)
                grad[i, s, d], var[i, s, d] = result.grad_ratio, result.variance_ratio
    return StreamDepthSweepResult(config, grad, var)


# ----------------------------------------------------------------------------------------------------
# Degradation: a deeper plain network trains worse; its residual twin does not


class DegradationConfig(Config):
    """Train a shallow plain, a deep plain and a deep residual network (same width, norm and recipe).

    The defaults mirror He et al.'s (2016) plain-18 / plain-34 / ResNet-34 comparison in linear layers:
    8 blocks are 2·8 + 2 = 18 Linear layers, 16 blocks are 34; BatchNorm in every block, as theirs.
    ``branch_scale`` is the residual network's α (see ``NetworkSpec``); "mnist" is the MNIST test split
    shipped with the package; ``seed`` seeds the weights and the minibatch order (the train/validation
    split is fixed).
    """

    shallow_depth: int = integer(8, low=1, high=500)
    deep_depth: int = integer(16, low=2, high=500)
    width: int = integer(32, low=1, high=4096)
    norm: str | None = one_of(*NORMS, default="batch", optional=True)
    branch_scale: float | str | None = None
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
        NetworkSpec(branch_scale=self.branch_scale)  # validates it

    def networks(self) -> tuple[tuple[NetworkSpec, int], ...]:
        """(spec, depth) of the three networks: shallow plain, deep plain, deep residual."""
        plain = NetworkSpec(skip=False, norm=self.norm)
        residual = NetworkSpec(norm=self.norm, branch_scale=self.branch_scale)
        return ((plain, self.shallow_depth), (plain, self.deep_depth), (residual, self.deep_depth))


@dataclass(frozen=True)
class TrainingRun:
    """One trained network of ``run_degradation``.

    Args:
        name: e.g. "plain-18" (kind and number of Linear layers).
        spec: what was built.
        depth: number of blocks.
        history: the training history (per-step minibatch loss, ...).
        train_loss: cross-entropy on the whole training set after training (eval mode).
        train_accuracy: accuracy on the whole training set after training.
        val_accuracy: accuracy on the validation set after training.
        init_grad_ratio: ‖∂J/∂x_0‖ / ‖∂J/∂x_L‖ at initialization, on the first training batch.
    """

    name: str
    spec: NetworkSpec
    depth: int
    history: History
    train_loss: float
    train_accuracy: float
    val_accuracy: float
    init_grad_ratio: float

    @property
    def n_layers(self) -> int:
        """Linear layers: 2·depth + 2."""
        return n_linear_layers(self.depth)


@dataclass(frozen=True)
class DegradationResult:
    """The three runs, in the order shallow plain, deep plain, deep residual.

    Args:
        runs: the ``TrainingRun`` s.
    """

    config: DegradationConfig
    runs: tuple[TrainingRun, ...]

    @property
    def shallow_plain(self) -> TrainingRun:
        return self.runs[0]

    @property
    def deep_plain(self) -> TrainingRun:
        return self.runs[1]

    @property
    def deep_residual(self) -> TrainingRun:
        return self.runs[2]

    def get(self, name: str) -> TrainingRun:
        """The run called ``name`` (e.g. "plain-34")."""
        names = [run.name for run in self.runs]
        return self.runs[names.index(check_choice("name", name, names))]

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per network: layers, training loss and accuracy, validation accuracy,
        and the gradient ratio at initialization."""
        import pandas as pd

        rows = [
            {
                "network": run.name,
                "Linear layers": run.n_layers,
                "training loss": run.train_loss,
                "training accuracy": run.train_accuracy,
                "validation accuracy": run.val_accuracy,
                "gradient ratio ‖∂J/∂x₀‖/‖∂J/∂x_L‖ at initialization": run.init_grad_ratio,
            }
            for run in self.runs
        ]
        return pd.DataFrame(rows).set_index("network")


def run_degradation(config: DegradationConfig) -> DegradationResult:
    """Build the three networks from the same seed (the deep plain and residual ones start from identical
    weights), record their gradient ratio at initialization, train each with ``vgcourse.training.train``
    and evaluate on the whole training and validation sets. A diverged run is kept (its losses NaN)."""
    data = load_image_data(config.dataset)
    train_config = derive(TrainConfig, config, monitor_every=None, eval_every=config.steps)
    first = torch.randperm(data.n_train, generator=torch.Generator().manual_seed(config.seed))
    first = first[: min(config.batch_size, data.n_train)]
    runs = []
    for spec, depth in config.networks():
        model = _build(spec, data, depth=depth, width=config.width, seed=config.seed)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        ratio = stream_pass(model, data.x_train[first], data.y_train[first]).grad_ratio
        model.load_state_dict(before)  # undo the BatchNorm running statistics of that pass
        model.zero_grad(set_to_none=True)
        history = train(model, data, train_config)
        if history.diverged:
            train_loss = train_acc = val_acc = math.nan
        else:
            train_loss, train_acc = evaluate(model, data.x_train, data.y_train)
            val_acc = history.final_val_accuracy
        name = f"{'residual' if spec.skip else 'plain'}-{n_linear_layers(depth)}"
        runs.append(TrainingRun(name, spec, depth, history, train_loss, train_acc, val_acc, ratio))
    return DegradationResult(config, tuple(runs))


# ----------------------------------------------------------------------------------------------------
# One network, block by block (the explorer)


class BlockProfileConfig(Config):
    """One forward and backward pass of one network of ``depth`` blocks on a batch of digits (float32),
    read block by block; ``seed`` seeds the weights."""

    network: NetworkSpec = instance_of(NetworkSpec, default=RESIDUAL)
    depth: int = integer(30, low=1, high=500)
    width: int = integer(32, low=1, high=1024)
    batch_size: int = integer(64, low=2, high=1437)
    seed: int = seed_field()


@dataclass(frozen=True)
class BlockProfileResult:
    """The ``StreamPass`` of one network, with the weight gradients of each block's fc1 and fc2.

    Args:
        stream: the pass.
    """

    config: BlockProfileConfig
    stream: StreamPass

    @property
    def blocks(self) -> np.ndarray:
        """Block numbers 1..L."""
        return np.arange(1, self.config.depth + 1)

    @property
    def fc1_grad(self) -> np.ndarray:
        """‖∂J/∂W‖ of each block's first Linear, (L,)."""
        return self.stream.weight_grad[1:-1:2]

    @property
    def fc2_grad(self) -> np.ndarray:
        """‖∂J/∂W‖ of each block's second Linear, (L,)."""
        return self.stream.weight_grad[2:-1:2]


def run_block_profile(config: BlockProfileConfig) -> BlockProfileResult:
    """Build the network and run ``stream_pass`` on the first ``batch_size`` training digits."""
    data = load_image_data("digits")
    model = _build(config.network, data, depth=config.depth, width=config.width, seed=config.seed)
    stream = stream_pass(model, data.x_train[: config.batch_size], data.y_train[: config.batch_size])
    return BlockProfileResult(config, stream)


# ----------------------------------------------------------------------------------------------------
# Where the ReLU sits: the original block φ(x + F(x)) against the clean block x + F(x)


class PlacementConfig(Config):
    """One forward and backward pass (cross-entropy on a digits batch, float64) per network and seed.

    The default networks come in pairs that share their weights and differ only in the ReLU after the
    addition: clean (x_l = x_{l-1} + F(x_{l-1})) and original (x_l = φ(x_{l-1} + F(x_{l-1}))), without and
    with BatchNorm in the branch. Every network needs skips; ``n_seeds`` networks per spec (seeds
    ``seed``, ``seed + 1``, ...).
    """

    depth: int = integer(50, low=1, high=500)
    networks: tuple[NetworkSpec, ...] = _networks(PLACEMENT_NETWORKS)
    width: int = integer(64, low=1, high=2048)
    batch_size: int = integer(128, low=2, high=1437)
    n_seeds: int = positive(3, integer=True)
    seed: int = seed_field()

    def check(self) -> None:
        if not all(spec.skip for spec in self.networks):
            raise ValueError(
                "every network of a PlacementConfig needs skip=True (the ReLU follows the addition)"
            )


@dataclass(frozen=True)
class PlacementResult:
    """Per block l = 0..L, for network s of spec i:

    - stream_grad[i, s, l] = ‖∂J/∂x_l‖ / ‖∂J/∂x_L‖, the backward signal relative to the one leaving the
      last block;
    - identity_share[i, s, l] = the mean over examples and units of D_L ⋯ D_{l+1} (1 at l = L): the share
      of the entries through which the identity path alone carries the gradient from x_L back to x_l; 1 at
      every l for a clean block (no mask);
    - active[i, s, l - 1] (l = 1..L) = the share of entries of x_{l-1} + α F(x_{l-1}) that are positive,
      the 1s of D_l (1 for a clean block).

    Args:
        stream_grad: (n_networks, n_seeds, L + 1) array.
        identity_share: (n_networks, n_seeds, L + 1) array.
        active: (n_networks, n_seeds, L) array.
    """

    config: PlacementConfig
    stream_grad: np.ndarray
    identity_share: np.ndarray
    active: np.ndarray

    @property
    def blocks(self) -> np.ndarray:
        """l = 0..L."""
        return np.arange(self.config.depth + 1)

    def typical_grad(self) -> np.ndarray:
        """Geometric mean over networks of ``stream_grad``: (n_networks, L + 1)."""
        return np.exp(np.log(self.stream_grad).mean(axis=1))

    def grad_ratio(self, spec: NetworkSpec) -> float:
        """‖∂J/∂x_0‖ / ‖∂J/∂x_L‖, geometric mean over networks."""
        return float(self.typical_grad()[_index(spec, self.config.networks), 0])

    def growth_per_block(self, spec: NetworkSpec) -> float:
        """The typical factor of the backward signal per block, (‖∂J/∂x_0‖ / ‖∂J/∂x_L‖)^(1/L)."""
        return self.grad_ratio(spec) ** (1.0 / self.config.depth)

    def mean_active(self, spec: NetworkSpec) -> float:
        """Share of the entries the ReLU after the addition lets through, mean over blocks and networks."""
        return float(self.active[_index(spec, self.config.networks)].mean())

    def identity_share_at_input(self, spec: NetworkSpec) -> float:
        """Share of entries whose identity path survives every mask from x_L back to x_0 (mean over
        networks)."""
        return float(self.identity_share[_index(spec, self.config.networks), :, 0].mean())


def run_placement(config: PlacementConfig) -> PlacementResult:
    """``stream_pass`` on every network and seed (float64); the masks D_l of the ReLU after each addition are
    read from the same pass (forward hooks on the blocks: x_l > 0 exactly where x_{l-1} + αF > 0).

    Networks of the same seed share their weights (``build_network``), so the clean and the original block
    differ only by the ReLU after the addition.
    """
    data = load_image_data("digits")
    x, y = data.x_train[: config.batch_size], data.y_train[: config.batch_size]
    n, depth = len(config.networks), config.depth
    grads = np.empty((n, config.n_seeds, depth + 1))
    share = np.empty((n, config.n_seeds, depth + 1))
    active = np.empty((n, config.n_seeds, depth))
    for i, spec in enumerate(config.networks):
        for s in range(config.n_seeds):
            model = _build(spec, data, depth=depth, width=config.width, seed=config.seed + s, dtype="float64")
            masks: list[Tensor] = []  # x_l = φ(pre) > 0 exactly where pre > 0: the 1s of D_l
            hooks = [
                block.register_forward_hook(lambda _m, _i, out, masks=masks: masks.append(out.detach() > 0))
                for block in (model.blocks if spec.post_activation else ())
            ]
            try:
                result = stream_pass(model, x, y)
            finally:
                for hook in hooks:
                    hook.remove()
            grads[i, s] = result.stream_grad / result.stream_grad[-1]
            if not spec.post_activation:  # a clean block has no mask: D = I
                active[i, s], share[i, s] = 1.0, 1.0
                continue
            active[i, s] = [float(m.double().mean()) for m in masks]
            survive = torch.ones_like(masks[0])
            share[i, s, depth] = 1.0
            for layer in range(depth, 0, -1):  # the identity path from x_L back to x_{layer-1}
                survive = survive & masks[layer - 1]
                share[i, s, layer - 1] = float(survive.double().mean())
    return PlacementResult(config, grads, share, active)


# ----------------------------------------------------------------------------------------------------
# Shattered gradients: df/dx along a line of inputs, plain against residual


def lag1_autocorrelation(values: np.ndarray) -> float:
    """ρ = Σ_i (v_i − v̄)(v_{i+1} − v̄) / Σ_i (v_i − v̄)² of a 1-D sequence: near 1 for a smooth curve, near
    0 for white noise (Balduzzi et al.'s measure of shattering, at lag 1)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 3:
        raise ValueError(f"values must be a 1-D sequence of at least 3 numbers; got shape {v.shape}")
    v = v - v.mean()
    denominator = float(v @ v)
    if denominator == 0.0:
        return math.nan
    return float(v[1:] @ v[:-1]) / denominator


class ShatteredConfig(Config):
    """Networks with one input and one output, evaluated at ``n_points`` inputs evenly spaced on
    [−interval, interval] (float64), as in Balduzzi et al. (2017), at increasing depths L.

    Each BatchNorm takes its statistics from the grid of points (one training-mode pass) and keeps them,
    so f is an ordinary function of one input and df/dx at each point is that point's own derivative.
    ``n_seeds`` networks per spec and depth (seeds ``seed``, ``seed + 1``, ...).
    """

    depths: tuple[int, ...] = nonempty(integer(low=1, high=500), default=(1, 2, 5, 10, 20, 50))
    networks: tuple[NetworkSpec, ...] = _networks(SHATTER_NETWORKS)
    width: int = integer(64, low=1, high=2048)
    n_points: int = integer(256, low=8, high=100_000)
    interval: float = positive(2.0)
    n_seeds: int = positive(3, integer=True)
    seed: int = seed_field()

    def check(self) -> None:
        _check_increasing(self.depths)


@dataclass(frozen=True)
class ShatteredResult:
    """autocorrelation[i, s, d]: the lag-1 autocorrelation of df/dx along the grid for network s of spec i
    at depth ``depths[d]``; gradient[i, p]: df/dx at point p of the first network (seed ``seed``) of spec i
    at the deepest depth.

    Args:
        autocorrelation: (n_networks, n_seeds, n_depths) array.
        gradient: (n_networks, n_points) array.
    """

    config: ShatteredConfig
    autocorrelation: np.ndarray
    gradient: np.ndarray

    @property
    def points(self) -> np.ndarray:
        """The inputs x of the grid."""
        return np.linspace(-self.config.interval, self.config.interval, self.config.n_points)

    @property
    def depths(self) -> np.ndarray:
        """The depths L."""
        return np.array(self.config.depths)

    def mean(self) -> np.ndarray:
        """Mean over networks of the autocorrelation: (n_networks, n_depths)."""
        return self.autocorrelation.mean(axis=1)

    def at(self, spec: NetworkSpec, depth: int) -> float:
        """The mean over networks of the lag-1 autocorrelation for one spec and depth."""
        if depth not in self.config.depths:
            raise ValueError(f"depth {depth} was not measured; measured: {self.config.depths}")
        return float(self.mean()[_index(spec, self.config.networks), self.config.depths.index(depth)])


def _freeze_batch_norm(model: ResidualMLP, x: Tensor) -> None:
    """Give every BatchNorm the statistics of the batch x (one training-mode pass), then eval mode."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.momentum = 1.0  # running statistics := those of this one batch
        model.train()(x)
    model.eval()


def _input_gradient(model: ResidualMLP, x: Tensor) -> np.ndarray:
    """df/dx at every point of x (N, 1), with each BatchNorm's statistics taken from x and then frozen."""
    return _prefix_input_gradients(model, x, (len(model.blocks),))[0]


def _prefix_input_gradients(model: ResidualMLP, x: Tensor, depths: tuple[int, ...]) -> list[np.ndarray]:
    """df_L/dx at every point of x (N, 1) for each L in ``depths``, where f_L = head ∘ block_L ∘ ⋯ ∘ block_1
    ∘ stem is the network cut after L blocks. BatchNorm statistics come from x and are then frozen (the
    statistics of block l depend only on the blocks before it, so every prefix sees the ones it would
    compute on its own); points are then independent, so the gradient of the sum is each point's df/dx."""
    _freeze_batch_norm(model, x)
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
    """Build one network per spec and seed with the deepest depth (one input, one output), and record the
    lag-1 autocorrelation of df/dx for each depth L of the config, cutting the network after L blocks
    (stem, blocks 1..L, head): the networks of one seed share their first blocks."""
    x = torch.linspace(-config.interval, config.interval, config.n_points, dtype=torch.float64)[:, None]
    shape = (len(config.networks), config.n_seeds, len(config.depths))
    autocorrelation = np.empty(shape)
    gradient = np.empty((len(config.networks), config.n_points))
    for i, spec in enumerate(config.networks):
        for s in range(config.n_seeds):
            model = _build(
                spec,
                (1, 1),
                depth=config.depths[-1],
                width=config.width,
                seed=config.seed + s,
                dtype="float64",
            )
            grads = _prefix_input_gradients(model, x, config.depths)
            autocorrelation[i, s] = [lag1_autocorrelation(g) for g in grads]
            if s == 0:
                gradient[i] = grads[-1]
    return ShatteredResult(config, autocorrelation, gradient)


# ----------------------------------------------------------------------------------------------------
# Which block torchvision's ResNet-18 uses


@dataclass(frozen=True)
class TorchvisionBlockCheck:
    """Autograd's Jacobian of a block of torchvision's ResNet-18 against the two block Jacobians.

    Args:
        block: the block checked, e.g. "layer1.0 (BasicBlock)".
        n_inputs: entries of the input (the Jacobian is n_inputs × n_inputs).
        output_min: the smallest entry of the block's output (0 when a ReLU follows the addition).
        negative_share: share of the entries of x + F(x) that are negative (the 0s of D).
        error_original: max |J − D(I + ∂F/∂x)|, the original (post-activation) block's Jacobian.
        error_clean: max |J − (I + ∂F/∂x)|, the clean (pre-activation) block's Jacobian.
    """

    block: str
    n_inputs: int
    output_min: float
    negative_share: float
    error_original: float
    error_clean: float


def check_torchvision_block(seed: int = 0, size: int = 2) -> TorchvisionBlockCheck:
    """Take the first block of ``torchvision.models.resnet18(weights=None)`` (layer1.0, a ``BasicBlock`` of 64
    channels, eval mode, float64), feed it a random input (1, 64, size, size) and compare autograd's
    Jacobian of the block with D(I + ∂F/∂x) and with I + ∂F/∂x, where F = bn2 ∘ conv2 ∘ relu ∘ bn1 ∘ conv1
    is its branch and D = diag(1[x + F(x) > 0]).

    Args:
        seed: seed of the weights and of the input.
        size: height and width of the input.
    """
    import torchvision

    check_int("seed", seed, minimum=0)
    check_int("size", size, minimum=1, maximum=8)
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


@dataclass(frozen=True)
class TorchvisionBlockSource:
    """What the installed torchvision's ``BasicBlock.forward`` (the block of ResNet-18 and -34) does after
    its branch, read from the source file without importing torchvision.

    Args:
        path: the source file, torchvision/models/resnet.py.
        addition: the statement that adds the identity, e.g. "out += identity".
        after_addition: the statements between the addition and the return, e.g. ["out = self.relu(out)"].
        relu_after_addition: whether one of those applies the block's ReLU: the original, post-activation
            block.
    """

    path: str
    addition: str
    after_addition: list[str]
    relu_after_addition: bool


def torchvision_block_source(class_name: str = "BasicBlock") -> TorchvisionBlockSource:
    """Parse ``class_name``'s ``forward`` in the installed torchvision/models/resnet.py (no import of
    torchvision, which takes seconds): find the ``+=`` that adds the identity and what follows it.

    Args:
        class_name: "BasicBlock" (ResNet-18, -34) or "Bottleneck" (ResNet-50 and deeper).
    """
    import ast
    import importlib.util
    from pathlib import Path

    check_choice("class_name", class_name, ("BasicBlock", "Bottleneck"))
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("torchvision is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "resnet.py"
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    forward = next(
        item
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name == class_name
        for item in node.body
        if isinstance(item, ast.FunctionDef) and item.name == "forward"
    )
    body = forward.body
    index = next(
        i for i, stmt in enumerate(body) if isinstance(stmt, ast.AugAssign) and isinstance(stmt.op, ast.Add)
    )
    after = [stmt for stmt in body[index + 1 :] if not isinstance(stmt, ast.Return)]
    after_text = [ast.get_source_segment(source, stmt) or "" for stmt in after]
    relu = any("relu" in text for text in after_text)
    return TorchvisionBlockSource(
        str(path), ast.get_source_segment(source, body[index]) or "", after_text, relu
    )
