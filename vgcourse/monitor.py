"""Per-layer statistics recorded while a model trains (forward signal, backward signal, weight gradients
and updates) through forward hooks, autograd hooks and the optimizer's step hooks: ``GradientMonitor``
records, ``MonitorRecord`` holds (steps, layers) arrays, ``snapshot`` records one forward-backward pass.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from vgcourse._validation import check_choice, check_float, check_int, check_tensor
from vgcourse.config import Constraint

__all__ = [
    "DEFAULT_STATS",
    "HISTOGRAMS",
    "METRICS",
    "STATS",
    "GradientMonitor",
    "MonitorRecord",
    "layer_weights",
    "snapshot",
]

METRICS = (
    "grad_norm",
    "grad_mean",
    "grad_std",
    "grad_max",
    "act_mean",
    "act_std",
    "dead_frac",
    "saturated_frac",
    "update_ratio",
    "backward_norm",
    "forward_rms",
)
# What a monitor records unless asked for more: one norm per tensor and step, one host sync. update_ratio is
# opt-in: its exact snapshot of the weights (a copy before the step, a difference after it) costs about as
# much memory traffic as two optimizer steps: +39 % per step against +19 % in benchmarks/monitor_overhead.py.
DEFAULT_STATS = ("grad_norm", "backward_norm", "forward_rms")
# Optional per-step histograms: of the activation output u, and of log10 |g| of the weight gradient.
HISTOGRAMS = ("act_hist", "grad_hist")
_ROW = {name: k for k, name in enumerate(METRICS)}
# What ``stats`` accepts (GradientMonitor, snapshot and TrainConfig.monitor_stats): "default", "all", or
# distinct names from METRICS and HISTOGRAMS.
STATS = Constraint(
    "tuple", each=Constraint("choice", choices=METRICS + HISTOGRAMS), unique=True, choices=("default", "all")
)

# Activation modules whose forward hook attributes statistics to the layer that ran just before them.
# "relu": output >= 0; "relu_family": sign(f(x)) = sign(x); both get dead_frac, the others saturated_frac.
_KIND_OF_ACTIVATION: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu",
    nn.LeakyReLU: "relu_family",
    nn.ELU: "relu_family",
    nn.GELU: "relu_family",
    nn.SiLU: "relu_family",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
}
# The fractions a layer measures only when an activation of one of these kinds follows it (or it is an RNN).
_FRACTION_KINDS = {"dead_frac": {"relu", "relu_family"}, "saturated_frac": {"sigmoid", "tanh"}}


@dataclass(frozen=True)
class MonitorRecord:
    """Per-layer statistics at the recorded steps: every metric is an (S, L) float64 array, row s the step
    ``steps[s]``, column l the layer ``layer_names[l]`` (input to output). NaN marks "not measured": a
    frozen or unused layer, an activation without that statistic, no update yet, or a metric the monitor
    was not asked for (``recorded`` names those it was; ``values`` refuses the others). g is the layer's
    weight gradient, u its activation output (its output h when no activation module follows), W its
    weight. Norms are reduced in the tensor's dtype; one that overflows it although every entry is finite (a
    float32 one past 3.4e38) is measured again in float64: every norm on the CPU, the weight gradients' on a
    GPU (at the fetch, so one clipped in place before it stays inf)."""

    layer_names: list[str]
    steps: np.ndarray  # (S,) the recorded step numbers
    grad_norm: np.ndarray  # ||g||_2
    grad_mean: np.ndarray
    grad_std: np.ndarray  # unbiased, like torch.std
    grad_max: np.ndarray  # max |g|
    act_mean: np.ndarray  # mean(u)
    act_std: np.ndarray  # std(u), unbiased
    dead_frac: np.ndarray  # ReLU family: fraction of units whose pre-activation is <= 0 on every example
    saturated_frac: np.ndarray  # sigmoid/tanh: fraction of outputs with |u| > saturation (sigmoid |2u - 1|)
    update_ratio: np.ndarray  # std(W_after - W_before) / std(W_before) of the optimizer step
    backward_norm: np.ndarray | None = None  # ||dL/dh||_2 at the output h, squares summed over calls
    forward_rms: np.ndarray | None = None  # sqrt(mean(h^2)) over every call of the layer
    input_grad_norm: np.ndarray | None = None  # (S, T) ||dL/dx_t|| per input time step (track_inputs)
    recorded: tuple[str, ...] = METRICS  # the metrics that were measured
    # Per layer, the activation module u comes from ("relu", "tanh", ..., "rnn" for an RNN's own
    # nonlinearity, "" when none followed: functional activations such as F.relu are invisible to hooks).
    activations: tuple[str, ...] | None = None
    act_hist: np.ndarray | None = None  # (S, L, B) counts of u in the bins act_hist_edges
    grad_hist: np.ndarray | None = None  # (S, L, B) counts of log10 |g| (g = 0 not counted)
    act_hist_edges: np.ndarray | None = field(default=None, repr=False)  # (B + 1,)
    grad_hist_edges: np.ndarray | None = field(default=None, repr=False)  # (B + 1,), in log10 |g|

    def __post_init__(self) -> None:
        put = functools.partial(object.__setattr__, self)  # normalize the fields once; the record is frozen
        put("layer_names", [str(name) for name in self.layer_names])
        put("steps", np.asarray(self.steps, dtype=np.int64).reshape(-1))
        shape = (len(self.steps), len(self.layer_names))
        for metric in METRICS:
            value = getattr(self, metric)
            values = np.full(shape, np.nan) if value is None else np.asarray(value, dtype=np.float64)
            if values.shape != shape:
                raise ValueError(f"{metric} must have shape (steps, layers) = {shape}; got {values.shape}")
            put(metric, values)
        put("recorded", tuple(check_choice("recorded", m, METRICS + HISTOGRAMS) for m in self.recorded))
        put("activations", tuple(str(a) for a in self.activations or ("",) * len(self.layer_names)))
        if len(self.activations) != len(self.layer_names):
            raise ValueError(f"activations must name one activation per layer; got {len(self.activations)}")
        if self.input_grad_norm is not None:
            put("input_grad_norm", np.asarray(self.input_grad_norm, dtype=np.float64))
            if self.input_grad_norm.ndim != 2 or len(self.input_grad_norm) != len(self.steps):
                raise ValueError(
                    f"input_grad_norm must have shape (steps, T); got {self.input_grad_norm.shape}"
                )

    def values(self, metric: str) -> np.ndarray:
        """The (S, L) array of ``metric``, one of ``METRICS`` that the monitor recorded."""
        check_choice("metric", metric, METRICS)
        if metric not in self.recorded:
            raise ValueError(
                f"{metric} was not recorded (this record has {', '.join(self.recorded)}): ask for it with "
                f"GradientMonitor(..., stats=[...]) or TrainConfig(monitor_stats=[...]) (stats='all' leaves "
                "out a fraction that no activation module of the model can give)"
            )
        return getattr(self, metric)

    def to_frame(self) -> Any:
        """A long DataFrame: one row per (step, layer), columns step, layer, layer_index (1 = first layer)
        and one per recorded metric (not ``input_grad_norm`` nor the histograms)."""
        import pandas as pd

        n_steps, n_layers = len(self.steps), len(self.layer_names)
        columns: dict[str, Any] = {
            "step": np.repeat(self.steps, n_layers),
            "layer": np.tile(np.array(self.layer_names, dtype=object), n_steps),
            "layer_index": np.tile(np.arange(1, n_layers + 1), n_steps),
        }
        columns.update({m: getattr(self, m).reshape(-1) for m in METRICS if m in self.recorded})
        return pd.DataFrame(columns)


def _check_layers(layers: Any) -> list[tuple[str, nn.Module]]:
    if not isinstance(layers, (list, tuple)):
        raise TypeError(f"layers must be a list of (name, module) pairs; got {type(layers).__name__}")
    for item in layers:
        if not (isinstance(item, (list, tuple)) and len(item) == 2):
            raise TypeError(f"each layer must be a (name, module) pair; got {item!r}")
        name, module = item
        if not isinstance(name, str) or not isinstance(module, nn.Module):
            got = f"({name!r}, {type(module).__name__})"
            raise TypeError(f"each layer must be a (str, nn.Module) pair; got {got}")
        if not layer_weights(module):
            raise ValueError(f"layer {name!r} ({type(module).__name__}) has no weight parameter to monitor")
    if not layers:
        raise ValueError("no layers to monitor: the model has no module with a weight (Linear, Conv, RNN)")
    return [(name, module) for name, module in layers]


def _check_stats(stats: Any) -> tuple[str, ...]:
    """The metrics and histograms to record (``STATS`` checks them), in ``METRICS + HISTOGRAMS`` order."""
    stats = STATS.check("stats", stats)
    if stats == "default":
        return DEFAULT_STATS
    if stats == "all":
        return METRICS
    return tuple(m for m in METRICS + HISTOGRAMS if m in stats)


def layer_weights(module: nn.Module) -> list[nn.Parameter]:
    """The monitored weights of a layer: ``weight``, every ``weight_*`` of an RNN, or the input projections
    of an ``nn.MultiheadAttention`` (``in_proj_weight``, or ``q/k/v_proj_weight``)."""
    if isinstance(module, nn.RNNBase):
        return [p for name, p in module.named_parameters(recurse=False) if name.startswith("weight")]
    if isinstance(module, nn.MultiheadAttention):
        names = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
        return [p for p in (getattr(module, n, None) for n in names) if isinstance(p, nn.Parameter)]
    weight = getattr(module, "weight", None)
    return [weight] if isinstance(weight, nn.Parameter) else []


def _unbiased_std(sum_sq: np.ndarray, total: np.ndarray, n: np.ndarray) -> np.ndarray:
    """std = sqrt((sum x^2 - (sum x)^2 / n) / (n - 1)); NaN for n = 1, like ``torch.std``."""
    var = np.divide(sum_sq - total**2 / n, n - 1, out=np.full(np.shape(n), np.nan), where=n > 1)
    return np.sqrt(np.maximum(var, 0.0))


def _per_layer(values: np.ndarray, owner: np.ndarray, n_layers: int, ufunc: Any = np.add) -> np.ndarray:
    """Combine per-tensor values into per-layer ones (sum, or ``np.minimum``/``np.maximum``)."""
    if ufunc is np.add:
        return np.bincount(owner, weights=values, minlength=n_layers)
    out = np.full(n_layers, np.inf if ufunc is np.minimum else -np.inf)
    ufunc.at(out, owner, values)
    return out


class _Act(NamedTuple):
    """What one activation did in a forward pass (tensors stay on the device until the step is fetched)."""

    norm: Tensor | float  # ||u||_2
    numel: int
    unit_sum: Tensor | None  # sum of u per unit
    dead: Tensor | None  # per unit: <= 0 exactly when the unit's pre-activation is <= 0 on every example
    saturated: Tensor | None  # fraction of saturated outputs
    hist: Tensor | None  # counts of u in the histogram bins


def _wide_norm(t: Tensor) -> float:
    """||t||_2 without overflow: m ||t / m||_2 in float64 with m = max |t| (a float32 norm is inf once sum t^2
    passes 3.4e38, entries above ~1.8e19, although every entry is finite); inf when an entry is."""
    t = t.detach().double()
    scale = t.abs().amax()
    if not bool(torch.isfinite(scale)):
        return math.inf
    return float(scale) * float(torch.linalg.vector_norm(t / scale))


def _norm(t: Tensor, read: bool) -> Tensor | float:
    """||t||_2 in t's dtype; ``read`` (the CPU path): as a float, and one that came out inf is measured again
    by ``_wide_norm`` (the check costs nothing there: the number is read anyway)."""
    norm = torch.linalg.vector_norm(t)
    if not read:
        return norm
    value = norm.item()
    return _wide_norm(t) if value == math.inf else value


def _copy_norm_sum(
    buffers: list[Tensor], weights: list[Tensor], *, read: bool, subtract: bool = False
) -> list[Tensor | float]:
    """buffer <- weight (or buffer - weight), then [||buffer_1||, ..., sum(buffer_1), ...] (0-d tensors; the
    norms as ``_norm``'s floats when ``read``).

    On a GPU batched (``torch._foreach_*``); on the CPU one tensor at a time, so each buffer is reduced while
    it is still in the cache (about 25 % less time than the batched order for a 20-layer MLP)."""
    if buffers and buffers[0].device.type != "cpu":
        (torch._foreach_sub_ if subtract else torch._foreach_copy_)(buffers, weights)
        return [*torch._foreach_norm(buffers), *(b.sum() for b in buffers)]
    norms, sums = [], []
    for buffer, weight in zip(buffers, weights, strict=True):
        buffer.sub_(weight) if subtract else buffer.copy_(weight)
        norms.append(_norm(buffer, read))
        sums.append(buffer.sum())
    return norms + sums


class _Pending:
    """One recorded step's statistics until they are fetched: ``add(name, values)`` takes 0-d or 1-d tensors
    (1-d ones are concatenated). On a GPU they stay there until ``fetch``: one stack (or concatenation) and
    one device-to-host copy. On the CPU (``read``) there is no device to wait for, so each value is read as
    it comes, while it is still in the cache (a hook may give the number itself)."""

    def __init__(self, step: int, read: bool) -> None:
        self.step, self.read = step, read
        self.info: dict[str, Any] = {}
        self.sizes: list[tuple[str, int]] = []
        self.values: list[Any] = []  # tensors, or (read) numbers and float64 arrays
        self.scalars = True  # only 0-d values so far
        self.grads: list[tuple[Tensor, int]] = []  # not read: each weight gradient of "g_norm", its _version

    def add(self, name: str, values: Sequence[Tensor | float]) -> None:
        if not values:
            return
        scalars = all(isinstance(v, float) or v.ndim == 0 for v in values)
        self.sizes.append((name, len(values) if scalars else sum(v.numel() for v in values)))
        self.scalars = self.scalars and scalars
        if self.read:
            values = [
                v.double().numpy() if not scalars else v if isinstance(v, float) else v.item() for v in values
            ]
        self.values += values

    def fetch(self) -> tuple[tuple[tuple[str, int], ...], np.ndarray]:
        """((name, size) per piece, every piece in one float64 array); the tensors are dropped (a long run
        keeps only these numbers)."""
        values, self.values = self.values, []
        if not values:
            return (), np.empty(0)
        if self.read:
            flat = np.array(values) if self.scalars else np.concatenate([np.atleast_1d(v) for v in values])
            return tuple(self.sizes), flat.astype(np.float64, copy=False)
        dtypes = {t.dtype for t in values}
        if len(dtypes) > 1:
            dtype = functools.reduce(torch.promote_types, dtypes)
            values = [t.to(dtype) for t in values]
        if self.scalars:
            flat = torch.stack(values).cpu().double().numpy()
        else:
            flat = torch.cat([t.reshape(-1) for t in values]).cpu().double().numpy()
        return tuple(self.sizes), flat


class GradientMonitor:
    """Record per-layer statistics while a model trains; every hook is removed on exit (also on an error)::

        with GradientMonitor(model, optimizer, every=10) as mon:
            for x, y in batches:
                optimizer.zero_grad()
                loss_fn(model(x), y).backward()
                optimizer.step()
        record = mon.record()

    The k-th ``optimizer.step()`` in the block is step k, recorded when ``k % every == 0``. Gradients are
    read in the optimizer's step pre-hook: the ones it uses, after any clipping done before the step.
    Forward and autograd hooks are attached only for the pass before a recorded step, so the other steps
    run the plain loop. Without an optimizer, call ``step(k)`` after ``loss.backward()`` and
    ``after_update()`` after ``optimizer.step()``.

    ``stats``: "default" (``DEFAULT_STATS``), "all" (every metric of ``METRICS`` this model can measure:
    dead_frac needs a ReLU-family activation module or a ReLU RNN, saturated_frac a Sigmoid or Tanh module
    or a tanh RNN) or names from ``METRICS`` and ``HISTOGRAMS``; ``MonitorRecord`` defines them. An
    activation module (ReLU family, Sigmoid, Tanh) reports to the last layer that ran before it in the same
    forward pass (conv -> bn -> relu: the conv); a layer no activation module follows reports its own
    output. Functional activations (``F.relu``) are invisible to hooks: "all" leaves their fractions out,
    and the monitor warns when dead or saturated fractions were asked for by name and it saw no activation
    module. A unit is a channel (dim 1) of a conv output, else the last dim.

    Args:
        layers: (name, module) pairs to watch, input to output; default ``vgcourse.models.named_layers``.
        saturation: threshold in (0, 1) for "saturated" sigmoid/tanh outputs.
        track_inputs: record ||dL/dx_t|| per time step t (dim 1) of the model's first input.
        bins, act_range, grad_range: histogram bins and (low, high) ranges (of u, and of log10 |g|).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        layers: Sequence[tuple[str, nn.Module]] | None = None,
        every: int = 1,
        stats: str | Iterable[str] = "default",
        saturation: float = 0.99,
        track_inputs: bool = False,
        bins: int = 40,
        act_range: tuple[float, float] = (-4.0, 4.0),
        grad_range: tuple[float, float] = (-12.0, 2.0),
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer or None; got {type(optimizer).__name__} "
                "(give the layers by keyword: layers=[...])"
            )
        if layers is None:
            from vgcourse.models import named_layers

            layers = named_layers(model)
        self.model, self.optimizer = model, optimizer
        self.layers = _check_layers(layers)
        self.layer_names = [name for name, _ in self.layers]
        self.every = check_int("every", every, minimum=1)
        self.stats = _check_stats(stats)
        if stats == "all":  # not the fractions that no activation module (or RNN) of their kind can give
            kinds = {_KIND_OF_ACTIVATION.get(type(m)) for m in model.modules()}
            kinds |= {m.nonlinearity for _, m in self.layers if isinstance(m, nn.RNN)}
            self.stats = tuple(
                s for s in self.stats if s not in _FRACTION_KINDS or _FRACTION_KINDS[s] & kinds
            )
        self._explicit = not isinstance(stats, str)  # asked for by name: warn when it cannot be measured
        self.saturation = check_float("saturation", saturation)
        if not 0.0 < self.saturation < 1.0:
            raise ValueError(f"saturation must be in (0, 1); got {saturation!r}")
        if not isinstance(track_inputs, bool):
            raise TypeError(f"track_inputs must be a bool; got {type(track_inputs).__name__}")
        self.track_inputs = track_inputs
        self.bins = check_int("bins", bins, minimum=1)
        self._ranges = {}
        for name, value in (("act_range", act_range), ("grad_range", grad_range)):
            if not (isinstance(value, (tuple, list)) and len(value) == 2):
                raise TypeError(f"{name} must be a pair (low, high); got {value!r}")
            low, high = (check_float(name, v) for v in value)
            if not low < high:
                raise ValueError(f"{name} must have low < high; got {value!r}")
            self._ranges[name] = (low, high)

        want = set(self.stats)
        self._want_grad = bool(want & {"grad_mean", "grad_std", "grad_max"})
        self._want_units = bool(want & {"act_mean", "act_std", "dead_frac"})
        self._want_act = bool(want & {"act_mean", "act_std", "dead_frac", "saturated_frac", "act_hist"})
        self._want_back = "backward_norm" in want
        self._want_forward = "forward_rms" in want
        self._tensors = [p for _, module in self.layers for p in layer_weights(module)]
        self._owner = np.array(
            [i for i, (_, module) in enumerate(self.layers) for _ in layer_weights(module)], dtype=np.int64
        )
        self._numel = np.array([p.numel() for p in self._tensors], dtype=np.float64)
        self._read = all(p.device.type == "cpu" for p in self._tensors)  # read numbers as they come
        self._channels_first = [isinstance(m, nn.modules.conv._ConvNd) for _, m in self.layers]
        # The backward pre-hook for each layer's output node (output_nr 0: a layer's first output), made once.
        self._grad_hooks = [functools.partial(self._grad_hook, i, 0) for i in range(len(self.layers))]
        # The layer and activation modules' forward hooks, attached for each recorded step (found once).
        self._forward_hooks: list[tuple[nn.Module, Callable[..., None]]] = []
        if self._want_act or self._want_back or self._want_forward:
            self._forward_hooks += [
                (m, functools.partial(self._layer_hook, i)) for i, (_, m) in enumerate(self.layers)
            ]
        if self._want_act:
            self._forward_hooks += [
                (m, functools.partial(self._activation_hook, _KIND_OF_ACTIVATION[type(m)]))
                for m in model.modules()
                if type(m) in _KIND_OF_ACTIVATION
            ]
        self._handles: list[RemovableHandle] = []  # optimizer hooks, while the monitor is open
        self._layer_handles: list[RemovableHandle] = []  # model, layer and activation hooks, when armed
        self._open = False
        # What has been recorded: one (len(METRICS), L) array per recorded step.
        self._steps: list[int] = []
        self._rows: list[np.ndarray] = []
        self._fetched: list[tuple[int, tuple, np.ndarray]] = []  # (step, layout, numbers), for record()
        self._hists: dict[str, list[np.ndarray]] = {name: [] for name in HISTOGRAMS}
        self._input_norms: list[np.ndarray] = []
        self._kinds = [""] * len(self.layers)
        self._warned = False
        # State of the current forward pass and step.
        self._count = 0  # optimizer steps taken inside the monitor (hook mode)
        self._last_step = -1
        self._collect = False  # gather statistics in this forward pass?
        self._current: int | None = None  # index of the last layer that ran
        self._pending_out: tuple[int, Tensor] | None = None  # a layer output waiting for its activation
        self._act: dict[int, _Act] = {}
        # Per call of a layer, in parallel lists: no tuple made per call (fewer objects in the training loop).
        self._forward: tuple[list[int], list[Tensor | float], list[int]] = ([], [], [])  # layer, ||h||, numel
        self._back: tuple[list[int], list[Tensor | float]] = ([], [])  # layer, ||dL/dh||
        self._input: Tensor | None = None
        self._pending: _Pending | None = None  # the recorded step whose update is still to come
        self._updated: list[int] = []  # tensors whose weights were copied before the update
        self._buffers: dict[int, Tensor] = {}  # weights before the update, reused from step to step

    # -- hooks -------------------------------------------------------------------------------------------

    def __enter__(self) -> GradientMonitor:
        if not self._open:
            self._open = True
            if self.optimizer is not None:
                self._handles = [
                    self.optimizer.register_step_pre_hook(self._optimizer_pre_hook),
                    self.optimizer.register_step_post_hook(self._optimizer_post_hook),
                ]
            next_step = self._count if self.optimizer is not None else self._last_step + 1
            self._watch_layers(next_step % self.every == 0)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove every hook (safe to call twice); what was recorded stays available."""
        self._watch_layers(False)
        for handle in self._handles:
            handle.remove()
        self._handles, self._open = [], False
        self._pending_out = self._input = None

    def _watch_layers(self, on: bool) -> None:
        """Attach (on) or remove the model, layer and activation hooks: they are needed only in the forward
        pass before a recorded step."""
        if not on or not self._open:
            for handle in self._layer_handles:
                handle.remove()
            self._layer_handles = []
            return
        if self._layer_handles:
            return
        self._layer_handles = [
            self.model.register_forward_pre_hook(self._model_pre_hook),
            *(module.register_forward_hook(hook) for module, hook in self._forward_hooks),
        ]
        if self._want_act:  # the last layer's output may still wait for an activation
            self._layer_handles.append(self.model.register_forward_hook(self._model_hook))

    def _model_pre_hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        self._collect = torch.is_grad_enabled()
        if not self._collect:
            return None
        self._take()
        self._current = self._pending_out = None
        if self.track_inputs and args and isinstance(args[0], Tensor) and args[0].is_floating_point():
            self._input = args[0].detach().requires_grad_(True)
            return (self._input, *args[1:])
        return None

    def _model_hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self._flush()

    def _layer_hook(self, index: int, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not self._collect:
            return
        if self._pending_out is not None:
            self._flush()
        self._current = index
        out = output[0] if isinstance(output, tuple) else output  # RNNs return (output, h_n)
        if not isinstance(out, Tensor):
            return
        if self._want_forward:
            layers, norms, numels = self._forward
            layers.append(index)
            norms.append(_norm(out.detach(), self._read))
            numels.append(out.numel())
        grad_fn = out.grad_fn
        if self._want_back and grad_fn is not None:  # a pre-hook on the node that made h: dL/dh
            nr = out.output_nr
            grad_fn.register_prehook(
                self._grad_hooks[index] if nr == 0 else functools.partial(self._grad_hook, index, nr)
            )
        if not self._want_act:
            return
        if isinstance(module, nn.RNN):  # h_t = tanh(...) or relu(...): the layer is its own activation
            self._act[index] = self._activation_stats(index, out.detach(), out.detach(), module.nonlinearity)
        else:
            self._pending_out = (index, out)

    def _grad_hook(self, index: int, output_nr: int, grads: tuple[Tensor | None, ...]) -> None:
        grad = grads[output_nr]
        if grad is not None:
            layers, norms = self._back
            layers.append(index)
            norms.append(_norm(grad.detach() if grad.requires_grad else grad, self._read))

    def _activation_hook(self, kind: str, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not self._collect or self._current is None or not isinstance(output, Tensor):
            return
        self._pending_out = None
        pre = args[0] if args and isinstance(args[0], Tensor) else output  # in-place: input is output
        self._act[self._current] = self._activation_stats(self._current, output.detach(), pre.detach(), kind)

    def _flush(self) -> None:
        """Give a layer output that no activation followed its own statistics."""
        if self._pending_out is not None:
            index, out = self._pending_out
            self._pending_out = None
            self._act[index] = self._activation_stats(index, out.detach(), out.detach(), "")

    def _activation_stats(self, index: int, out: Tensor, pre: Tensor, kind: str) -> _Act:
        self._kinds[index] = kind
        if out.ndim < 2:
            out, pre = out.reshape(1, -1), pre.reshape(1, -1)
        keep = 1 if self._channels_first[index] else out.ndim - 1
        others = tuple(d for d in range(out.ndim) if d != keep)
        want = self.stats
        unit_sum = out.sum(dim=others) if self._want_units else None
        dead = saturated = hist = None
        if "dead_frac" in want and kind == "relu":  # u = relu(x) >= 0: a unit's sum is 0 iff x <= 0 always
            dead = unit_sum
        elif "dead_frac" in want and kind == "relu_family":  # sign(f(x)) = sign(x): leaky_relu, elu, gelu
            dead = pre.amax(dim=others)
        elif "saturated_frac" in want and kind == "tanh":
            saturated = torch.mean(out.abs() > self.saturation, dtype=torch.float32)
        elif "saturated_frac" in want and kind == "sigmoid":  # |2u - 1| > s
            saturated = torch.mean((out - 0.5).abs() > self.saturation / 2, dtype=torch.float32)
        if "act_hist" in want:
            low, high = self._ranges["act_range"]
            hist = torch.histc(out.float(), bins=self.bins, min=low, max=high)
        return _Act(_norm(out, self._read), out.numel(), unit_sum, dead, saturated, hist)

    def _optimizer_pre_hook(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._flush()
        if self._count % self.every == 0:
            self._begin(self._count)
        else:
            self._take()

    def _optimizer_post_hook(
        self, optimizer: Any, args: Any = (), kwargs: Any = None, update: bool = True
    ) -> None:
        self._finish(update=update)
        self._count += 1
        self._watch_layers(self._count % self.every == 0)

    def skipped_step(self) -> None:
        """Count the current step although the optimizer will not take it (a loop that stops at a non-finite
        loss, or skips the update); a step the monitor records (k % every == 0) keeps its gradient and signal
        statistics, update ratio NaN. For a monitor with an optimizer; the count goes on as if it had run."""
        if self.optimizer is None:
            raise RuntimeError("skipped_step() is for a monitor with an optimizer; call step(step) instead")
        self._optimizer_pre_hook(self.optimizer, (), {})
        self._optimizer_post_hook(self.optimizer, update=False)

    # -- recording ---------------------------------------------------------------------------------------

    def step(self, step: int) -> None:
        """Record step ``step`` (0, 1, ...) if ``step % every == 0``: call it after ``loss.backward()``, for
        a monitor without an optimizer (with one, the optimizer's step hooks do this)."""
        if self.optimizer is not None:
            raise RuntimeError("this monitor records through its optimizer's step hooks: do not call step()")
        check_int("step", step, minimum=0)
        self._finish(update=False)
        self._flush()
        self._last_step = step
        self._watch_layers((step + 1) % self.every == 0)
        if step % self.every == 0:
            self._begin(step)
        else:
            self._take()

    def after_update(self) -> None:
        """Record the recorded step's update_ratio: call it after ``optimizer.step()``, for a monitor without
        an optimizer. Does nothing when the last step was not recorded."""
        if self.optimizer is not None:
            raise RuntimeError(
                "this monitor records through its optimizer's step hooks: do not call after_update()"
            )
        self._finish(update=True)

    def _begin(self, step: int) -> None:
        """Start recording ``step``: reduce the gradients, copy the weights."""
        act, forward, back, x = self._take()
        pending = self._pending = _Pending(step, self._read)
        want = self.stats
        with torch.no_grad():
            grads = [p.grad for p in self._tensors]
            have = [k for k, g in enumerate(grads) if g is not None]
            grads = [grads[k] for k in have]
            pending.info["grads"] = have
            if grads and (self._want_grad or "grad_norm" in want):
                # Last to first: the optimizer starts with the first ones and finds them still in the cache.
                norms = torch._foreach_norm(grads[::-1])[::-1]
                if self._read:  # an overflowing float32 norm is measured again, as in _norm
                    norms = [n.item() for n in norms]
                    if math.inf in norms:
                        norms = [
                            _wide_norm(g) if n == math.inf else n for n, g in zip(norms, grads, strict=True)
                        ]
                else:  # read at the fetch, where an inf one is measured again if not changed in place since
                    pending.grads = [(g, g._version) for g in grads]
                pending.add("g_norm", norms)
            if grads and self._want_grad:
                pending.add("g_sum", [g.sum() for g in grads])
                pending.add("g_min", [g.amin() for g in grads])
                pending.add("g_max", [g.amax() for g in grads])
            self._updated = []
            if grads and "update_ratio" in want:
                weights = [self._tensors[k].detach() for k in have]
                buffers = [self._buffer(k, w) for k, w in zip(have, weights, strict=True)]
                pending.add("w_norm_sum", _copy_norm_sum(buffers, weights, read=self._read))
                self._updated = have
            layers, norms, numels = forward
            pending.info["forward"] = (layers, numels)
            pending.add("f_norm", norms)
            layers, norms = back
            pending.info["back"] = layers
            pending.add("b_norm", norms)
            layers = sorted(act)
            pending.info["act"] = layers
            pending.info["numel"] = [act[i].numel for i in layers]
            pending.add("a_norm", [act[i].norm for i in layers])
            saturated = [i for i in layers if act[i].saturated is not None]
            pending.info["saturated"] = saturated
            pending.add("a_saturated", [act[i].saturated for i in saturated])
            # 1-d pieces (the statistics that are not one number per tensor) come last
            if self._want_units:
                pending.add("a_units", [act[i].unit_sum.reshape(-1) for i in layers])
                pending.info["a_units"] = [act[i].unit_sum.numel() for i in layers]
            dead = [i for i in layers if act[i].dead is not None]
            pending.info["dead"] = dead
            pending.add("a_dead", [act[i].dead.reshape(-1) for i in dead])
            pending.info["a_dead"] = [act[i].dead.numel() for i in dead]
            pending.add("a_hist", [act[i].hist for i in layers if act[i].hist is not None])
            if grads and "grad_hist" in want:
                low, high = self._ranges["grad_range"]
                hists = [
                    torch.histc(g.abs().log10().float(), bins=self.bins, min=low, max=high) for g in grads
                ]
                pending.add("g_hist", hists)
            if x is not None and x.grad is not None:  # ||dL/dx_t||: reduce over all dims but time (dim 1)
                dims = [d for d in range(x.ndim) if d != 1]
                pending.add("x_grad", [x.grad.norm(dim=dims) if x.ndim >= 3 else x.grad.norm().reshape(1)])

    def _take(self) -> tuple[dict, tuple, tuple, Tensor | None]:
        """Hand over (and forget) what the last forward and backward pass collected."""
        taken = (self._act, self._forward, self._back, self._input)
        self._act, self._forward, self._back, self._input = {}, ([], [], []), ([], []), None
        return taken

    def _buffer(self, k: int, weight: Tensor) -> Tensor:
        """Tensor k's buffer for its weights before the update, reused from step to step."""
        buffer = self._buffers.get(k)
        if buffer is None or (buffer.shape, buffer.dtype, buffer.device) != (
            weight.shape,
            weight.dtype,
            weight.device,
        ):
            buffer = self._buffers[k] = torch.empty_like(weight)
        return buffer

    def _finish(self, *, update: bool) -> None:
        """Complete the pending step (with the weights' change when ``update``): one host sync."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if update and self._updated:
            with torch.no_grad():
                buffers = [self._buffers[k] for k in self._updated]
                weights = [self._tensors[k].detach() for k in self._updated]
                pending.add("d_norm_sum", _copy_norm_sum(buffers, weights, read=self._read, subtract=True))
        sizes, flat = pending.fetch()
        overflowed = np.flatnonzero(np.isinf(flat[: sizes[0][1]])) if pending.grads else ()  # g_norm: first
        for k in overflowed:
            grad, version = pending.grads[k]
            if grad._version == version:  # not clipped in place after the record (train's clip runs then)
                flat[k] = _wide_norm(grad)
        layout = (pending.info, sizes)
        if self._fetched and self._fetched[-1][1] == layout:  # share it: fewer objects for the collector
            layout = self._fetched[-1][1]
        self._fetched.append((pending.step, layout, flat))
        if self._explicit and not self._warned and {"dead_frac", "saturated_frac"} & set(self.stats):
            if pending.info["act"] and not any(self._kinds):
                self._warned = True
                warnings.warn(
                    "GradientMonitor saw no activation module (nn.ReLU, nn.Tanh, nn.Sigmoid, ...) after the "
                    "monitored layers: dead_frac and saturated_frac stay NaN. Functional activations "
                    "(F.relu, torch.tanh) are invisible to forward hooks; use activation modules.",
                    stacklevel=3,
                )

    def _decode(self, step: int, info: dict[str, Any], got: dict[str, np.ndarray]) -> None:
        """Turn a step's fetched pieces into its (len(METRICS), L) row and histograms."""
        n_layers = len(self.layers)
        row = np.full((len(METRICS), n_layers), np.nan)
        have = np.array(info["grads"], dtype=np.int64)
        owner = self._owner[have]
        layers = np.unique(owner)
        one_each = len(owner) == n_layers and np.array_equal(owner, np.arange(n_layers))  # the common case

        def per_layer(values: np.ndarray, ufunc: Any = np.add) -> np.ndarray:
            return values if one_each else _per_layer(values, owner, n_layers, ufunc)[layers]

        def put(name: str, value: np.ndarray, where: Any = layers) -> None:
            if name in self.stats:
                row[_ROW[name], where] = value

        count = per_layer(self._numel[have])
        if "g_norm" in got:
            sum_sq = per_layer(got["g_norm"] ** 2)
            put("grad_norm", np.sqrt(sum_sq))
        if "g_sum" in got:
            total = per_layer(got["g_sum"])
            put("grad_mean", total / count)
            put("grad_std", _unbiased_std(sum_sq, total, count))
            put(
                "grad_max",
                np.maximum(-per_layer(got["g_min"], np.minimum), per_layer(got["g_max"], np.maximum)),
            )
        if "d_norm_sum" in got:
            (w_norm, w_sum), (d_norm, d_sum) = (np.split(got[k], 2) for k in ("w_norm_sum", "d_norm_sum"))
            w_std = _unbiased_std(per_layer(w_norm**2), per_layer(w_sum), count)
            put("update_ratio", _unbiased_std(per_layer(d_norm**2), per_layer(d_sum), count) / w_std)
        layers, numels = info["forward"]
        if layers:
            owner_f = np.array(layers)
            seen = np.bincount(owner_f, minlength=n_layers) > 0
            numel = np.bincount(owner_f, weights=numels, minlength=n_layers)
            sum_sq = _per_layer(got["f_norm"] ** 2, owner_f, n_layers)
            put("forward_rms", np.sqrt(sum_sq[seen] / numel[seen]), seen)
        if info["back"]:
            owner_b = np.array(info["back"])
            seen = np.bincount(owner_b, minlength=n_layers) > 0
            put("backward_norm", np.sqrt(_per_layer(got["b_norm"] ** 2, owner_b, n_layers))[seen], seen)
        act = info["act"]
        if act:
            n = np.array(info["numel"], dtype=np.float64)
            if self._want_units:
                sizes = info["a_units"]
                total = np.add.reduceat(got["a_units"], np.cumsum(sizes) - sizes, dtype=np.float64)
                put("act_mean", total / n, act)
                put("act_std", _unbiased_std(got["a_norm"] ** 2, total, n), act)
            if info["dead"]:
                sizes = np.array(info["a_dead"])
                dead = np.add.reduceat(got["a_dead"] <= 0, np.cumsum(sizes) - sizes, dtype=np.float64)
                row[_ROW["dead_frac"], info["dead"]] = dead / sizes
            if info["saturated"]:
                row[_ROW["saturated_frac"], info["saturated"]] = got["a_saturated"]
        for name, key, where in (("act_hist", "a_hist", act), ("grad_hist", "g_hist", None)):
            if name not in self.stats:
                continue
            counts = np.zeros((n_layers, self.bins))
            if key in got:
                values = got[key].reshape(-1, self.bins)
                if where is None:
                    np.add.at(counts, owner, values)
                else:
                    counts[list(where)] = values
            self._hists[name].append(counts)
        if self.track_inputs:
            self._input_norms.append(got.get("x_grad", np.empty(0)))
        self._rows.append(row)
        self._steps.append(step)

    def record(self) -> MonitorRecord:
        """Everything recorded so far (a copy; recording can go on). A step whose update has not come yet is
        completed without its update ratio."""
        self._finish(update=False)
        with np.errstate(all="ignore"):  # inf/NaN gradients give NaN statistics, silently
            for step, (info, sizes), flat in self._fetched:
                got, start = {}, 0
                for name, size in sizes:
                    got[name], start = flat[start : start + size], start + size
                self._decode(step, info, got)
        self._fetched = []
        data = np.stack(self._rows) if self._rows else np.empty((0, len(METRICS), len(self.layers)))
        input_grad_norm = None
        if self.track_inputs:
            width = max((len(v) for v in self._input_norms), default=0)
            input_grad_norm = np.full((len(self._input_norms), width), np.nan)
            for s, values in enumerate(self._input_norms):
                input_grad_norm[s, : len(values)] = values
        hists: dict[str, Any] = {}
        for name in HISTOGRAMS:
            if name in self.stats:
                values = self._hists[name]
                hists[name] = np.stack(values) if values else np.empty((0, len(self.layers), self.bins))
                low, high = self._ranges["act_range" if name == "act_hist" else "grad_range"]
                hists[f"{name}_edges"] = np.linspace(low, high, self.bins + 1)
        return MonitorRecord(
            layer_names=list(self.layer_names),
            steps=np.array(self._steps, dtype=np.int64),
            **{metric: data[:, k].copy() for k, metric in enumerate(METRICS)},
            input_grad_norm=input_grad_norm,
            recorded=self.stats,
            activations=tuple(self._kinds),
            **hists,
        )


def snapshot(
    model: nn.Module,
    x: Tensor,
    y: Any,
    loss_fn: Callable[[Any, Any], Tensor],
    layers: Sequence[tuple[str, nn.Module]] | None = None,
    *,
    stats: str | Iterable[str] = "all",
    saturation: float = 0.99,
    track_inputs: bool = False,
) -> MonitorRecord:
    """One forward and backward pass of ``loss_fn(model(x), y)``; its one-step ``MonitorRecord`` (update_ratio
    NaN). The gradients are reset first and left in ``.grad``; the weights and train/eval mode are kept.
    ``layers``, ``stats``, ``saturation``, ``track_inputs``: as for ``GradientMonitor`` (stats "all": a
    single pass is cheap)."""
    check_tensor("x", x)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, e.g. nn.CrossEntropyLoss(); got {type(loss_fn).__name__}")
    monitor = GradientMonitor(
        model, layers=layers, stats=stats, saturation=saturation, track_inputs=track_inputs
    )
    model.zero_grad(set_to_none=True)
    with torch.enable_grad(), monitor:
        loss = loss_fn(model(x), y)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError(f"loss_fn must return a scalar tensor; got {type(loss).__name__}")
        loss.backward()
        monitor.step(0)
    return monitor.record()
