"""Chapter 2, the sigmoid's 0.25 bound: σ'(x) = σ(x)(1 - σ(x)) <= 1/4, and what it does to a deep network.

Experiments, each a frozen config and a ``run_...(config) -> result``:

- ``run_derivative_maxima``: f'(x) on a fine grid by autograd, its maximum and the closed form's error.
- ``run_init_gradients``: one MLP at initialization: per-layer gradient norms ||∂J/∂h_l||, the
  envelope ∏_{k>l} c·||W_k||_2 (c = sup f', 1/4 for sigmoid) they must stay under, saturation.
- ``run_depth_sweep``: the same over activations x depths x seeds.
- ``run_saturation_sweep``: saturated sigmoid units and their gradients vs weight and input scale.
- ``run_circles``: the classic 4-hidden-layer width-5 MLP on two circles, per-layer statistics by epoch.
- ``run_mnist``: the classic deep sigmoid network on MNIST, per-layer gradient histograms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vgcourse._validation import check_choice, check_float
from vgcourse.activations import ACTIVATIONS, derivative, make_activation, max_derivative
from vgcourse.config import (
    Config,
    check_config,
    derive,
    device_field,
    in_range,
    integer,
    nonempty,
    one_of,
    positive,
    real,
    seed_field,
)
from vgcourse.data import MNIST_SOURCES, DataSplit, circles, mnist
from vgcourse.device import pick_device
from vgcourse.initializers import initialize
from vgcourse.models import MLP
from vgcourse.monitor import GradientMonitor, MonitorRecord, snapshot
from vgcourse.training import OPTIMIZERS, Callback, History, StepEvent, TrainConfig, train

__all__ = [
    "DTYPES",
    "INITS",
    "CirclesConfig",
    "CirclesResult",
    "DepthSweep",
    "DepthSweepConfig",
    "DerivativeMaxConfig",
    "DerivativeMaxima",
    "InitGradientConfig",
    "InitGradients",
    "MNIST_SIZES",
    "MnistConfig",
    "MnistResult",
    "SaturationConfig",
    "SaturationSweep",
    "run_circles",
    "run_depth_sweep",
    "run_derivative_maxima",
    "run_init_gradients",
    "run_mnist",
    "run_saturation_sweep",
]

INITS = ("default", "xavier_normal", "xavier_uniform", "kaiming_normal", "orthogonal")
DTYPES = ("float32", "float64")
#: MnistConfig presets, (width, steps): chosen by the reader, never by the hardware.
MNIST_SIZES = {"small": (256, 200), "full": (1000, 2000)}
_DTYPE = {"float32": torch.float32, "float64": torch.float64}


# -- validation helpers ----------------------------------------------------------------------------------


# -- 1. the derivative's maximum ---------------------------------------------------------------------------


class DerivativeMaxConfig(Config):
    """A fine grid on which to find sup f'(x) by autograd.

    Args:
        activations: names from ``ACTIVATIONS`` (default sigmoid and tanh).
        x_min: left end of the grid.
        x_max: right end of the grid, > x_min.
        n_points: grid points (>= 3); an odd count on a symmetric grid contains x = 0 exactly.
        dtype: "float64" (default) or "float32".
    """

    activations: tuple[str, ...] = nonempty(one_of(*ACTIVATIONS), default=("sigmoid", "tanh"), unique=True)
    x_min: float = real(-10.0)
    x_max: float = real(10.0)
    n_points: int = integer(200_001, low=3, high=10_000_000)
    dtype: str = one_of(*DTYPES, default="float64")

    def check(self) -> None:
        if self.x_max <= self.x_min:
            raise ValueError(f"x_max must be > x_min; got x_min={self.x_min}, x_max={self.x_max}")


@dataclass(frozen=True)
class DerivativeMaxima:
    """f'(x) on the grid by autograd and in closed form, and where it peaks.

    Args:
        activations: the A activation names.
        x: (N,) the grid.
        values: (A, N) f(x).
        autograd: (A, N) f'(x) from ``torch.autograd``.
        closed_form: (A, N) f'(x) from ``vgcourse.activations.derivative`` (sigmoid σ(1-σ), tanh 1-tanh²).
        maximum: (A,) max over the grid of the autograd derivative.
        argmax: (A,) the grid point where it is reached.
        bound: (A,) the proven sup f' (``max_derivative``: 1/4 for sigmoid, 1 for tanh).
        max_error: (A,) max |closed form - autograd| over the grid.
    """

    activations: list[str]
    x: np.ndarray
    values: np.ndarray
    autograd: np.ndarray
    closed_form: np.ndarray
    maximum: np.ndarray
    argmax: np.ndarray
    bound: np.ndarray
    max_error: np.ndarray

    def index(self, activation: str) -> int:
        """Row of ``activation`` in the arrays."""
        return self.activations.index(check_choice("activation", activation, self.activations))


def run_derivative_maxima(config: DerivativeMaxConfig) -> DerivativeMaxima:
    """Differentiate each activation on the grid with autograd; compare with the closed form and the bound."""
    check_config(config, DerivativeMaxConfig)
    dtype = _DTYPE[config.dtype]
    x = torch.linspace(config.x_min, config.x_max, config.n_points, dtype=dtype)
    values, grads, closed = [], [], []
    for name in config.activations:
        xr = x.clone().requires_grad_(True)
        y = make_activation(name)(xr)
        (g,) = torch.autograd.grad(y.sum(), xr)  # each y_i depends on x_i only: the sum's gradient is f'(x)
        values.append(y.detach())
        grads.append(g)
        closed.append(derivative(name, x))
    values_t, grads_t, closed_t = (torch.stack(t).numpy() for t in (values, grads, closed))
    best = grads_t.argmax(axis=1)
    return DerivativeMaxima(
        activations=list(config.activations),
        x=x.numpy(),
        values=values_t,
        autograd=grads_t,
        closed_form=closed_t,
        maximum=grads_t.max(axis=1),
        argmax=x.numpy()[best],
        bound=np.array([max_derivative(a) for a in config.activations]),
        max_error=np.abs(closed_t - grads_t).max(axis=1),
    )


# -- 2. one network at initialization ----------------------------------------------------------------------


class InitGradientConfig(Config):
    """One MLP at initialization, one batch of random inputs, one backward pass.

    The network is ``MLP(width, 10, depth, width, activation)``: h_l = f(W_l h_{l-1} + b_l), biases 0,
    inputs x ~ N(0, input_scale² I), random labels, cross-entropy loss J.

    Args:
        activation: a name from ``ACTIVATIONS``.
        depth: number of hidden layers L (>= 1).
        width: units per hidden layer (and input size).
        batch_size: examples in the batch.
        init: weight initialization, one of ``INITS``: "default" (PyTorch's U(±1/√n_in)),
            "xavier_normal"/"xavier_uniform" (Var = 2/(n_in + n_out)), "kaiming_normal" (Var =
            gain(activation)²/n_in) or "orthogonal" (every singular value 1).
        weight_scale: every hidden weight matrix is multiplied by this after initialization.
        input_scale: standard deviation of the inputs.
        seed: seeds the weights, the inputs and the labels.
        saturation: a sigmoid/tanh output u is saturated when |2u - 1| (sigmoid) or |u| (tanh) exceeds it.
        dtype: "float64" (default: keeps ratios like 1e-30 exact) or "float32".
    """

    activation: str = one_of(*ACTIVATIONS, default="sigmoid")
    depth: int = integer(20, low=1, high=1000)
    width: int = positive(64, integer=True)
    batch_size: int = positive(64, integer=True)
    init: str = one_of(*INITS, default="xavier_normal")
    weight_scale: float = positive(1.0)
    input_scale: float = positive(1.0)
    seed: int = seed_field()
    saturation: float = in_range(0.0, 1.0, default=0.99, low_open=True)
    dtype: str = one_of(*DTYPES, default="float64")

    def check(self) -> None:
        if self.saturation >= 1.0:
            raise ValueError(f"saturation must be in (0, 1); got {self.saturation}")


@dataclass(frozen=True)
class InitGradients:
    """Per-layer gradients of one network at initialization, and the envelope they stay under.

    Hidden states are h_0 = x, h_1, ..., h_L; G_l = ∂J/∂h_l is the (batch x width) matrix of gradients.

    Args:
        config: the run's settings.
        layer_names: the monitor's names ["layer 1", ..., "layer L", "output"].
        hidden_grad_norm: (L+1,) ||G_l||_F for l = 0..L.
        ratio: (L+1,) ||G_l||_F / ||G_L||_F: how much of the gradient reaching the top survives to h_l.
        spectral_norm: (L,) ||W_l||_2, the largest singular value of layer l's weight.
        envelope: (L+1,) ∏_{k=l+1}^{L} c·||W_k||_2 with c = sup f' (sigmoid 1/4): the proven bound on
            ``ratio`` (envelope[L] = 1).
        weight_grad_norm: (L+1,) ||∂J/∂W_l||_F for the L hidden layers and the output layer (monitor).
        saturated_frac: (L,) fraction of saturated outputs per hidden layer (monitor; NaN unless
            sigmoid or tanh).
        mean_derivative: (L,) mean of f'(a_l) over the batch and units, a_l = W_l h_{l-1} + b_l.
        rms_derivative: (L,) root mean square of f'(a_l).
        preact_std: (L,) standard deviation of the pre-activations a_l over the batch and units; with
            weights of variance g²/n and inputs h_{l-1} it is about g·sqrt(E[h²]), for the sigmoid at
            least g/2 because E[h²] >= E[h]² ≈ 1/4.
        typical_factor: (L,) rms f'(a_l) · ||W_l||_F / √(rows of W_l): the per-layer shrink factor of a
            gradient pointing in a random direction (the measurement's typical rate).
        saturated_grad_ratio: in one layer, mean |∂J/∂a| over its saturated entries / over its
            unsaturated ones; geometric mean over the layers that have both (NaN when none has, or the
            activation does not saturate).
    """

    config: InitGradientConfig
    layer_names: list[str]
    hidden_grad_norm: np.ndarray
    ratio: np.ndarray
    spectral_norm: np.ndarray
    envelope: np.ndarray
    weight_grad_norm: np.ndarray
    saturated_frac: np.ndarray
    mean_derivative: np.ndarray
    rms_derivative: np.ndarray
    preact_std: np.ndarray
    typical_factor: np.ndarray
    saturated_grad_ratio: float

    @property
    def depth(self) -> int:
        """Number of hidden layers L."""
        return self.config.depth

    @property
    def decay(self) -> float:
        """||G_0||_F / ||G_L||_F: the fraction of the top gradient that reaches the input."""
        return float(self.ratio[0])

    @property
    def per_layer_factor(self) -> float:
        """Measured geometric-mean shrink factor per layer, (||G_0|| / ||G_L||)^(1/L)."""
        return float(self.ratio[0] ** (1.0 / self.depth))

    @property
    def envelope_factor(self) -> float:
        """Geometric mean over layers of the bound's factor c·||W_l||_2."""
        return float(self.envelope[0] ** (1.0 / self.depth))

    @property
    def typical_rate(self) -> float:
        """Geometric mean over layers of ``typical_factor``."""
        return float(np.exp(np.mean(np.log(self.typical_factor))))

    @property
    def bound_slack(self) -> float:
        """max over l < L of ratio_l / envelope_l: <= 1 is the theorem; near 1 means the bound is tight."""
        return float(np.max(self.ratio[:-1] / self.envelope[:-1]))

    @property
    def weight_ratio(self) -> float:
        """||∂J/∂W_1|| / ||∂J/∂W_out||: first hidden layer vs output layer weight gradient."""
        return float(self.weight_grad_norm[0] / self.weight_grad_norm[-1])

    def summary(self) -> str:
        """One line for the explorer's readout."""
        sat = np.nanmean(self.saturated_frac) if np.isfinite(self.saturated_frac).any() else math.nan
        sat_text = "n/a (not sigmoid/tanh)" if math.isnan(sat) else f"{100 * sat:.1f}%"
        return (
            f"{self.config.activation}, depth {self.depth}, {self.config.init}: "
            f"||∂J/∂h_0|| / ||∂J/∂h_L|| = {self.decay:.3g} (bound {self.envelope[0]:.3g}); "
            f"per layer {self.per_layer_factor:.3f} (bound {self.envelope_factor:.3f}); "
            f"mean f'(a) = {np.mean(self.mean_derivative):.3f}; saturated units: {sat_text}"
        )


def _initialize(model: MLP, init: str, activation: str, generator: torch.Generator) -> None:
    """``initialize`` by name; kaiming_normal uses the gain of ``activation`` (the others ignore it)."""
    initialize(model, init, activation=activation, generator=generator)


def _keep_output(store: list[Tensor]) -> Any:
    """A forward hook that keeps the module's output, and its gradient after backward, in ``store``."""

    def hook(_module: Any, _args: Any, out: Tensor) -> None:
        out.retain_grad()
        store.append(out)

    return hook


def _saturated(activation: str, out: Tensor, threshold: float) -> Tensor | None:
    """Boolean mask of saturated outputs, the monitor's rule: |2u - 1| > s (sigmoid), |u| > s (tanh)."""
    if activation == "sigmoid":
        return (out - 0.5).abs() > threshold / 2
    if activation == "tanh":
        return out.abs() > threshold
    return None


def run_init_gradients(config: InitGradientConfig) -> InitGradients:
    """One forward and backward pass of a fresh MLP; measure ||∂J/∂h_l|| and its envelope per layer.

    Backprop gives G_{l-1} = (G_l ⊙ f'(A_l)) W_l, so row by row ||g_{l-1}|| <= ||W_l||_2 · sup f' · ||g_l||,
    and over the batch ||G_l||_F / ||G_L||_F <= ∏_{k>l} sup f' · ||W_k||_2 (sigmoid: sup f' = 1/4).
    """
    check_config(config, InitGradientConfig)
    dtype = _DTYPE[config.dtype]
    generator = torch.Generator().manual_seed(config.seed)
    model = MLP(config.width, 10, config.depth, config.width, config.activation).to(dtype)
    _initialize(model, config.init, config.activation, generator)
    with torch.no_grad():
        for layer in model.layers:
            layer.linear.weight.mul_(config.weight_scale)
    x = config.input_scale * torch.randn(config.batch_size, config.width, generator=generator, dtype=dtype)
    y = torch.randint(0, 10, (config.batch_size,), generator=generator)

    pre: list[Tensor] = []  # a_l = W_l h_{l-1} + b_l
    hidden: list[Tensor] = []  # h_l = f(a_l)
    handles = [layer.linear.register_forward_hook(_keep_output(pre)) for layer in model.layers]
    handles += [layer.register_forward_hook(_keep_output(hidden)) for layer in model.layers]
    x.requires_grad_(True)
    try:
        with GradientMonitor(
            model, stats=("grad_norm", "saturated_frac"), saturation=config.saturation
        ) as monitor:
            F.cross_entropy(model(x), y).backward()
            monitor.step(0)
    finally:
        for handle in handles:
            handle.remove()
    record = monitor.record()

    with torch.no_grad():
        grad_norm = torch.stack([x.grad.norm()] + [h.grad.norm() for h in hidden]).double()
        weights = [layer.linear.weight for layer in model.layers]
        spectral = torch.linalg.matrix_norm(torch.stack(weights), ord=2).double()  # all width x width
        factors = max_derivative(config.activation) * spectral
        envelope = torch.ones(config.depth + 1, dtype=torch.float64)
        envelope[:-1] = torch.flip(torch.cumprod(torch.flip(factors, [0]), 0), [0])
        slopes = [derivative(config.activation, a.detach()) for a in pre]
        mean_d = torch.stack([s.mean() for s in slopes]).double()
        rms_d = torch.stack([s.pow(2).mean().sqrt() for s in slopes]).double()
        preact_std = torch.stack([a.detach().std() for a in pre]).double()
        gain = torch.stack([w.norm() / math.sqrt(w.shape[0]) for w in weights]).double()
        ratios = []
        for h, a in zip(hidden, pre, strict=True):
            sat = _saturated(config.activation, h.detach(), config.saturation)
            if sat is not None and sat.any() and (~sat).any():
                delta = a.grad.abs()
                ratios.append(float(delta[sat].mean() / delta[~sat].mean()))
        ratio = float(np.exp(np.mean(np.log(ratios)))) if ratios else math.nan
    hidden_norm = grad_norm.numpy()
    return InitGradients(
        config=config,
        layer_names=record.layer_names,
        hidden_grad_norm=hidden_norm,
        ratio=hidden_norm / hidden_norm[-1],
        spectral_norm=spectral.numpy(),
        envelope=envelope.numpy(),
        weight_grad_norm=record.grad_norm[0],
        saturated_frac=record.saturated_frac[0, :-1],
        mean_derivative=mean_d.numpy(),
        rms_derivative=rms_d.numpy(),
        preact_std=preact_std.numpy(),
        typical_factor=(rms_d * gain).numpy(),
        saturated_grad_ratio=ratio,
    )


# -- 3. depth sweep ----------------------------------------------------------------------------------------


class DepthSweepConfig(Config):
    """``run_init_gradients`` over activations x depths x seeds (everything else shared).

    Args:
        activations: names from ``ACTIVATIONS``.
        depths: numbers of hidden layers, each >= 1.
        seeds: one network per seed.
        width: units per hidden layer.
        batch_size: examples in the batch.
        init: one of ``INITS``.
        dtype: "float64" or "float32".
    """

    activations: tuple[str, ...] = nonempty(
        one_of(*ACTIVATIONS), default=("sigmoid", "tanh", "relu"), unique=True
    )
    depths: tuple[int, ...] = nonempty(integer(low=1, high=1000), default=(5, 10, 20, 30, 50))
    seeds: tuple[int, ...] = nonempty(seed_field(), default=(0, 1, 2))
    width: int = positive(64, integer=True)
    batch_size: int = positive(64, integer=True)
    init: str = one_of(*INITS, default="xavier_normal")
    dtype: str = one_of(*DTYPES, default="float64")

    def point(self, activation: str, depth: int, seed: int) -> InitGradientConfig:
        """The ``InitGradientConfig`` of one point of the sweep."""
        return derive(InitGradientConfig, self, activation=activation, depth=depth, seed=seed)


@dataclass(frozen=True)
class DepthSweep:
    """Per-network summaries over activations (A) x depths (D) x seeds (S).

    Args:
        config: the sweep's settings.
        decay: (A, D, S) ||∂J/∂h_0|| / ||∂J/∂h_L||.
        envelope: (A, D, S) the bound on ``decay``, ∏_l c·||W_l||_2.
        per_layer_factor: (A, D, S) decay^(1/L).
        envelope_factor: (A, D, S) envelope^(1/L).
        typical_rate: (A, D, S) geometric mean of rms f'(a_l)·||W_l||_F/√n.
        bound_slack: (A, D, S) max over layers l < L of ratio_l / envelope_l (<= 1 by the theorem).
        weight_ratio: (A, D, S) ||∂J/∂W_1|| / ||∂J/∂W_out||.
        examples: the full ``InitGradients`` of the first seed, keyed by (activation, depth).
    """

    config: DepthSweepConfig
    decay: np.ndarray
    envelope: np.ndarray
    per_layer_factor: np.ndarray
    envelope_factor: np.ndarray
    typical_rate: np.ndarray
    bound_slack: np.ndarray
    weight_ratio: np.ndarray
    examples: dict[tuple[str, int], InitGradients] = field(repr=False)

    def index(self, activation: str) -> int:
        """Row of ``activation``."""
        return self.config.activations.index(check_choice("activation", activation, self.config.activations))

    def example(self, activation: str, depth: int) -> InitGradients:
        """The first seed's network for (activation, depth)."""
        self.index(activation)
        if depth not in self.config.depths:
            raise ValueError(f"depth {depth} was not swept; valid: {self.config.depths}")
        return self.examples[(activation, depth)]


def run_depth_sweep(config: DepthSweepConfig) -> DepthSweep:
    """Measure every (activation, depth, seed) network at initialization."""
    check_config(config, DepthSweepConfig)
    shape = (len(config.activations), len(config.depths), len(config.seeds))
    names = ("decay", "envelope", "per_layer_factor", "envelope_factor", "typical_rate", "bound_slack")
    arrays = {name: np.empty(shape) for name in (*names, "weight_ratio")}
    examples = {}
    for a, activation in enumerate(config.activations):
        for d, depth in enumerate(config.depths):
            for s, seed in enumerate(config.seeds):
                result = run_init_gradients(config.point(activation, depth, seed))
                arrays["decay"][a, d, s] = result.decay
                arrays["envelope"][a, d, s] = result.envelope[0]
                for name in names[2:]:
                    arrays[name][a, d, s] = getattr(result, name)
                arrays["weight_ratio"][a, d, s] = result.weight_ratio
                if s == 0:
                    examples[(activation, depth)] = result
    return DepthSweep(config=config, examples=examples, **arrays)


# -- 4. saturation -----------------------------------------------------------------------------------------


class SaturationConfig(Config):
    """Sigmoid (or tanh) MLPs at initialization with scaled weights and inputs.

    Args:
        weight_scales: multipliers of every hidden weight matrix (after ``init``), each > 0.
        input_scales: standard deviations of the inputs, each > 0.
        seeds: one network per seed.
        activation: "sigmoid" or "tanh".
        depth: number of hidden layers.
        width: units per hidden layer.
        batch_size: examples in the batch.
        init: one of ``INITS``.
        saturation: the saturation threshold (see ``InitGradientConfig``).
    """

    weight_scales: tuple[float, ...] = nonempty(positive(), default=(0.5, 1.0, 2.0, 4.0, 8.0, 16.0))
    input_scales: tuple[float, ...] = nonempty(positive(), default=(1.0, 10.0))
    seeds: tuple[int, ...] = nonempty(seed_field(), default=(0, 1, 2))
    activation: str = one_of("sigmoid", "tanh", default="sigmoid")
    depth: int = integer(10, low=1, high=1000)
    width: int = positive(64, integer=True)
    batch_size: int = positive(64, integer=True)
    init: str = one_of(*INITS, default="xavier_normal")
    saturation: float = in_range(0.0, 1.0, default=0.99, low_open=True)

    def check(self) -> None:
        if self.saturation >= 1.0:
            raise ValueError(f"saturation must be in (0, 1); got {self.saturation}")

    def point(self, input_scale: float, weight_scale: float, seed: int) -> InitGradientConfig:
        """The ``InitGradientConfig`` of one point of the sweep."""
        return derive(InitGradientConfig, self, weight_scale=weight_scale, input_scale=input_scale, seed=seed)


_SATURATION_METRICS = (
    "saturated_frac",
    "first_layer_saturated_frac",
    "mean_derivative",
    "per_layer_factor",
    "envelope_factor",
    "saturated_grad_ratio",
    "preact_std",
)


@dataclass(frozen=True)
class SaturationSweep:
    """Summaries over input scales (I) x weight scales (W) x seeds (S).

    Args:
        config: the sweep's settings.
        saturated_frac: (I, W, S) saturated outputs, mean over the hidden layers (monitor's saturated_frac).
        first_layer_saturated_frac: (I, W, S) the same in layer 1 only.
        mean_derivative: (I, W, S) mean f'(a) over all hidden units, examples and layers.
        per_layer_factor: (I, W, S) (||∂J/∂h_0|| / ||∂J/∂h_L||)^(1/L).
        envelope_factor: (I, W, S) the bound's per-layer factor, geometric mean of c·||W_l||_2.
        saturated_grad_ratio: (I, W, S) mean |∂J/∂a| of saturated / unsaturated units (NaN if none).
        preact_std: (I, W, S) std of the pre-activations a_l, median over the layers above the first
            (the first sees the inputs; the others see sigmoid outputs in (0, 1)).
    """

    config: SaturationConfig
    saturated_frac: np.ndarray
    first_layer_saturated_frac: np.ndarray
    mean_derivative: np.ndarray
    per_layer_factor: np.ndarray
    envelope_factor: np.ndarray
    saturated_grad_ratio: np.ndarray
    preact_std: np.ndarray

    def at(self, metric: str, input_scale: float, weight_scale: float) -> np.ndarray:
        """The (S,) values of ``metric`` at one (input scale, weight scale) point."""
        check_choice("metric", metric, _SATURATION_METRICS)
        if input_scale not in self.config.input_scales or weight_scale not in self.config.weight_scales:
            raise ValueError(
                f"({input_scale}, {weight_scale}) is not a swept point; input_scales "
                f"{self.config.input_scales}, weight_scales {self.config.weight_scales}"
            )
        i = self.config.input_scales.index(input_scale)
        w = self.config.weight_scales.index(weight_scale)
        return getattr(self, metric)[i, w].copy()

    def median(self, metric: str, input_scale: float, weight_scale: float) -> float:
        """Median over seeds of ``metric`` at one (input scale, weight scale) point."""
        return float(np.median(self.at(metric, input_scale, weight_scale)))


def run_saturation_sweep(config: SaturationConfig) -> SaturationSweep:
    """Measure saturation and the gradient at every (input scale, weight scale, seed)."""
    check_config(config, SaturationConfig)
    shape = (len(config.input_scales), len(config.weight_scales), len(config.seeds))
    out = {name: np.empty(shape) for name in _SATURATION_METRICS}
    for i, input_scale in enumerate(config.input_scales):
        for w, weight_scale in enumerate(config.weight_scales):
            for s, seed in enumerate(config.seeds):
                r = run_init_gradients(config.point(input_scale, weight_scale, seed))
                values = (
                    np.mean(r.saturated_frac),
                    r.saturated_frac[0],
                    np.mean(r.mean_derivative),
                    r.per_layer_factor,
                    r.envelope_factor,
                    r.saturated_grad_ratio,
                    np.median(r.preact_std[1:]) if r.depth > 1 else r.preact_std[0],
                )
                for name, value in zip(_SATURATION_METRICS, values, strict=True):
                    out[name][i, w, s] = value
    return SaturationSweep(config=config, **out)


# -- 5. classic experiment (a): two circles ----------------------------------------------------------------


class CirclesConfig(Config):
    """A ``depth``-hidden-layer, ``width``-unit MLP on sklearn's two circles, per activation and seed.

    Args:
        activations: names from ``ACTIVATIONS`` (default sigmoid, tanh, relu).
        seeds: each seeds the weights and the minibatch order (the data set is fixed by ``data_seed``).
        depth: hidden layers (the tutorials: 4).
        width: units per hidden layer (the tutorials: 5).
        epochs: passes over the training set.
        batch_size: examples per step.
        lr: learning rate.
        optimizer: "sgd", "momentum" (SGD with momentum 0.9) or "adam".
        init: one of ``INITS`` (default "xavier_uniform", Keras's default, in which the tutorials were
            written).
        n_samples: points in the data set (80% train, 20% validation).
        noise: the circles' noise.
        data_seed: seed of the data set and its split.
        monitor_every: record per-layer gradient statistics every this many steps.
        device: "auto" (CUDA when present), "cpu" or "cuda".
    """

    activations: tuple[str, ...] = nonempty(
        one_of(*ACTIVATIONS), default=("sigmoid", "tanh", "relu"), unique=True
    )
    seeds: tuple[int, ...] = nonempty(seed_field(), default=(0,))
    depth: int = integer(4, low=1, high=100)
    width: int = positive(5, integer=True)
    epochs: int = positive(30, integer=True)
    batch_size: int = positive(32, integer=True)
    lr: float = positive(0.05)
    optimizer: str = one_of(*OPTIMIZERS, default="momentum")
    init: str = one_of(*INITS, default="xavier_uniform")
    n_samples: int = integer(1000, low=10)
    noise: float = real(0.1, low=0.0)
    data_seed: int = seed_field()
    monitor_every: int = positive(5, integer=True)
    device: str = device_field("auto")

    def train_config(self, seed: int) -> TrainConfig:
        """The ``TrainConfig`` of one run."""
        return derive(TrainConfig, self, monitor_stats=("grad_mean", "grad_std"), seed=seed)


@dataclass(frozen=True)
class CirclesResult:
    """Per-layer statistics by epoch, for activations (A) x seeds (S) x epochs (E) x layers (L+1).

    Layers are the monitor's: "layer 1" ... "layer L" and "output".

    Args:
        config: the settings.
        layer_names: the L+1 layer names.
        val_accuracy: (A, S) validation accuracy after the last epoch.
        accuracy_by_epoch: (A, S, E) validation accuracy after each epoch.
        weight_mean: (A, S, E+1, L+1) mean of each weight matrix after e epochs (e = 0 is the init).
        weight_std: (A, S, E+1, L+1) its standard deviation.
        grad_mean: (A, S, E, L+1) mean of the weight gradient, averaged over the epoch's recorded steps.
        grad_std: (A, S, E, L+1) standard deviation of the weight gradient, averaged likewise.
        histories: the ``History`` of each run, keyed by (activation, seed).
    """

    config: CirclesConfig
    layer_names: list[str]
    val_accuracy: np.ndarray
    accuracy_by_epoch: np.ndarray
    weight_mean: np.ndarray
    weight_std: np.ndarray
    grad_mean: np.ndarray
    grad_std: np.ndarray
    histories: dict[tuple[str, int], History] = field(repr=False)

    def index(self, activation: str) -> int:
        """Row of ``activation``."""
        return self.config.activations.index(check_choice("activation", activation, self.config.activations))

    @property
    def first_last_grad_ratio(self) -> np.ndarray:
        """(A, S) gradient std of layer 1 / of the output layer, each averaged over all epochs."""
        return self.grad_std[..., 0].mean(axis=-1) / self.grad_std[..., -1].mean(axis=-1)

    def epochs_to(self, accuracy: float) -> np.ndarray:
        """(A, S) first epoch (1-based) whose validation accuracy reaches ``accuracy``; inf if never."""
        accuracy = check_float("accuracy", accuracy, 0.0, 1.0)
        reached = self.accuracy_by_epoch >= accuracy
        first = reached.argmax(axis=-1).astype(np.float64) + 1
        return np.where(reached.any(axis=-1), first, np.inf)

    @property
    def weight_change(self) -> np.ndarray:
        """(A, S, L+1) |std of W after training / std at initialization - 1|: how far each layer moved."""
        return np.abs(self.weight_std[:, :, -1] / self.weight_std[:, :, 0] - 1.0)

    def accuracy_table(self) -> Any:
        """pandas DataFrame indexed by "activation", one row per activation: "validation accuracy" (mean
        over seeds, and "min/max over seeds" when there are several), and medians over seeds of "epochs to
        90 % accuracy" (inf: never), "gradient std, layer 1 / output" and "largest change of a hidden
        weight std" (``weight_change`` of the hidden layers)."""
        import pandas as pd

        ratio = self.first_last_grad_ratio
        to90 = self.epochs_to(0.9)
        change = self.weight_change[..., :-1].max(axis=-1)
        rows = []
        for a, name in enumerate(self.config.activations):
            row = {"activation": name, "validation accuracy": self.val_accuracy[a].mean()}
            if len(self.config.seeds) > 1:
                row.update(
                    {
                        "min over seeds": self.val_accuracy[a].min(),
                        "max over seeds": self.val_accuracy[a].max(),
                    }
                )
            row["epochs to 90 % accuracy"] = np.median(to90[a])
            row["gradient std, layer 1 / output"] = np.median(ratio[a])
            row["largest change of a hidden weight std"] = np.median(change[a])
            rows.append(row)
        return pd.DataFrame(rows).set_index("activation")


class _WeightRecorder(Callback):
    """A ``train`` callback: every layer's weight mean and std at the start and after every ``every``-th
    step."""

    def __init__(self, layers: list[Any], every: int) -> None:
        self.layers = layers
        self.every = every
        self.rows: list[Tensor] = [self.stats()]

    def on_step(self, event: StepEvent) -> None:
        if (event.step + 1) % self.every == 0:
            self.rows.append(self.stats())

    def stats(self) -> Tensor:
        with torch.no_grad():
            return torch.stack([torch.stack([m.weight.mean(), m.weight.std()]) for m in self.layers]).detach()


def run_circles(config: CirclesConfig) -> CirclesResult:
    """Train one network per (activation, seed) with ``vgcourse.training.train``; collect statistics by epoch.

    A callback records the weights' mean and std at the start and after every epoch's last step.
    """
    check_config(config, CirclesConfig)
    data = circles(n_samples=config.n_samples, noise=config.noise, seed=config.data_seed)
    n_act, n_seed = len(config.activations), len(config.seeds)
    epochs, n_layers = config.epochs, config.depth + 1
    per_epoch = data.n_train // min(config.batch_size, data.n_train)
    val_accuracy = np.empty((n_act, n_seed))
    accuracy = np.full((n_act, n_seed, epochs), np.nan)
    w_stats = np.full((n_act, n_seed, epochs + 1, n_layers, 2), np.nan)
    g_mean = np.full((n_act, n_seed, epochs, n_layers), np.nan)
    g_std = np.full((n_act, n_seed, epochs, n_layers), np.nan)
    histories: dict[tuple[str, int], History] = {}
    layer_names: list[str] = []
    for a, activation in enumerate(config.activations):
        for s, seed in enumerate(config.seeds):
            model = MLP(data.in_features, data.n_classes, config.depth, config.width, activation)
            _initialize(model, config.init, activation, torch.Generator().manual_seed(seed))
            layers = [*(layer.linear for layer in model.layers), model.head]
            recorder = _WeightRecorder(layers, per_epoch)
            history = train(model, data, config.train_config(seed), callbacks=[recorder])
            rows = [*recorder.rows[:epochs], recorder.stats()]
            stats = torch.stack(rows).cpu().double().numpy()
            w_stats[a, s, : len(stats)] = stats
            record = history.monitor
            layer_names = record.layer_names
            epoch_of = record.steps // per_epoch
            for e in range(epochs):
                here = epoch_of == e
                if here.any():
                    g_mean[a, s, e] = record.grad_mean[here].mean(axis=0)
                    g_std[a, s, e] = record.grad_std[here].mean(axis=0)
            done = history.val_accuracy[:epochs]
            accuracy[a, s, : len(done)] = done
            val_accuracy[a, s] = history.final_val_accuracy
            histories[(activation, seed)] = history
    return CirclesResult(
        config=config,
        layer_names=layer_names,
        val_accuracy=val_accuracy,
        accuracy_by_epoch=accuracy,
        weight_mean=w_stats[..., 0],
        weight_std=w_stats[..., 1],
        grad_mean=g_mean,
        grad_std=g_std,
        histories=histories,
    )


# -- 6. classic experiment (b): the deep sigmoid network on MNIST ------------------------------------------


class MnistConfig(Config):
    """784 -> width x depth -> 10 MLP on MNIST, SGD with momentum; gradients per layer before and after.

    The same sizes on every machine, GPU or not: ``size`` picks them, never the hardware. "small" (the
    default, seconds on a CPU) is width 256 and 200 steps; "full" is the original 784 -> 1000 x 5 -> 10
    trained for 2000 steps (minutes on a CPU, best on a GPU). The data is ``vgcourse.data.mnist``'s:
    the 10,000-image test split shipped in the package (``source="shipped"``, the default), or the
    60,000-image train split the reader asks for with ``source="full"`` (downloaded, or from ``root``).

    Args:
        activation: a name from ``ACTIVATIONS`` (the experiment: "sigmoid").
        depth: hidden layers (5).
        size: one of ``MNIST_SIZES``: "small" (width 256, 200 steps) or "full" (width 1000, 2000 steps).
        width: units per hidden layer; None takes it from ``size``.
        steps: optimizer steps; None takes it from ``size``.
        batch_size: examples per step.
        lr: learning rate.
        momentum: SGD momentum.
        init: one of ``INITS``.
        snapshot_size: examples in the fixed batch whose gradients are histogrammed.
        bins: bins of the lumped (all layers in one) histogram; odd, so that 0 is a bin's center.
        seed: seeds the weights, the minibatch order and the snapshot batch.
        monitor_every: record per-layer statistics every this many steps during training.
        device: "auto" (CUDA when present), "cpu" or "cuda": where it runs, not what it runs.
        source: ``vgcourse.data.mnist``'s source, "shipped" (default) or "full".
        root: with ``source="full"``, the folder with MNIST's train files; None uses ``$VGCOURSE_DATA``.
    """

    activation: str = one_of(*ACTIVATIONS, default="sigmoid")
    depth: int = integer(5, low=1, high=100)
    size: str = one_of(*MNIST_SIZES, default="small")
    width: int | None = positive(None, integer=True, optional=True)
    steps: int | None = positive(None, integer=True, optional=True)
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    init: str = one_of(*INITS, default="xavier_uniform")
    snapshot_size: int = positive(256, integer=True)
    bins: int = integer(51, low=3)
    seed: int = seed_field()
    monitor_every: int = 10
    device: str = device_field("auto")
    source: str = one_of(*MNIST_SOURCES, default="shipped")
    root: str | None = None

    def check(self) -> None:
        if self.bins % 2 == 0:
            raise ValueError(f"bins must be odd (so that 0 is the center of a bin); got {self.bins}")
        if self.root is not None and not isinstance(self.root, str):
            raise TypeError(f"root must be a string path or None; got {type(self.root).__name__}")
        if self.root is not None and self.source != "full":
            raise ValueError("root= only applies to source='full' (the shipped test split needs no folder)")
        self.train_config(self.steps or 1)  # validates batch_size, lr, momentum, seed, monitor_every

    def resolved(self) -> tuple[int, int]:
        """(width, steps): the given values, else the ``size`` preset's; the same on every device."""
        width, steps = MNIST_SIZES[self.size]
        return (self.width or width, self.steps or steps)

    def train_config(self, steps: int) -> TrainConfig:
        """The ``TrainConfig`` of the run."""
        return derive(
            TrainConfig,
            self,
            steps=steps,
            optimizer="momentum",
            monitor_stats="all",
            eval_every=max(1, steps // 10),
        )


@dataclass(frozen=True)
class MnistResult:
    """Per-layer weight gradients on a fixed batch, at initialization and after training.

    Args:
        config: the settings.
        width: the width used.
        steps: the steps trained.
        device: where it ran ("cpu" or "cuda").
        n_train: training examples (8,334 from the shipped 10,000-image split, 50,000 with source="full").
        n_val: validation examples (1,666 from the shipped split, 10,000 with source="full").
        layer_names: ["layer 1", ..., "layer L", "output"].
        grads_init: per layer, the weight gradient values (float32, flattened) at initialization.
        grads_trained: the same after training.
        grad_std_init: (L+1,) std of each layer's gradient at initialization.
        grad_std_trained: (L+1,) the same after training.
        lumped_edges_init: (bins+1,) edges of the all-layers-in-one histogram at initialization.
        lumped_counts_init: (bins,) its counts.
        central_frac_init: (L+1,) fraction of each layer's gradient entries that fall in that
            histogram's central bin (the one around 0).
        central_frac_trained: (L+1,) the same after training (for the histogram of the trained grads).
        spread_init: (L,) the input-dependent part of each hidden layer's output h_l on the snapshot
            batch at initialization: the standard deviation over the examples, averaged over the units.
        mean_output_init: (L,) the mean of h_l over the examples and units (a sigmoid's is near 1/2).
        spread_trained: (L,) ``spread_init`` after training.
        history: the training ``History`` (its ``monitor`` has per-layer statistics over training).
    """

    config: MnistConfig
    width: int
    steps: int
    device: str
    n_train: int
    n_val: int
    layer_names: list[str]
    grads_init: list[np.ndarray] = field(repr=False)
    grads_trained: list[np.ndarray] = field(repr=False)
    grad_std_init: np.ndarray
    grad_std_trained: np.ndarray
    lumped_edges_init: np.ndarray
    lumped_counts_init: np.ndarray
    central_frac_init: np.ndarray
    central_frac_trained: np.ndarray
    spread_init: np.ndarray
    mean_output_init: np.ndarray
    spread_trained: np.ndarray
    history: History = field(repr=False)

    @property
    def record(self) -> MonitorRecord:
        """Per-layer statistics recorded during training."""
        assert self.history.monitor is not None
        return self.history.monitor

    def grads(self, when: str = "init") -> dict[str, np.ndarray]:
        """Layer name -> gradient values, ``when`` = "init" or "trained"."""
        check_choice("when", when, ("init", "trained"))
        values = self.grads_init if when == "init" else self.grads_trained
        return dict(zip(self.layer_names, values, strict=True))

    @property
    def share_of_entries(self) -> np.ndarray:
        """(L+1,) each layer's share of all gradient entries in the lumped histogram."""
        sizes = np.array([g.size for g in self.grads_init], dtype=np.float64)
        return sizes / sizes.sum()


def _layer_grads(model: MLP) -> list[np.ndarray]:
    layers = [*(layer.linear for layer in model.layers), model.head]
    return [layer.weight.grad.detach().reshape(-1).float().cpu().numpy().copy() for layer in layers]


def _forward_spread(model: MLP, x: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per hidden layer: mean over units of the std over examples of h_l, and the mean of h_l."""
    outputs: list[Tensor] = []
    handles = [layer.register_forward_hook(lambda _m, _a, out: outputs.append(out)) for layer in model.layers]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    spread = np.array([float(h.double().std(dim=0).mean()) for h in outputs])
    mean = np.array([float(h.double().mean()) for h in outputs])
    return spread, mean


def _central_fraction(grads: list[np.ndarray], bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Histogram all layers' values in one (bins over ±max|g|); per layer, the share in the central bin."""
    lumped = np.concatenate(grads)
    top = float(np.abs(lumped).max()) or 1.0
    counts, edges = np.histogram(lumped, bins=bins, range=(-top, top))
    low, high = edges[bins // 2], edges[bins // 2 + 1]
    central = np.array([np.mean((g >= low) & (g < high)) for g in grads])
    return counts, edges, central


def run_mnist(config: MnistConfig, data: DataSplit | None = None) -> MnistResult:
    """Histogram each layer's weight gradient on a fixed batch at init, train, and histogram again.

    Args:
        config: the settings.
        data: an MNIST ``DataSplit`` to reuse; None loads ``vgcourse.data.mnist`` from ``config.source``
            (and ``config.root``).
    """
    check_config(config, MnistConfig)
    if data is None:
        data = mnist(config.root, source=config.source)
    elif not isinstance(data, DataSplit):
        raise TypeError(f"data must be a DataSplit; got {type(data).__name__}")
    width, steps = config.resolved()
    device = pick_device(config.device)
    generator = torch.Generator().manual_seed(config.seed)
    model = MLP(data.in_features, data.n_classes or 10, config.depth, width, config.activation)
    _initialize(model, config.init, config.activation, generator)
    pick = torch.randperm(data.n_train, generator=generator)[: config.snapshot_size]
    xb, yb = data.x_train[pick].to(device), data.y_train[pick].to(device)
    model.to(device)
    snapshot(model, xb, yb, F.cross_entropy)
    grads_init = _layer_grads(model)
    spread_init, mean_init = _forward_spread(model, xb)
    history = train(model, data, config.train_config(steps))
    snapshot(model, xb, yb, F.cross_entropy)
    grads_trained = _layer_grads(model)
    spread_trained, _ = _forward_spread(model, xb)
    model.zero_grad(set_to_none=True)
    counts, edges, central_init = _central_fraction(grads_init, config.bins)
    _, _, central_trained = _central_fraction(grads_trained, config.bins)
    return MnistResult(
        config=config,
        width=width,
        steps=steps,
        device=device.type,
        n_train=data.n_train,
        n_val=data.n_val,
        layer_names=[f"layer {i + 1}" for i in range(config.depth)] + ["output"],
        grads_init=grads_init,
        grads_trained=grads_trained,
        grad_std_init=np.array([g.std() for g in grads_init], dtype=np.float64),
        grad_std_trained=np.array([g.std() for g in grads_trained], dtype=np.float64),
        lumped_edges_init=edges,
        lumped_counts_init=counts,
        central_frac_init=central_init,
        central_frac_trained=central_trained,
        spread_init=spread_init,
        mean_output_init=mean_init,
        spread_trained=spread_trained,
        history=history,
    )
