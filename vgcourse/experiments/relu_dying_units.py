"""The chapter on ReLU and dying units: why ReLU keeps gradients alive, and how ReLU units die.

Backpropagation multiplies the gradient by f'(z_l): δ_l = f'(z_l) ⊙ W_{l+1}^T δ_{l+1}, so with weights of
variance g²/n, ‖δ_l‖ / ‖δ_{l+1}‖ ≈ ρ_l = g · sqrt(mean f'(z_l)²): < 1/4 for sigmoid (g = 1), ≈ 1 for ReLU
(g = √2, half its units active). A unit is *dead* on a reference set R (the training set) when
z = w·h + b <= 0 for every input in R: the gradient of its incoming weights is exactly 0.0.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vgcourse._validation import check_tensor
from vgcourse.activations import ACTIVATIONS, RELU_FAMILY, derivative
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
from vgcourse.data import DataSplit, shared_digits
from vgcourse.device import pick_device
from vgcourse.initializers import gain, initialize
from vgcourse.models import MLP, keep_outputs
from vgcourse.training import (
    Callback,
    EvalEvent,
    StepEvent,
    StopTraining,
    TrainConfig,
    evaluate,
    minibatches,
    train,
)

INITS = ("kaiming_normal", "default", "xavier_normal")  # He (with the activation's gain), PyTorch's, Glorot
REFERENCES = ("train", "val")  # the set a unit must be silent on to count as dead
REMEDIES = ("relu", "leaky_relu", "elu", "gelu", "silu", "smaller lr", "he init")  # rows of the table
CAUSES = ("negative bias", "large step")  # the two ways of killing units the table compares
FLOW_QUANTITIES = ("grad ratio", "delta ratio", "predicted ratio", "measured factor", "predicted factor")
REMEDY_METRICS = ("dead fraction", "validation accuracy", "backward gain at init")
LABELS = {
    "relu": "ReLU",
    "leaky_relu": "LeakyReLU",
    "elu": "ELU",
    "gelu": "GELU",
    "silu": "SiLU",
    "smaller lr": "ReLU, smaller learning rate",
    "he init": "ReLU, He initialization",
    "default": "PyTorch default",
    "kaiming_normal": "He",
    "xavier_normal": "Glorot",
}


# Measuring units on a reference set -------------------------------------------------------------------------


@torch.no_grad()
def pre_activations(model: MLP, x: Tensor) -> list[Tensor]:
    """z_l = W_l h_{l-1} + b_l of every hidden layer of an ``MLP`` for the inputs x (N, in_features)."""
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a vgcourse.models.MLP; got {type(model).__name__}")
    with keep_outputs(layer.linear for layer in model.layers) as zs:
        model(check_tensor("x", x, ndim=2).to(next(model.parameters()).device))
    return zs


def dead_unit_masks(model: MLP, x: Tensor) -> list[Tensor]:
    """Per hidden layer, the units dead on x: z <= 0 for every row of x (for ReLU: output 0, f' = 0)."""
    if check_tensor("x", x, ndim=2).shape[0] == 0:
        raise ValueError("the reference set x is empty")
    return [z.amax(dim=0) <= 0 for z in pre_activations(model, x)]


def watch_firing(fired: Tensor, _module: nn.Module, _args: object, output: Tensor) -> None:
    """Forward hook (bind ``fired`` with functools.partial): fired_j ← fired_j or (output_j > 0 on a row),
    on training forward passes only (evaluation runs without grad)."""
    if torch.is_grad_enabled():
        fired |= (output > 0).any(dim=0)


def _activation_stats(model: MLP, x: Tensor, activation: str, batch: Tensor) -> np.ndarray:
    """(6, L): dead fraction on x, dead fraction on the rows ``batch`` of x, share of (unit, input) pairs
    with z > 0, mean f'(z), mean z and std z over x."""
    stats = []
    for z in pre_activations(model, x):
        on = z > 0
        fractions = [(~on.any(0)).float().mean(), (~on[batch.to(z.device)].any(0)).float().mean()]
        stats.append(
            torch.stack([*fractions, on.float().mean(), derivative(activation, z).mean(), z.mean(), z.std()])
        )
    return torch.stack(stats, dim=1).cpu().double().numpy()


def _forward_backward(model: MLP, x: Tensor, y: Tensor) -> tuple[list[Tensor], Tensor]:
    """Cross-entropy forward and backward pass keeping every z_l and the logits with their gradients."""
    with keep_outputs([*(layer.linear for layer in model.layers), model.head]) as kept:
        F.cross_entropy(model(x), y).backward()
    return kept[:-1], kept[-1]


# Why ReLU helps: per-layer gradient norms at init -----------------------------------------------------------


class GradientFlowConfig(Config):
    """Deep MLPs at initialization (weights N(0, g²/n) with the activation's gain g, zero biases), one
    backward pass on a batch of digits; the same seeds for every activation."""

    activations: tuple[str, ...] = nonempty(one_of(*ACTIVATIONS), default=("relu", "sigmoid"), unique=True)
    depth: int = integer(20, low=2)  # hidden layers L
    width: int = positive(64, integer=True)
    batch_size: int = positive(256, integer=True)
    n_seeds: int = positive(5, integer=True)  # seeds seed, seed + 1, ...
    seed: int = seed_field()
    data_seed: int = seed_field()  # the digits train/val split
    device: str = device_field("auto")


@dataclass(frozen=True)
class GradientFlowResult:
    """Per-layer backward quantities; arrays are (A, S, ·) for A activations and S seeds."""

    config: GradientFlowConfig
    layer_names: list[str]
    grad_norm: np.ndarray  # (A, S, L) ‖∂J/∂W_l‖_F
    measured_factor: np.ndarray  # (A, S, L-1) ‖δ_l‖ / ‖δ_{l+1}‖ with δ_l = ∂J/∂z_l over the batch
    predicted_factor: np.ndarray  # (A, S, L-1) ρ_l = g · sqrt(mean f'(z_l)²), from the forward pass
    # (activation, quantity), geometric means over seeds: "grad ratio" ‖∂J/∂W_1‖/‖∂J/∂W_L‖, "delta ratio"
    # ‖δ_1‖/‖δ_L‖, "predicted ratio" ∏ ρ_l; "measured factor", "predicted factor" also over layers
    summary: Grid


def run_gradient_flow(config: GradientFlowConfig) -> GradientFlowResult:
    """One forward and backward pass of a cross-entropy loss through deep MLPs at initialization."""
    check_config(config, GradientFlowConfig)
    data = shared_digits(config.data_seed)
    device = pick_device(config.device)
    x = data.x_train[: config.batch_size].to(device)
    y = data.y_train[: config.batch_size].to(device)
    shape = (len(config.activations), config.n_seeds)
    grad_norm, delta_norm = np.zeros((2, *shape, config.depth))
    predicted = np.zeros((*shape, config.depth - 1))
    for a, activation in enumerate(config.activations):
        for s in range(config.n_seeds):
            model = MLP(data.in_features, 10, config.depth, config.width, activation, seed=config.seed + s)
            generator = torch.Generator().manual_seed(config.seed + s)
            initialize(model, "kaiming_normal", activation=activation, generator=generator)
            zs, _ = _forward_backward(model.to(device), x, y)
            with torch.no_grad():
                delta_norm[a, s] = torch.stack([z.grad.norm() for z in zs]).cpu().double().numpy()
                grad_norm[a, s] = torch.stack([m.linear.weight.grad.norm() for m in model.layers]).cpu()
                rho = [derivative(activation, z.detach()).pow(2).mean().sqrt() for z in zs[:-1]]
                predicted[a, s] = gain(activation) * torch.stack(rho).cpu().double().numpy()
    measured = delta_norm[..., :-1] / delta_norm[..., 1:]
    gm = geometric_mean
    summary = [
        [gm(g[:, 0] / g[:, -1]), gm(d[:, 0] / d[:, -1]), np.exp(np.mean(np.sum(np.log(r), 1))), gm(m), gm(r)]
        for g, d, m, r in zip(grad_norm, delta_norm, measured, predicted, strict=True)
    ]
    names = [f"layer {i + 1}" for i in range(config.depth)]
    summary_grid = Grid(summary, activation=config.activations, quantity=FLOW_QUANTITIES)
    return GradientFlowResult(config, names, grad_norm, measured, predicted, summary_grid)


# Dying units during training --------------------------------------------------------------------------------


class DyingConfig(Config):
    """Train an MLP on the digits data with plain SGD (a zero gradient is a zero step) and measure its
    units on a reference set as it trains. The gradient norm is clipped at ``clip_norm``, so a too-large
    learning rate kills units instead of overflowing: a step moves the parameters by <= lr · clip_norm."""

    activation: str = one_of(*RELU_FAMILY, default="relu")
    lr: float = positive(0.3)
    bias_init: float = real(0.0)  # every bias starts here (negative values switch units off)
    init: str = one_of(*INITS, default="kaiming_normal")
    depth: int = positive(4, integer=True)
    width: int = positive(64, integer=True)
    steps: int = positive(300, integer=True)
    batch_size: int = positive(64, integer=True)
    measure_every: int = positive(20, integer=True)  # checkpoints: step 0, every this many, the last
    clip_norm: float | None = positive(1.0, optional=True)  # None: no clipping (large steps may diverge)
    reference: str = one_of(*REFERENCES, default="train")
    seed: int = seed_field()  # the weights and the minibatch order
    data_seed: int = seed_field()  # the digits train/val split
    device: str = device_field("auto")


@dataclass(frozen=True)
class DyingResult:
    """What the units did during one run, at K checkpoints (step 0 included), for L hidden layers."""

    config: DyingConfig
    layer_names: list[str]
    steps: np.ndarray  # (K,) the checkpoint steps
    dead_frac: np.ndarray  # (K, L) units with z <= 0 on the whole reference set
    batch_dead_frac: np.ndarray  # (K, L) the same count on one batch (a per-batch monitor's overestimate)
    active_frac: np.ndarray  # (K, L) share of (unit, input) pairs with z > 0 on the reference set
    mean_derivative: np.ndarray  # (K, L) mean f'(z) over units and reference inputs
    preact_mean: np.ndarray  # (K, L) mean z
    preact_std: np.ndarray  # (K, L) standard deviation of z
    init_backward_gain: float  # ‖∂J/∂z_1‖ / ‖∂J/∂logits‖ at step 0 (0.0 when a whole layer is dead)
    val_accuracy: np.ndarray  # (K,)
    loss: np.ndarray  # (steps_run,) training loss of each step
    diverged: bool  # the run hit a NaN/Inf loss or gradient (and stopped there)
    steps_run: int

    @property
    def final_accuracy(self) -> float:
        return float(self.val_accuracy[-1])

    @property
    def initial_dead(self) -> float:  # of all hidden units
        return float(self.dead_frac[0].mean())

    @property
    def final_dead(self) -> float:  # of all hidden units, at the last checkpoint
        return float(self.dead_frac[-1].mean())


def _build(c: DyingConfig, data: DataSplit) -> MLP:
    model = MLP(data.in_features, data.n_classes or 1, c.depth, c.width, c.activation, seed=c.seed)
    generator = torch.Generator().manual_seed(c.seed)
    initialize(model, c.init, activation=c.activation, bias=c.bias_init, generator=generator)
    return model.to(pick_device(c.device))


class _Probe:
    """One run's measurements: ``_activation_stats`` on the reference set and the validation accuracy at
    each checkpoint, and ‖∂J/∂z_1‖ / ‖∂J/∂logits‖ at step 0; built before the first step (checkpoint 0)."""

    def __init__(self, model: MLP, config: DyingConfig, data: DataSplit) -> None:
        self.model, self.config, self.data = model, config, data
        device = next(model.parameters()).device
        x, y = (data.x_train, data.y_train) if config.reference == "train" else (data.x_val, data.y_val)
        self.reference = x.to(device)
        zs, logits = _forward_backward(model, self.reference, y.to(device))
        self.init_gain = float(zs[0].grad.norm() / logits.grad.norm())
        model.zero_grad(set_to_none=True)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(config.seed))
        self.batch = order[: config.batch_size]  # the rows of the per-batch count
        self.checkpoints: list[tuple[int, np.ndarray, float]] = []
        self.measure(0)

    def measure(self, step: int, accuracy: float | None = None) -> None:
        """A checkpoint after ``step`` steps (the validation accuracy is evaluated unless given)."""
        stats = _activation_stats(self.model, self.reference, self.config.activation, self.batch)
        if accuracy is None:
            accuracy = evaluate(self.model, self.data.x_val, self.data.y_val)[1]
        self.checkpoints.append((step, stats, accuracy))

    def result(self, loss: np.ndarray, diverged: bool) -> DyingResult:
        steps, rows, accuracies = zip(*self.checkpoints, strict=True)
        stats = np.stack(rows).transpose(1, 0, 2)  # the 6 rows of _activation_stats, each (K, L)
        names = [f"layer {i + 1}" for i in range(self.config.depth)]
        measured = (np.array(steps), *stats, self.init_gain, np.array(accuracies))
        return DyingResult(self.config, names, *measured, loss, diverged, steps[-1])


def _train_config(config: DyingConfig) -> TrainConfig:
    """``run_dying``'s ``train`` config: minibatches shuffled with seed ``seed * 100_003``."""
    seed = config.seed * 100_003
    return derive(TrainConfig, config, monitor_every=None, eval_every=config.measure_every, seed=seed)


def run_dying(config: DyingConfig) -> DyingResult:
    """Train with plain SGD (``vgcourse.training.train``, minibatches shuffled with seed
    ``seed * 100_003``) and measure the units on the reference set at each evaluation (the checkpoints)."""
    check_config(config, DyingConfig)
    data = shared_digits(config.data_seed)
    model = _build(config, data)
    probe = _Probe(model, config, data)

    class Checkpoints(Callback):
        def on_eval(self, event: EvalEvent) -> None:  # after steps measure_every, 2 measure_every, ...
            probe.measure(event.step + 1, event.val_accuracy)

    history = train(model, data, _train_config(config), callbacks=[Checkpoints()])
    if history.diverged:  # stopped at the diverged step, whose update was not applied (finite weights)
        probe.measure(history.steps_run)
    return probe.result(history.loss, history.diverged)


_STACK_KEYS = ("activation", "depth", "width", "steps", "batch_size", "clip_norm", "data_seed", "device")


class _StackedMLP(nn.Module):
    """M MLPs of one shape as one module (a copy, weights stacked on dim 0): h ← f(h W_kᵀ + b_k), batched."""

    def __init__(self, models: list[MLP]) -> None:
        super().__init__()
        self.runs = [[*(layer.linear for layer in m.layers), m.head] for m in models]
        layers = list(zip(*self.runs, strict=True))  # layer k of every run
        self.weights = nn.ParameterList(torch.stack([m.weight.detach() for m in layer]) for layer in layers)
        self.biases = nn.ParameterList(torch.stack([m.bias.detach() for m in layer]) for layer in layers)
        self.activation = models[0].layers[0].activation

    def forward(self, h: Tensor) -> Tensor:
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            h = self.activation(h) if k < len(self.weights) - 1 else h
        return h

    @torch.no_grad()
    def copy_back(self) -> None:
        """Write each run's weights back into its MLP."""
        for m, run in enumerate(self.runs):
            for linear, w, b in zip(run, self.weights, self.biases, strict=True):
                linear.weight.copy_(w[m])
                linear.bias.copy_(b[m])


class _RunwiseSGD(torch.optim.Optimizer):
    """SGD on parameters stacked over M runs (dim 0), each on its own: θ_m ← θ_m - η_m · min(1, c / (‖g_m‖
    + 10⁻⁶)) · g_m until run m's loss (``closure()[m]``, from ``train(runs=M)``) or gradient is not finite."""

    def __init__(self, params: Any, lr: Tensor, clip_norm: float | None) -> None:
        super().__init__(params, {"lr": lr})
        self.clip_norm = clip_norm
        self.running = torch.ones(len(lr), dtype=torch.bool, device=lr.device)
        self.steps_run = torch.zeros(len(lr), dtype=torch.long, device=lr.device)
        self.losses: list[Tensor] = []

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> None:
        (group,) = self.param_groups
        grads = [p.grad for p in group["params"]]
        norm = torch.stack([g.pow(2).flatten(1).sum(1) for g in grads]).sum(0).sqrt()
        loss = closure()
        self.steps_run += self.running
        self.losses.append(torch.where(self.running, loss, math.nan).double().cpu())
        self.running &= torch.isfinite(loss) & torch.isfinite(norm)
        scale = torch.where(self.running, group["lr"], 0.0)
        if self.clip_norm is not None:
            scale = scale * (self.clip_norm / (norm + 1e-6)).clamp(max=1.0)
        for p, g in zip(group["params"], grads, strict=True):
            p -= scale.view(-1, *([1] * (g.ndim - 1))) * torch.nan_to_num(g)


def _train_stacked(models: list[MLP], configs: list[DyingConfig], data: DataSplit) -> _RunwiseSGD:
    """Train M runs that differ only in lr, seed, init and bias at once, in place, on ``run_dying``'s
    minibatches: ``run_dying`` in another order of floating-point operations (runs at the edge of
    stability, lr 3, end up differently, as under another CPU kernel family). The optimizer holds each
    run's losses, steps run and whether it is still running."""
    stacked = _StackedMLP(models)
    device = stacked.weights[0].device
    lr = torch.tensor([c.lr for c in configs], dtype=stacked.weights[0].dtype, device=device)
    optimizer = _RunwiseSGD(stacked.parameters(), lr, configs[0].clip_norm)
    batches = [minibatches(data, _train_config(c), device)[0] for c in configs]  # run_dying's train() order

    def batch(step: int) -> tuple[Tensor, Tensor]:
        xs, ys = zip(*(b(step) for b in batches), strict=True)
        return torch.stack(xs), torch.stack(ys)

    def loss_fn(output: Tensor, y: Tensor) -> Tensor:  # (M,): each run's mean over its batch
        return F.cross_entropy(output.transpose(1, 2), y, reduction="none").mean(dim=1)

    class Stop(Callback):
        def on_step(self, event: StepEvent) -> None:
            if not optimizer.running.any():
                raise StopTraining("every run stopped")

    config = TrainConfig(steps=configs[0].steps, monitor_every=None, stop_on_divergence=False)
    train(stacked, batch, config, callbacks=[Stop()], loss_fn=loss_fn, optimizer=optimizer, runs=len(configs))
    stacked.copy_back()
    return optimizer


def run_dying_stacked(configs: list[DyingConfig]) -> list[DyingResult]:
    """``run_dying`` for many runs with one checkpoint each (0 and ``steps``, or where a run diverged,
    whatever its ``measure_every``); runs that share the ``_STACK_KEYS`` are trained as one batch."""
    if not isinstance(configs, list) or not all(isinstance(c, DyingConfig) for c in configs):
        raise TypeError("configs must be a list of DyingConfig")
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, config in enumerate(configs):
        groups.setdefault(tuple(getattr(config, key) for key in _STACK_KEYS), []).append(i)
    results: list[Any] = [None] * len(configs)
    for indices in groups.values():
        group = [configs[i] for i in indices]
        data = shared_digits(group[0].data_seed)
        models = [_build(config, data) for config in group]
        probes = [_Probe(model, config, data) for model, config in zip(models, group, strict=True)]
        trained = _train_stacked(models, group, data)
        losses = torch.stack(trained.losses, dim=1).numpy()
        for j, (i, probe) in enumerate(zip(indices, probes, strict=True)):
            done = int(trained.steps_run[j])
            probe.measure(done)
            results[i] = probe.result(losses[j, :done], diverged=not trained.running[j])
    return results


class DyingSweepConfig(Config):
    """``run_dying`` for every bias initialization × learning rate; the rest from ``base``."""

    lrs: tuple[float, ...] = nonempty(positive(), default=(0.1, 0.3, 1.0, 3.0), unique=True)
    bias_inits: tuple[float, ...] = nonempty(real(), default=(0.0, -1.0, -2.0), unique=True)
    base: DyingConfig = instance_of(DyingConfig, default=DyingConfig())  # its lr and bias_init replaced


@dataclass(frozen=True)
class DyingSweepResult:
    config: DyingSweepConfig
    runs: Grid  # (bias_init, lr): the DyingResult of each run, e.g. runs.sel(lr=1.0, bias_init=0.0)


def run_dying_sweep(config: DyingSweepConfig) -> DyingSweepResult:
    """Run ``run_dying`` on the grid bias_inits × lrs."""
    check_config(config, DyingSweepConfig)
    runs = [
        run_dying(dataclasses.replace(config.base, lr=lr, bias_init=bias))
        for bias in config.bias_inits
        for lr in config.lrs
    ]
    runs = np.array(runs, dtype=object).reshape(len(config.bias_inits), -1)
    return DyingSweepResult(config, Grid(runs, name="run", bias_init=config.bias_inits, lr=config.lrs))


# Dead units are frozen --------------------------------------------------------------------------------------


class FrozenUnitsConfig(Config):
    """Train a ReLU network to checkpoint A, find its dead units, keep training to B and compare."""

    base: DyingConfig = instance_of(DyingConfig, default=DyingConfig(bias_init=-2.0, lr=0.3))
    steps_a: int = positive(150, integer=True)  # SGD steps before A (base.steps becomes steps_a + steps_b)
    steps_b: int = positive(150, integer=True)  # SGD steps from A to B

    def check(self) -> None:
        if (self.base.activation, self.base.reference) != ("relu", "train"):
            raise ValueError("base must be a ReLU run (only ReLU has f' = 0) with reference 'train'")


@dataclass(frozen=True)
class FrozenUnitsResult:
    """Dead units at checkpoint A and what happened to them by checkpoint B; counts are per layer (L,).
    The gradients are those of the loss J on the full training set at A."""

    config: FrozenUnitsConfig
    layer_names: list[str]
    dead_at_a: np.ndarray  # units dead on the full training set at A
    max_grad_dead: float  # max |∂J/∂w| over their incoming weights and biases (0.0 exactly)
    max_grad_dead_outgoing: float  # max |∂J/∂w| over their outgoing weights
    max_grad_alive: float  # max |∂J/∂w| over the incoming weights of the other units
    silent: np.ndarray  # dead at A and never fired (z > 0) on a training batch between A and B
    silent_identical: np.ndarray  # of those, incoming weights and bias bit-identical at B
    revived: np.ndarray  # dead at A, fired at least once between A and B
    revived_changed: np.ndarray  # of those, incoming weights changed


def _largest(tensors: list[Tensor], empty: float) -> float:
    """The largest entry of all ``tensors`` (``empty`` when they hold none)."""
    values = torch.cat([t.reshape(-1) for t in tensors])
    return float(values.max()) if values.numel() else empty


def run_frozen_units(config: FrozenUnitsConfig) -> FrozenUnitsResult:
    """Measure the gradient of dead units at A, then watch every training forward pass from A to B."""
    check_config(config, FrozenUnitsConfig)
    steps = config.steps_a + config.steps_b  # one evaluation, at the end
    base = dataclasses.replace(config.base, steps=steps, measure_every=steps)
    data = shared_digits(base.data_seed)
    model = _build(base, data)
    x = data.x_train.to(next(model.parameters()).device)
    y = data.y_train.to(x.device)
    at_a: dict[str, Any] = {}
    fired: list[Tensor] = []
    handles: list[Any] = []

    class CheckpointA(Callback):
        """At A (after step steps_a's update): dead units, their gradient on the full training set (the next
        step replaces it), the weights; then watch every training forward pass until B."""

        def on_step(self, event: StepEvent) -> None:
            if event.step != config.steps_a - 1:
                return
            dead_a = dead_unit_masks(model, x)
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            linears = [layer.linear for layer in model.layers] + [model.head]
            incoming = [torch.cat([m.weight.grad, m.bias.grad[:, None]], 1).abs() for m in linears[:-1]]
            outgoing = [m.weight.grad.T.abs() for m in linears[1:]]  # row j: unit j's outgoing weights
            alive = [m.weight.grad[~mask].abs() for m, mask in zip(linears[:-1], dead_a, strict=True)]
            at_a["dead"] = dead_a
            at_a["maxima"] = (  # the FrozenUnitsResult fields max_grad_dead, _dead_outgoing, _alive
                _largest([g[mask] for g, mask in zip(incoming, dead_a, strict=True)], 0.0),
                _largest([g[mask] for g, mask in zip(outgoing, dead_a, strict=True)], 0.0),
                _largest(alive, math.nan),
            )
            model.zero_grad(set_to_none=True)
            at_a["before"] = [
                (m.linear.weight.detach().clone(), m.linear.bias.detach().clone()) for m in model.layers
            ]
            fired.extend(torch.zeros_like(mask) for mask in dead_a)
            handles.extend(
                m.register_forward_hook(functools.partial(watch_firing, hit))
                for m, hit in zip(model.layers, fired, strict=True)
            )

    try:
        history = train(model, data, _train_config(base), callbacks=[CheckpointA()])
    finally:
        for handle in handles:
            handle.remove()
    if history.diverged:
        where = "before checkpoint A" if "dead" not in at_a else "between A and B"
        raise RuntimeError(f"the run diverged {where} ({history.message}); lower base.lr")
    dead_a, before = at_a["dead"], at_a["before"]
    counts = np.zeros((4, base.depth), dtype=np.int64)
    for i, (m, (w, b), mask, hit) in enumerate(zip(model.layers, before, dead_a, fired, strict=True)):
        same = (m.linear.weight.detach() == w).all(dim=1) & (m.linear.bias.detach() == b)
        silent, revived = mask & ~hit, mask & hit
        counts[:, i] = [int(t.sum()) for t in (silent, silent & same, revived, revived & ~same)]
    dead_counts = np.array([int(mask.sum()) for mask in dead_a])
    return FrozenUnitsResult(config, model.layer_names()[:-1], dead_counts, *at_a["maxima"], *counts)


# Remedies side by side --------------------------------------------------------------------------------------


_NEGATIVE_BIAS = DyingConfig(init="default", bias_init=-0.5, lr=1.0, measure_every=300)
_LARGE_STEP = DyingConfig(init="default", bias_init=0.0, lr=3.0, measure_every=300)


class RemediesConfig(Config):
    """Each remedy changes one thing in a ReLU run that kills units, for two causes of death: "relu" (the
    unchanged baseline), "leaky_relu", "elu", "gelu", "silu" (the activation), "smaller lr" (lr ×
    ``lr_factor``), "he init" (kaiming_normal weights instead of the cause's init)."""

    negative_bias: DyingConfig = instance_of(DyingConfig, default=_NEGATIVE_BIAS)  # a ReLU run
    large_step: DyingConfig = instance_of(DyingConfig, default=_LARGE_STEP)  # a ReLU run
    remedies: tuple[str, ...] = nonempty(one_of(*REMEDIES), default=REMEDIES, unique=True)
    lr_factor: float = in_range(0.0, 1.0, default=0.1, low_open=True, high_open=True)
    n_seeds: int = positive(3, integer=True)  # seeds seed, seed + 1, ... per cell (replace the causes')
    seed: int = seed_field()

    def check(self) -> None:
        for name in ("negative_bias", "large_step"):
            if getattr(self, name).activation != "relu":
                raise ValueError(f"{name}.activation must be 'relu' (the remedies change it)")

    def run_config(self, remedy: str, cause: str, seed: int) -> DyingConfig:
        """The ``DyingConfig`` of one cell of the table (``cause``: one of ``CAUSES``)."""
        base = self.negative_bias if cause == CAUSES[0] else self.large_step
        changes: dict[str, Any] = {"seed": seed}
        if remedy in RELU_FAMILY:
            changes["activation"] = remedy
        elif remedy == "smaller lr":
            changes["lr"] = base.lr * self.lr_factor
        elif remedy == "he init":
            changes["init"] = "kaiming_normal"
        return dataclasses.replace(base, **changes)


def _run_grids(configs: list[DyingConfig], axes: dict[str, tuple[Any, ...]]) -> dict[str, Grid]:
    """``run_dying_stacked`` on ``configs`` (row-major over ``axes``): Grids of each run's final dead
    fraction, final validation accuracy, backward gain at step 0, divergence, and of the runs."""
    results = run_dying_stacked(configs)
    shape = tuple(len(c) for c in axes.values())
    fields = {"dead": "final_dead", "accuracy": "final_accuracy", "backward_gain": "init_backward_gain"}
    grids = {
        name: Grid(np.array([getattr(r, f) for r in results]).reshape(shape), name=name, **axes)
        for name, f in (fields | {"diverged": "diverged"}).items()
    }
    return grids | {"runs": Grid(np.array(results, dtype=object).reshape(shape), name="runs", **axes)}


@dataclass(frozen=True)
class _StackedRuns:
    """The Grids of ``_run_grids``: each run's final numbers on the axes of a stacked sweep."""

    config: Any
    dead: Grid  # fraction of hidden units dead on the reference set at the end
    accuracy: Grid  # validation accuracy at the end (or where the run diverged)
    backward_gain: Grid  # ‖∂J/∂z_1‖ / ‖∂J/∂logits‖ at step 0 (see DyingResult.init_backward_gain)
    diverged: Grid
    runs: Grid  # the DyingResult of every run


@dataclass(frozen=True)
class RemediesResult(_StackedRuns):
    """The remedies table: axes (remedy, cause, seed)."""

    config: RemediesConfig
    table: Grid  # (remedy, cause, metric): means over seeds (geometric for the backward gain)

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per remedy (named by ``LABELS``), columns (cause, metric)."""
        import pandas as pd

        columns = {(c, m): self.table.sel(cause=c, metric=m).values for c in CAUSES for m in REMEDY_METRICS}
        frame = pd.DataFrame(columns, index=[LABELS[r] for r in self.config.remedies])
        frame.index.name = "remedy"
        return frame


def run_remedies(config: RemediesConfig) -> RemediesResult:
    """Run every (remedy, cause, seed) cell with ``run_dying_stacked`` (one checkpoint, at the end)."""
    check_config(config, RemediesConfig)
    seeds = tuple(range(config.seed, config.seed + config.n_seeds))
    configs = [config.run_config(r, c, s) for r in config.remedies for c in CAUSES for s in seeds]
    grids = _run_grids(configs, {"remedy": config.remedies, "cause": CAUSES, "seed": seeds})
    names = ("dead", "accuracy", "backward_gain")
    table = np.stack([grids[n].mean("seed", geometric=n == "backward_gain").values for n in names], axis=-1)
    metrics = Grid(table, remedy=config.remedies, cause=CAUSES, metric=REMEDY_METRICS)
    return RemediesResult(config=config, **grids, table=metrics)


# The activations ranked fairly: each at its best learning rate, over seeds, under two initializations -------


class RankingConfig(Config):
    """Every activation × initialization × learning rate × seed, all trained like ``base`` (its
    activation, lr, init and seed replaced). Each activation is ranked at its best learning rate (the
    highest mean validation accuracy over seeds) under each initialization, so that a ranking cannot come
    from one lucky or unlucky setting."""

    base: DyingConfig = instance_of(DyingConfig, default=_NEGATIVE_BIAS)
    activations: tuple[str, ...] = nonempty(one_of(*RELU_FAMILY), default=RELU_FAMILY, unique=True)
    inits: tuple[str, ...] = nonempty(one_of(*INITS), default=("default", "kaiming_normal"), unique=True)
    lrs: tuple[float, ...] = nonempty(positive(), default=(0.3, 1.0, 3.0), unique=True)  # ascending
    n_seeds: int = positive(3, integer=True)  # seeds seed, seed + 1, ...
    seed: int = seed_field()


@dataclass(frozen=True)
class RankingResult(_StackedRuns):
    """Every run on axes (activation, init, lr, seed), and each activation at its best learning rate: the
    highest mean validation accuracy over seeds (the smaller lr on a tie)."""

    config: RankingConfig
    best_lr: Grid  # (activation, init)
    best_accuracy: Grid  # (activation, init, seed) at the best lr
    best_dead: Grid  # (activation, init, seed) at the best lr

    def to_frame(self) -> Any:
        """One row per (initialization, activation) named by ``LABELS``, at the best learning rate."""
        import pandas as pd

        cells = [{"activation": a, "init": i} for i in self.config.inits for a in self.config.activations]
        accuracy = [self.best_accuracy.sel(**cell).values for cell in cells]
        columns = {
            "initialization": [LABELS[cell["init"]] for cell in cells],
            "activation": [LABELS[cell["activation"]] for cell in cells],
            "best learning rate": [self.best_lr.sel(**cell) for cell in cells],
            "validation accuracy (mean)": [x.mean() for x in accuracy],
            "lowest seed": [x.min() for x in accuracy],
            "highest seed": [x.max() for x in accuracy],
            "dead fraction (mean)": [self.best_dead.sel(**cell).values.mean() for cell in cells],
        }
        return pd.DataFrame(columns)


def run_ranking(config: RankingConfig) -> RankingResult:
    """Train every (activation, init, lr, seed) run of the grid with ``run_dying_stacked``."""
    check_config(config, RankingConfig)
    seeds = tuple(range(config.seed, config.seed + config.n_seeds))
    axes = {"activation": config.activations, "init": config.inits, "lr": config.lrs, "seed": seeds}
    base = dataclasses.replace(config.base, measure_every=config.base.steps)
    configs = [
        dataclasses.replace(base, activation=a, init=i, lr=lr, seed=s)
        for a in config.activations
        for i in config.inits
        for lr in config.lrs
        for s in seeds
    ]
    grids = _run_grids(configs, axes)
    accuracy, dead = grids["accuracy"].values, grids["dead"].values
    best = accuracy.mean(axis=3).argmax(axis=2)[..., None, None]  # (activation, init, 1, 1): the best lr
    cells = {"activation": config.activations, "init": config.inits}
    return RankingResult(
        config=config,
        **grids,
        best_lr=Grid(np.array(config.lrs)[best[..., 0, 0]], name="best lr", **cells),
        best_accuracy=Grid(
            np.take_along_axis(accuracy, best, 2)[:, :, 0], name="accuracy", **cells, seed=seeds
        ),
        best_dead=Grid(np.take_along_axis(dead, best, 2)[:, :, 0], **cells, seed=seeds),
    )
