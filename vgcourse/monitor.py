"""Per-layer statistics recorded while a model trains: forward signal, backward signal, weight gradients
and updates, through forward hooks, tensor hooks and the optimizer's step hooks.

``GradientMonitor(model, optimizer)`` is a context manager: inside it, every ``optimizer.step()`` of a
recorded step stores, per layer, the weight gradient's norm, the backward signal ‖∂L/∂h_l‖ at the layer's
output, the forward signal's rms and the update:data ratio (the cheap default set); dead and saturated
fractions, means, standard deviations and histograms are opt-in (``stats=...``). ``record()`` returns it
all as NumPy arrays. Without an optimizer, ``step(step)`` after ``loss.backward()`` and ``after_update()``
after ``optimizer.step()`` do the same by hand.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from vgcourse._validation import check_choice, check_float, check_int, check_tensor

__all__ = [
    "DEFAULT_STATS",
    "HISTOGRAMS",
    "METRICS",
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
# What a monitor records unless asked for more: one norm per tensor and step, batched, one host sync.
DEFAULT_STATS = ("grad_norm", "backward_norm", "forward_rms", "update_ratio")
# Optional per-step histograms: of the activation output u, and of log10 |g| of the weight gradient.
HISTOGRAMS = ("act_hist", "grad_hist")
_ROW = {name: k for k, name in enumerate(METRICS)}

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


@dataclass
class MonitorRecord:
    """Per-layer statistics at the recorded steps: every metric is an (S, L) float64 array.

    Row s is the step ``steps[s]``, column l the layer ``layer_names[l]`` (input to output). NaN marks
    "not measured": a frozen or unused layer, an activation without that statistic, no update yet, or a
    metric the monitor was not asked for (``recorded`` names those it was; ``values`` refuses the others).

    Args:
        layer_names: the L layer names, input to output.
        steps: (S,) the recorded step numbers.
        grad_norm: ||g||_2 of the layer's weight gradient g.
        grad_mean: mean(g).
        grad_std: std(g) (unbiased, like ``torch.std``).
        grad_max: max |g|.
        act_mean: mean of the activation output u (of the layer output when no activation module follows).
        act_std: std(u) (unbiased).
        dead_frac: ReLU family: fraction of units whose pre-activation is <= 0 on every example.
        saturated_frac: sigmoid/tanh: fraction of outputs with |u| > saturation (sigmoid: |2u - 1|).
        update_ratio: std(W_after - W_before) / std(W_before) of the optimizer step.
        backward_norm: ||dL/dh||_2, the backward signal at the layer's output h (before its activation),
            summed in squares over the layer's calls in the forward pass.
        forward_rms: sqrt(mean(h^2)), the forward signal at the same h (over every call of the layer).
        input_grad_norm: (S, T) ||dL/dx_t|| per time step of the input (``track_inputs=True``), else None.
        recorded: the metrics that were measured (default: all of them).
        activations: per layer, the activation module whose output u is described ("relu", "tanh", ...,
            "rnn" for an RNN's own nonlinearity, "" when none followed: a functional activation such as
            ``F.relu`` is invisible to the monitor, so dead_frac and saturated_frac stay NaN there).
        act_hist: (S, L, B) counts of u in the bins ``act_hist_edges`` (``stats`` with "act_hist").
        grad_hist: (S, L, B) counts of log10 |g| in the bins ``grad_hist_edges`` (g = 0 is not counted).
        act_hist_edges: (B + 1,) bin edges of ``act_hist``.
        grad_hist_edges: (B + 1,) bin edges of ``grad_hist``, in log10 |g|.
    """

    layer_names: list[str]
    steps: np.ndarray
    grad_norm: np.ndarray
    grad_mean: np.ndarray
    grad_std: np.ndarray
    grad_max: np.ndarray
    act_mean: np.ndarray
    act_std: np.ndarray
    dead_frac: np.ndarray
    saturated_frac: np.ndarray
    update_ratio: np.ndarray
    backward_norm: np.ndarray | None = None
    forward_rms: np.ndarray | None = None
    input_grad_norm: np.ndarray | None = None
    recorded: tuple[str, ...] = METRICS
    activations: tuple[str, ...] | None = None
    act_hist: np.ndarray | None = None
    grad_hist: np.ndarray | None = None
    act_hist_edges: np.ndarray | None = field(default=None, repr=False)
    grad_hist_edges: np.ndarray | None = field(default=None, repr=False)

    METRICS: ClassVar[tuple[str, ...]] = METRICS

    def __post_init__(self) -> None:
        self.layer_names = [str(name) for name in self.layer_names]
        self.steps = np.asarray(self.steps, dtype=np.int64).reshape(-1)
        shape = (len(self.steps), len(self.layer_names))
        for metric in METRICS:
            value = getattr(self, metric)
            values = np.full(shape, np.nan) if value is None else np.asarray(value, dtype=np.float64)
            if values.shape != shape:
                raise ValueError(f"{metric} must have shape (steps, layers) = {shape}; got {values.shape}")
            setattr(self, metric, values)
        self.recorded = tuple(check_choice("recorded", m, METRICS + HISTOGRAMS) for m in self.recorded)
        if self.activations is None:
            self.activations = ("",) * len(self.layer_names)
        self.activations = tuple(str(a) for a in self.activations)
        if len(self.activations) != len(self.layer_names):
            raise ValueError(f"activations must name one activation per layer; got {len(self.activations)}")
        if self.input_grad_norm is not None:
            self.input_grad_norm = np.asarray(self.input_grad_norm, dtype=np.float64)
            if self.input_grad_norm.ndim != 2 or len(self.input_grad_norm) != len(self.steps):
                raise ValueError(
                    f"input_grad_norm must have shape (steps, T); got {self.input_grad_norm.shape}"
                )

    def values(self, metric: str) -> np.ndarray:
        """Return the (S, L) array of ``metric``.

        Args:
            metric: one of ``METRICS``, and one the monitor recorded (see ``recorded``).
        """
        check_choice("metric", metric, METRICS)
        if metric not in self.recorded:
            raise ValueError(
                f"{metric} was not recorded (this record has {', '.join(self.recorded)}): ask for it with "
                f"GradientMonitor(..., stats=[...]) or TrainConfig(monitor_stats=[...])"
            )
        return getattr(self, metric)

    def last(self, metric: str) -> np.ndarray:
        """Return ``metric`` at the last recorded step: an (L,) array, input to output.

        Args:
            metric: one of ``METRICS``.
        """
        values = self.values(metric)
        if len(values) == 0:
            raise ValueError("the record is empty: no step was recorded")
        return values[-1].copy()

    def ratio_first_last(self, metric: str = "grad_norm", step: int = -1) -> float:
        """Return metric[layer 1] / metric[last layer] at one recorded step: << 1 vanishing, >> 1 exploding.

        Args:
            metric: one of ``METRICS``.
            step: row index into ``steps`` (negative counts from the end); -1 is the last recorded step.
        """
        values = self.values(metric)
        if len(values) == 0:
            raise ValueError("the record is empty: no step was recorded")
        check_int("step", step, minimum=-len(values), maximum=len(values) - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(values[step, 0] / values[step, -1])

    def to_frame(self) -> Any:
        """Return a long pandas DataFrame: one row per (step, layer) with columns step, layer,
        layer_index (1 = first layer) and one column per recorded metric. ``input_grad_norm`` and the
        histograms are not included."""
        try:
            import pandas as pd
        except ImportError as error:  # pragma: no cover - pandas is a dependency of the course
            raise ImportError("MonitorRecord.to_frame() needs pandas: pip install pandas") from error
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
    """The metrics and histograms to record, in ``METRICS + HISTOGRAMS`` order."""
    if stats == "default":
        return DEFAULT_STATS
    if stats == "all":
        return METRICS
    if isinstance(stats, str) or not isinstance(stats, Iterable):
        raise TypeError(
            f"stats must be 'default', 'all' or a sequence of names from {METRICS + HISTOGRAMS}; "
            f"got {stats!r}"
        )
    names = {check_choice("stats", name, METRICS + HISTOGRAMS) for name in stats}
    return tuple(m for m in METRICS + HISTOGRAMS if m in names)


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
    """std = sqrt((sum x^2 - (sum x)^2 / n) / (n - 1)) from the sum of squares, the sum and the count
    (n >= 1); NaN for n = 1, like ``torch.std``."""
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

    norm: Tensor  # ||u||_2
    numel: int
    unit_sum: Tensor | None  # sum of u per unit
    dead: Tensor | None  # per unit: <= 0 exactly when the unit's pre-activation is <= 0 on every example
    saturated: Tensor | None  # fraction of saturated outputs
    hist: Tensor | None  # counts of u in the histogram bins


def _copy_norm_sum(
    buffers: list[Tensor], weights: list[Tensor], *, subtract: bool = False
) -> tuple[Tensor, Tensor]:
    """buffer <- weight (or buffer <- buffer - weight), then (||buffer||_2, sum(buffer)) of each buffer.

    On a GPU the work is batched (``torch._foreach_*``: a few kernel launches for all layers); on the CPU,
    where launches are cheap and memory traffic is the cost, one layer at a time, so each buffer is reduced
    while it is still in the cache (about 25 % less time than the batched order for a 20-layer MLP)."""
    if buffers and buffers[0].device.type != "cpu":
        (torch._foreach_sub_ if subtract else torch._foreach_copy_)(buffers, weights)
        return torch.stack(torch._foreach_norm(buffers)), torch.stack([b.sum() for b in buffers])
    norms, sums = [], []
    for buffer, weight in zip(buffers, weights, strict=True):
        buffer.sub_(weight) if subtract else buffer.copy_(weight)
        norms.append(torch.linalg.vector_norm(buffer))
        sums.append(buffer.sum())
    return torch.stack(norms), torch.stack(sums)


class _Pending:
    """One recorded step's statistics, still on the device: named pieces fetched with one copy."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.pieces: dict[str, Tensor] = {}
        self.info: dict[str, Any] = {}

    def add(self, *items: Any) -> None:
        """add(name, value) or add(name_1, name_2, value_1, value_2)."""
        half = len(items) // 2
        for name, value in zip(items[:half], items[half:], strict=True):
            self._add(name, value)

    def _add(self, name: str, value: Tensor | list[Tensor]) -> None:
        if isinstance(value, list):
            if not value:
                return
            value = torch.cat([v.reshape(-1) for v in value]) if len(value) > 1 else value[0].reshape(-1)
        self.pieces[name] = value.reshape(-1)

    def fetch(self) -> dict[str, np.ndarray]:
        """Every piece as a float64 NumPy array, through one concatenation and one device-to-host copy."""
        if not self.pieces:
            return {}
        values = list(self.pieces.values())
        dtype = functools.reduce(torch.promote_types, (v.dtype for v in values))
        values = [v if v.dtype == dtype else v.to(dtype) for v in values]
        flat = (values[0] if len(values) == 1 else torch.cat(values)).cpu().double().numpy()
        out, start = {}, 0
        for name, value in zip(self.pieces, values, strict=True):
            out[name] = flat[start : start + value.numel()]
            start += value.numel()
        return out


class GradientMonitor:
    """Record per-layer statistics of the forward signal, the backward signal, the weight gradients and the
    updates while a model trains.

    Attach it to the optimizer and train as usual; the optimizer's step hooks do the recording, and every
    hook is removed on exit (also after an exception)::

        with GradientMonitor(model, optimizer, every=10) as mon:
            for x, y in batches:
                optimizer.zero_grad()
                loss_fn(model(x), y).backward()
                optimizer.step()
        record = mon.record()

    The k-th ``optimizer.step()`` inside the block is step k (0, 1, ...); a step is recorded when
    ``step % every == 0``. Gradients are read in the optimizer's step pre-hook, so they are the ones the
    optimizer uses (after any clipping done before ``optimizer.step()``; a clipping step pre-hook
    registered after the monitor runs after it, so the monitor then sees the gradient before clipping).
    Without an optimizer, call ``step(step)`` after ``loss.backward()`` and ``after_update()`` after
    ``optimizer.step()``.

    What is recorded per layer (``stats``): by default the cheap set ``DEFAULT_STATS`` = ``grad_norm``
    (||dL/dW||), ``backward_norm`` (||dL/dh|| at the layer's output h, by a tensor hook), ``forward_rms``
    (of h) and ``update_ratio``: a few norms per step, batched, fetched with one host sync.
    ``stats="all"`` adds the gradient's mean, std and max |g|, the activation's mean and std, dead and
    saturated fractions; names from ``HISTOGRAMS`` add histograms. See ``MonitorRecord`` for the
    definitions.

    An activation module (ReLU family, Sigmoid, Tanh) reports to the last layer that ran before it in the
    same forward pass, so conv -> bn -> relu reports to the conv; a layer that no activation module follows
    reports its own output (``MonitorRecord.activations`` says which). A functional activation such as
    ``F.relu`` is invisible to hooks, so dead and saturated fractions need activation modules; the monitor
    warns when they were asked for by name and it saw none. A unit is a channel (dim 1) of a conv output,
    else the last dim. Forward statistics come from the last forward pass with gradients enabled before a
    recorded step.

    Args:
        model: the network.
        optimizer: the optimizer whose steps drive the recording; None to call ``step``/``after_update``.
        layers: (name, module) pairs to watch, input to output; default ``vgcourse.models.named_layers``.
        every: record every this many steps.
        stats: "default" (``DEFAULT_STATS``), "all" (``METRICS``), or a sequence of names from
            ``METRICS`` and ``HISTOGRAMS``.
        saturation: threshold in (0, 1) for "saturated" sigmoid/tanh outputs.
        track_inputs: make the model's first input require grad and record ||dL/dx_t|| per time step
            (dim 1 of a batch-first (N, T, F) input; one value for a 2-D input).
        bins: number of histogram bins.
        act_range: (low, high) of the activation histogram; values outside are not counted.
        grad_range: (low, high) of the gradient histogram, in log10 |g|.
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
        self.model = model
        self.optimizer = optimizer
        self.layers = _check_layers(layers)
        self.layer_names = [name for name, _ in self.layers]
        self.every = check_int("every", every, minimum=1)
        self.stats = _check_stats(stats)
        self._explicit = not isinstance(stats, str)  # asked for by name: warn when it cannot be measured
        self.saturation = check_float("saturation", saturation, minimum=0.0, strict_minimum=True)
        if self.saturation >= 1.0:
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
        self._channels_first = [isinstance(m, nn.modules.conv._ConvNd) for _, m in self.layers]
        self._handles: list[RemovableHandle] = []  # model and optimizer hooks, while the monitor is open
        self._layer_handles: list[RemovableHandle] = []
        # What has been recorded: one (len(METRICS), L) array per recorded step.
        self._steps: list[int] = []
        self._rows: list[np.ndarray] = []
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
        self._back: dict[int, list[Tensor]] = {}  # ||dL/dh|| per call of each layer
        self._forward: dict[int, list[Tensor]] = {}  # ||h|| per call of each layer
        self._forward_numel: dict[int, int] = {}
        self._input: Tensor | None = None
        self._pending: _Pending | None = None  # the recorded step whose update is still to come
        self._updated: list[int] = []  # tensors whose weights were copied before the update
        self._buffers: dict[int, Tensor] = {}  # weights before the update, reused from step to step

    # -- hooks -------------------------------------------------------------------------------------------

    def __enter__(self) -> GradientMonitor:
        if not self._handles:
            self._handles = [
                self.model.register_forward_pre_hook(self._model_pre_hook),
                self.model.register_forward_hook(self._model_hook),
            ]
            if self.optimizer is not None:
                self._handles += [
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
        self._handles = []
        self._pending_out = None
        self._input = None

    def _watch_layers(self, on: bool) -> None:
        """Attach (on) or remove the layer and activation hooks. They are needed only in the forward pass
        before a recorded step, so with ``every > 1`` the other steps run without them."""
        if not on:
            for handle in self._layer_handles:
                handle.remove()
            self._layer_handles = []
        elif not self._layer_handles and self._handles:
            if self._want_act or self._want_back or self._want_forward:
                for i, (_, module) in enumerate(self.layers):
                    hook = functools.partial(self._layer_hook, i)
                    self._layer_handles.append(module.register_forward_hook(hook))
            if self._want_act:
                for module in self.model.modules():
                    kind = _KIND_OF_ACTIVATION.get(type(module))
                    if kind is not None:
                        hook = functools.partial(self._activation_hook, kind)
                        self._layer_handles.append(module.register_forward_hook(hook))
            if self.track_inputs and not self._layer_handles:  # the model hooks still need _collect
                self._layer_handles.append(self.model.register_forward_hook(lambda *args: None))

    def _model_pre_hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        self._collect = bool(self._layer_handles) and torch.is_grad_enabled()
        if not self._collect:
            return None
        self._take()
        self._current, self._pending_out = None, None
        if self.track_inputs and args and isinstance(args[0], Tensor) and args[0].is_floating_point():
            self._input = args[0].detach().requires_grad_(True)
            return (self._input, *args[1:])
        return None

    def _model_hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self._flush()

    def _layer_hook(self, index: int, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not self._collect:
            return
        self._flush()
        self._current = index
        out = output[0] if isinstance(output, tuple) else output  # RNNs return (output, h_n)
        if not isinstance(out, Tensor):
            return
        if self._want_forward:
            self._forward.setdefault(index, []).append(torch.linalg.vector_norm(out.detach()))
            self._forward_numel[index] = self._forward_numel.get(index, 0) + out.numel()
        if self._want_back and out.requires_grad:
            out.register_hook(functools.partial(self._grad_hook, index))
        if not self._want_act:
            return
        if isinstance(module, nn.RNN):  # h_t = tanh(...) or relu(...): the layer is its own activation
            self._act[index] = self._activation_stats(index, out.detach(), out.detach(), module.nonlinearity)
        else:
            self._pending_out = (index, out)

    def _grad_hook(self, index: int, grad: Tensor) -> None:
        self._back.setdefault(index, []).append(torch.linalg.vector_norm(grad.detach()))

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
        return _Act(torch.linalg.vector_norm(out), out.numel(), unit_sum, dead, saturated, hist)

    def _optimizer_pre_hook(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._flush()
        if self._count % self.every == 0:
            self._begin(self._count)
        else:
            self._take()

    def _optimizer_post_hook(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._finish(update=True)
        self._count += 1
        self._watch_layers(self._count % self.every == 0)

    def skipped_step(self) -> None:
        """Record the current step although the optimizer will not take it (a loop that stops at a
        non-finite loss, or skips the update): its gradient and signal statistics, update ratio NaN. For a
        monitor with an optimizer; the step count goes on as if the step had run."""
        if self.optimizer is None:
            raise RuntimeError("skipped_step() is for a monitor with an optimizer; call step(step) instead")
        self._optimizer_pre_hook(self.optimizer, (), {})
        self._finish(update=False)
        self._count += 1
        self._watch_layers(self._count % self.every == 0)

    # -- recording ---------------------------------------------------------------------------------------

    def step(self, step: int) -> None:
        """Record this step's statistics if ``step % every == 0``; call it after ``loss.backward()``
        (only for a monitor without an optimizer; with one, the optimizer's step hooks do this).

        Args:
            step: the training step number (0, 1, 2, ...).
        """
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
        """Record update_ratio = std(W_after - W_before) / std(W_before) per layer for the recorded step;
        call it after ``optimizer.step()`` (only without an optimizer). Does nothing when the last step was
        not recorded."""
        if self.optimizer is not None:
            raise RuntimeError(
                "this monitor records through its optimizer's step hooks: do not call after_update()"
            )
        self._finish(update=True)

    def _begin(self, step: int) -> None:
        """Start recording ``step``: reduce the gradients, copy the weights; nothing leaves the device."""
        act, back, forward, forward_numel, x = self._take()
        pending = self._pending = _Pending(step)
        want = self.stats
        with torch.no_grad():
            have = [k for k, p in enumerate(self._tensors) if p.grad is not None]
            grads = [self._tensors[k].grad for k in have]
            pending.info["grads"] = have
            if grads and (self._want_grad or "grad_norm" in want):
                pending.add("g_norm", torch.stack(torch._foreach_norm(grads)))
            if grads and self._want_grad:
                pending.add("g_sum", torch.stack([g.sum() for g in grads]))
                pending.add("g_min", torch.stack([g.amin() for g in grads]))
                pending.add("g_max", torch.stack([g.amax() for g in grads]))
            if grads and "grad_hist" in want:
                low, high = self._ranges["grad_range"]
                hists = [
                    torch.histc(g.abs().log10().float(), bins=self.bins, min=low, max=high) for g in grads
                ]
                pending.add("g_hist", hists)
            self._updated = []
            if grads and "update_ratio" in want:
                weights = [self._tensors[k].detach() for k in have]
                buffers = [self._buffer(k, w) for k, w in zip(have, weights, strict=True)]
                pending.add("w_norm", "w_sum", *_copy_norm_sum(buffers, weights))
                self._updated = have
            layers = sorted(act)
            pending.info["act"] = layers
            pending.info["numel"] = [act[i].numel for i in layers]
            pending.add("a_norm", [act[i].norm for i in layers])
            if self._want_units:
                pending.add("a_units", [act[i].unit_sum for i in layers])
                pending.info["a_units"] = [act[i].unit_sum.numel() for i in layers]
            dead = [i for i in layers if act[i].dead is not None]
            saturated = [i for i in layers if act[i].saturated is not None]
            pending.info["dead"], pending.info["saturated"] = dead, saturated
            pending.add("a_dead", [act[i].dead for i in dead])
            pending.info["a_dead"] = [act[i].dead.numel() for i in dead]
            pending.add("a_saturated", [act[i].saturated for i in saturated])
            pending.add("a_hist", [act[i].hist for i in layers if act[i].hist is not None])
            pending.info["forward"] = [i for i in sorted(forward) for _ in forward[i]]
            pending.info["forward_numel"] = forward_numel
            pending.add("f_norm", [n for i in sorted(forward) for n in forward[i]])
            back_layers = [i for i in sorted(back) for _ in back[i]]
            pending.info["back"] = back_layers
            pending.add("b_norm", [n for i in sorted(back) for n in back[i]])
            if x is not None and x.grad is not None:  # ||dL/dx_t||: reduce over all dims but time (dim 1)
                dims = [d for d in range(x.ndim) if d != 1]
                pending.add("x_grad", x.grad.norm(dim=dims) if x.ndim >= 3 else x.grad.norm().reshape(1))

    def _take(self) -> tuple[dict, dict, dict, dict, Tensor | None]:
        """Hand over (and forget) what the last forward and backward pass collected."""
        taken = (self._act, self._back, self._forward, self._forward_numel, self._input)
        self._act, self._back, self._forward, self._forward_numel, self._input = {}, {}, {}, {}, None
        return taken

    def _buffer(self, k: int, weight: Tensor) -> Tensor:
        """Tensor k's buffer for its weights before the update, reused from step to step."""
        buffer = self._buffers.get(k)
        if (
            buffer is None
            or buffer.shape != weight.shape
            or buffer.dtype != weight.dtype
            or buffer.device != weight.device
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
                pending.add("d_norm", "d_sum", *_copy_norm_sum(buffers, weights, subtract=True))
        with np.errstate(all="ignore"):  # inf/NaN gradients give NaN statistics, silently
            self._decode(pending, pending.fetch())
        if self._explicit and not self._warned and {"dead_frac", "saturated_frac"} & set(self.stats):
            if pending.info["act"] and not any(self._kinds):
                self._warned = True
                warnings.warn(
                    "GradientMonitor saw no activation module (nn.ReLU, nn.Tanh, nn.Sigmoid, ...) after the "
                    "monitored layers: dead_frac and saturated_frac stay NaN. Functional activations "
                    "(F.relu, torch.tanh) are invisible to forward hooks; use activation modules.",
                    stacklevel=3,
                )

    def _decode(self, pending: _Pending, got: dict[str, np.ndarray]) -> None:
        """Turn the fetched pieces into the step's (len(METRICS), L) row and histograms."""
        n_layers = len(self.layers)
        row = np.full((len(METRICS), n_layers), np.nan)
        info = pending.info
        have = np.array(info["grads"], dtype=np.int64)
        owner = self._owner[have]
        if len(owner) == n_layers and np.array_equal(owner, np.arange(n_layers)):  # one tensor per layer
            layers = owner

            def per_layer(values: np.ndarray, ufunc: Any = np.add) -> np.ndarray:
                return values

        else:
            layers = np.unique(owner)

            def per_layer(values: np.ndarray, ufunc: Any = np.add) -> np.ndarray:
                return _per_layer(values, owner, n_layers, ufunc)[layers]

        count = per_layer(self._numel[have])
        if "g_norm" in got:
            sum_sq = per_layer(got["g_norm"] ** 2)
            if "grad_norm" in self.stats:
                row[_ROW["grad_norm"], layers] = np.sqrt(sum_sq)
        if "g_sum" in got:
            total = per_layer(got["g_sum"])
            for name, value in (
                ("grad_mean", total / count),
                ("grad_std", _unbiased_std(sum_sq, total, count)),
                (
                    "grad_max",
                    np.maximum(-per_layer(got["g_min"], np.minimum), per_layer(got["g_max"], np.maximum)),
                ),
            ):
                if name in self.stats:
                    row[_ROW[name], layers] = value
        if "d_norm" in got:
            w_std = _unbiased_std(per_layer(got["w_norm"] ** 2), per_layer(got["w_sum"]), count)
            d_std = _unbiased_std(per_layer(got["d_norm"] ** 2), per_layer(got["d_sum"]), count)
            row[_ROW["update_ratio"], layers] = d_std / w_std
        act = info["act"]
        if act:
            n = np.array(info["numel"], dtype=np.float64)
            norm = got["a_norm"]
            if self._want_units:
                ends = np.cumsum(info["a_units"])
                total = np.add.reduceat(got["a_units"], ends - info["a_units"], dtype=np.float64)
                if "act_mean" in self.stats:
                    row[_ROW["act_mean"], act] = total / n
                if "act_std" in self.stats:
                    row[_ROW["act_std"], act] = _unbiased_std(norm**2, total, n)
            if info["dead"]:
                sizes = np.array(info["a_dead"])
                dead = np.add.reduceat(got["a_dead"] <= 0, np.cumsum(sizes) - sizes, dtype=np.float64)
                row[_ROW["dead_frac"], info["dead"]] = dead / sizes
            if info["saturated"]:
                row[_ROW["saturated_frac"], info["saturated"]] = got["a_saturated"]
        if info["forward"]:
            seen = sorted(info["forward_numel"])
            sum_sq = _per_layer(got["f_norm"] ** 2, np.array(info["forward"]), n_layers)[seen]
            numel = np.array([info["forward_numel"][i] for i in seen], dtype=np.float64)
            row[_ROW["forward_rms"], seen] = np.sqrt(sum_sq / numel)
        if info["back"]:
            owner = np.array(info["back"])
            seen = np.bincount(owner, minlength=n_layers) > 0
            row[_ROW["backward_norm"], seen] = np.sqrt(_per_layer(got["b_norm"] ** 2, owner, n_layers))[seen]
        for name, key, where in (("act_hist", "a_hist", act), ("grad_hist", "g_hist", None)):
            if name not in self.stats:
                continue
            counts = np.zeros((n_layers, self.bins))
            if key in got:
                values = got[key].reshape(-1, self.bins)
                if where is None:
                    np.add.at(counts, owner, values)
                else:
                    counts[[i for i in where]] = values
            self._hists[name].append(counts)
        if self.track_inputs:
            self._input_norms.append(got.get("x_grad", np.empty(0)))
        self._rows.append(row)
        self._steps.append(pending.step)

    def record(self) -> MonitorRecord:
        """Return everything recorded so far as a ``MonitorRecord`` (a copy; recording can go on). A step
        whose update has not come yet is completed without its update ratio."""
        self._finish(update=False)
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
            recorded=tuple(m for m in self.stats),
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
    """One forward and backward pass on a batch; return its one-step ``MonitorRecord`` (update_ratio NaN).

    The model's gradients are reset first and left in ``.grad`` afterwards; the weights do not change.

    Args:
        model: the network (its train/eval mode is kept).
        x: the input batch.
        y: the targets, passed to ``loss_fn``.
        loss_fn: ``loss_fn(model(x), y)`` returns a scalar loss tensor, e.g. ``nn.CrossEntropyLoss()``.
        layers: (name, module) pairs to watch; default ``vgcourse.models.named_layers(model)``.
        stats: what to record, as ``GradientMonitor``'s ``stats``; a single pass is cheap, so "all".
        saturation: threshold in (0, 1) for saturated sigmoid/tanh outputs.
        track_inputs: also record ||dL/dx_t|| per time step of ``x`` (see ``GradientMonitor``).
    """
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
