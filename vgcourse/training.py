"""A small, deterministic training loop that records losses, gradient norms and per-layer statistics."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from vgcourse._validation import check_choice, check_float, check_int
from vgcourse.data import DataSplit
from vgcourse.device import DEVICES, pick_device

if TYPE_CHECKING:
    from vgcourse.monitor import MonitorRecord

__all__ = [
    "LOSSES",
    "OPTIMIZERS",
    "Callback",
    "EvalEvent",
    "History",
    "StepEvent",
    "TrainConfig",
    "evaluate",
    "loss_value",
    "make_optimizer",
    "train",
]

OPTIMIZERS = ("sgd", "momentum", "adam")
LOSSES = ("auto", "cross_entropy", "mse")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: length, optimizer, loss, clipping, monitoring. Validated on creation.

    Args:
        steps: number of optimizer steps (give exactly one of ``steps`` and ``epochs``).
        epochs: number of passes over the training set, each ``n_train // batch_size`` steps.
        batch_size: examples per step (capped at ``n_train``).
        lr: learning rate, > 0.
        optimizer: "sgd", "momentum" (SGD with ``momentum``) or "adam".
        momentum: momentum coefficient in [0, 1), used by "momentum" only.
        weight_decay: L2 penalty coefficient, >= 0.
        loss: "auto" (cross_entropy when the data has classes, else mse), "cross_entropy" or "mse"
            (mse on class labels regresses one-hot targets).
        clip_norm: rescale gradients so the total L2 norm is <= clip_norm (``None``: no clipping).
        clip_value: clamp every gradient entry to [-clip_value, clip_value] (``None``: no clipping).
        warmup_steps: linear learning-rate warmup: step s (0-based) uses lr * min(1, (s + 1) / warmup_steps);
            0 = no warmup.
        monitor_every: record per-layer statistics every this many steps; ``None`` turns the monitor off.
        monitor_stats: what the monitor records: "default" (``vgcourse.monitor.DEFAULT_STATS``: gradient
            norm, backward-signal norm, forward rms, update ratio), "all", or a tuple of metric names.
        fused: use the optimizer's fused implementation (one kernel for all parameters; SGD and Adam,
            CPU and CUDA); the same update up to rounding.
        eval_every: evaluate on the validation split every this many steps; 0 = once per epoch. The
            last step is always evaluated.
        seed: seed of the minibatch shuffling.
        device: "auto", "cpu" or "cuda".
        progress: show a tqdm progress bar.
    """

    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 64
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    loss: str = "auto"
    clip_norm: float | None = None
    clip_value: float | None = None
    warmup_steps: int = 0
    monitor_every: int | None = 1
    monitor_stats: str | tuple[str, ...] = "default"
    fused: bool = False
    eval_every: int = 0
    seed: int = 0
    device: str = "auto"
    progress: bool = False

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(
                f"give exactly one of steps and epochs; got steps={self.steps}, epochs={self.epochs}"
            )
        if self.steps is not None:
            check_int("steps", self.steps, minimum=1)
        if self.epochs is not None:
            check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("loss", self.loss, LOSSES)
        check_int("eval_every", self.eval_every, minimum=0)
        check_int("warmup_steps", self.warmup_steps, minimum=0)
        check_int("seed", self.seed, minimum=0)
        check_choice("device", self.device, DEVICES)
        if self.monitor_every is not None:
            check_int("monitor_every", self.monitor_every, minimum=1)
        for name in ("progress", "fused"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool; got {getattr(self, name)!r}")
        from vgcourse.monitor import _check_stats

        stats = _check_stats(self.monitor_stats)  # validates; a sequence is stored as a tuple
        if not isinstance(self.monitor_stats, str):
            object.__setattr__(self, "monitor_stats", stats)
        floats = {
            "lr": check_float("lr", self.lr, 0.0, strict_minimum=True),
            "momentum": check_float("momentum", self.momentum, 0.0),
            "weight_decay": check_float("weight_decay", self.weight_decay, 0.0),
        }
        if floats["momentum"] >= 1.0:
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum!r}")
        if self.clip_norm is not None and self.clip_value is not None:
            raise ValueError("give at most one of clip_norm and clip_value")
        for name in ("clip_norm", "clip_value"):
            if getattr(self, name) is not None:
                floats[name] = check_float(name, getattr(self, name), 0.0, strict_minimum=True)
        for name, value in floats.items():  # store ints given for floats as floats
            object.__setattr__(self, name, value)


@dataclass
class History:
    """What happened during one training run; per-step arrays have length ``steps_run``.

    Args:
        loss: training loss of each step's minibatch, (steps_run,).
        train_accuracy: accuracy of each step's minibatch (NaN for regression), (steps_run,).
        eval_steps: 0-based step after whose update each evaluation ran, (E,).
        val_loss: validation loss at each of ``eval_steps``, (E,).
        val_accuracy: validation accuracy at each of ``eval_steps`` (NaN for regression), (E,).
        monitor: per-layer statistics from the GradientMonitor (a diverged step is recorded without its
            update), or ``None`` when it was off.
        grad_norm_total: L2 norm of all gradients before clipping, sqrt(sum_p ||g_p||^2), (steps_run,).
        diverged: whether the loss or the gradient norm became NaN or infinite.
        diverged_step: 0-based step at which that happened (its update was not applied), else ``None``.
        message: one line saying how the run ended.
        steps_run: number of steps whose forward and backward pass ran (the diverged step included).
    """

    loss: np.ndarray
    train_accuracy: np.ndarray
    eval_steps: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray
    monitor: MonitorRecord | None
    grad_norm_total: np.ndarray
    diverged: bool
    diverged_step: int | None
    message: str
    steps_run: int

    @property
    def final_val_accuracy(self) -> float:
        """Validation accuracy at the last evaluation (NaN if none ran or for regression)."""
        return float(self.val_accuracy[-1]) if len(self.val_accuracy) else math.nan

    @property
    def final_loss(self) -> float:
        """Training loss of the last step run (NaN if no step ran)."""
        return float(self.loss[-1]) if len(self.loss) else math.nan


@dataclass(frozen=True)
class StepEvent:
    """What a callback sees after each optimizer step of ``train``.

    Args:
        step: 0-based index of the step whose update was just applied.
        loss: the step's minibatch training loss (before the update).
        grad_norm: total L2 gradient norm of the step, before clipping.
        model: the network being trained (already updated).
        optimizer: the optimizer (its ``param_groups`` hold the lr used, warmup included).
    """

    step: int
    loss: float
    grad_norm: float
    model: nn.Module
    optimizer: torch.optim.Optimizer


@dataclass(frozen=True)
class EvalEvent:
    """What a callback sees after each evaluation of ``train``.

    Args:
        step: 0-based step after whose update the evaluation ran.
        val_loss: mean validation loss.
        val_accuracy: validation accuracy (NaN for regression).
        model: the network being trained.
    """

    step: int
    val_loss: float
    val_accuracy: float
    model: nn.Module


class Callback:
    """Base class of ``train``'s callbacks: override ``on_step`` and/or ``on_eval``.

    Any object with an ``on_step(event)`` and/or ``on_eval(event)`` method works; this class only
    supplies the do-nothing defaults. A callback must not change the model's parameters or the
    optimizer if the run is to stay comparable with one without it.
    """

    def on_step(self, event: StepEvent) -> None:
        """Called after every optimizer step (not after a diverged step, whose update is skipped)."""

    def on_eval(self, event: EvalEvent) -> None:
        """Called after every evaluation on the validation split."""


def _check_callbacks(callbacks: Any) -> tuple[list[Any], list[Any]]:
    """The bound on_step and on_eval methods of ``callbacks``; TypeError if one has neither."""
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Iterable):
        raise TypeError(f"callbacks must be a sequence of callbacks; got {type(callbacks).__name__}")
    on_step, on_eval = [], []
    for callback in callbacks:
        step_hook, eval_hook = getattr(callback, "on_step", None), getattr(callback, "on_eval", None)
        if not callable(step_hook) and not callable(eval_hook):
            raise TypeError(
                "a callback needs an on_step(event) or on_eval(event) method "
                f"(see vgcourse.training.Callback); got {type(callback).__name__}"
            )
        if callable(step_hook):
            on_step.append(step_hook)
        if callable(eval_hook):
            on_eval.append(eval_hook)
    return on_step, on_eval


def loss_value(output: Tensor, y: Tensor, loss: str, reduction: str = "mean") -> Tensor:
    """The loss ``train`` minimizes: cross-entropy on class labels, or MSE (on one-hot targets when ``y``
    holds class labels).

    Sequence outputs (N, T, C) with labels (N, T) are flattened to N*T predictions, so "mean" averages
    over every position of every example.

    Args:
        output: the model's output (N, C), or (N, T, C) for a label per position.
        y: class labels (N,) or (N, T), or float targets shaped like ``output``.
        loss: "cross_entropy" or "mse" (``train`` resolves "auto" from ``y``'s dtype).
        reduction: "mean" or "sum" over the batch (and positions).
    """
    if loss == "cross_entropy":
        if y.is_floating_point():
            raise ValueError("loss 'cross_entropy' needs integer class labels; use loss='mse' for regression")
        if output.ndim != y.ndim + 1 or output.shape[:-1] != y.shape:
            raise ValueError(
                f"cross_entropy needs output (N, C) with labels (N,) or (N, T, C) with (N, T); got output "
                f"{tuple(output.shape)} and labels {tuple(y.shape)}"
            )
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), y.reshape(-1), reduction=reduction)
    target = y if y.is_floating_point() else F.one_hot(y, output.shape[-1]).to(output.dtype)
    if output.shape != target.shape:
        raise ValueError(f"model output {tuple(output.shape)} does not match target {tuple(target.shape)}")
    return F.mse_loss(output, target, reduction=reduction)


def _accuracy(output: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
    """Share (or count, with reduction="sum") of argmax predictions equal to y, over every label of y
    (every position for sequence labels (N, T)); NaN for regression."""
    if y.is_floating_point():
        return torch.tensor(math.nan, device=output.device)
    correct = (output.argmax(dim=-1) == y).float()
    return correct.sum() if reduction == "sum" else correct.mean()


def evaluate(
    model: nn.Module, x: Tensor, y: Tensor, loss: str = "auto", *, batch_size: int = 1024
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on (x, y), in eval mode and without gradients.

    Args:
        model: the network; x and y are moved to the device of its parameters.
        x: inputs, first dimension = examples.
        y: int64 class labels (N,) or (N, T) (one per position of a sequence output (N, T, C)), or float
            regression targets shaped like the output.
        loss: "auto" (cross_entropy for integer y, else mse), "cross_entropy" or "mse".
        batch_size: examples per forward pass.

    Returns:
        (loss, accuracy), each a mean over every label (every position, for sequence labels); accuracy
        is NaN for regression targets.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError("x and y must be torch.Tensors")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"x and y must hold the same, non-zero number of examples; got {len(x)} and {len(y)}"
        )
    check_choice("loss", loss, LOSSES)
    check_int("batch_size", batch_size, minimum=1)
    if loss == "auto":
        loss = "mse" if y.is_floating_point() else "cross_entropy"
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    total_loss = total_correct = 0.0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
            output = model(xb)
            total_loss += float(loss_value(output, yb, loss, reduction="sum"))
            total_correct += float(_accuracy(output, yb, reduction="sum"))
    model.train(was_training)
    # cross_entropy sums over labels (one per example, or per position), mse over every output entry
    labels = y.numel() if not y.is_floating_point() else len(x)
    entries = labels if loss == "cross_entropy" else len(x) * max(1, output[0].numel())
    return total_loss / entries, total_correct / labels


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``train`` uses for ``config``: SGD (momentum 0 or ``config.momentum``) or Adam, with
    ``config.lr``, ``config.weight_decay`` and ``config.fused``, over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    fused = True if config.fused else None  # None: torch's default (foreach where it can)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    momentum = config.momentum if config.optimizer == "momentum" else 0.0
    return torch.optim.SGD(
        params, lr=config.lr, momentum=momentum, weight_decay=config.weight_decay, fused=fused
    )


def train(
    model: nn.Module, data: DataSplit, config: TrainConfig, *, callbacks: Iterable[Any] = ()
) -> History:
    """Train ``model`` on ``data.x_train`` with minibatch gradient descent, recording everything.

    Each step s: loss = L(model(x_B), y_B); backward; record the total gradient norm
    sqrt(sum_p ||g_p||^2) (and the monitor's per-layer statistics); clip; update with learning rate
    lr * min(1, (s + 1) / warmup_steps) (lr without warmup); call the callbacks. A NaN or infinite loss
    or gradient norm stops the run at that step (``History.diverged``), keeping what was recorded.
    Minibatches are reshuffled each epoch from a generator seeded by ``config.seed``; an epoch is
    ``n_train // batch_size`` full batches (the remainder is dropped).

    Args:
        model: the network; moved to ``pick_device(config.device)`` and trained in place.
        data: the train/val split; class labels select cross-entropy, float targets select MSE.
        config: the run's settings (see :class:`TrainConfig`).
        callbacks: code to run during training: each callback's ``on_step`` runs after every update and
            its ``on_eval`` after every evaluation (see :class:`Callback`, :class:`StepEvent`,
            :class:`EvalEvent`), in the order given.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(data, DataSplit):
        raise TypeError(f"data must be a DataSplit (see vgcourse.data); got {type(data).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig; got {type(config).__name__}")
    on_step, on_eval = _check_callbacks(callbacks)
    loss_name = config.loss
    if loss_name == "auto":
        loss_name = "cross_entropy" if data.n_classes else "mse"
    if loss_name == "cross_entropy" and not data.n_classes:
        raise ValueError(f"loss 'cross_entropy' needs a classification data set; {data.name!r} is regression")

    device = pick_device(config.device)
    model.to(device)
    model.train()
    optimizer = make_optimizer(model, config)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    batch_size = min(config.batch_size, data.n_train)
    steps_per_epoch = data.n_train // batch_size
    total_steps = config.steps if config.steps is not None else config.epochs * steps_per_epoch
    eval_every = config.eval_every or steps_per_epoch

    per_step: list[list[float]] = []  # [loss, accuracy, grad norm] per step
    evals: list[tuple[int, float, float]] = []
    diverged_step = None
    monitor = None
    if config.monitor_every is not None:
        from vgcourse.monitor import GradientMonitor

        monitor = GradientMonitor(model, optimizer, every=config.monitor_every, stats=config.monitor_stats)
    grad_norm = torch.zeros(())

    def clip(*_: Any) -> None:
        """Clip before the update, as a step pre-hook registered after the monitor's: the monitor records
        the gradient before clipping, like ``History.grad_norm_total``."""
        if config.clip_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(params, config.clip_norm, grad_norm)
        elif config.clip_value is not None:
            torch.nn.utils.clip_grad_value_(params, config.clip_value)

    with (
        monitor if monitor is not None else contextlib.nullcontext(),
        tqdm(total=total_steps, disable=not config.progress) as bar,
        contextlib.ExitStack() as hooks,
    ):
        if config.clip_norm is not None or config.clip_value is not None:
            hooks.callback(optimizer.register_step_pre_hook(clip).remove)
        order = torch.empty(0, dtype=torch.long)
        for step in range(total_steps):
            position = step % steps_per_epoch
            if position == 0:
                order = torch.randperm(data.n_train, generator=generator).to(device)
            batch = order[position * batch_size : (position + 1) * batch_size]
            xb, yb = x_train[batch], y_train[batch]

            optimizer.zero_grad(set_to_none=True)
            output = model(xb)
            loss = loss_value(output, yb, loss_name)
            loss.backward()
            grads = [p.grad for p in params if p.grad is not None]
            grad_norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=device)
            stats = torch.stack(
                [loss.detach(), _accuracy(output.detach(), yb), grad_norm.to(device)]
            ).tolist()
            per_step.append(stats)
            bar.update(1)
            if not (math.isfinite(stats[0]) and math.isfinite(stats[2])):
                diverged_step = step
                if monitor is not None:
                    monitor.skipped_step()  # its gradients are what a reader wants to see
                break

            if config.warmup_steps:
                for group in optimizer.param_groups:
                    group["lr"] = config.lr * min(1.0, (step + 1) / config.warmup_steps)
            optimizer.step()  # the monitor records through the optimizer's step hooks
            if on_step:
                event = StepEvent(step, stats[0], stats[2], model, optimizer)
                for hook in on_step:
                    hook(event)

            if (step + 1) % eval_every == 0 or step == total_steps - 1:
                val_loss, val_acc = evaluate(model, data.x_val, data.y_val, loss_name)
                evals.append((step, val_loss, val_acc))
                bar.set_postfix(loss=f"{stats[0]:.4g}", val_loss=f"{val_loss:.4g}")
                if on_eval:
                    eval_event = EvalEvent(step, val_loss, val_acc, model)
                    for hook in on_eval:
                        hook(eval_event)
        record = monitor.record() if monitor is not None else None

    values = np.array(per_step, dtype=np.float64).reshape(-1, 3)
    eval_values = np.array(evals, dtype=np.float64).reshape(-1, 3)
    if diverged_step is None:
        message = f"finished {len(per_step)} steps; final train loss {values[-1, 0]:.4g}"
    else:
        message = (
            f"diverged at step {diverged_step}: loss {values[-1, 0]}, gradient norm {values[-1, 2]}; "
            "stopped there, the history up to that step is kept"
        )
    return History(
        loss=values[:, 0],
        train_accuracy=values[:, 1],
        eval_steps=eval_values[:, 0].astype(np.int64),
        val_loss=eval_values[:, 1],
        val_accuracy=eval_values[:, 2],
        monitor=record,
        grad_norm_total=values[:, 2],
        diverged=diverged_step is not None,
        diverged_step=diverged_step,
        message=message,
        steps_run=len(per_step),
    )
