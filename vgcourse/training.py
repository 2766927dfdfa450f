"""A small, deterministic training loop with callbacks: ``train`` records each step's loss, accuracy and
gradient norm, evaluations and (through a ``GradientMonitor``) per-layer statistics; a diverging run stops
at that step and keeps its history."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from vgcourse._validation import check_choice, check_int, check_tensor
from vgcourse.config import (
    Config,
    check_config,
    declared,
    device_field,
    flag,
    integer,
    one_of,
    positive,
    real,
    seed_field,
)
from vgcourse.data import DataSplit
from vgcourse.device import pick_device
from vgcourse.monitor import STATS, GradientMonitor, MonitorRecord

__all__ = [
    "LOSSES",
    "LOSS_FUNCTIONS",
    "OPTIMIZERS",
    "SGDW",
    "Callback",
    "EvalEvent",
    "History",
    "StepEvent",
    "StepSizes",
    "StopTraining",
    "TrainConfig",
    "evaluate",
    "loss_value",
    "make_optimizer",
    "minibatches",
    "train",
]

OPTIMIZERS = ("sgd", "momentum", "adam")
LOSS_FUNCTIONS = ("cross_entropy", "mse")  # the losses loss_value computes
LOSSES = ("auto", *LOSS_FUNCTIONS)  # auto: the run picks one from its labels


class TrainConfig(Config):
    """How to train: length, optimizer, loss, clipping, monitoring (give exactly one of steps and epochs)."""

    steps: int | None = integer(None, low=1, optional=True)  # optimizer steps
    epochs: int | None = integer(None, low=1, optional=True)  # passes of n_train // batch_size steps
    batch_size: int = positive(64, integer=True)  # examples per step (at most n_train)
    lr: float = positive(0.1)
    optimizer: str = one_of(*OPTIMIZERS, default="sgd")  # "momentum": SGD with ``momentum``
    momentum: float = real(0.9, low=0.0, high=1.0, high_open=True)  # for "momentum" only
    weight_decay: float = real(0.0, low=0.0)  # L2 penalty coefficient
    loss: str = one_of(*LOSSES, default="auto")  # auto: cross_entropy on class labels, else mse
    clip_norm: float | None = positive(None, optional=True)  # rescale to total gradient L2 norm <= this
    clip_value: float | None = positive(None, optional=True)  # clamp each gradient entry to [-v, v]
    warmup_steps: int = integer(0, low=0)  # step s uses lr * min(1, (s + 1) / warmup_steps); 0: none
    monitor_every: int | None = positive(1, integer=True, optional=True)  # GradientMonitor; None: off
    monitor_stats: str | tuple[str, ...] = declared(STATS, default="default")  # GradientMonitor's stats
    fused: bool = flag(False)  # the optimizer's fused kernel: the same update up to rounding
    eval_every: int = integer(0, low=0)  # evaluate every this many steps; 0: once per epoch (and last step)
    seed: int = seed_field()  # of the minibatch shuffling
    device: str = device_field("auto")
    progress: bool = flag(False)  # a tqdm progress bar
    stop_on_divergence: bool = flag(True)  # False: a NaN/inf loss or gradient norm does not stop the run

    def check(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(
                f"give exactly one of steps and epochs; got steps={self.steps}, epochs={self.epochs}"
            )
        if self.clip_norm is not None and self.clip_value is not None:
            raise ValueError("give at most one of clip_norm and clip_value")


@dataclass(frozen=True)
class History:
    """What happened during one training run; per-step arrays have length ``steps_run``."""

    loss: np.ndarray  # training loss of each step's minibatch
    train_accuracy: np.ndarray  # accuracy of each step's minibatch (NaN for regression or a custom loss)
    eval_steps: np.ndarray  # 0-based step after whose update each evaluation ran
    val_loss: np.ndarray  # at each of eval_steps
    val_accuracy: np.ndarray  # at each of eval_steps (NaN for regression)
    monitor: MonitorRecord | None  # per-layer statistics (a step stopped before its update: no update ratio)
    grad_norm_total: np.ndarray  # sqrt(sum_p ||g_p||^2) before clipping
    diverged: bool  # the loss or the gradient norm became NaN or infinite
    diverged_step: int | None  # the first step at which it did (its update was not applied if it stopped)
    message: str  # one line saying how the run ended
    steps_run: int  # steps whose forward and backward pass ran (the last, stopped one included)

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
    """What ``on_backward`` (before clipping and the update) and ``on_step`` (after the update) see."""

    step: int  # 0-based
    loss: float  # the step's minibatch loss (before the update)
    grad_norm: float  # total L2 gradient norm, before clipping
    model: nn.Module
    optimizer: torch.optim.Optimizer  # its param_groups hold the lr used, warmup included


@dataclass(frozen=True)
class EvalEvent:
    """What ``on_eval`` sees after each evaluation on the validation split."""

    step: int  # 0-based step after whose update the evaluation ran
    val_loss: float
    val_accuracy: float  # NaN for regression
    model: nn.Module


class StopTraining(Exception):
    """Raised by a callback to end ``train`` (from ``on_backward``: without that step's update); the history
    is kept and the exception's text goes into ``History.message``."""


class Callback:
    """Do-nothing defaults of ``train``'s hooks; any object with one of these methods is a callback."""

    def on_backward(self, event: StepEvent) -> None:
        """After every backward pass, before clipping and the update (also on a diverged step)."""

    def on_step(self, event: StepEvent) -> None:
        """After every optimizer step."""

    def on_eval(self, event: EvalEvent) -> None:
        """After every evaluation on the validation split."""


class StepSizes(Callback):
    """std(Δp) of each tensor in ``params`` at steps 0, k, 2k, … (Δp: that one step's change, whatever the
    optimizer): ``rows[i][j]`` is parameter j's at step i·k. The step's absolute size; a ``GradientMonitor``'s
    update_ratio is the relative one, std(ΔW) / std(W) per layer."""

    def __init__(self, params: Iterable[Tensor], every: int = 1) -> None:
        self.params, self.every = list(params), check_int("every", every, minimum=1)
        for j, p in enumerate(self.params):
            if (
                check_tensor(f"params[{j}]", p).numel() < 2
            ):  # the std of one number is undefined (torch gives NaN)
                raise ValueError(
                    f"StepSizes needs tensors of 2 or more elements; parameter {j} has {p.numel()} element(s)"
                )
        self.before: list[Tensor] = []
        self.rows: list[list[float]] = []

    def on_backward(self, event: StepEvent) -> None:
        if event.step % self.every == 0:  # the parameters before this step's update
            self.before = [p.detach().clone() for p in self.params]

    def on_step(self, event: StepEvent) -> None:
        if event.step % self.every == 0:
            pairs = zip(self.params, self.before, strict=True)
            self.rows.append([float((p.detach() - b).std()) for p, b in pairs])


_HOOKS = ("on_backward", "on_step", "on_eval")


def _hooks(callbacks: Any) -> dict[str, list[Callable[[Any], None]]]:
    """The callbacks' bound methods by hook name; TypeError if a callback has none."""
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Iterable):
        raise TypeError(f"callbacks must be a sequence of callbacks; got {type(callbacks).__name__}")
    hooks: dict[str, list[Callable[[Any], None]]] = {name: [] for name in _HOOKS}
    for callback in callbacks:
        found = {name: getattr(callback, name, None) for name in _HOOKS}
        if not any(callable(hook) for hook in found.values()):
            raise TypeError(
                "a callback needs an on_backward(event), on_step(event) or on_eval(event) method "
                f"(see vgcourse.training.Callback); got {type(callback).__name__}"
            )
        for name, hook in found.items():
            if callable(hook):
                hooks[name].append(hook)
    return hooks


def _call(hooks: list[Callable[[Any], None]], event: Callable[[], Any]) -> StopTraining | None:
    """Run ``hooks`` on ``event()`` (built only when there are hooks); the StopTraining one raised, if any."""
    if hooks:
        made = event()
        try:
            for hook in hooks:
                hook(made)
        except StopTraining as stop:
            return stop
    return None


def loss_value(output: Tensor, y: Tensor, loss: str, reduction: str = "mean") -> Tensor:
    """Cross-entropy on class labels, or MSE (on one-hot targets for class labels); output (N, C) with y
    (N,), or (N, T, C) with (N, T), flattened to N*T predictions."""
    if check_choice("loss", loss, LOSS_FUNCTIONS) == "cross_entropy":  # "auto": the caller resolves it
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
    """(mean loss, accuracy) of ``model`` on (x, y) in eval mode, over every label; accuracy NaN for float
    targets; ``loss`` as ``TrainConfig.loss``."""
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
    """SGD (with ``config.momentum`` for "momentum") or Adam over the model's trainable parameters."""
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


def _to(value: Any, device: torch.device) -> Any:
    return value.to(device) if isinstance(value, Tensor) else value


def minibatches(data: Any, config: TrainConfig, device: torch.device | str) -> Any:
    """(batch(step) -> (x, y), steps per epoch): a seeded reshuffle of a DataSplit every epoch (remainder
    dropped), a batch source's batches, or the fixed batch (an epoch of one step), on ``device``."""
    if callable(data) and not isinstance(data, DataSplit):
        return (lambda step: tuple(_to(v, device) for v in data(step))), 1
    if not isinstance(data, DataSplit):
        x, y = data[0].to(device), _to(data[1], device)
        return (lambda step: (x, y)), 1
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    size = min(config.batch_size, data.n_train)
    per_epoch = data.n_train // size
    order = torch.empty(0, dtype=torch.long)

    def batch(step: int) -> tuple[Tensor, Tensor]:
        nonlocal order
        position = step % per_epoch
        if position == 0:
            order = torch.randperm(data.n_train, generator=generator).to(device)
        index = order[position * size : (position + 1) * size]
        return x_train[index], y_train[index]

    return batch, per_epoch


def train(
    model: nn.Module,
    data: DataSplit | tuple[Tensor, Any] | Callable[[int], tuple[Tensor, Any]],
    config: TrainConfig,
    *,
    callbacks: Iterable[Any] = (),
    loss_fn: Callable[[Any, Any], Tensor] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    monitor: GradientMonitor | None = None,
    runs: int | None = None,
) -> History:
    """Train ``model`` in place. Step s: loss = L(model(x_B), y_B); backward; grad norm sqrt(sum_p ||g_p||^2);
    ``on_backward``; clip; ``optimizer.step(closure)`` with lr * min(1, (s + 1) / warmup_steps), lr each param
    group's own (``config.lr`` unless ``optimizer`` is given), restored at the end; ``on_step``;
    every ``eval_every`` steps an evaluation and ``on_eval``. A NaN/inf loss or grad norm (unless
    ``stop_on_divergence`` is False) or ``StopTraining`` ends the run at that step, keeping the history.

    ``data``: a ``DataSplit`` (the model moves to ``config.device`` and trains), or a fixed batch (x, y) or
    batch source ``batch(step) -> (x, y)`` (the model keeps its device and mode). ``loss_fn(output, y)``
    replaces ``config.loss`` (train_accuracy NaN), ``optimizer`` ``make_optimizer``, ``monitor`` the one
    ``config.monitor_every`` builds. ``runs``: the model stacks that many runs on dim 0, trained side by side;
    ``loss_fn`` returns their losses, shape (runs,), and L is their sum (each run's gradient its own loss's).

    ``closure()`` returns the step's loss as ``loss_fn`` gave it (one per run with ``runs``), computed once:
    an optimizer that needs it (to stop a run at a non-finite loss, say) reads it there, as torch's
    optimizers read their closure's; one that re-evaluates the model through it, as LBFGS does, is refused.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    split, source = isinstance(data, DataSplit), callable(data) and not isinstance(data, DataSplit)
    if not (split or source or (isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor))):
        raise TypeError(
            "data must be a DataSplit (see vgcourse.data), a fixed batch (x, y) or a batch source "
            f"batch(step) -> (x, y); got {type(data).__name__}"
        )
    check_config(config, TrainConfig)
    hooks = _hooks(callbacks)
    accuracy = loss_fn is None
    if runs is not None:
        check_int("runs", runs, minimum=1)
        if accuracy:
            raise ValueError("runs needs a loss_fn that returns one loss per run")
    y = data.y_train if split else None if source else data[1]
    classes = (
        bool(data.n_classes) if split else source or (isinstance(y, Tensor) and not y.is_floating_point())
    )
    name = config.loss if config.loss != "auto" else ("cross_entropy" if classes else "mse")
    if loss_fn is None:
        if source and config.loss == "auto":
            raise ValueError("a batch source needs a loss_fn or config.loss 'cross_entropy' or 'mse'")
        if not (source or isinstance(y, Tensor)):
            raise TypeError(f"a fixed batch's y must be a tensor without a loss_fn; got {type(y).__name__}")
        if name == "cross_entropy" and not classes:
            where = f"{data.name!r} is regression" if split else "y holds floats"
            raise ValueError(f"loss 'cross_entropy' needs class labels; {where}")
        loss_fn = functools.partial(loss_value, loss=name)
    elif not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (output, y) -> loss; got {type(loss_fn).__name__}")

    if split:
        device = pick_device(config.device)
        model.to(device)
        model.train()
    else:  # the model as it is: its device and train/eval mode stay
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if optimizer is None:
        optimizer = make_optimizer(model, config)
    elif not isinstance(optimizer, torch.optim.Optimizer) or isinstance(optimizer, torch.optim.LBFGS):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, not LBFGS; got {type(optimizer).__name__}"
        )
    if monitor is None and config.monitor_every is not None:
        monitor = GradientMonitor(model, optimizer, every=config.monitor_every, stats=config.monitor_stats)
    elif monitor is not None and monitor.optimizer is not optimizer:
        raise ValueError(
            "monitor must watch the optimizer train uses: GradientMonitor(model, optimizer, ...)"
        )
    params = [p for group in optimizer.param_groups for p in group["params"]]
    batch, steps_per_epoch = minibatches(data, config, device)
    total_steps = config.steps if config.steps is not None else config.epochs * steps_per_epoch
    eval_every = config.eval_every or steps_per_epoch

    per_step: list[list[float]] = []  # [loss, accuracy, grad norm] per step
    evals: list[tuple[int, float, float]] = []
    diverged_step = stop = None
    grad_norm = torch.zeros(())

    def clip(*_: Any) -> None:
        """A step pre-hook after the monitor's: the monitor records the gradient before clipping."""
        if config.clip_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(params, config.clip_norm, grad_norm)
        elif config.clip_value is not None:
            torch.nn.utils.clip_grad_value_(params, config.clip_value)

    with (
        monitor if monitor is not None else contextlib.nullcontext(),
        tqdm(total=total_steps, disable=not config.progress) as bar,
        contextlib.ExitStack() as handles,
    ):
        if config.clip_norm is not None or config.clip_value is not None:
            handles.callback(optimizer.register_step_pre_hook(clip).remove)
        rates = [group["lr"] for group in optimizer.param_groups]  # warmup scales each group's own rate

        def restore() -> None:
            """The rates as given, also after a run that ended within its warmup."""
            for group, lr in zip(optimizer.param_groups[: len(rates)], rates, strict=True):
                group["lr"] = lr

        if config.warmup_steps:
            handles.callback(restore)
        for step in range(total_steps):
            xb, yb = batch(step)
            model.zero_grad(set_to_none=True)
            output = model(xb)
            given = loss_fn(output, yb)
            if not isinstance(given, Tensor):
                raise TypeError(f"loss_fn must return a tensor; got {type(given).__name__}")
            if runs is not None and given.shape != (runs,):
                raise ValueError(
                    f"loss_fn must return a loss per run, shape ({runs},); got {tuple(given.shape)}"
                )
            if runs is None and given.numel() != 1:
                raise ValueError(f"loss_fn must return one loss, shape (); got {tuple(given.shape)}")
            loss = given if runs is None else given.sum()
            if loss.requires_grad:
                loss.backward()
            grads = [p.grad for p in params if p.grad is not None]
            grad_norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=device)
            correct = _accuracy(output.detach(), yb) if accuracy else torch.full((), math.nan)
            stats = [loss.detach().reshape(()), correct.to(loss.device), grad_norm.to(loss.device)]
            stats = torch.stack(stats).tolist()
            per_step.append(stats)
            bar.update(1)
            event = functools.partial(StepEvent, step, stats[0], stats[2], model, optimizer)
            stop = _call(hooks["on_backward"], event)
            if diverged_step is None and not (math.isfinite(stats[0]) and math.isfinite(stats[2])):
                diverged_step = step
            if stop is not None or (diverged_step == step and config.stop_on_divergence):
                if monitor is not None:
                    monitor.skipped_step()  # a recorded step keeps its gradients: what a reader wants to see
                break

            if config.warmup_steps:
                for group, lr in zip(optimizer.param_groups, rates, strict=True):
                    group["lr"] = lr * min(1.0, (step + 1) / config.warmup_steps)
            optimizer.step(lambda: given)  # noqa: B023 (called within this step)
            stop = _call(hooks["on_step"], event)
            last = step == total_steps - 1 or stop is not None
            if split and ((step + 1) % eval_every == 0 or last):
                val_loss, val_acc = evaluate(model, data.x_val, data.y_val, name)
                evals.append((step, val_loss, val_acc))
                bar.set_postfix(loss=f"{stats[0]:.4g}", val_loss=f"{val_loss:.4g}")
                done = functools.partial(EvalEvent, step, val_loss, val_acc, model)
                stop = _call(hooks["on_eval"], done) or stop
            if stop is not None:
                break
        record = monitor.record() if monitor is not None else None

    values = np.array(per_step, dtype=np.float64).reshape(-1, 3)
    eval_values = np.array(evals, dtype=np.float64).reshape(-1, 3)
    if diverged_step is not None and config.stop_on_divergence:
        message = (
            f"diverged at step {diverged_step}: loss {values[-1, 0]}, gradient norm {values[-1, 2]}; "
            "stopped there, the history up to that step is kept"
        )
    elif stop is not None:
        message = f"stopped by a callback after {len(per_step)} steps: {stop}; the history is kept"
    else:
        message = f"finished {len(per_step)} steps; final train loss {values[-1, 0]:.4g}"
        message += "" if diverged_step is None else f" (NaN or inf from step {diverged_step})"
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


class SGDW(torch.optim.Optimizer):
    """SGD, no momentum, weight decay as a separate shrink: p ← (1 − lr λ) p − lr g per group (parameters
    without a gradient are left alone). Loshchilov & Hutter's (2019) SGDW with β = 0 and decay η_t λ = lr λ;
    in exact arithmetic the step of ``torch.optim.SGD(weight_decay=λ)`` (L2), rounded differently."""

    def __init__(self, params: Any, lr: float, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.mul_(1.0 - group["lr"] * group["weight_decay"])
                p -= group["lr"] * p.grad
