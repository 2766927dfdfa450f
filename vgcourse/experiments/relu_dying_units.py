"""Chapter 3, ReLU and dying units: why ReLU keeps gradients alive, and how ReLU units die.

Back propagation through a hidden layer multiplies the gradient by the activation's derivative,
δ_l = f'(z_l) ⊙ W_{l+1}^T δ_{l+1}. With weights of variance g²/n (g the activation's gain),

    ‖δ_l‖ / ‖δ_{l+1}‖ ≈ ρ_l = g · sqrt(mean f'(z_l)²),

so sigmoid (f' <= 1/4, g = 1) shrinks the gradient by ρ < 1/4 per layer, while ReLU (f' = 1 where
z > 0, else 0; g = √2) has ρ ≈ √2 · √(1/2) = 1 when half the units are active.

The same zero derivative is the ReLU's weakness. A unit is *dead* on a reference set R (here the full
training set, not one batch) when its pre-activation z = w·h + b <= 0 for every input in R: its output
is 0 and its derivative is 0 for all of R, so the gradient of its incoming weights and bias,
Σ_x δ(x) h(x)^T, is exactly 0.0, and plain SGD leaves them exactly where they are.

Experiments (a frozen ``...Config`` and a ``run_...`` function each):

- ``run_gradient_flow``: per-layer gradient norms of a deep ReLU and sigmoid network at init, and the
  per-layer factor ρ_l measured vs predicted.
- ``run_dying``: one training run on the digits data, with the dead fraction per layer measured on the
  reference set every few steps (the explorer's run).
- ``run_dying_sweep``: ``run_dying`` over learning rate × bias initialization.
- ``run_frozen_units``: the gradient of dead units is exactly zero, and their weights stay bit-identical.
- ``run_remedies``: LeakyReLU, ELU, GELU, SiLU, a smaller learning rate and He init against two causes
  of death (a negative bias, a too-large step): dead fraction and accuracy in one table.
- ``run_ranking``: the activations under a negative bias, each at its best learning rate over seeds,
  under PyTorch's default and He initialization.
- ``run_dying_stacked``: many one-checkpoint ``run_dying`` runs of one shape trained at once with
  batched matrix products (the remedies and the ranking use it).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vgcourse._validation import check_choice, check_int, check_tensor
from vgcourse.activations import ACTIVATIONS, RELU_FAMILY, derivative
from vgcourse.config import (
    Config,
    derive,
    device_field,
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
from vgcourse.models import MLP
from vgcourse.training import Callback, EvalEvent, StepEvent, TrainConfig, evaluate, train

__all__ = [
    "CAUSES",
    "DyingConfig",
    "DyingResult",
    "DyingSweepConfig",
    "DyingSweepResult",
    "FrozenUnitsConfig",
    "FrozenUnitsResult",
    "GradientFlowConfig",
    "GradientFlowResult",
    "INITS",
    "LABELS",
    "REFERENCES",
    "REMEDIES",
    "RankingConfig",
    "RankingResult",
    "RemediesConfig",
    "RemediesResult",
    "dead_fraction",
    "dead_unit_masks",
    "pre_activations",
    "run_dying",
    "run_dying_stacked",
    "run_dying_sweep",
    "run_frozen_units",
    "run_gradient_flow",
    "run_ranking",
    "run_remedies",
]

INITS = ("kaiming_normal", "default", "xavier_normal")
"""Weight initializations a dying run accepts: He (kaiming_normal), PyTorch's default, Glorot."""
REFERENCES = ("train", "val")
"""Reference sets a unit must be silent on to count as dead."""
REMEDIES = ("relu", "leaky_relu", "elu", "gelu", "silu", "smaller lr", "he init")
"""Rows of the remedies table: the ReLU baseline, four activations, and two changes to a ReLU run."""
CAUSES = ("negative bias", "large step")
"""Columns of the remedies table: the two ways of killing units it compares."""
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
"""How the tables name remedies, activations and initializations."""


# ----------------------------------------------------------------------------------------------------
# Measuring units on a reference set


def _check_mlp(model: Any) -> MLP:
    if not isinstance(model, MLP):
        raise TypeError(
            f"model must be a vgcourse.models.MLP (it has .layers of Dense); got {type(model).__name__}"
        )
    return model


@torch.no_grad()
def pre_activations(model: MLP, x: Tensor) -> list[Tensor]:
    """Return z_l = W_l h_{l-1} + b_l of every hidden Dense layer for the inputs x, input to output.

    Args:
        model: an ``MLP``.
        x: inputs (N, in_features); moved to the model's device.
    """
    _check_mlp(model)
    check_tensor("x", x, ndim=2)
    h = x.to(next(model.parameters()).device)
    zs = []
    for layer in model.layers:
        z = layer.linear(h)
        zs.append(z)
        h = layer.activation(z)
    return zs


def dead_unit_masks(model: MLP, x: Tensor) -> list[Tensor]:
    """Per hidden layer, a boolean mask of the units that are dead on x: z <= 0 for every row of x.

    For ReLU such a unit outputs 0 and has derivative 0 on all of x. For leaky_relu, elu, gelu and silu
    the mask marks units whose pre-activation is never positive (their derivative is not 0).

    Args:
        model: an ``MLP``.
        x: the reference inputs (N, in_features), N >= 1.
    """
    if check_tensor("x", x, ndim=2).shape[0] == 0:
        raise ValueError("the reference set x is empty")
    return [z.amax(dim=0) <= 0 for z in pre_activations(model, x)]


def dead_fraction(model: MLP, x: Tensor) -> np.ndarray:
    """Return the (L,) fraction of each hidden layer's units that are dead on x (see ``dead_unit_masks``).

    Args:
        model: an ``MLP``.
        x: the reference inputs (N, in_features).
    """
    return np.array([float(mask.float().mean()) for mask in dead_unit_masks(model, x)])


def _activation_stats(model: MLP, x: Tensor, activation: str, batch: Tensor) -> np.ndarray:
    """(6, L): dead fraction on x, dead fraction on the rows ``batch`` of x, share of (unit, input) pairs
    with z > 0, mean f'(z), mean z and std z over x."""
    zs = pre_activations(model, x)
    stats = []
    for z in zs:
        positive = z > 0
        stats.append(
            torch.stack(
                [
                    (~positive.any(0)).float().mean(),
                    (~positive[batch.to(z.device)].any(0)).float().mean(),
                    positive.float().mean(),
                    derivative(activation, z).mean(),
                    z.mean(),
                    z.std(),
                ]
            )
        )
    return torch.stack(stats, dim=1).cpu().double().numpy()


def _forward_backward(model: MLP, x: Tensor, y: Tensor) -> tuple[list[Tensor], Tensor]:
    """Cross-entropy forward and backward pass keeping every z_l and the logits with their gradients."""
    h, zs = x, []
    for layer in model.layers:
        z = layer.linear(h)
        z.retain_grad()
        zs.append(z)
        h = layer.activation(z)
    logits = model.head(h)
    logits.retain_grad()
    F.cross_entropy(logits, y).backward()
    return zs, logits


def _geometric_mean(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """exp(mean(log v)); 0 when any value is 0."""
    with np.errstate(divide="ignore"):
        return np.exp(np.mean(np.log(values), axis=axis))


# ----------------------------------------------------------------------------------------------------
# Why ReLU helps: per-layer gradient norms at init


class GradientFlowConfig(Config):
    """Deep networks at initialization, one backward pass on a batch of digits.

    Each activation gets weights N(0, g²/n) with its own gain g (``vgcourse.initializers.gain``: relu √2,
    sigmoid 1, tanh 5/3) and zero biases; the same seeds are used for every activation.

    Args:
        activations: the activations to compare (names from ``ACTIVATIONS``, at least one).
        depth: number of hidden layers L (>= 2).
        width: units per hidden layer.
        batch_size: digits training examples in the batch.
        n_seeds: independent initializations (seeds ``seed``, ``seed + 1``, ...).
        seed: the first seed.
        data_seed: seed of the digits train/val split.
        device: "auto", "cpu" or "cuda".
    """

    activations: tuple[str, ...] = nonempty(one_of(*ACTIVATIONS), default=("relu", "sigmoid"), unique=True)
    depth: int = integer(20, low=2)
    width: int = positive(64, integer=True)
    batch_size: int = positive(256, integer=True)
    n_seeds: int = positive(5, integer=True)
    seed: int = seed_field()
    data_seed: int = seed_field()
    device: str = device_field("auto")


@dataclass(frozen=True)
class GradientFlowResult:
    """Per-layer backward quantities; arrays are (A, S, ·) for A activations and S seeds.

    Args:
        config: the configuration that produced this result.
        layer_names: "layer 1" ... "layer L".
        grad_norm: (A, S, L) ‖∂J/∂W_l‖_F, the weight gradient of each hidden layer.
        delta_norm: (A, S, L) ‖δ_l‖ = ‖∂J/∂z_l‖ over the batch, the gradient reaching layer l.
        measured_factor: (A, S, L-1) ‖δ_l‖ / ‖δ_{l+1}‖ for l = 1..L-1.
        predicted_factor: (A, S, L-1) ρ_l = g · sqrt(mean f'(z_l)²), from the forward pass alone.
    """

    config: GradientFlowConfig
    layer_names: list[str]
    grad_norm: np.ndarray
    delta_norm: np.ndarray
    measured_factor: np.ndarray
    predicted_factor: np.ndarray

    def _index(self, activation: str) -> int:
        return self.config.activations.index(check_choice("activation", activation, self.config.activations))

    def grad_ratio(self, activation: str) -> float:
        """‖∂J/∂W_1‖ / ‖∂J/∂W_L‖, geometric mean over seeds (<< 1: the first layer learns far slower).

        Args:
            activation: one of ``config.activations``.
        """
        g = self.grad_norm[self._index(activation)]
        return float(np.exp(np.mean(np.log(g[:, 0] / g[:, -1]))))

    def delta_ratio(self, activation: str) -> float:
        """‖δ_1‖ / ‖δ_L‖, geometric mean over seeds.

        Args:
            activation: one of ``config.activations``.
        """
        d = self.delta_norm[self._index(activation)]
        return float(np.exp(np.mean(np.log(d[:, 0] / d[:, -1]))))

    def predicted_ratio(self, activation: str) -> float:
        """∏_{l=1}^{L-1} ρ_l, the prediction of ``delta_ratio``, geometric mean over seeds.

        Args:
            activation: one of ``config.activations``.
        """
        rho = self.predicted_factor[self._index(activation)]
        return float(np.exp(np.mean(np.sum(np.log(rho), axis=1))))

    def mean_factor(self, activation: str, measured: bool = True) -> float:
        """Geometric mean over layers and seeds of the per-layer factor ‖δ_l‖ / ‖δ_{l+1}‖ (or ρ_l).

        Args:
            activation: one of ``config.activations``.
            measured: the measured factor (True) or the prediction ρ_l (False).
        """
        values = (self.measured_factor if measured else self.predicted_factor)[self._index(activation)]
        return float(np.exp(np.mean(np.log(values))))


def run_gradient_flow(config: GradientFlowConfig) -> GradientFlowResult:
    """One forward and backward pass of a cross-entropy loss through deep MLPs at initialization.

    Args:
        config: see :class:`GradientFlowConfig`.
    """
    data = shared_digits(config.data_seed)
    device = pick_device(config.device)
    x = data.x_train[: config.batch_size].to(device)
    y = data.y_train[: config.batch_size].to(device)
    shape = (len(config.activations), config.n_seeds)
    grad_norm = np.zeros((*shape, config.depth))
    delta_norm = np.zeros((*shape, config.depth))
    predicted = np.zeros((*shape, config.depth - 1))
    for a, activation in enumerate(config.activations):
        for s in range(config.n_seeds):
            model = MLP(data.in_features, 10, config.depth, config.width, activation)
            generator = torch.Generator().manual_seed(config.seed + s)
            initialize(model, "kaiming_normal", activation=activation, generator=generator)
            zs, _ = _forward_backward(model.to(device), x, y)
            with torch.no_grad():
                delta_norm[a, s] = torch.stack([z.grad.norm() for z in zs]).cpu().double().numpy()
                grad_norm[a, s] = (
                    torch.stack([m.linear.weight.grad.norm() for m in model.layers]).cpu().numpy()
                )
                rho = [derivative(activation, z.detach()).pow(2).mean().sqrt() for z in zs[:-1]]
                predicted[a, s] = gain(activation) * torch.stack(rho).cpu().double().numpy()
    return GradientFlowResult(
        config=config,
        layer_names=[f"layer {i + 1}" for i in range(config.depth)],
        grad_norm=grad_norm,
        delta_norm=delta_norm,
        measured_factor=delta_norm[..., :-1] / delta_norm[..., 1:],
        predicted_factor=predicted,
    )


# ----------------------------------------------------------------------------------------------------
# Dying units during training


class DyingConfig(Config):
    """Train an MLP on the digits data with plain SGD; measure its units on a reference set as it trains.

    Plain SGD (no momentum, no weight decay) is used on purpose: a zero gradient then means a zero step.
    The gradient norm is clipped at ``clip_norm`` so that a too-large learning rate kills units instead of
    overflowing to NaN: each step moves the parameters by at most ``lr * clip_norm``.

    Args:
        activation: hidden nonlinearity, one of ``RELU_FAMILY``.
        lr: learning rate (> 0).
        bias_init: the value every bias starts at (negative values switch units off).
        init: weight initialization, one of ``INITS`` (He uses the activation's gain).
        depth: number of hidden layers.
        width: units per hidden layer.
        steps: SGD steps.
        batch_size: examples per step.
        measure_every: measure the units (and the validation accuracy) every this many steps, and at
            step 0 and the last step.
        clip_norm: gradient-norm clipping threshold (None: no clipping; large steps may then diverge).
        reference: "train" (the full training set: a unit dead there gets no gradient from any batch) or
            "val" (the validation set).
        seed: seed of the weights and of the minibatch order.
        data_seed: seed of the digits train/val split.
        device: "auto", "cpu" or "cuda".
    """

    activation: str = one_of(*RELU_FAMILY, default="relu")
    lr: float = positive(0.3)
    bias_init: float = real(0.0)
    init: str = one_of(*INITS, default="kaiming_normal")
    depth: int = positive(4, integer=True)
    width: int = positive(64, integer=True)
    steps: int = positive(300, integer=True)
    batch_size: int = positive(64, integer=True)
    measure_every: int = positive(20, integer=True)
    clip_norm: float | None = positive(1.0, optional=True)
    reference: str = one_of(*REFERENCES, default="train")
    seed: int = seed_field()
    data_seed: int = seed_field()
    device: str = device_field("auto")


@dataclass(frozen=True)
class DyingResult:
    """What the units did during one run, at K checkpoints (step 0 included), for L hidden layers.

    Args:
        config: the configuration that produced this result.
        layer_names: "layer 1" ... "layer L".
        steps: (K,) the checkpoint steps.
        dead_frac: (K, L) fraction of each layer's units with z <= 0 on the whole reference set.
        batch_dead_frac: (K, L) the same count on one batch of ``batch_size`` reference inputs (what a
            per-batch monitor reports: an overestimate).
        active_frac: (K, L) share of (unit, input) pairs with z > 0 on the reference set.
        mean_derivative: (K, L) mean of f'(z) over units and reference inputs (the layer's average gain).
        preact_mean: (K, L) mean of z over units and reference inputs.
        preact_std: (K, L) standard deviation of z over units and reference inputs.
        init_backward_gain: ‖∂J/∂z_1‖ / ‖∂J/∂logits‖ at step 0, J the loss on the reference set: how much
            of the output's gradient reaches the first layer (0.0 when a whole layer is dead).
        val_accuracy: (K,) validation accuracy at each checkpoint.
        loss: (steps_run,) training loss of each step.
        diverged: whether the run hit a NaN/Inf loss or gradient (it stops there).
        steps_run: number of SGD steps that ran.
    """

    config: DyingConfig
    layer_names: list[str]
    steps: np.ndarray
    dead_frac: np.ndarray
    batch_dead_frac: np.ndarray
    active_frac: np.ndarray
    mean_derivative: np.ndarray
    preact_mean: np.ndarray
    preact_std: np.ndarray
    init_backward_gain: float
    val_accuracy: np.ndarray
    loss: np.ndarray
    diverged: bool
    steps_run: int

    @property
    def final_accuracy(self) -> float:
        """Validation accuracy at the last checkpoint."""
        return float(self.val_accuracy[-1])

    @property
    def initial_dead(self) -> float:
        """Fraction of all hidden units dead at step 0."""
        return float(self.dead_frac[0].mean())

    @property
    def final_dead(self) -> float:
        """Fraction of all hidden units dead at the last checkpoint."""
        return float(self.dead_frac[-1].mean())

    @property
    def peak_dead(self) -> float:
        """Largest fraction of all hidden units dead at any checkpoint."""
        return float(self.dead_frac.mean(axis=1).max())


def _build(config: DyingConfig, data: DataSplit) -> MLP:
    model = MLP(data.in_features, data.n_classes or 1, config.depth, config.width, config.activation)
    generator = torch.Generator().manual_seed(config.seed)
    initialize(model, config.init, activation=config.activation, bias=config.bias_init, generator=generator)
    return model.to(pick_device(config.device))


def _start(model: MLP, config: DyingConfig, data: DataSplit) -> tuple[Tensor, Tensor, float]:
    """The reference inputs, the rows of the per-batch count and ‖∂J/∂z_1‖ / ‖∂J/∂logits‖ at step 0."""
    device = next(model.parameters()).device
    reference, labels = (
        (data.x_train, data.y_train) if config.reference == "train" else (data.x_val, data.y_val)
    )
    reference, labels = reference.to(device), labels.to(device)
    zs, logits = _forward_backward(model, reference, labels)
    init_gain = float(zs[0].grad.norm() / logits.grad.norm())
    model.zero_grad(set_to_none=True)
    batch = torch.randperm(len(reference), generator=torch.Generator().manual_seed(config.seed))
    return reference, batch[: config.batch_size], init_gain


def _dying_result(
    config: DyingConfig,
    steps: list[int],
    rows: list[np.ndarray],
    accuracies: list[float],
    loss: np.ndarray,
    init_gain: float,
    diverged: bool,
) -> DyingResult:
    table = np.stack(rows)  # (K, 6, L)
    return DyingResult(
        config=config,
        layer_names=[f"layer {i + 1}" for i in range(config.depth)],
        steps=np.array(steps),
        dead_frac=table[:, 0],
        batch_dead_frac=table[:, 1],
        active_frac=table[:, 2],
        mean_derivative=table[:, 3],
        preact_mean=table[:, 4],
        preact_std=table[:, 5],
        init_backward_gain=init_gain,
        val_accuracy=np.array(accuracies),
        loss=loss,
        diverged=diverged,
        steps_run=steps[-1],
    )


def run_dying(config: DyingConfig) -> DyingResult:
    """Train with plain SGD and measure dead units per layer on the reference set at every checkpoint.

    One ``vgcourse.training.train`` run (minibatches shuffled with seed ``seed * 100_003``); its
    evaluations fall on the checkpoints, where a callback measures the units.

    Args:
        config: see :class:`DyingConfig`.
    """
    data = shared_digits(config.data_seed)
    model = _build(config, data)
    reference, batch, init_gain = _start(model, config, data)
    steps, rows = [0], [_activation_stats(model, reference, config.activation, batch)]
    accuracies = [evaluate(model, data.x_val, data.y_val)[1]]

    class Checkpoints(Callback):
        def on_eval(self, event: EvalEvent) -> None:  # after steps measure_every, 2 measure_every, ...
            steps.append(event.step + 1)
            with torch.no_grad():
                rows.append(_activation_stats(model, reference, config.activation, batch))
            accuracies.append(event.val_accuracy)

    train_config = derive(
        TrainConfig, config, monitor_every=None, eval_every=config.measure_every, seed=config.seed * 100_003
    )
    history = train(model, data, train_config, callbacks=[Checkpoints()])
    if history.diverged:  # stopped at the diverged step, whose update was not applied (finite weights)
        steps.append(history.steps_run)
        rows.append(_activation_stats(model, reference, config.activation, batch))
        accuracies.append(evaluate(model, data.x_val, data.y_val)[1])
    return _dying_result(config, steps, rows, accuracies, history.loss, init_gain, history.diverged)


_STACK_KEYS = ("activation", "depth", "width", "steps", "batch_size", "clip_norm", "data_seed", "device")


def _batch_orders(n_train: int, batch_size: int, steps: int, seed: int) -> Tensor:
    """(steps, batch) the minibatch indices ``vgcourse.training.train`` draws with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    per_epoch = n_train // batch_size
    epochs = -(-steps // per_epoch)
    orders = [torch.randperm(n_train, generator=generator)[: per_epoch * batch_size] for _ in range(epochs)]
    return torch.cat(orders).view(-1, batch_size)[:steps]


def _train_stacked(
    models: list[MLP], configs: list[DyingConfig], data: DataSplit
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train M runs that differ only in lr, seed, init and bias at once, in place, with batched matmuls.

    Run m draws the minibatches ``train`` draws for its seed (as ``run_dying``) and takes plain SGD
    steps θ ← θ - η_m · min(1, c / (‖g_m‖ + 10⁻⁶)) · g_m with its own gradient norm (the gradient of
    the sum of the M losses has the M gradients as its blocks). A run whose loss or gradient stops being
    finite takes no more steps, as ``train`` stops there. The same arithmetic as ``run_dying`` in another
    order of floating-point operations: runs at the edge of stability (lr 3) end up differently, as they
    do under another CPU kernel family.

    Returns:
        (M, steps) the training loss of every step (NaN after a run stopped), (M,) steps run (the
        stopping step included, as ``train`` counts) and (M,) whether each run diverged.
    """
    first = configs[0]
    for config in configs:
        for key in _STACK_KEYS:
            if getattr(config, key) != getattr(first, key):
                raise ValueError(f"stacked runs must share {key}; got {getattr(config, key)!r}")
    linears = [[*(layer.linear for layer in m.layers), m.head] for m in models]
    n_layers = len(linears[0])
    params = [
        torch.stack([getattr(ls[k], name).detach() for ls in linears]).requires_grad_(True)
        for name in ("weight", "bias")
        for k in range(n_layers)
    ]
    device = params[0].device
    act = models[0].layers[0].activation
    lr = torch.tensor([c.lr for c in configs], dtype=params[0].dtype, device=device)
    orders = torch.stack(
        [_batch_orders(data.n_train, first.batch_size, first.steps, c.seed * 100_003) for c in configs]
    ).to(device)  # (M, steps, B): the order of run_dying's train()
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    running = torch.ones(len(configs), dtype=torch.bool, device=device)
    steps_run = torch.zeros(len(configs), dtype=torch.long, device=device)
    losses = torch.full((len(configs), first.steps), math.nan, dtype=torch.float64)
    for step in range(first.steps):
        batch = orders[:, step]
        h = x_train[batch]
        for k in range(n_layers):
            h = torch.baddbmm(params[n_layers + k].unsqueeze(1), h, params[k].transpose(1, 2))
            if k < n_layers - 1:
                h = act(h)
        loss = F.cross_entropy(h.transpose(1, 2), y_train[batch], reduction="none").mean(dim=1)
        grads = torch.autograd.grad(loss.sum(), params)
        with torch.no_grad():
            norm = torch.stack([g.pow(2).flatten(1).sum(1) for g in grads]).sum(0).sqrt()
            steps_run += running
            losses[:, step] = torch.where(running, loss, math.nan).double().cpu()
            running &= torch.isfinite(loss) & torch.isfinite(norm)
            scale = torch.where(running, lr, 0.0)
            if first.clip_norm is not None:
                scale = scale * (first.clip_norm / (norm + 1e-6)).clamp(max=1.0)
            for p, g in zip(params, grads, strict=True):
                p -= scale.view(-1, *([1] * (g.ndim - 1))) * torch.nan_to_num(g)
        if not running.any():
            break
    with torch.no_grad():
        for m, ls in enumerate(linears):
            for k, linear in enumerate(ls):
                linear.weight.copy_(params[k][m])
                linear.bias.copy_(params[n_layers + k][m])
    return losses.numpy(), steps_run.cpu().numpy(), (~running).cpu().numpy()


def run_dying_stacked(configs: list[DyingConfig]) -> list[DyingResult]:
    """``run_dying`` for many runs with one checkpoint each, runs of one shape trained together.

    Each result has checkpoints 0 and ``steps`` (or the step where the run diverged), whatever its
    ``measure_every``; runs are grouped by their ``activation``, ``depth``, ``width``, ``steps``,
    ``batch_size``, ``clip_norm``, ``data_seed`` and ``device``, and each group is one batched training.

    Args:
        configs: the runs (a list of ``DyingConfig``).
    """
    if not isinstance(configs, list) or not all(isinstance(c, DyingConfig) for c in configs):
        raise TypeError("configs must be a list of DyingConfig")
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, config in enumerate(configs):
        groups.setdefault(tuple(getattr(config, key) for key in _STACK_KEYS), []).append(i)
    results: list[DyingResult | None] = [None] * len(configs)
    for indices in groups.values():
        group = [configs[i] for i in indices]
        data = shared_digits(group[0].data_seed)
        models = [_build(config, data) for config in group]
        starts = [_start(model, config, data) for model, config in zip(models, group, strict=True)]
        before = [
            (_activation_stats(m, ref, c.activation, batch), evaluate(m, data.x_val, data.y_val)[1])
            for m, c, (ref, batch, _) in zip(models, group, starts, strict=True)
        ]
        losses, steps_run, diverged = _train_stacked(models, group, data)
        for j, (i, model, config) in enumerate(zip(indices, models, group, strict=True)):
            reference, batch, gain_at_init = starts[j]
            after = _activation_stats(model, reference, config.activation, batch)
            accuracy = evaluate(model, data.x_val, data.y_val)[1]
            done = int(steps_run[j])
            results[i] = _dying_result(
                config,
                [0, done],
                [before[j][0], after],
                [before[j][1], accuracy],
                losses[j, :done],
                gain_at_init,
                bool(diverged[j]),
            )
    return [r for r in results if r is not None]


class DyingSweepConfig(Config):
    """``run_dying`` for every learning rate × bias initialization, everything else from ``base``.

    Args:
        lrs: learning rates (each > 0), the columns of the grid.
        bias_inits: initial bias values, the rows of the grid.
        base: the other settings (its ``lr`` and ``bias_init`` are replaced).
    """

    lrs: tuple[float, ...] = nonempty(positive(), default=(0.1, 0.3, 1.0, 3.0))
    bias_inits: tuple[float, ...] = nonempty(real(), default=(0.0, -1.0, -2.0))
    base: DyingConfig = instance_of(DyingConfig, default=DyingConfig())


@dataclass(frozen=True)
class DyingSweepResult:
    """The runs of a sweep: ``runs[i][j]`` has bias ``bias_inits[i]`` and learning rate ``lrs[j]``.

    Args:
        config: the configuration that produced this result.
        runs: rows over bias_inits, columns over lrs.
    """

    config: DyingSweepConfig
    runs: list[list[DyingResult]]

    def run(self, lr: float, bias_init: float) -> DyingResult:
        """The run with this learning rate and bias initialization.

        Args:
            lr: one of ``config.lrs``.
            bias_init: one of ``config.bias_inits``.
        """
        for name, value, values in (
            ("lr", lr, self.config.lrs),
            ("bias_init", bias_init, self.config.bias_inits),
        ):
            if value not in values:
                raise ValueError(f"{name} {value!r} is not in the sweep; valid: {list(values)}")
        return self.runs[self.config.bias_inits.index(bias_init)][self.config.lrs.index(lr)]

    def table(self, metric: str = "final_dead") -> np.ndarray:
        """(bias_inits, lrs) array of a per-run number: "final_dead", "initial_dead", "peak_dead" or
        "final_accuracy".

        Args:
            metric: the ``DyingResult`` property to collect.
        """
        check_choice("metric", metric, ("final_dead", "initial_dead", "peak_dead", "final_accuracy"))
        return np.array([[getattr(run, metric) for run in row] for row in self.runs])


def run_dying_sweep(config: DyingSweepConfig) -> DyingSweepResult:
    """Run ``run_dying`` on the grid bias_inits × lrs.

    Args:
        config: see :class:`DyingSweepConfig`.
    """
    runs = [
        [run_dying(dataclasses.replace(config.base, lr=lr, bias_init=bias)) for lr in config.lrs]
        for bias in config.bias_inits
    ]
    return DyingSweepResult(config=config, runs=runs)


# ----------------------------------------------------------------------------------------------------
# Dead units are frozen


class FrozenUnitsConfig(Config):
    """Train a ReLU network to checkpoint A, find its dead units, keep training to B and compare.

    Args:
        base: the run's settings (activation must be "relu"; reference must be "train"); its ``steps``
            is replaced by ``steps_a + steps_b``.
        steps_a: SGD steps before checkpoint A.
        steps_b: SGD steps from A to checkpoint B.
    """

    base: DyingConfig = instance_of(DyingConfig, default=DyingConfig(bias_init=-2.0, lr=0.3))
    steps_a: int = positive(150, integer=True)
    steps_b: int = positive(150, integer=True)

    def check(self) -> None:
        if self.base.activation != "relu":
            raise ValueError(
                f"base.activation must be 'relu' (only ReLU has f' = 0); got {self.base.activation!r}"
            )
        if self.base.reference != "train":
            raise ValueError("base.reference must be 'train': the gradient comes from training inputs")


@dataclass(frozen=True)
class FrozenUnitsResult:
    """Dead units at checkpoint A and what happened to them by checkpoint B; counts are per layer (L,).

    Args:
        config: the configuration that produced this result.
        layer_names: "layer 1" ... "layer L".
        dead_at_a: units dead on the full training set at A.
        max_grad_dead: max |∂J/∂w| over the incoming weights and biases of the units dead at A, with J
            the loss on the full training set at A (0.0 exactly: not small, zero).
        max_grad_dead_outgoing: max |∂J/∂w| over their outgoing weights (the next layer's columns).
        max_grad_alive: max |∂J/∂w| over the incoming weights of the other units (for contrast).
        silent: units dead at A that did not fire (z > 0) on any training batch between A and B.
        silent_identical: of those, units whose incoming weights and bias are bit-identical at B.
        revived: units dead at A that fired at least once between A and B.
        revived_changed: of those, units whose incoming weights changed.
        dead_at_b: units dead on the full training set at B.
    """

    config: FrozenUnitsConfig
    layer_names: list[str]
    dead_at_a: np.ndarray
    max_grad_dead: float
    max_grad_dead_outgoing: float
    max_grad_alive: float
    silent: np.ndarray
    silent_identical: np.ndarray
    revived: np.ndarray
    revived_changed: np.ndarray
    dead_at_b: np.ndarray


def run_frozen_units(config: FrozenUnitsConfig) -> FrozenUnitsResult:
    """Measure the gradient of dead units at A, then watch every training forward pass from A to B.

    Args:
        config: see :class:`FrozenUnitsConfig`.
    """
    base = dataclasses.replace(config.base, steps=config.steps_a + config.steps_b)
    data = shared_digits(base.data_seed)
    model = _build(base, data)
    x = data.x_train.to(next(model.parameters()).device)
    y = data.y_train.to(x.device)
    at_a: dict[str, Any] = {}
    fired: list[Tensor] = []
    handles: list[Any] = []

    def watch(index: int, module: Any, args: Any, output: Tensor) -> None:
        if torch.is_grad_enabled():  # training forward passes only (evaluation runs without grad)
            fired[index] |= (output > 0).any(dim=0)

    class CheckpointA(Callback):
        """At A (after step steps_a): dead units, their gradient on the full training set, the weights;
        then watch every training forward pass until B. The update of step A has been applied, and the
        gradients computed here are replaced by the next step's."""

        def on_step(self, event: StepEvent) -> None:
            if event.step != config.steps_a - 1:
                return
            dead_a = dead_unit_masks(model, x)
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            linears = [layer.linear for layer in model.layers] + [model.head]
            zero = torch.zeros((), device=x.device)  # the maximum over no units at all
            dead_in, dead_out, alive = [zero], [zero], []
            for layer, mask, nxt in zip(model.layers, dead_a, linears[1:], strict=True):
                w, b = layer.linear.weight.grad, layer.linear.bias.grad
                dead_in += [w[mask].abs().flatten(), b[mask].abs()]
                dead_out.append(nxt.weight.grad[:, mask].abs().flatten())
                alive.append(w[~mask].abs().flatten())
            at_a["dead"] = dead_a
            at_a["max_dead"] = float(torch.cat([t.reshape(-1) for t in dead_in]).max())
            at_a["max_out"] = float(torch.cat([t.reshape(-1) for t in dead_out]).max())
            at_a["max_alive"] = float(torch.cat(alive).max()) if torch.cat(alive).numel() else math.nan
            model.zero_grad(set_to_none=True)
            at_a["before"] = [
                (m.linear.weight.detach().clone(), m.linear.bias.detach().clone()) for m in model.layers
            ]
            fired.extend(torch.zeros_like(mask) for mask in dead_a)
            handles.extend(
                m.register_forward_hook(functools.partial(watch, i)) for i, m in enumerate(model.layers)
            )

    train_config = derive(
        TrainConfig, base, monitor_every=None, eval_every=base.steps, seed=base.seed * 100_003
    )
    try:
        history = train(model, data, train_config, callbacks=[CheckpointA()])
    finally:
        for handle in handles:
            handle.remove()
    if history.diverged:
        where = "before checkpoint A" if "dead" not in at_a else "between A and B"
        raise RuntimeError(f"the run diverged {where} ({history.message}); lower base.lr")
    dead_a, before = at_a["dead"], at_a["before"]
    max_dead, max_out, max_alive = at_a["max_dead"], at_a["max_out"], at_a["max_alive"]
    dead_b = dead_unit_masks(model, x)
    counts = np.zeros((5, base.depth), dtype=np.int64)
    for i, (m, (w, b), mask, hit) in enumerate(zip(model.layers, before, dead_a, fired, strict=True)):
        same = (m.linear.weight.detach() == w).all(dim=1) & (m.linear.bias.detach() == b)
        silent, revived = mask & ~hit, mask & hit
        counts[:, i] = [int(t.sum()) for t in (silent, silent & same, revived, revived & ~same, dead_b[i])]
    return FrozenUnitsResult(
        config=config,
        layer_names=[f"layer {i + 1}" for i in range(base.depth)],
        dead_at_a=np.array([int(mask.sum()) for mask in dead_a]),
        max_grad_dead=max_dead,
        max_grad_dead_outgoing=max_out,
        max_grad_alive=max_alive,
        silent=counts[0],
        silent_identical=counts[1],
        revived=counts[2],
        revived_changed=counts[3],
        dead_at_b=counts[4],
    )


# ----------------------------------------------------------------------------------------------------
# Remedies side by side


def _default_bias_cause() -> DyingConfig:
    return DyingConfig(init="default", bias_init=-0.5, lr=1.0, measure_every=300)


def _default_step_cause() -> DyingConfig:
    return DyingConfig(init="default", bias_init=0.0, lr=3.0, measure_every=300)


class RemediesConfig(Config):
    """Each remedy changes one thing in a ReLU run that kills units, for two causes of death.

    Remedies: "relu" (the unchanged baseline), "leaky_relu", "elu", "gelu", "silu" (the activation),
    "smaller lr" (lr × ``lr_factor``), "he init" (kaiming_normal weights instead of the cause's init).

    Args:
        negative_bias: the run killed by its initial bias (activation must be "relu").
        large_step: the run killed by a too-large learning rate (activation must be "relu").
        remedies: rows of the table, names from ``REMEDIES``.
        lr_factor: the "smaller lr" remedy multiplies the learning rate by this (in (0, 1)).
        n_seeds: seeds per cell (``seed``, ``seed + 1``, ...); the table shows their mean.
        seed: the first seed (replaces the causes' own seeds).
    """

    negative_bias: DyingConfig = instance_of(DyingConfig, default=_default_bias_cause())
    large_step: DyingConfig = instance_of(DyingConfig, default=_default_step_cause())
    remedies: tuple[str, ...] = nonempty(one_of(*REMEDIES), default=REMEDIES, unique=True)
    lr_factor: float = in_range(0.0, 1.0, default=0.1, low_open=True)
    n_seeds: int = positive(3, integer=True)
    seed: int = seed_field()

    def check(self) -> None:
        for name in ("negative_bias", "large_step"):
            cause = getattr(self, name)
            if cause.activation != "relu":
                raise ValueError(
                    f"{name}.activation must be 'relu' (the remedies change it); got {cause.activation!r}"
                )
        if self.lr_factor >= 1.0:
            raise ValueError(f"lr_factor must be in (0, 1); got {self.lr_factor!r}")

    def run_config(self, remedy: str, cause: str, seed: int) -> DyingConfig:
        """The ``DyingConfig`` of one cell of the table.

        Args:
            remedy: a name from ``remedies``.
            cause: "negative bias" or "large step".
            seed: the run's seed.
        """
        check_choice("remedy", remedy, self.remedies)
        base = self.negative_bias if check_choice("cause", cause, CAUSES) == CAUSES[0] else self.large_step
        changes: dict[str, Any] = {"seed": seed}
        if remedy in RELU_FAMILY:
            changes["activation"] = remedy
        elif remedy == "smaller lr":
            changes["lr"] = base.lr * self.lr_factor
        elif remedy == "he init":
            changes["init"] = "kaiming_normal"
        return dataclasses.replace(base, **changes)


@dataclass(frozen=True)
class RemediesResult:
    """The remedies table: arrays are (R, 2, S) for R remedies, the two causes and S seeds.

    Args:
        config: the configuration that produced this result.
        dead: fraction of hidden units dead on the reference set (z <= 0 on every input) at the end.
        accuracy: validation accuracy at the end.
        backward_gain: ‖∂J/∂z_1‖ / ‖∂J/∂logits‖ at step 0 (see ``DyingResult.init_backward_gain``).
        diverged: whether the run diverged.
        runs: ``runs[r][c][s]``, the ``DyingResult`` of every cell and seed.
    """

    config: RemediesConfig
    dead: np.ndarray
    accuracy: np.ndarray
    backward_gain: np.ndarray
    diverged: np.ndarray
    runs: list[list[list[DyingResult]]]

    def run(self, remedy: str, cause: str, seed_index: int = 0) -> DyingResult:
        """The full result of one run of the table.

        Args:
            remedy: a name from ``config.remedies``.
            cause: "negative bias" or "large step".
            seed_index: which seed, 0 .. n_seeds - 1.
        """
        r = self.config.remedies.index(check_choice("remedy", remedy, self.config.remedies))
        c = CAUSES.index(check_choice("cause", cause, CAUSES))
        check_int("seed_index", seed_index, minimum=0, maximum=self.config.n_seeds - 1)
        return self.runs[r][c][seed_index]

    def value(self, remedy: str, cause: str, metric: str = "accuracy") -> float:
        """One cell of the table: the mean over seeds of "dead" or "accuracy", the geometric mean of
        "backward_gain" (it spans orders of magnitude).

        Args:
            remedy: a name from ``config.remedies``.
            cause: "negative bias" or "large step".
            metric: "dead", "accuracy" or "backward_gain".
        """
        r = self.config.remedies.index(check_choice("remedy", remedy, self.config.remedies))
        c = CAUSES.index(check_choice("cause", cause, CAUSES))
        check_choice("metric", metric, ("dead", "accuracy", "backward_gain"))
        if metric == "backward_gain":
            return float(_geometric_mean(self.backward_gain[r, c]))
        return float(np.mean(getattr(self, metric)[r, c]))

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per remedy (named by ``LABELS``), columns (cause, metric), means
        over seeds."""
        import pandas as pd

        columns = {}
        for c, cause in enumerate(CAUSES):
            columns[(cause, "dead fraction")] = self.dead[:, c].mean(axis=1)
            columns[(cause, "validation accuracy")] = self.accuracy[:, c].mean(axis=1)
            columns[(cause, "backward gain at init")] = _geometric_mean(self.backward_gain[:, c], axis=1)
        frame = pd.DataFrame(columns, index=[LABELS[r] for r in self.config.remedies])
        frame.index.name = "remedy"
        return frame


def run_remedies(config: RemediesConfig) -> RemediesResult:
    """Run every (remedy, cause, seed) cell with ``run_dying_stacked`` (one checkpoint, at the end).

    Args:
        config: see :class:`RemediesConfig`.
    """
    shape = (len(config.remedies), len(CAUSES), config.n_seeds)
    cells = [
        (r, c, s)
        for r in range(len(config.remedies))
        for c in range(len(CAUSES))
        for s in range(config.n_seeds)
    ]
    results = run_dying_stacked(
        [config.run_config(config.remedies[r], CAUSES[c], config.seed + s) for r, c, s in cells]
    )
    dead, accuracy, backward_gain = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    diverged = np.zeros(shape, dtype=bool)
    runs: list[list[list[DyingResult]]] = [[[] for _ in CAUSES] for _ in config.remedies]
    for (r, c, s), result in zip(cells, results, strict=True):
        runs[r][c].append(result)
        dead[r, c, s] = result.final_dead
        accuracy[r, c, s] = result.final_accuracy
        backward_gain[r, c, s] = result.init_backward_gain
        diverged[r, c, s] = result.diverged
    return RemediesResult(
        config=config,
        dead=dead,
        accuracy=accuracy,
        backward_gain=backward_gain,
        diverged=diverged,
        runs=runs,
    )


# ----------------------------------------------------------------------------------------------------
# The activations ranked fairly: each at its best learning rate, over seeds, under two initializations


class RankingConfig(Config):
    """Every activation × initialization × learning rate × seed, all trained like ``base``.

    The remedies table gives each activation one learning rate, one initialization and one bias. Here
    each activation gets its best learning rate (the highest mean validation accuracy over seeds) under
    each initialization, so that a ranking cannot come from one lucky or unlucky setting.

    Args:
        base: the shared settings (bias, steps, batch, width, depth, clipping); its activation, lr, init
            and seed are replaced.
        activations: names from ``RELU_FAMILY`` (distinct).
        inits: names from ``INITS`` (distinct).
        lrs: learning rates (distinct, each > 0); at least one.
        n_seeds: seeds ``seed``, ``seed + 1``, ... per cell.
        seed: the first seed.
    """

    base: DyingConfig = instance_of(DyingConfig, default=_default_bias_cause())
    activations: tuple[str, ...] = nonempty(one_of(*RELU_FAMILY), default=RELU_FAMILY, unique=True)
    inits: tuple[str, ...] = nonempty(one_of(*INITS), default=("default", "kaiming_normal"), unique=True)
    lrs: tuple[float, ...] = nonempty(positive(), default=(0.3, 1.0, 3.0), unique=True)
    n_seeds: int = positive(3, integer=True)
    seed: int = seed_field()


@dataclass(frozen=True)
class RankingResult:
    """Final validation accuracy and dead fraction of every run; arrays are (A, I, R, S) for A
    activations, I initializations, R learning rates and S seeds.

    Args:
        config: the configuration that produced this result.
        accuracy: validation accuracy after ``base.steps`` steps (or where the run diverged).
        dead: fraction of hidden units with z <= 0 on every training input at the end.
        diverged: whether the run hit a non-finite loss or gradient.
    """

    config: RankingConfig
    accuracy: np.ndarray
    dead: np.ndarray
    diverged: np.ndarray

    def _cell(self, activation: str, init: str) -> tuple[int, int]:
        a = self.config.activations.index(check_choice("activation", activation, self.config.activations))
        return a, self.config.inits.index(check_choice("init", init, self.config.inits))

    def best_lr(self, activation: str, init: str) -> float:
        """The learning rate with the highest mean validation accuracy over seeds (the smaller on a tie).

        Args:
            activation: one of ``config.activations``.
            init: one of ``config.inits``.
        """
        a, i = self._cell(activation, init)
        return self.config.lrs[int(np.argmax(self.accuracy[a, i].mean(axis=1)))]

    def best(self, activation: str, init: str, metric: str = "accuracy") -> np.ndarray:
        """(S,) the per-seed "accuracy" or "dead" fraction at the activation's best learning rate.

        Args:
            activation: one of ``config.activations``.
            init: one of ``config.inits``.
            metric: "accuracy" or "dead".
        """
        a, i = self._cell(activation, init)
        r = self.config.lrs.index(self.best_lr(activation, init))
        return getattr(self, check_choice("metric", metric, ("accuracy", "dead")))[a, i, r].copy()

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per (initialization, activation) named by ``LABELS``, at the
        activation's best learning rate: mean, lowest and highest validation accuracy over the seeds."""
        import pandas as pd

        rows = []
        for init in self.config.inits:
            for activation in self.config.activations:
                accuracy = self.best(activation, init)
                rows.append(
                    {
                        "initialization": LABELS[init],
                        "activation": LABELS[activation],
                        "best learning rate": self.best_lr(activation, init),
                        "validation accuracy (mean)": accuracy.mean(),
                        "lowest seed": accuracy.min(),
                        "highest seed": accuracy.max(),
                        "dead fraction (mean)": self.best(activation, init, "dead").mean(),
                    }
                )
        return pd.DataFrame(rows)


def run_ranking(config: RankingConfig) -> RankingResult:
    """Train every (activation, init, lr, seed) run of the grid with ``run_dying_stacked``.

    Args:
        config: see :class:`RankingConfig`.
    """
    grid = [
        (activation, init, lr, seed)
        for activation in config.activations
        for init in config.inits
        for lr in config.lrs
        for seed in range(config.seed, config.seed + config.n_seeds)
    ]
    results = run_dying_stacked(
        [
            dataclasses.replace(
                config.base, activation=a, init=i, lr=lr, seed=s, measure_every=config.base.steps
            )
            for a, i, lr, s in grid
        ]
    )
    shape = (len(config.activations), len(config.inits), len(config.lrs), config.n_seeds)
    return RankingResult(
        config=config,
        accuracy=np.array([r.final_accuracy for r in results]).reshape(shape),
        dead=np.array([r.final_dead for r in results]).reshape(shape),
        diverged=np.array([r.diverged for r in results]).reshape(shape),
    )
