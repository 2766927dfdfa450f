"""The chapter on the sigmoid's 0.25 bound: σ'(x) = σ(x)(1 - σ(x)) <= 1/4, and what it does to a deep network.

Backprop multiplies the gradient by diag f'(a_l) W_l^T at every layer, so ‖∂J/∂h_l‖ / ‖∂J/∂h_L‖ stays under
the envelope ∏_{k>l} c·‖W_k‖_2 (c = sup f', 1/4 for the sigmoid). The runs measure it at initialization
(one network, sweeps over depth and over weight/input scale) and in the two classic experiments, two
circles and a deep sigmoid MLP on MNIST.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vgcourse._validation import check_float
from vgcourse.activations import ACTIVATIONS, derivative, make_activation, max_derivative
from vgcourse.config import (
    Config,
    Grid,
    check_config,
    derive,
    device_field,
    geometric_mean,
    in_range,
    instance_of,
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
from vgcourse.models import MLP, keep_outputs
from vgcourse.monitor import GradientMonitor, snapshot
from vgcourse.training import OPTIMIZERS, Callback, History, StepEvent, TrainConfig, train

INITS = ("default", "xavier_normal", "xavier_uniform", "kaiming_normal", "orthogonal")
DTYPES = ("float32", "float64")
#: MnistConfig presets, (width, steps): chosen by the reader, never by the hardware.
MNIST_SIZES = {"small": (256, 200), "full": (1000, 2000)}
_DTYPE = {"float32": torch.float32, "float64": torch.float64}


# -- 1. the derivative's maximum ---------------------------------------------------------------------------
class DerivativeMaxConfig(Config):
    """A fine grid on which to find sup f'(x) by autograd (an odd count on a symmetric grid holds x = 0)."""

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
    """f'(x) on the grid x and its max, Grids on the axis activation: ``maximum.sel(activation="tanh")``."""

    config: DerivativeMaxConfig
    x: np.ndarray  # (N,) the grid
    autograd: Grid  # activation × (N,): f'(x) from torch.autograd
    maximum: Grid  # max of f' over the grid
    argmax: Grid  # the grid point where it is reached
    bound: Grid  # the proven sup f' (max_derivative: 1/4 for sigmoid, 1 for tanh)
    max_error: Grid  # max |closed form - autograd| (vgcourse.activations.derivative: σ(1-σ), 1-tanh²)


def run_derivative_maxima(config: DerivativeMaxConfig) -> DerivativeMaxima:
    """Differentiate each activation on the grid with autograd; compare with the closed form and the bound."""
    check_config(config, DerivativeMaxConfig)
    x = torch.linspace(config.x_min, config.x_max, config.n_points, dtype=_DTYPE[config.dtype])
    grads, errors = [], []
    for name in config.activations:
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(make_activation(name)(xr).sum(), xr)  # y_i depends on x_i only: f'(x)
        grads.append(g.numpy())
        errors.append((derivative(name, x) - g).abs().max().item())
    grads = np.stack(grads)
    axis = {"activation": config.activations}
    return DerivativeMaxima(
        config=config,
        x=x.numpy(),
        autograd=Grid(grads, name="f'(x)", **axis),
        maximum=Grid(grads.max(axis=1), name="max f'", **axis),
        argmax=Grid(x.numpy()[grads.argmax(axis=1)], name="argmax f'", **axis),
        bound=Grid([max_derivative(a) for a in config.activations], name="sup f'", **axis),
        max_error=Grid(errors, name="max |closed form - autograd|", **axis),
    )


# -- 2. one network at initialization ----------------------------------------------------------------------
class InitGradientConfig(Config):
    """One ``MLP(width, 10, depth, width, activation)`` at initialization (biases 0, every hidden weight then
    multiplied by ``weight_scale``), inputs x ~ N(0, input_scale² I), random labels, cross-entropy J, one
    backward pass. ``init``: "default" (PyTorch's U(±1/√n_in)), "xavier_normal"/"xavier_uniform" (Var =
    2/(n_in + n_out)), "kaiming_normal" (Var = gain²/n_in) or "orthogonal" (every singular value 1)."""

    activation: str = one_of(*ACTIVATIONS, default="sigmoid")
    depth: int = integer(20, low=1, high=1000)  # hidden layers L
    width: int = positive(64, integer=True)  # units per hidden layer (and input size)
    batch_size: int = positive(64, integer=True)
    init: str = one_of(*INITS, default="xavier_normal")
    weight_scale: float = positive(1.0)
    input_scale: float = positive(1.0)
    seed: int = seed_field()  # the weights, the inputs and the labels
    # saturated: |2u - 1| (sigmoid) or |u| (tanh) above this
    saturation: float = in_range(0.0, 1.0, default=0.99, low_open=True, high_open=True)
    dtype: str = one_of(*DTYPES, default="float64")  # float64 keeps ratios like 1e-30 exact


@dataclass(frozen=True)
class InitGradients:
    """Per-layer gradients of one network at initialization, and the envelope they stay under.

    Hidden states h_0 = x, ..., h_L; G_l = ∂J/∂h_l (batch × width); "ratio" is ‖G_l‖_F / ‖G_L‖_F, the part of
    the gradient reaching the top that survives to h_l, and the envelope ∏_{k>l} c·‖W_k‖_2 (c = sup f') is its
    proven bound. Per-layer factors are geometric means over the L layers.
    """

    config: InitGradientConfig
    hidden_grad_norm: np.ndarray  # (L+1,) ‖G_l‖_F, l = 0..L
    ratio: np.ndarray  # (L+1,) ‖G_l‖_F / ‖G_L‖_F
    spectral_norm: np.ndarray  # (L,) ‖W_l‖_2
    envelope: np.ndarray  # (L+1,) ∏_{k=l+1}^{L} c·‖W_k‖_2 (envelope[L] = 1)
    weight_grad_norm: np.ndarray  # (L+1,) ‖∂J/∂W_l‖_F, hidden layers and the output layer
    saturated_frac: np.ndarray  # (L,) saturated outputs per hidden layer (NaN unless sigmoid or tanh)
    mean_derivative: np.ndarray  # (L,) mean of f'(a_l), a_l = W_l h_{l-1} + b_l
    # (L,) std of a_l: about g·√E[h²] for weights of variance g²/n, so >= g/2 for the sigmoid (E[h] ≈ 1/2)
    preact_std: np.ndarray
    typical_factor: np.ndarray  # (L,) rms f'(a_l)·‖W_l‖_F/√rows: the shrink of a random-direction gradient
    # mean |∂J/∂a| over a layer's saturated entries / over its unsaturated ones, geometric mean over the
    # layers that have both (NaN when none has)
    saturated_grad_ratio: float
    decay: float  # ‖G_0‖_F / ‖G_L‖_F
    per_layer_factor: float  # decay^(1/L)
    envelope_factor: float  # envelope[0]^(1/L)
    typical_rate: float  # geometric mean of typical_factor
    bound_slack: float  # max over l < L of ratio_l / envelope_l (where envelope_l > 0): <= 1 is the theorem
    weight_ratio: float  # ‖∂J/∂W_1‖ / ‖∂J/∂W_out‖


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
    model = MLP(config.width, 10, config.depth, config.width, config.activation, seed=config.seed).to(dtype)
    initialize(model, config.init, activation=config.activation, generator=generator)
    with torch.no_grad():
        for layer in model.layers:
            layer.linear.weight.mul_(config.weight_scale)
    x = config.input_scale * torch.randn(config.batch_size, config.width, generator=generator, dtype=dtype)
    y = torch.randint(0, 10, (config.batch_size,), generator=generator)
    x.requires_grad_(True)
    stats = ("grad_norm", "saturated_frac")
    with (
        keep_outputs(layer.linear for layer in model.layers) as pre,  # a_l = W_l h_{l-1} + b_l
        keep_outputs(model.layers) as hidden,  # h_l = f(a_l)
        GradientMonitor(model, stats=stats, saturation=config.saturation) as monitor,
    ):
        F.cross_entropy(model(x), y).backward()
        monitor.step(0)
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
        ratio = geometric_mean(ratios) if ratios else math.nan
    hidden_norm = grad_norm.numpy()
    ratios, envelope, weight_norm = hidden_norm / hidden_norm[-1], envelope.numpy(), record.grad_norm[0]
    typical, depth = (rms_d * gain).numpy(), config.depth
    # an envelope below float64's range (0) bounds a ratio that underflowed to 0 too: nothing to check there
    checked = envelope[:-1] > 0
    return InitGradients(
        config=config,
        hidden_grad_norm=hidden_norm,
        ratio=ratios,
        spectral_norm=spectral.numpy(),
        envelope=envelope,
        weight_grad_norm=weight_norm,
        saturated_frac=record.saturated_frac[0, :-1],
        mean_derivative=mean_d.numpy(),
        preact_std=preact_std.numpy(),
        typical_factor=typical,
        saturated_grad_ratio=ratio,
        decay=float(ratios[0]),
        per_layer_factor=float(ratios[0] ** (1.0 / depth)),
        envelope_factor=float(envelope[0] ** (1.0 / depth)),
        typical_rate=geometric_mean(typical),
        bound_slack=float(np.max(ratios[:-1][checked] / envelope[:-1][checked])),
        weight_ratio=float(weight_norm[0] / weight_norm[-1]),
    )


def _init_sweep(
    config: Config, summaries: dict[str, Callable[[InitGradients], float]], **axes: tuple[Any, ...]
) -> tuple[dict[str, Grid], dict[tuple[Any, ...], InitGradients]]:
    """``run_init_gradients`` at every point of the axes (``InitGradientConfig`` fields, the others from
    ``config``): each summary of the results as a Grid on those axes, and the results by point."""
    shape = tuple(len(values) for values in axes.values())
    arrays = {name: np.empty(shape) for name in summaries}
    results = {}
    for index in np.ndindex(shape):
        point = {axis: values[i] for (axis, values), i in zip(axes.items(), index, strict=True)}
        result = run_init_gradients(derive(InitGradientConfig, config, **point))
        results[tuple(point.values())] = result
        for name, summary in summaries.items():
            arrays[name][index] = summary(result)
    return {name: Grid(values, name=name, **axes) for name, values in arrays.items()}, results


# -- 3. depth sweep ----------------------------------------------------------------------------------------
class DepthSweepConfig(Config):
    """``run_init_gradients`` over activations × depths × seeds (everything else shared)."""

    activations: tuple[str, ...] = nonempty(
        one_of(*ACTIVATIONS), default=("sigmoid", "tanh", "relu"), unique=True
    )
    depths: tuple[int, ...] = nonempty(integer(low=1, high=1000), default=(5, 10, 20, 30, 50))
    seeds: tuple[int, ...] = nonempty(seed_field(), default=(0, 1, 2), unique=True)
    width: int = positive(64, integer=True)
    batch_size: int = positive(64, integer=True)
    init: str = one_of(*INITS, default="xavier_normal")
    dtype: str = one_of(*DTYPES, default="float64")


_SWEPT = ("decay", "per_layer_factor", "envelope_factor", "typical_rate", "bound_slack", "weight_ratio")


@dataclass(frozen=True)
class DepthSweep:
    """``InitGradients``' summaries on the axes activation × depth × seed (``envelope`` is envelope[0], the
    bound on ``decay``), and the first seed's full ``InitGradients`` by (activation, depth): ``examples``."""

    config: DepthSweepConfig
    decay: Grid
    envelope: Grid
    per_layer_factor: Grid
    envelope_factor: Grid
    typical_rate: Grid
    bound_slack: Grid
    weight_ratio: Grid
    examples: dict[tuple[str, int], InitGradients] = field(repr=False)


def run_depth_sweep(config: DepthSweepConfig) -> DepthSweep:
    """Measure every (activation, depth, seed) network at initialization."""
    check_config(config, DepthSweepConfig)
    summaries = {name: attrgetter(name) for name in _SWEPT} | {"envelope": lambda r: r.envelope[0]}
    axes = {"activation": config.activations, "depth": config.depths, "seed": config.seeds}
    grids, results = _init_sweep(config, summaries, **axes)
    first = config.seeds[0]
    examples = {(a, d): results[a, d, first] for a in config.activations for d in config.depths}
    return DepthSweep(config=config, examples=examples, **grids)


# -- 4. saturation -----------------------------------------------------------------------------------------
class SaturationConfig(Config):
    """Sigmoid (or tanh) MLPs at initialization (``InitGradientConfig``) over input scales (the inputs' std)
    × weight scales (multipliers of every hidden weight matrix after ``init``) × seeds."""

    weight_scales: tuple[float, ...] = nonempty(positive(), default=(0.5, 1, 2, 4, 8, 16), unique=True)
    input_scales: tuple[float, ...] = nonempty(positive(), default=(1.0, 10.0), unique=True)
    seeds: tuple[int, ...] = nonempty(seed_field(), default=(0, 1, 2), unique=True)
    activation: str = one_of("sigmoid", "tanh", default="sigmoid")
    depth: int = integer(10, low=1, high=1000)
    width: int = positive(64, integer=True)
    batch_size: int = positive(64, integer=True)
    init: str = one_of(*INITS, default="xavier_normal")
    saturation: float = in_range(0.0, 1.0, default=0.99, low_open=True, high_open=True)


@dataclass(frozen=True)
class SaturationSweep:
    """Summaries on the axes input_scale × weight_scale × seed: ``saturated_frac.sel(input_scale=1.0,
    weight_scale=8.0)`` is one value per seed; ``.median("seed")`` the median over seeds."""

    config: SaturationConfig
    saturated_frac: Grid  # saturated outputs, mean over the hidden layers
    first_layer_saturated_frac: Grid  # the same in layer 1 only
    mean_derivative: Grid  # mean f'(a) over all hidden units, examples and layers
    per_layer_factor: Grid  # (‖∂J/∂h_0‖ / ‖∂J/∂h_L‖)^(1/L)
    envelope_factor: Grid  # the bound's per-layer factor, geometric mean of c·‖W_l‖_2
    saturated_grad_ratio: Grid  # mean |∂J/∂a| of saturated / unsaturated units (NaN if none)
    # std of the pre-activations a_l, median over the layers above the first (the first sees the inputs;
    # the others see sigmoid outputs in (0, 1))
    preact_std: Grid


def run_saturation_sweep(config: SaturationConfig) -> SaturationSweep:
    """Measure saturation and the gradient at every (input scale, weight scale, seed)."""
    check_config(config, SaturationConfig)
    summaries = {
        "saturated_frac": lambda r: np.mean(r.saturated_frac),
        "first_layer_saturated_frac": lambda r: r.saturated_frac[0],
        "mean_derivative": lambda r: np.mean(r.mean_derivative),
        **{
            name: attrgetter(name) for name in ("per_layer_factor", "envelope_factor", "saturated_grad_ratio")
        },
        "preact_std": lambda r: np.median(r.preact_std[1:]) if r.config.depth > 1 else r.preact_std[0],
    }
    axes = {"input_scale": config.input_scales, "weight_scale": config.weight_scales, "seed": config.seeds}
    grids, _ = _init_sweep(config, summaries, **axes)
    return SaturationSweep(config, **grids)


# -- 5. classic experiment (a): two circles ----------------------------------------------------------------
class CirclesConfig(Config):
    """A ``depth``-hidden-layer, ``width``-unit MLP on sklearn's two circles (80 % train, 20 % validation),
    per activation and seed (the weights and the minibatch order; ``data_seed`` fixes the data set)."""

    activations: tuple[str, ...] = nonempty(
        one_of(*ACTIVATIONS), default=("sigmoid", "tanh", "relu"), unique=True
    )
    seeds: tuple[int, ...] = nonempty(seed_field(), default=(0,), unique=True)
    depth: int = integer(4, low=1, high=100)  # the tutorials: 4
    width: int = positive(5, integer=True)  # the tutorials: 5
    epochs: int = positive(30, integer=True)
    batch_size: int = positive(32, integer=True)
    lr: float = positive(0.05)
    optimizer: str = one_of(*OPTIMIZERS, default="momentum")  # momentum: SGD with momentum 0.9
    init: str = one_of(*INITS, default="xavier_uniform")  # Keras's default, the tutorials' framework
    n_samples: int = integer(1000, low=10)
    noise: float = real(0.1, low=0.0)
    data_seed: int = seed_field()
    monitor_every: int = positive(5, integer=True)  # steps between the monitor's records
    device: str = device_field("auto")

    def train_config(self, seed: int) -> TrainConfig:
        """The ``TrainConfig`` of one run."""
        return derive(TrainConfig, self, monitor_stats=("grad_mean", "grad_std"), seed=seed)


@dataclass(frozen=True)
class CirclesResult:
    """Per-layer statistics by epoch, as Grids on the axes activation × seed (× epoch × layer, the monitor's
    "layer 1" ... "layer L", "output"): ``val_accuracy.sel(activation="tanh", seed=0)``."""

    config: CirclesConfig
    val_accuracy: Grid  # activation × seed: after the last epoch
    accuracy_by_epoch: Grid  # activation × seed × epoch (1..E): validation accuracy after each epoch
    weight_mean: Grid  # activation × seed × epoch (0..E, 0: the init) × layer: mean of each weight matrix
    weight_std: Grid  # activation × seed × epoch (0..E) × layer: its standard deviation
    grad_mean: Grid  # activation × seed × epoch (1..E) × layer: weight gradient mean over the epoch's records
    grad_std: Grid  # activation × seed × epoch (1..E) × layer: its standard deviation, averaged likewise
    first_last_grad_ratio: Grid  # activation × seed: layer 1's grad_std / the output's, each over all epochs
    weight_change: Grid  # activation × seed × layer: |weight std after training / at initialization - 1|
    histories: dict[tuple[str, int], History] = field(repr=False)  # by (activation, seed)

    def epochs_to(self, accuracy: float) -> Grid:
        """activation × seed: the first epoch whose validation accuracy reaches ``accuracy``; inf if never."""
        accuracy = check_float("accuracy", accuracy, 0.0, 1.0)
        reached = self.accuracy_by_epoch.values >= accuracy
        first = np.where(reached.any(axis=-1), reached.argmax(axis=-1) + 1.0, np.inf)
        return Grid(first, name=f"epochs to {accuracy:g}", **self.val_accuracy.axes)

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per activation: "validation accuracy" (mean over seeds, and "min/max
        over seeds" when there are several), and medians over seeds of "epochs to 90 % accuracy" (inf:
        never), "gradient std, layer 1 / output" and "largest change of a hidden weight std"."""
        import pandas as pd

        accuracy = self.val_accuracy.values
        columns = {"validation accuracy": accuracy.mean(axis=1)}
        if len(self.config.seeds) > 1:
            columns.update({"min over seeds": accuracy.min(axis=1), "max over seeds": accuracy.max(axis=1)})
        columns["epochs to 90 % accuracy"] = self.epochs_to(0.9).median("seed").values
        columns["gradient std, layer 1 / output"] = self.first_last_grad_ratio.median("seed").values
        hidden_change = self.weight_change.values[..., :-1].max(axis=-1)
        columns["largest change of a hidden weight std"] = np.median(hidden_change, axis=1)
        return pd.DataFrame(columns, index=pd.Index(self.config.activations, name="activation"))


class _WeightRecorder(Callback):
    """A ``train`` callback: each layer's weight mean and std at the start and after every ``every`` steps."""

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
    """Train one network per (activation, seed) with ``vgcourse.training.train``; collect statistics by epoch
    (a callback records the weights' mean and std at the start and after every epoch's last step)."""
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
    for a, activation in enumerate(config.activations):
        for s, seed in enumerate(config.seeds):
            model = MLP(data.in_features, data.n_classes, config.depth, config.width, activation, seed=seed)
            initialize(
                model, config.init, activation=activation, generator=torch.Generator().manual_seed(seed)
            )
            layers = [*(layer.linear for layer in model.layers), model.head]
            recorder = _WeightRecorder(layers, per_epoch)
            history = train(model, data, config.train_config(seed), callbacks=[recorder])
            rows = [*recorder.rows[:epochs], recorder.stats()]
            stats = torch.stack(rows).cpu().double().numpy()
            w_stats[a, s, : len(stats)] = stats
            record = history.monitor
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
    runs = {"activation": config.activations, "seed": config.seeds}
    layers = {"layer": record.layer_names}
    from_init, after = {"epoch": range(epochs + 1)}, {"epoch": range(1, epochs + 1)}
    return CirclesResult(
        config=config,
        val_accuracy=Grid(val_accuracy, name="validation accuracy", **runs),
        accuracy_by_epoch=Grid(accuracy, name="validation accuracy", **runs, **after),
        weight_mean=Grid(w_stats[..., 0], name="weight mean", **runs, **from_init, **layers),
        weight_std=Grid(w_stats[..., 1], name="weight std", **runs, **from_init, **layers),
        grad_mean=Grid(g_mean, name="gradient mean", **runs, **after, **layers),
        grad_std=Grid(g_std, name="gradient std", **runs, **after, **layers),
        first_last_grad_ratio=Grid(g_std[..., 0].mean(axis=-1) / g_std[..., -1].mean(axis=-1), **runs),
        weight_change=Grid(np.abs(w_stats[:, :, -1, :, 1] / w_stats[:, :, 0, :, 1] - 1.0), **runs, **layers),
        histories=histories,
    )


# -- 6. classic experiment (b): the deep sigmoid network on MNIST ------------------------------------------
class MnistConfig(Config):
    """784 -> width × depth -> 10 MLP on MNIST, SGD with momentum; gradients per layer before and after.

    ``size`` picks the sizes, never the hardware: "small" (seconds on a CPU) is width 256 and 200 steps,
    "full" the original 784 -> 1000 × 5 -> 10 trained for 2000 steps (minutes on a CPU). The data is
    ``vgcourse.data.mnist``'s 10,000-image test split shipped in the package (``source="shipped"``) or its
    60,000-image train split (``source="full"``: downloaded, or from ``root``).
    """

    activation: str = one_of(*ACTIVATIONS, default="sigmoid")
    depth: int = integer(5, low=1, high=100)
    size: str = one_of(*MNIST_SIZES, default="small")
    width: int | None = positive(None, integer=True, optional=True)  # None: from size
    steps: int | None = positive(None, integer=True, optional=True)  # None: from size
    batch_size: int = positive(64, integer=True)
    lr: float = positive(0.1)
    momentum: float = real(0.9, low=0.0, high=1.0, high_open=True)
    init: str = one_of(*INITS, default="xavier_uniform")
    snapshot_size: int = integer(256, low=2)  # examples whose gradients are histogrammed (a spread needs 2)
    bins: int = integer(51, low=3)  # of the lumped (all layers in one) histogram; odd: 0 is a bin's center
    seed: int = seed_field()  # the weights, the minibatch order and the snapshot batch
    monitor_every: int = positive(10, integer=True)  # steps between the monitor's records
    device: str = device_field("auto")  # where it runs, not what it runs
    source: str = one_of(*MNIST_SOURCES, default="shipped")
    # with source="full": the folder with MNIST's train files (None: $VGCOURSE_DATA)
    root: str | None = instance_of(str, default=None, optional=True)

    def check(self) -> None:
        if self.bins % 2 == 0:
            raise ValueError(f"bins must be odd (so that 0 is the center of a bin); got {self.bins}")
        if self.root is not None and self.source != "full":
            raise ValueError("root= only applies to source='full' (the shipped test split needs no folder)")
        self.train_config(self.steps or 1)  # TrainConfig's rules between fields (momentum below 1)

    def resolved(self) -> tuple[int, int]:
        """(width, steps): the given values, else the ``size`` preset's; the same on every device."""
        width, steps = MNIST_SIZES[self.size]
        return (self.width or width, self.steps or steps)

    def train_config(self, steps: int) -> TrainConfig:
        """The ``TrainConfig`` of the run."""
        settings = {"optimizer": "momentum", "monitor_stats": "all", "eval_every": max(1, steps // 10)}
        return derive(TrainConfig, self, steps=steps, **settings)


@dataclass(frozen=True)
class MnistResult:
    """Per-layer weight gradients on a fixed batch (the snapshot), at initialization and after training.

    The lumped histogram puts all layers' gradients in one (bins over ±max|g|), as the tutorial showed
    them; "central" is its bin around 0. The spread of a hidden output h_l is its input-dependent part:
    the std over the snapshot's examples, averaged over the units.
    """

    config: MnistConfig
    width: int
    steps: int
    device: str  # where it ran: "cpu" or "cuda"
    n_train: int  # 8,334 from the shipped 10,000-image split, 50,000 with source="full"
    n_val: int  # 1,666 from the shipped split, 10,000 with source="full"
    layer_names: list[str]  # "layer 1", ..., "layer L", "output"
    grads_init: list[np.ndarray] = field(repr=False)  # per layer, the gradient values (float32, flat)
    grads_trained: list[np.ndarray] = field(repr=False)
    grad_std_init: np.ndarray  # (L+1,)
    grad_std_trained: np.ndarray  # (L+1,)
    central_frac_init: np.ndarray  # (L+1,) each layer's share of its entries in the central bin
    share_of_entries: np.ndarray  # (L+1,) each layer's share of all gradient entries
    spread_init: np.ndarray  # (L,)
    mean_output_init: np.ndarray  # (L,) mean of h_l over the examples and units (a sigmoid's is near 1/2)
    history: History = field(repr=False)  # its monitor holds per-layer statistics over training


def _layer_grads(model: MLP) -> list[np.ndarray]:
    layers = [*(layer.linear for layer in model.layers), model.head]
    return [layer.weight.grad.detach().reshape(-1).float().cpu().numpy().copy() for layer in layers]


def _forward_spread(model: MLP, x: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per hidden layer: mean over units of the std over examples of h_l, and the mean of h_l."""
    with torch.no_grad(), keep_outputs(model.layers) as outputs:
        model(x)
    spread = np.array([float(h.double().std(dim=0).mean()) for h in outputs])
    mean = np.array([float(h.double().mean()) for h in outputs])
    return spread, mean


def _central_fraction(grads: list[np.ndarray], bins: int) -> np.ndarray:
    """One histogram of all layers' values (bins over ±max|g|); per layer, the share in the central bin."""
    lumped = np.concatenate(grads)
    top = float(np.abs(lumped).max()) or 1.0
    edges = np.histogram_bin_edges(lumped, bins=bins, range=(-top, top))
    low, high = edges[bins // 2], edges[bins // 2 + 1]
    return np.array([np.mean((g >= low) & (g < high)) for g in grads])


def run_mnist(config: MnistConfig, data: DataSplit | None = None) -> MnistResult:
    """Histogram each layer's weight gradient on a fixed batch at init, train, and histogram again; ``data``
    is an MNIST ``DataSplit`` to reuse (None: load ``vgcourse.data.mnist`` from ``config.source``)."""
    check_config(config, MnistConfig)
    if data is None:
        data = mnist(config.root, source=config.source)
    else:
        check_config(data, DataSplit, "data")
    width, steps = config.resolved()
    device = pick_device(config.device)
    generator = torch.Generator().manual_seed(config.seed)
    model = MLP(
        data.in_features, data.n_classes or 10, config.depth, width, config.activation, seed=config.seed
    )
    initialize(model, config.init, activation=config.activation, generator=generator)
    pick = torch.randperm(data.n_train, generator=generator)[: config.snapshot_size]
    xb, yb = data.x_train[pick].to(device), data.y_train[pick].to(device)
    model.to(device)
    snapshot(model, xb, yb, F.cross_entropy)
    grads_init = _layer_grads(model)
    spread_init, mean_init = _forward_spread(model, xb)
    history = train(model, data, config.train_config(steps))
    snapshot(model, xb, yb, F.cross_entropy)
    grads_trained = _layer_grads(model)
    model.zero_grad(set_to_none=True)
    sizes = np.array([g.size for g in grads_init], dtype=np.float64)
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
        central_frac_init=_central_fraction(grads_init, config.bins),
        share_of_entries=sizes / sizes.sum(),
        spread_init=spread_init,
        mean_output_init=mean_init,
        history=history,
    )
