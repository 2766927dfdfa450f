"""Per-layer gradient and activation statistics recorded during training, through forward hooks.

``GradientMonitor`` watches each layer of a model. After ``loss.backward()``, ``step(step)`` records the
gradient of every layer's weight (norm, mean, std, max |g|) and what its activation did in the last
forward pass (mean, std, dead ReLU units, saturated sigmoid/tanh outputs); after ``optimizer.step()``,
``after_update()`` records how much the weights moved. ``record()`` returns it all as NumPy arrays.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from vgcourse._validation import check_choice, check_float, check_int, check_tensor

__all__ = ["METRICS", "GradientMonitor", "MonitorRecord", "layer_weights", "snapshot"]

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
)
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
    "not measured": a frozen or unused layer, an activation without that statistic, no update yet.

    Args:
        layer_names: the L layer names, input to output.
        steps: (S,) the recorded step numbers.
        grad_norm: ||g||_2 of the layer's weight gradient g.
        grad_mean: mean(g).
        grad_std: std(g) (unbiased, like ``torch.std``).
        grad_max: max |g|.
        act_mean: mean of the activation output u (of the layer output when no activation follows it).
        act_std: std(u) (unbiased).
        dead_frac: ReLU family: fraction of units whose pre-activation is <= 0 on every example.
        saturated_frac: sigmoid/tanh: fraction of outputs with |u| > saturation (sigmoid: |2u - 1|).
        update_ratio: std(W_after - W_before) / std(W_before) of the optimizer step.
        input_grad_norm: (S, T) ||dL/dx_t|| per time step of the input (``track_inputs=True``), else None.
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
    input_grad_norm: np.ndarray | None = None

    METRICS: ClassVar[tuple[str, ...]] = METRICS

    def __post_init__(self) -> None:
        self.layer_names = [str(name) for name in self.layer_names]
        self.steps = np.asarray(self.steps, dtype=np.int64).reshape(-1)
        shape = (len(self.steps), len(self.layer_names))
        for metric in METRICS:
            values = np.asarray(getattr(self, metric), dtype=np.float64)
            if values.shape != shape:
                raise ValueError(f"{metric} must have shape (steps, layers) = {shape}; got {values.shape}")
            setattr(self, metric, values)
        if self.input_grad_norm is not None:
            self.input_grad_norm = np.asarray(self.input_grad_norm, dtype=np.float64)
            if self.input_grad_norm.ndim != 2 or len(self.input_grad_norm) != len(self.steps):
                raise ValueError(
                    f"input_grad_norm must have shape (steps, T); got {self.input_grad_norm.shape}"
                )

    def values(self, metric: str) -> np.ndarray:
        """Return the (S, L) array of ``metric``.

        Args:
            metric: one of ``METRICS``.
        """
        return getattr(self, check_choice("metric", metric, METRICS))

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
        layer_index (1 = first layer) and one column per metric. ``input_grad_norm`` is not included."""
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
        columns.update({metric: getattr(self, metric).reshape(-1) for metric in METRICS})
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


def _flat(tensors: list[Tensor]) -> Tensor:
    """All values in one tensor: the tensor itself when there is one, else the flattened concatenation."""
    return tensors[0] if len(tensors) == 1 else torch.cat([t.reshape(-1) for t in tensors])


def _unbiased_std(sum_sq: np.ndarray, total: np.ndarray, n: np.ndarray) -> np.ndarray:
    """std = sqrt((sum x^2 - (sum x)^2 / n) / (n - 1)) from the sum of squares, the sum and the count
    (n >= 1); NaN for n = 1, like ``torch.std``."""
    var = np.divide(sum_sq - total**2 / n, n - 1, out=np.full(np.shape(n), np.nan), where=n > 1)
    return np.sqrt(np.maximum(var, 0.0))


def _segment_sums(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """sum(values[starts[k] : ends[k]]) for consecutive, non-empty segments k."""
    if len(starts) == 0:
        return np.empty(0)
    return np.add.reduceat(values[: ends[-1]], starts, dtype=np.float64)


class _Act(NamedTuple):
    """What one activation did in a forward pass (tensors stay on the device until ``step``)."""

    unit_sum: Tensor  # sum of the output u per unit
    norm: Tensor  # ||u||_2
    numel: int
    dead: Tensor | None  # per unit: <= 0 exactly when the unit's pre-activation is <= 0 on every example
    saturated: Tensor | None  # fraction of saturated outputs


def _fetch(scalars: list[Tensor], vectors: list[Tensor]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bring small tensors to the CPU with one copy (the step's only host sync): return the scalars
    (float64), all vectors concatenated (float64) and each vector's start in it."""
    pieces = ([torch.stack(scalars)] if scalars else []) + vectors
    if not pieces:
        return np.empty(0), np.empty(0), np.empty(0, dtype=np.int64)
    flat = (pieces[0] if len(pieces) == 1 else torch.cat(pieces)).cpu().double().numpy()
    starts = np.zeros(len(vectors), dtype=np.int64)
    if len(vectors) > 1:
        np.cumsum([v.numel() for v in vectors[:-1]], out=starts[1:])
    return flat[: len(scalars)], flat[len(scalars) :], starts


class GradientMonitor:
    """Record per-layer gradient, activation and update statistics while a model trains.

    Use it as a context manager (the hooks are removed on exit, also after an exception)::

        with GradientMonitor(model) as mon:
            for step in range(n):
                optimizer.zero_grad()
                loss_fn(model(x), y).backward()
                mon.step(step)
                optimizer.step()
                mon.after_update()
        record = mon.record()

    An activation module (ReLU family, Sigmoid, Tanh) reports to the last layer that ran before it in
    the same forward pass, so conv -> bn -> relu reports to the conv; a layer that no activation follows
    reports its own output. A unit is a channel (dim 1) of a conv output, else the last dim, so (N, T, H)
    sequences reduce over N and T. Activation statistics come from the forward pass (with gradients
    enabled) before a recorded step; step numbers are assumed to go up by one.

    Args:
        model: the network.
        layers: (name, module) pairs to watch, input to output; default ``vgcourse.models.named_layers``.
        every: record every this many steps (when ``step % every == 0``).
        saturation: threshold in (0, 1) for "saturated" sigmoid/tanh outputs.
        track_inputs: make the model's first input require grad and record ||dL/dx_t|| per time step
            (dim 1 of a batch-first (N, T, F) input; one value for a 2-D input).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[tuple[str, nn.Module]] | None = None,
        every: int = 1,
        saturation: float = 0.99,
        track_inputs: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
        if layers is None:
            from vgcourse.models import named_layers

            layers = named_layers(model)
        self.model = model
        self.layers = _check_layers(layers)
        self.layer_names = [name for name, _ in self.layers]
        self.every = check_int("every", every, minimum=1)
        self.saturation = check_float("saturation", saturation, minimum=0.0, strict_minimum=True)
        if self.saturation >= 1.0:
            raise ValueError(f"saturation must be in (0, 1); got {saturation!r}")
        if not isinstance(track_inputs, bool):
            raise TypeError(f"track_inputs must be a bool; got {type(track_inputs).__name__}")
        self.track_inputs = track_inputs

        self._params = [layer_weights(module) for _, module in self.layers]
        self._channels_first = [isinstance(m, nn.modules.conv._ConvNd) for _, m in self.layers]
        self._model_handles: list[RemovableHandle] = []
        self._layer_handles: list[RemovableHandle] = []
        # What has been recorded: one (len(METRICS), L) array per recorded step.
        self._steps: list[int] = []
        self._rows: list[np.ndarray] = []
        self._input_norms: list[np.ndarray] = []
        # State of the current forward pass and step.
        self._last_step = -1
        self._collect = False  # gather activation statistics in this forward pass?
        self._current: int | None = None  # index of the last layer that ran
        self._pending: tuple[int, Tensor] | None = None  # a layer output waiting for its activation
        self._act: dict[int, _Act] = {}
        self._input: Tensor | None = None
        self._before: dict[int, tuple[list[nn.Parameter], Tensor]] = {}  # weights before the update
        self._std_before = np.empty(0)
        self._scratch: dict[tuple[Any, ...], Tensor] = {}  # W_before - W_after, one per shape
        self._awaiting_update = False

    # -- hooks -------------------------------------------------------------------------------------------

    def __enter__(self) -> GradientMonitor:
        if not self._model_handles:
            self._model_handles = [
                self.model.register_forward_pre_hook(self._model_pre_hook),
                self.model.register_forward_hook(self._model_hook),
            ]
            self._watch_layers((self._last_step + 1) % self.every == 0)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove every hook (safe to call twice); what was recorded stays available."""
        self._watch_layers(False)
        for handle in self._model_handles:
            handle.remove()
        self._model_handles = []
        self._pending = None
        self._input = None

    def _watch_layers(self, on: bool) -> None:
        """Attach (on) or remove the layer and activation hooks. They are needed only in the forward pass
        before a recorded step, so with ``every > 1`` the other steps run without them."""
        if not on:
            for handle in self._layer_handles:
                handle.remove()
            self._layer_handles = []
        elif not self._layer_handles and self._model_handles:
            for i, (_, module) in enumerate(self.layers):
                hook = functools.partial(self._layer_hook, i)
                self._layer_handles.append(module.register_forward_hook(hook))
            for module in self.model.modules():
                kind = _KIND_OF_ACTIVATION.get(type(module))
                if kind is not None:
                    hook = functools.partial(self._activation_hook, kind)
                    self._layer_handles.append(module.register_forward_hook(hook))

    def _model_pre_hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        self._collect = bool(self._layer_handles) and torch.is_grad_enabled()
        if not self._collect:
            return None
        self._act, self._current, self._pending = {}, None, None
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
        if isinstance(module, nn.RNN):  # h_t = tanh(...) or relu(...): the layer is its own activation
            self._act[index] = self._activation_stats(index, out.detach(), out.detach(), module.nonlinearity)
        else:
            self._pending = (index, out)

    def _activation_hook(self, kind: str, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not self._collect or self._current is None or not isinstance(output, Tensor):
            return
        self._pending = None
        pre = args[0] if args and isinstance(args[0], Tensor) else output  # in-place: input is output
        self._act[self._current] = self._activation_stats(self._current, output.detach(), pre.detach(), kind)

    def _flush(self) -> None:
        """Give a layer output that no activation followed its own statistics."""
        if self._pending is not None:
            index, out = self._pending
            self._pending = None
            self._act[index] = self._activation_stats(index, out.detach(), out.detach(), None)

    def _activation_stats(self, index: int, out: Tensor, pre: Tensor, kind: str | None) -> _Act:
        if out.ndim < 2:
            out, pre = out.reshape(1, -1), pre.reshape(1, -1)
        keep = 1 if self._channels_first[index] else out.ndim - 1
        unit_sum = out.sum(dim=tuple(d for d in range(out.ndim) if d != keep))
        dead = saturated = None
        if kind == "relu":  # u = relu(x) >= 0, so a unit's sum is 0 exactly when x <= 0 on every example
            dead = unit_sum
        elif kind == "relu_family":  # sign(f(x)) = sign(x): leaky_relu, elu, gelu, silu
            dead = pre.amax(dim=tuple(d for d in range(pre.ndim) if d != keep))
        elif kind == "tanh":
            saturated = torch.mean(out.abs() > self.saturation, dtype=torch.float32)
        elif kind == "sigmoid":  # |2u - 1| > s
            saturated = torch.mean((out - 0.5).abs() > self.saturation / 2, dtype=torch.float32)
        return _Act(unit_sum, torch.linalg.vector_norm(out), out.numel(), dead, saturated)

    # -- recording ---------------------------------------------------------------------------------------

    def step(self, step: int) -> None:
        """Record this step's statistics if ``step % every == 0``; call it after ``loss.backward()``.

        For each layer's weight gradient g (RNN: all weight_* concatenated): ||g||_2, mean(g), std(g),
        max |g|; the activation statistics of the last forward pass; and a copy of the weights for
        ``after_update``. Layers whose gradients are all None get NaN.

        Args:
            step: the training step number (0, 1, 2, ...).
        """
        check_int("step", step, minimum=0)
        self._flush()
        self._last_step = step
        self._watch_layers((step + 1) % self.every == 0)
        self._awaiting_update = False
        act, self._act = self._act, {}
        x, self._input = self._input, None
        if step % self.every != 0:
            return

        with torch.no_grad(), np.errstate(all="ignore"):  # inf/NaN gradients give NaN statistics, silently
            self._rows.append(self._statistics(act, x))
        self._steps.append(step)
        self._awaiting_update = True

    def _statistics(self, act: dict[int, _Act], x: Tensor | None) -> np.ndarray:
        """One (len(METRICS), L) row: gradient and activation statistics; also snapshots the weights.

        Every reduction stays on the model's device; one stacked copy brings them all to the host."""
        vector_norm = torch.linalg.vector_norm
        scalars: list[Tensor] = []
        before: dict[int, tuple[list[nn.Parameter], Tensor]] = {}
        grad_layers, n_grad, n_weight = [], [], []
        for i, params in enumerate(self._params):
            if len(params) == 1:  # the common case: one weight, statistics of its own tensors
                if params[0].grad is None:
                    continue
                g, weight = params[0].grad, params[0].data
            else:
                params = [p for p in params if p.grad is not None]
                if not params:
                    continue
                g, weight = _flat([p.grad for p in params]), _flat([p.data for p in params])
            # max |g| = max(-min g, max g); amin and amax are exact and cheaper than aminmax
            scalars += (g.sum(), vector_norm(g), g.amin(), g.amax())
            buffer = self._buffer(i, weight).copy_(weight)  # while g and W are in the cache
            before[i] = (params, buffer)
            scalars += (buffer.sum(), vector_norm(buffer))
            grad_layers.append(i)
            n_grad.append(g.numel())
            n_weight.append(buffer.numel())
        self._before = before
        act_layers = list(act)
        sat_layers = [i for i in act_layers if act[i].saturated is not None]
        dead_layers = [i for i in act_layers if act[i].dead is not None]
        scalars += [act[i].norm for i in act_layers]
        scalars += [act[i].saturated for i in sat_layers]
        vectors = [act[i].unit_sum for i in act_layers] + [act[i].dead for i in dead_layers]
        if x is not None and x.grad is not None:  # ||dL/dx_t||: reduce over all dims but time (dim 1)
            dims = [d for d in range(x.ndim) if d != 1]
            vectors.append(x.grad.norm(dim=dims) if x.ndim >= 3 else x.grad.norm().reshape(1))

        scalars_np, flat, starts = _fetch(scalars, vectors)
        row = np.full((len(METRICS), len(self.layers)), np.nan)
        n = np.array(n_grad, dtype=np.float64)
        total, norm, low, high, total_w, norm_w = scalars_np[: 6 * len(n)].reshape(-1, 6).T
        row[_ROW["grad_norm"], grad_layers] = norm
        row[_ROW["grad_mean"], grad_layers] = total / n
        row[_ROW["grad_std"], grad_layers] = _unbiased_std(norm**2, total, n)
        row[_ROW["grad_max"], grad_layers] = np.maximum(-low, high)
        self._std_before = _unbiased_std(norm_w**2, total_w, np.array(n_weight, dtype=np.float64))

        n_act, n_dead = len(act_layers), len(dead_layers)
        act_norm, saturated = np.split(scalars_np[6 * len(n) :], [n_act])
        ends = np.append(starts[1:], len(flat))
        total = _segment_sums(flat, starts[:n_act], ends[:n_act])
        n = np.array([act[i].numel for i in act_layers], dtype=np.float64)
        row[_ROW["act_mean"], act_layers] = total / n
        row[_ROW["act_std"], act_layers] = _unbiased_std(act_norm**2, total, n)
        row[_ROW["saturated_frac"], sat_layers] = saturated
        dead = slice(n_act, n_act + n_dead)
        n_dead_units = _segment_sums(flat <= 0, starts[dead], ends[dead])
        row[_ROW["dead_frac"], dead_layers] = n_dead_units / (ends[dead] - starts[dead])
        if self.track_inputs:
            has_input = len(starts) > n_act + n_dead
            self._input_norms.append(flat[starts[-1] :] if has_input else np.empty(0))
        return row

    def _buffer(self, index: int, weight: Tensor) -> Tensor:
        """The layer's buffer for its weights before the update, reused from step to step."""
        held = self._before.get(index)
        if held is not None:
            buffer = held[1]
            if (
                buffer.shape == weight.shape
                and buffer.dtype == weight.dtype
                and buffer.device == weight.device
            ):
                return buffer
        return torch.empty_like(weight)

    def after_update(self) -> None:
        """Record update_ratio = std(W_after - W_before) / std(W_before) per layer for the recorded step.

        Call it after ``optimizer.step()``; it does nothing when the last step was not recorded.
        """
        if not self._awaiting_update or not self._before:
            return
        self._awaiting_update = False
        vector_norm = torch.linalg.vector_norm
        scalars: list[Tensor] = []
        layers = list(self._before)
        for params, buffer in self._before.values():
            after = params[0].data if len(params) == 1 else _flat([p.data for p in params])
            key = (buffer.shape, buffer.dtype, buffer.device)
            delta = self._scratch.get(key)  # one per shape: it stays in the cache from layer to layer
            if delta is None:
                delta = self._scratch[key] = torch.empty_like(buffer)
            torch.sub(buffer, after, out=delta)  # W_before - W_after
            scalars += (delta.sum(), vector_norm(delta))
        values, _, _ = _fetch(scalars, [])
        total, norm = values.reshape(-1, 2).T
        n = np.array([buffer.numel() for _, buffer in self._before.values()], dtype=np.float64)
        with np.errstate(all="ignore"):
            self._rows[-1][_ROW["update_ratio"], layers] = _unbiased_std(norm**2, total, n) / self._std_before

    def record(self) -> MonitorRecord:
        """Return everything recorded so far as a ``MonitorRecord`` (a copy; recording can go on)."""
        data = np.stack(self._rows) if self._rows else np.empty((0, len(METRICS), len(self.layers)))
        input_grad_norm = None
        if self.track_inputs:
            width = max((len(v) for v in self._input_norms), default=0)
            input_grad_norm = np.full((len(self._input_norms), width), np.nan)
            for s, values in enumerate(self._input_norms):
                input_grad_norm[s, : len(values)] = values
        return MonitorRecord(
            layer_names=list(self.layer_names),
            steps=np.array(self._steps, dtype=np.int64),
            **{metric: data[:, k].copy() for k, metric in enumerate(METRICS)},
            input_grad_norm=input_grad_norm,
        )


def snapshot(
    model: nn.Module,
    x: Tensor,
    y: Any,
    loss_fn: Callable[[Any, Any], Tensor],
    layers: Sequence[tuple[str, nn.Module]] | None = None,
    *,
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
        saturation: threshold in (0, 1) for saturated sigmoid/tanh outputs.
        track_inputs: also record ||dL/dx_t|| per time step of ``x`` (see ``GradientMonitor``).
    """
    check_tensor("x", x)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, e.g. nn.CrossEntropyLoss(); got {type(loss_fn).__name__}")
    monitor = GradientMonitor(model, layers, every=1, saturation=saturation, track_inputs=track_inputs)
    model.zero_grad(set_to_none=True)
    with torch.enable_grad(), monitor:
        loss = loss_fn(model(x), y)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError(f"loss_fn must return a scalar tensor; got {type(loss).__name__}")
        loss.backward()
        monitor.step(0)
    return monitor.record()
