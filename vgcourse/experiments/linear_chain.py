"""The linear-chain chapter: back propagation as a product of Jacobians, measured.

A chain a_l = W_l h_{l-1}, h_l = f(a_l) back-propagates δ_L = D_L ∂J/∂h_L, δ_l = D_l W_{l+1}^T δ_{l+1},
∂J/∂W_l = δ_l h_{l-1}^T (D_l = diag f'(a_l)): a product of one Jacobian D_k W_k per layer above l, which
with identity activations shrinks or grows like s^(L-1) for factors of size s."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from vgcourse._validation import check_choice, check_float, check_int
from vgcourse.activations import ACTIVATIONS, derivative, make_activation
from vgcourse.config import (
    Config,
    Grid,
    check_config,
    derive,
    flag,
    integer,
    nonempty,
    one_of,
    positive,
    real,
    relative_error,
    seed_field,
)
from vgcourse.device import flush_denormal

INITS = ("orthogonal", "gaussian")
DTYPES = ("float16", "bfloat16", "float32", "float64")
_FLOAT64 = torch.float64


# -- Building blocks: weights, the forward chain, gradients by Jacobian products and by autograd -------------
def random_weights(
    widths: Sequence[int],
    init: str = "gaussian",
    scale: float = 1.0,
    *,
    generator: torch.Generator | None = None,
    batch: tuple[int, ...] = (),
) -> list[Tensor]:
    """Weights W_1..W_L (n_l × n_{l-1}, leading shape ``batch``) for sizes (n_0..n_L): "gaussian" entries
    N(0, s²/n_{l-1}), "orthogonal" s·Q with Q Haar-random, orthonormal columns (or rows, when wide)."""
    check_choice("init", init, INITS)
    check_float("scale", scale)
    if len(widths) < 2:
        raise ValueError(f"widths needs at least 2 sizes (input and output); got {list(widths)}")
    widths = [check_int("width", n, minimum=1) for n in widths]
    weights = []
    for n_in, n_out in itertools.pairwise(widths):
        if init == "gaussian":
            z = torch.randn(*batch, n_out, n_in, generator=generator, dtype=_FLOAT64)
            weights.append(z.mul_(scale / math.sqrt(n_in)))
        else:
            weights.append(scale * _haar(n_out, n_in, batch, generator))
    return weights


def _haar(rows: int, cols: int, batch: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    """A uniformly random rows × cols matrix with orthonormal columns (rows >= cols) or rows."""
    z = torch.randn(*batch, max(rows, cols), min(rows, cols), generator=generator, dtype=_FLOAT64)
    q, r = torch.linalg.qr(z)
    sign = torch.where(torch.diagonal(r, dim1=-2, dim2=-1) >= 0, 1.0, -1.0).to(_FLOAT64)
    q = q * sign.unsqueeze(-2)  # fix QR's sign freedom so Q is Haar-distributed
    return q if rows >= cols else q.transpose(-1, -2)


def forward_chain(
    weights: Sequence[Tensor], x: Tensor, activation: str = "identity"
) -> tuple[list[Tensor], list[Tensor]]:
    """Run a_l = W_l h_{l-1}, h_l = f(a_l) from h_0 = x, shape (..., n_0); return ([a_1..a_L], [h_0..h_L])."""
    f = make_activation(check_choice("activation", activation, ACTIVATIONS))
    pre, hidden = [], [x]
    for w in weights:
        pre.append((w @ hidden[-1].unsqueeze(-1)).squeeze(-1))
        hidden.append(f(pre[-1]))
    return pre, hidden


def jacobian_product_gradients(
    weights: Sequence[Tensor], x: Tensor, output_grad: Tensor, activation: str = "identity"
) -> list[Tensor]:
    """∂J/∂W_l = δ_l h_{l-1}^T with δ_l = M_l^T g, M_l = ∂h_L/∂a_l = (D_L W_L)⋯(D_{l+1} W_{l+1}) D_l, each M_l
    an explicit matrix built from the output down without autograd, for one input x (shape (n_0,)) and the
    output gradient g = ∂J/∂h_L (``output_grad``, shape (n_L,))."""
    depth = len(weights)
    with torch.no_grad():
        pre, hidden = forward_chain(weights, x, activation)  # [a_1 .. a_L], [h_0 .. h_L]
        W = [None, *weights]  # W[k] is W_k, k = 1..L
        D = [None, *(torch.diag(derivative(activation, a)) for a in pre)]  # D[k] = diag f'(a_k)
        grads = [None] * (depth + 1)
        M = D[depth]  # M_L = ∂h_L/∂a_L = D_L
        for k in range(depth, 0, -1):  # from the output down
            if k < depth:
                M = M @ W[k + 1] @ D[k]  # M_k = M_{k+1} W_{k+1} D_k
            delta = M.T @ output_grad  # δ_k = M_k^T g
            grads[k] = torch.outer(delta, hidden[k - 1])  # ∂J/∂W_k = δ_k h_{k-1}^T
    return grads[1:]


def autograd_gradients(
    weights: Sequence[Tensor], x: Tensor, output_grad: Tensor, activation: str = "identity"
) -> list[Tensor]:
    """∂J/∂W_l for J = g·h_L (g = ``output_grad``) by PyTorch's autograd: the closed form's reference."""
    leaves = [w.detach().clone().requires_grad_(True) for w in weights]
    with torch.enable_grad():
        _, hidden = forward_chain(leaves, x, activation)
        return list(torch.autograd.grad((output_grad * hidden[-1]).sum(), leaves))


# -- The closed form vs autograd, on random chains -----------------------------------------------------------
class GradientCheckConfig(Config):
    """Random float64 chains on which to compare ``jacobian_product_gradients`` with autograd: weights
    N(0, 1/n_in), x and g standard normal, chain c's activation ``activations[c % len(activations)]``."""

    n_chains: int = positive(40, integer=True)
    max_depth: int = positive(8, integer=True)  # each chain's depth is drawn from 1..max_depth
    max_width: int = positive(6, integer=True)  # and each width from 1..max_width
    activations: tuple[str, ...] = nonempty(
        one_of(*ACTIVATIONS), default=("identity", "tanh", "sigmoid", "relu")
    )
    n_scalar: int = integer(4, low=0)  # the first n_scalar chains have every width 1
    seed: int = seed_field()

    def check(self) -> None:
        check_int("n_scalar", self.n_scalar, minimum=0, maximum=self.n_chains)


class CheckedChain(NamedTuple):
    """One random chain of ``run_gradient_check``."""

    activation: str
    widths: tuple[int, ...]  # (n_0, ..., n_L)
    errors: np.ndarray  # (L,) ‖G_closed − G_autograd‖ / ‖G_autograd‖, layer 1 first


@dataclass(frozen=True)
class GradientCheckResult:
    config: GradientCheckConfig
    chains: tuple[CheckedChain, ...]  # every chain checked
    max_relative_error: float  # over all chains
    n_layers: int  # layers compared, over all chains

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per activation: chains, layers compared, largest relative error."""
        import pandas as pd

        rows = [(c.activation, 1, c.errors.size, c.errors.max()) for c in self.chains]
        frame = pd.DataFrame(rows, columns=["activation", "chains", "layers compared", "max relative error"])
        agg = {"chains": "sum", "layers compared": "sum", "max relative error": "max"}
        return frame.groupby("activation", sort=False).agg(agg)


def run_gradient_check(config: GradientCheckConfig) -> GradientCheckResult:
    check_config(config, GradientCheckConfig)
    generator = torch.Generator().manual_seed(config.seed)
    chains = []
    for c in range(config.n_chains):
        activation = config.activations[c % len(config.activations)]
        depth = int(torch.randint(1, config.max_depth + 1, (), generator=generator))
        sizes = (1,) * (depth + 1)  # a scalar chain, else widths drawn from 1..max_width
        if c >= config.n_scalar:
            sizes = tuple(torch.randint(1, config.max_width + 1, (depth + 1,), generator=generator).tolist())
        weights = random_weights(sizes, "gaussian", generator=generator)
        x = torch.randn(sizes[0], generator=generator, dtype=_FLOAT64)
        g = torch.randn(sizes[-1], generator=generator, dtype=_FLOAT64)
        closed = jacobian_product_gradients(weights, x, g, activation)
        pairs = zip(closed, autograd_gradients(weights, x, g, activation), strict=True)
        norms = [(float(torch.linalg.norm(c_ - a_)), float(torch.linalg.norm(a_))) for c_, a_ in pairs]
        errors = np.array([relative_error(d, r) for d, r in norms])  # ‖closed − autograd‖ / ‖autograd‖
        chains.append(CheckedChain(activation, sizes, errors))
    max_error, n_layers = max(ch.errors.max() for ch in chains), sum(ch.errors.size for ch in chains)
    return GradientCheckResult(config, tuple(chains), float(max_error), int(n_layers))


# -- Geometric growth: s^L -----------------------------------------------------------------------------------
class GeometricConfig(Config):
    """The products s^L for a few factors s (> 0) and depths L (>= 0)."""

    factors: tuple[float, ...] = nonempty(positive(), default=(0.99, 1.01))
    depths: tuple[int, ...] = nonempty(integer(low=0), default=(3, 7, 100, 300))


@dataclass(frozen=True)
class GeometricResult:
    """s^L on the axes depth × factor (``powers.sel(factor=0.99, depth=100)``) and, per factor, the layers
    ln 2 / |ln s| after which s^L has halved (s < 1) or doubled (s > 1); inf for s = 1."""

    config: GeometricConfig
    powers: Grid
    halving_depths: Grid

    def to_frame(self) -> Any:
        """A pandas DataFrame: one row per depth L, one column "s^L" per factor."""
        import pandas as pd

        columns = {f"{s:g}^L": self.powers.values[:, j] for j, s in enumerate(self.config.factors)}
        return pd.DataFrame(columns, index=pd.Index(self.config.depths, name="L"))


def run_geometric(config: GeometricConfig) -> GeometricResult:
    check_config(config, GeometricConfig)
    factors = np.array(config.factors, dtype=np.float64)
    depths = np.array(config.depths, dtype=np.float64)
    with np.errstate(divide="ignore"):
        halving = np.log(2.0) / np.abs(np.log(factors))
    powers = Grid(factors[None, :] ** depths[:, None], name="s^L", depth=config.depths, factor=config.factors)
    return GeometricResult(config, powers, Grid(halving, name="halving depth", factor=config.factors))


# -- The first layer's gradient vs depth ---------------------------------------------------------------------
class ChainDepthSweepConfig(Config):
    """``n_seeds`` deep linear networks h_L = W_L⋯W_1 x of width n and depths 1..max_depth, J = g·h_L with
    unit x and g (float64), at each weight scale s (``random_weights``): the same matrices at every scale."""

    max_depth: int = integer(100, low=1, high=10_000)
    width: int = integer(64, low=1, high=4096)
    scales: tuple[float, ...] = nonempty(positive(), default=(0.9, 1.0, 1.1))
    init: str = one_of(*INITS, default="orthogonal")
    n_seeds: int = positive(16, integer=True)
    seed: int = seed_field()


@dataclass(frozen=True)
class ChainDepthSweepResult:
    """‖∂J/∂W_1‖ of network k of depth L at scale s, its quantiles over networks, and the predictions:
    s^(L-1) (exact for orthogonal weights, the root-mean-square for Gaussian ones), E ln‖∂J/∂W_1‖ =
    (L-1)(ln s + c_n) (``log_gain_drift``) and the std of ln‖∂J/∂W_1‖, 0 (orthogonal) or ½√((L-1)ψ'(n/2))."""

    config: ChainDepthSweepConfig
    grad_norm: Grid  # scale × seed × depth
    quantiles: Grid  # q (0.1, 0.5, 0.9) × scale × depth
    predicted_norm: Grid  # scale × depth: s^(L-1)
    predicted_log_mean: Grid  # scale × depth: E ln‖∂J/∂W_1‖
    predicted_log_std: np.ndarray  # (max_depth,)


def log_gain_drift(width: int, init: str = "gaussian") -> float:
    """c_n = E ln(‖W^T u‖/‖u‖) at scale 1 for an n × n layer: 0 for orthogonal W, ½(ψ(n/2) + ln(2/n)) ≈
    −1/(2n) for N(0, 1/n)."""
    check_int("width", width, minimum=1)
    if check_choice("init", init, INITS) == "orthogonal":
        return 0.0
    return 0.5 * (float(torch.special.digamma(torch.tensor(width / 2, dtype=_FLOAT64))) + math.log(2 / width))


def run_chain_depth_sweep(config: ChainDepthSweepConfig) -> ChainDepthSweepResult:
    """‖∂J/∂W_1‖ = ‖W_2^T⋯W_L^T g‖·‖x‖ for every depth L, one autograd pass per scale: depth L is the top L
    layers of one stack fed with x (exact: a linear chain's backward pass never uses forward values)."""
    check_config(config, ChainDepthSweepConfig)
    generator = torch.Generator().manual_seed(config.seed)
    n, depth, seeds = config.width, config.max_depth, config.n_seeds
    base = random_weights([n] * (depth + 1), config.init, 1.0, generator=generator, batch=(seeds,))
    x = _unit(torch.randn(seeds, n, generator=generator, dtype=_FLOAT64))
    g = _unit(torch.randn(seeds, n, generator=generator, dtype=_FLOAT64))
    norms = np.empty((len(config.scales), seeds, depth))
    for i, s in enumerate(config.scales):
        weights = [s * w for w in base]
        with torch.enable_grad():
            pre, hidden = forward_chain(weights, x.clone().requires_grad_(True))
            deltas = torch.autograd.grad((g * hidden[-1]).sum(), pre)
        delta_norms = torch.stack([torch.linalg.norm(d, dim=-1) for d in deltas], dim=-1)  # (seeds, D)
        norms[i] = delta_norms.flip(-1).numpy() * torch.linalg.norm(x, dim=-1, keepdim=True).numpy()
    depths = np.arange(1, depth + 1)
    gaussian = config.init == "gaussian"  # ψ'(n/2) (0 for orthogonal weights)
    trigamma = float(torch.special.polygamma(1, torch.tensor(n / 2, dtype=_FLOAT64))) if gaussian else 0.0
    per_layer = np.log(config.scales)[:, None] + log_gain_drift(n, config.init)
    axes = {"scale": config.scales, "depth": tuple(depths.tolist())}
    quantiles = np.quantile(norms, (0.1, 0.5, 0.9), axis=1)
    return ChainDepthSweepResult(
        config,
        Grid(norms, name="‖∂J/∂W_1‖", scale=config.scales, seed=tuple(range(seeds)), depth=axes["depth"]),
        Grid(quantiles, name="quantile of ‖∂J/∂W_1‖", q=(0.1, 0.5, 0.9), **axes),
        Grid(np.array(config.scales)[:, None] ** (depths[None, :] - 1.0), name="s^(L-1)", **axes),
        Grid(per_layer * (depths[None, :] - 1.0), name="E ln‖∂J/∂W_1‖", **axes),
        0.5 * np.sqrt((depths - 1.0) * trigamma),
    )


def _unit(v: Tensor) -> Tensor:
    return v / torch.linalg.norm(v, dim=-1, keepdim=True)


class WidthSweepConfig(Config):
    """Gaussian deep linear networks (N(0, s²/n) entries) at several widths n: how their spread shrinks."""

    widths: tuple[int, ...] = nonempty(integer(low=1, high=4096), default=(8, 32, 128))
    max_depth: int = integer(100, low=1, high=10_000)
    scale: float = positive(1.0)
    n_seeds: int = integer(16, low=2)
    seed: int = seed_field()


@dataclass(frozen=True)
class WidthSweepResult:
    """Statistics of ln‖∂J/∂W_1‖ over each width's Gaussian networks, measured and predicted."""

    config: WidthSweepConfig
    log_mean: Grid  # width × depth: the mean over networks
    log_std: Grid  # width × depth: the standard deviation over networks
    predicted_log_mean: Grid  # width × depth: (L-1)(ln s + c_n)
    predicted_log_std: Grid  # width × depth: ½√((L-1)ψ'(n/2))


def run_width_sweep(config: WidthSweepConfig) -> WidthSweepResult:
    """Run a Gaussian ``run_chain_depth_sweep`` at each width (seeds ``config.seed + i``)."""
    check_config(config, WidthSweepConfig)
    sweeps = tuple(
        run_chain_depth_sweep(
            derive(ChainDepthSweepConfig, config, width=n, scales=(config.scale,), init="gaussian", seed=seed)
        )
        for seed, n in enumerate(config.widths, start=config.seed)
    )
    for n, sweep in zip(config.widths, sweeps, strict=True):
        # 0 or inf where the norm's square left float64's range: its ln would be ∓inf
        if not np.all((sweep.grad_norm.values > 0) & (sweep.grad_norm.values < math.inf)):
            at = f"width {n}, scale {config.scale:g} within max_depth {config.max_depth}"
            raise ValueError(f"‖∂J/∂W_1‖ leaves float64's range at {at}: try a smaller max_depth")
    logs = [np.log(s.grad_norm.values[0]) for s in sweeps]
    axes = {"width": config.widths, "depth": tuple(range(1, config.max_depth + 1))}
    return WidthSweepResult(
        config,
        Grid(np.stack([v.mean(axis=0) for v in logs]), name="mean ln‖∂J/∂W_1‖", **axes),
        Grid(np.stack([v.std(axis=0, ddof=1) for v in logs]), name="std ln‖∂J/∂W_1‖", **axes),
        Grid(np.stack([s.predicted_log_mean.values[0] for s in sweeps]), name="E ln‖∂J/∂W_1‖", **axes),
        Grid(np.stack([s.predicted_log_std for s in sweeps]), name="predicted std ln‖∂J/∂W_1‖", **axes),
    )


class LayerGainConfig(Config):
    """How much one n × n layer W^T scales unit vectors u, by weight std (``n_samples`` (W, u) per n)."""

    widths: tuple[int, ...] = nonempty(integer(low=1, high=4096), default=(16, 64, 256))
    n_samples: int = integer(64, low=2)
    seed: int = seed_field()


@dataclass(frozen=True)
class LayerGainResult:
    """Per width, root-mean-square gains √mean‖W^T u‖² with entries N(0, 1) (≈ √n) and N(0, 1/n) (≈ 1)."""

    config: LayerGainConfig
    unscaled_gain: Grid  # on the axis width
    scaled_gain: Grid

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per width: √n and both measured gains."""
        import pandas as pd

        widths = np.array(self.config.widths)
        gains = {"gain, std 1": self.unscaled_gain.values, "gain, std 1/√n": self.scaled_gain.values}
        return pd.DataFrame({"√n": np.sqrt(widths), **gains}, index=pd.Index(widths, name="width n"))


def run_layer_gain(config: LayerGainConfig) -> LayerGainResult:
    """Measure the RMS gain E‖W^T u‖² = n·std²: standard deviation 1/√n keeps it at 1."""
    check_config(config, LayerGainConfig)
    generator = torch.Generator().manual_seed(config.seed)
    unscaled, scaled = [], []
    for n in config.widths:
        z = torch.randn(config.n_samples, n, n, generator=generator, dtype=_FLOAT64)
        u = _unit(torch.randn(config.n_samples, n, generator=generator, dtype=_FLOAT64))
        gain2 = (torch.linalg.norm((z.transpose(-1, -2) @ u.unsqueeze(-1)).squeeze(-1), dim=-1) ** 2).mean()
        unscaled.append(float(gain2.sqrt()))
        scaled.append(float((gain2 / n).sqrt()))
    return LayerGainResult(config, Grid(unscaled, width=config.widths), Grid(scaled, width=config.widths))


# -- Singular values of the product W_L⋯W_1 ------------------------------------------------------------------
class ProductSpectrumConfig(Config):
    """P_L = W_L⋯W_1 of one n-wide float64 chain, L = 1..max_depth: extreme singular values and ‖P_L^T g‖."""

    max_depth: int = integer(100, low=1, high=2000)
    width: int = integer(32, low=1, high=1024)
    scale: float = positive(1.0)
    init: str = one_of(*INITS, default="gaussian")
    resolution: float = real(1e-12, low=0.0, high=1.0, low_open=True)  # float64 resolves σ >= this·σ_max
    seed: int = seed_field()


@dataclass(frozen=True)
class ProductSpectrumResult:
    """Per depth L: σ_max(P_L), σ_min(P_L) (as float64 computes it) and ‖∂J/∂h_0‖ = ‖P_L^T g‖ (‖g‖ = 1)."""

    config: ProductSpectrumConfig
    depths: np.ndarray  # 1..max_depth
    sigma_max: np.ndarray
    sigma_min: np.ndarray
    grad_norm: np.ndarray  # from autograd
    condition: np.ndarray  # σ_max / σ_min
    resolved: np.ndarray  # σ_min >= resolution·σ_max: float64 still resolves σ_min
    unresolved_depth: int | None  # the first depth not resolved
    bound_holds: np.ndarray  # σ_min <= ‖P_L^T g‖ <= σ_max (relative tolerance 1e-9)


def run_product_spectrum(config: ProductSpectrumConfig) -> ProductSpectrumResult:
    """Accumulate P_L = W_L P_{L-1}, take its singular values, and ∂(g·P_L x)/∂x by autograd per depth."""
    check_config(config, ProductSpectrumConfig)
    generator = torch.Generator().manual_seed(config.seed)
    n = config.width
    weights = random_weights([n] * (config.max_depth + 1), config.init, config.scale, generator=generator)
    x = torch.randn(n, generator=generator, dtype=_FLOAT64, requires_grad=True)
    g = _unit(torch.randn(n, generator=generator, dtype=_FLOAT64))
    products = itertools.accumulate(weights, lambda p, w: w @ p, initial=torch.eye(n, dtype=_FLOAT64))
    sigmas = torch.linalg.svdvals(torch.stack(list(products)[1:]))  # (D, n), descending
    grads = []
    with torch.enable_grad():
        _, hidden = forward_chain(weights, x)
        for h in hidden[1:]:
            (grad,) = torch.autograd.grad((g * h).sum(), x, retain_graph=True)
            grads.append(float(torch.linalg.norm(grad)))
    depths = np.arange(1, config.max_depth + 1)
    high, low, grads = sigmas[:, 0].numpy(), sigmas[:, -1].numpy(), np.array(grads)
    resolved = low >= config.resolution * high
    bound = (low * (1 - 1e-9) <= grads) & (grads <= high * (1 + 1e-9))
    unresolved = _first(~resolved)
    return ProductSpectrumResult(config, depths, high, low, grads, high / low, resolved, unresolved, bound)


# -- Floating-point limits: the depth at which the gradient becomes exactly 0 or inf -------------------------
def _dtype(name: str) -> torch.dtype:
    return getattr(torch, check_choice("dtype", name, DTYPES))


def float_format(dtype: str) -> dict[str, float]:
    """A float format's exponent and stored mantissa bits, smallest subnormal and normal, largest, ε."""
    info = torch.finfo(_dtype(dtype))
    mantissa_bits = round(-math.log2(info.eps))
    return {
        "exponent bits": info.bits - mantissa_bits - 1,
        "mantissa bits": mantissa_bits,
        "smallest subnormal": info.tiny * info.eps,
        "smallest normal": info.tiny,
        "largest finite": info.max,
        "epsilon": info.eps,
    }


def _rounded(factor: float, dtype: str) -> float:
    """The factor as the format stores it (0.9 in bfloat16 is 0.8984375)."""
    return float(torch.tensor(factor, dtype=_dtype(dtype)).double())


def predicted_depth(factor: float, dtype: str, event: str) -> int | None:
    """Depth L at which f^(L-1) first becomes exactly 0 (f < 1), subnormal (f < 1: below the smallest normal
    number) or inf (f > 1: above the largest finite one). 0 needs f^k <= half the smallest subnormal (a tie
    rounds to the even 0): never for stored f in (1/2, 1), where ×f then rounds back to the same number."""
    f = _rounded(check_float("factor", factor, minimum=0.0, strict_minimum=True), dtype)
    shrinks = check_choice("event", event, ("zero", "subnormal", "inf")) != "inf"
    if (f >= 1.0) if shrinks else (f <= 1.0):
        raise ValueError(f"factor {factor} is {f:g} in {dtype}: f^(L-1) never becomes {event}")
    info = float_format(dtype)
    if event == "zero":
        half_step = math.log(info["smallest subnormal"]) - math.log(2.0)  # no underflow
        return None if f > 0.5 else math.ceil(half_step / math.log(f) - 1e-9) + 1
    if event == "subnormal":
        return math.floor(math.log(info["smallest normal"]) / math.log(f) + 1e-9) + 2
    return math.ceil(math.log(info["largest finite"]) / math.log(f) - 1e-9) + 1


def rounding_slack(factor: float, dtype: str, depth: int) -> int:
    """Layers by which rounding can move a predicted depth L, at worst: max(2, ⌈(L-1)·(ε/2)/|ln f|⌉), since
    each ×f has relative error <= ε/2, so ln|f^(L-1)| is off by at most (L-1)·ε/2."""
    f = _rounded(check_float("factor", factor, minimum=0.0, strict_minimum=True), dtype)
    check_int("depth", depth, minimum=1)
    if f == 1.0:
        raise ValueError(f"factor {factor} is 1 in {dtype}")
    unit_roundoff = float_format(dtype)["epsilon"] / 2
    return max(2, math.ceil((depth - 1) * unit_roundoff / abs(math.log(f))))


def first_layer_gradient(factor: float, depth: int, dtype: str) -> float:
    """∂J/∂w_1 of a fresh scalar chain h_l = w_l h_{l-1}, all w_l = f, x = 1, J = h_L: f^(L-1) in a format."""
    check_float("factor", factor)
    check_int("depth", depth, minimum=1)
    kind = _dtype(dtype)
    weights = [torch.tensor(factor, dtype=kind, requires_grad=True) for _ in range(depth)]
    h = torch.tensor(1.0, dtype=kind)
    with torch.enable_grad():
        for w in weights:
            h = w * h
        (grad,) = torch.autograd.grad(h, weights[0])
    return float(grad.double())


def _chain_trace(factors: Any, dtype: torch.dtype, max_depth: int) -> np.ndarray:
    """|f^(L-1)| for L = 1..max_depth (rows), read off one scalar chain per factor by one backward pass."""
    weight = torch.tensor(factors, dtype=dtype)
    with torch.enable_grad():
        hidden = [torch.ones(weight.shape, dtype=dtype, requires_grad=True)]
        for _ in range(max_depth - 1):
            hidden.append(weight * hidden[-1])
        grads = torch.autograd.grad(hidden[-1].sum(), hidden)
    # grads[l] = f^(D-1-l); depth L reads grads[D - L] (L = 1: the output layer itself, gradient 1)
    return torch.stack(grads[::-1]).abs().double().numpy()


class FloatLimitsConfig(Config):
    """Scalar chains h_l = f·h_{l-1} (x = 1, J = h_L, f > 0, f ≠ 1) in each float format, to ``max_depth``."""

    dtypes: tuple[str, ...] = nonempty(one_of(*DTYPES), default=DTYPES)
    factors: tuple[float, ...] = nonempty(positive(), default=(0.5, 2.0, 0.9, 1.1))
    max_depth: int = integer(8000, low=2, high=100_000)
    confirm: bool = flag(True)  # read w_1's gradient of fresh chains at the measured depth and one layer less

    def check(self) -> None:
        for dtype, f in itertools.product(self.dtypes, self.factors):  # as each format stores f
            if _rounded(f, dtype) in (0.0, 1.0, math.inf):
                raise ValueError(
                    f"factors must be stored as neither 0, 1 nor inf in each format of dtypes (f^(L-1) would "
                    f"be constant); {dtype} stores {f!r} as {_rounded(f, dtype):g}"
                )


@dataclass(frozen=True)
class FloatLimit:
    """What happens to f^(L-1) for one factor in one format: depths are first L (None: not by max_depth)."""

    dtype: str
    factor: float
    stored_factor: float  # f as the format stores it
    event: str  # "zero" (f < 1) or "inf" (f > 1)
    measured_depth: int | None  # the gradient is exactly 0 / inf
    predicted_depth: int | None  # by ``predicted_depth``
    subnormal_depth: int | None  # the gradient is subnormal (f < 1)
    predicted_subnormal_depth: int | None
    floor: float | None  # the smallest nonzero gradient (f < 1), in multiples of the smallest subnormal
    floor_depth: int | None  # the first depth at which the gradient equals that floor
    confirmed: bool | None  # fresh chains agree at the measured depth and one layer less (None: unchecked)
    agrees: bool  # measured and predicted depths (event and subnormal) agree within ``rounding_slack``
    trace: np.ndarray = field(repr=False)  # |gradient| for depths 1..max_depth, as float64


@dataclass(frozen=True)
class FloatLimitsResult:
    """One ``FloatLimit`` per (dtype, factor): ``limits["bfloat16", 0.9]``, dtypes outer."""

    config: FloatLimitsConfig
    limits: dict[tuple[str, float], FloatLimit]

    def to_frame(self) -> Any:
        """A pandas DataFrame: per format (rows), "measured (predicted)" depths at which f^(L-1) becomes
        0 or inf, and, for f in (1/2, 1), subnormal (columns "f → 0", "f → inf", "f → subnormal")."""
        import pandas as pd

        table: dict[str, dict[str, str]] = {}
        for limit in self.limits.values():
            cells = {"0" if limit.event == "zero" else "inf": (limit.measured_depth, limit.predicted_depth)}
            if limit.event == "zero" and limit.predicted_depth is None:  # the subnormal column first
                cells = {"subnormal": (limit.subnormal_depth, limit.predicted_subnormal_depth), **cells}
            for event, depths in cells.items():
                measured, predicted = ("never" if d is None else d for d in depths)
                table.setdefault(f"{limit.factor:g} → {event}", {})[limit.dtype] = f"{measured} ({predicted})"
        return pd.DataFrame(table).loc[list(self.config.dtypes)].rename_axis("format")

    def formats_frame(self) -> Any:
        """A pandas DataFrame of ``float_format`` for each format."""
        import pandas as pd

        frame = pd.DataFrame({name: float_format(name) for name in self.config.dtypes}).T
        return frame.astype({"exponent bits": int, "mantissa bits": int}).rename_axis("format")


def run_float_limits(config: FloatLimitsConfig) -> FloatLimitsResult:
    """One backward pass through a ``max_depth`` scalar chain per format gives every depth: ∂J/∂h_l = f^(D-l)
    takes the multiplications, in order, of the first layer's gradient of a fresh chain of depth D - l + 1."""
    check_config(config, FloatLimitsConfig)
    limits = {}
    for name in config.dtypes:
        trace = _chain_trace(config.factors, _dtype(name), config.max_depth)  # (D, n_factors)
        for j, f in enumerate(config.factors):
            limits[name, f] = _limit(name, f, trace[:, j], config.confirm)
    return FloatLimitsResult(config, limits)


def _limit(dtype: str, factor: float, trace: np.ndarray, confirm: bool) -> FloatLimit:
    shrinking, info = factor < 1, float_format(dtype)
    event = "zero" if shrinking else "inf"
    measured = _first(trace == 0 if shrinking else np.isinf(trace))
    predicted = predicted_depth(factor, dtype, event)
    subnormal = floor = floor_depth = predicted_sub = None
    if shrinking:
        subnormal = _first((trace > 0) & (trace < info["smallest normal"]))
        predicted_sub = predicted_depth(factor, dtype, "subnormal")
        smallest = trace[trace > 0].min()
        floor, floor_depth = float(smallest / info["smallest subnormal"]), _first(trace == smallest)
    confirmed = None
    if confirm and measured is not None:
        at, before = (first_layer_gradient(factor, depth, dtype) for depth in (measured, measured - 1))
        confirmed = (at == 0.0 and before != 0.0) if shrinking else (math.isinf(at) and math.isfinite(before))
    pairs = ((measured, predicted), (subnormal, predicted_sub))  # within the slack, or both None
    agrees = all(
        m == p if None in (m, p) else abs(m - p) <= rounding_slack(factor, dtype, p) for m, p in pairs
    )
    depths = (measured, predicted, subnormal, predicted_sub, floor, floor_depth)
    return FloatLimit(dtype, factor, _rounded(factor, dtype), event, *depths, confirmed, agrees, trace)


def flush_to_zero_depth(factor: float, dtype: str, max_depth: int) -> int | None:
    """First depth L at which f^(L-1) (0 < f < 1) is exactly 0 when the CPU flushes subnormal results to 0
    (``device.flush_denormal``: the mode is put back after; RuntimeError where it cannot); None: not by
    max_depth."""
    check_float("factor", factor, 0.0, 1.0, strict_minimum=True)
    check_int("max_depth", max_depth, minimum=2, maximum=100_000)
    kind = _dtype(dtype)
    with flush_denormal():
        trace = _chain_trace((factor,), kind, max_depth)[:, 0]  # row L-1 = f^(L-1), as in run_float_limits
    return _first(trace == 0)


def _first(hit: np.ndarray) -> int | None:
    """The first depth L (row L-1) where ``hit`` holds; None if nowhere."""
    return int(np.argmax(hit)) + 1 if hit.any() else None


class FirstStepsConfig(Config):
    """One optimizer step on a weight whose gradient is g, for each g in ``gradients``."""

    gradients: tuple[float, ...] = nonempty(positive(), default=(1.0, 1e-6, 1e-20))
    lr: float = positive(1e-3)
    eps: float = positive(1e-8)  # Adam's ε (PyTorch's default)
    beta1: float = real(0.9, low=0.0, high=1.0, high_open=True)  # < 1: the bias correction divides by 1 - β
    beta2: float = real(0.999, low=0.0, high=1.0, high_open=True)


@dataclass(frozen=True)
class FirstStepResult:
    """|Δw|/lr of one step on a weight with gradient g, on the axis gradient. SGD: |g|. Adam: |m̂|/(√v̂ + ε)
    with m̂ = g, v̂ = g² at step 1 (and while g stays), so |g|/(|g| + ε): 1 for |g| ≫ ε, |g|/ε for |g| ≪ ε."""

    config: FirstStepsConfig
    sgd_step: Grid
    adam_step: Grid


def run_first_steps(config: FirstStepsConfig) -> FirstStepResult:
    """Adam's step 1 (Kingma and Ba 2015, Algorithm 1): m̂ = (1 - β₁)g/(1 - β₁), v̂ = (1 - β₂)g²/(1 - β₂)."""
    check_config(config, FirstStepsConfig)
    g, lr, beta1, beta2 = np.array(config.gradients), config.lr, config.beta1, config.beta2
    m_hat, v_hat = (1 - beta1) * g / (1 - beta1), (1 - beta2) * g * g / (1 - beta2)
    adam = lr * m_hat / (np.sqrt(v_hat) + config.eps) / lr
    axis = {"gradient": config.gradients}
    return FirstStepResult(config, Grid(lr * g / lr, **axis), Grid(adam, **axis))


# -- Per-layer norms in one network (the explorer) -----------------------------------------------------------
class LayerProfileConfig(Config):
    """One deep linear network of ``depth`` layers, width n and scale s; J = g·h_L, unit x and g (float64)."""

    depth: int = integer(30, low=1, high=1000)
    width: int = integer(32, low=1, high=1024)
    scale: float = positive(1.0)
    init: str = one_of(*INITS, default="orthogonal")
    seed: int = seed_field()


@dataclass(frozen=True)
class LayerProfileResult:
    """Per layer l = 1..L: ‖δ_l‖ (backward), ‖h_{l-1}‖ (forward) and ‖∂J/∂W_l‖_F = ‖δ_l‖·‖h_{l-1}‖."""

    config: LayerProfileConfig
    layers: np.ndarray  # 1..L
    backward_norm: np.ndarray  # ‖δ_l‖ = ‖∂J/∂a_l‖, the gradient signal arriving at layer l
    input_norm: np.ndarray  # ‖h_{l-1}‖, the activation entering layer l
    weight_grad_norm: np.ndarray  # ‖∂J/∂W_l‖_F from autograd
    predicted_weight_grad_norm: float  # s^(L-1): exact for orthogonal weights, the RMS for Gaussian ones


def run_layer_profile(config: LayerProfileConfig) -> LayerProfileResult:
    check_config(config, LayerProfileConfig)
    generator = torch.Generator().manual_seed(config.seed)
    n = config.width
    weights = random_weights([n] * (config.depth + 1), config.init, config.scale, generator=generator)
    leaves = [w.requires_grad_(True) for w in weights]
    x = _unit(torch.randn(n, generator=generator, dtype=_FLOAT64))
    g = _unit(torch.randn(n, generator=generator, dtype=_FLOAT64))
    with torch.enable_grad():
        pre, hidden = forward_chain(leaves, x)
        grads = torch.autograd.grad((g * hidden[-1]).sum(), [*leaves, *pre])
    depth = config.depth
    return LayerProfileResult(
        config,
        np.arange(1, depth + 1),
        np.array([float(torch.linalg.norm(d)) for d in grads[depth:]]),
        np.array([float(torch.linalg.norm(h.detach())) for h in hidden[:-1]]),
        np.array([float(torch.linalg.norm(w)) for w in grads[:depth]]),
        config.scale ** (config.depth - 1),
    )
