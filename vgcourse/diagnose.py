"""Diagnose a model's gradients from one batch: vanishing, exploding, dead, saturated, non-finite.

``diagnose(model, loss_fn, (x, y))`` copies the model, runs ``steps`` training steps on the batch with a
``GradientMonitor`` attached, and returns a ``DiagnosisReport``: per layer (``named_layers`` order,
input to output) the gradient's size and its ratio to the output layer, the update:data ratio of the
step, the dead and saturated unit fractions, whether anything was NaN or infinite, and one finding per
problem with a one-line suggestion that names the chapter explaining the fix. The report prints as
text, shows as a table in a notebook and draws as a figure (``vgcourse.plots.diagnose``).

**Gradient size per weight.** Layers differ in size by orders of magnitude (a ResNet-18 has 9,408
weights in ``conv1`` and 2,359,296 in ``layer4.1.conv2``), and the raw norm ‖g‖ of a layer with n
weights grows like √n even when every weight gets the same gradient. The report compares the root mean
square per weight, rms(g) = ‖g‖/√n, which is what plain SGD moves each weight by (times the learning
rate), and is the same per-entry scale the update:data ratio uses. The ratio of a layer is
rms(g_l) / rms(g_output), with the output layer the last layer that received a finite gradient.

**Thresholds** (named constants below, all overridable through ``Thresholds``):

- ``VANISHING_RATIO = 1e-3`` and ``EXPLODING_RATIO = 1e3``: three decades either side of the output
  layer. Healthy networks put layers up to about 1.5-2 decades away from the output for structural
  reasons (measured at initialization: He-initialized ReLU MLPs of width 64-1024 reach 10^-1.4, because
  the hidden layers share the output error among more units; a ResNet-18 on 16 images of 32×32 reaches
  10^+1.7 in ``conv1``, whose weights collect gradient from every image position). Vanishing and
  exploding gradients are geometric in depth (a default-initialized sigmoid MLP loses about 0.85 decades
  per layer), so they cross three decades within a few layers: the thresholds sit a decade beyond the
  healthy spread.
- ``DEAD_FRACTION = 0.5``: a ReLU-family unit is dead on the batch when its pre-activation is <= 0 for
  every example; a layer is flagged when more than half of its units are. Healthy deep ReLU networks
  show some dead-on-the-batch units (inputs become correlated with depth: up to about 25% in a
  10-layer He-initialized MLP on 128 examples); more than half means the layer works at less than half
  its width. With B examples an independent healthy unit looks dead with probability 2^-B, so use a
  batch of at least ``MIN_BATCH`` examples.
- ``SATURATED_FRACTION = 0.2``: sigmoid/tanh outputs with |u| > 0.99 (sigmoid: |2u − 1| > 0.99), where
  the derivative is below 2% of its maximum. A Xavier-initialized tanh layer has pre-activations of
  standard deviation about 1 and about 1% of saturated outputs; 20% means pre-activations spread about
  twice as wide, and the gradient through the layer is being cut.
- ``UPDATE_RATIO_GUIDE = 1e-3`` with ``UPDATE_RATIO_LOW = 1e-5`` and ``UPDATE_RATIO_HIGH = 1e-1``:
  the update:data ratio std(ΔW)/std(W) of one step. Around 1e-3 is the rule of thumb of practitioners
  (Karpathy's lectures): a guide, not a law. The flags are two decades either side: below 1e-5 a layer
  needs more than 100,000 steps to change by its own scale (it barely moves); above 1e-1 one step
  rewrites a tenth of it.
"""

from __future__ import annotations

import copy
import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from vgcourse._validation import check_choice, check_float, check_int, check_tensor
from vgcourse.models import named_layers
from vgcourse.monitor import GradientMonitor, MonitorRecord, layer_weights
from vgcourse.training import OPTIMIZERS, TrainConfig, loss_value, make_optimizer

__all__ = [
    "CHAPTERS",
    "DEAD_FRACTION",
    "EXPLODING_RATIO",
    "FINDING_KINDS",
    "LOSSES",
    "MIN_BATCH",
    "SATURATED_FRACTION",
    "SATURATION",
    "UPDATE_RATIO_GUIDE",
    "UPDATE_RATIO_HIGH",
    "UPDATE_RATIO_LOW",
    "VANISHING_RATIO",
    "DiagnosisReport",
    "Finding",
    "LayerDiagnosis",
    "Thresholds",
    "diagnose",
]

VANISHING_RATIO = 1e-3
"""A layer whose gradient per weight is below this fraction of the output layer's is vanishing."""
EXPLODING_RATIO = 1e3
"""A layer whose gradient per weight is above this multiple of the output layer's is exploding."""
DEAD_FRACTION = 0.5
"""A layer with more than this fraction of dead units (silent on every example) is flagged."""
SATURATED_FRACTION = 0.2
"""A sigmoid/tanh layer with more than this fraction of saturated outputs is flagged."""
SATURATION = 0.99
"""|u| above which a tanh output (|2u - 1| for a sigmoid output) counts as saturated."""
UPDATE_RATIO_GUIDE = 1e-3
"""The rule-of-thumb update:data ratio std(ΔW)/std(W) of one step (a guide, not a law)."""
UPDATE_RATIO_LOW = 1e-5
"""Below this update:data ratio a layer barely moves."""
UPDATE_RATIO_HIGH = 1e-1
"""Above this update:data ratio one step rewrites a large part of a layer."""
MIN_BATCH = 16
"""Fewer examples than this make dead-unit fractions (and batch norm statistics) unreliable."""

LOSSES = ("cross_entropy", "mse")
"""Loss names ``diagnose`` accepts instead of a loss function."""

CHAPTERS = {
    "linear_chain": "The linear chain",
    "sigmoid_bound": "The sigmoid's 0.25 bound",
    "relu_dying_units": "ReLU and dying units",
    "initialization": "Xavier/Glorot and He/Kaiming initialization",
    "residual_networks": "Residual networks",
    "recurrent_networks": "Recurrent networks: LSTMs and GRUs",
    "detecting_and_fixing": "Detecting and fixing vanishing gradients",
}
"""The course's chapters by file name: the findings point to them by title."""

FINDING_KINDS = (
    "non_finite",
    "exploding",
    "vanishing",
    "dead",
    "saturated",
    "update_too_large",
    "update_too_small",
    "no_gradient",
    "small_batch",
)
"""What a finding can be about, most urgent first (the last two are notes, not problems)."""
_NOTES = ("no_gradient", "small_batch")
_LAYER_FLAGS = FINDING_KINDS[:7]
_SATURATING = (nn.Sigmoid, nn.Tanh)


@dataclass(frozen=True)
class Thresholds:
    """Where ``diagnose`` draws its lines (defaults: the module's constants; see the module docstring).

    Args:
        vanishing: flag layers whose rms gradient / output layer's is below this (in (0, 1)).
        exploding: flag layers whose ratio is above this (> 1).
        dead: flag layers with more than this fraction of dead units (in [0, 1)).
        saturated: flag layers with more than this fraction of saturated outputs (in [0, 1)).
        update_low: flag layers whose update:data ratio is below this (> 0).
        update_high: flag layers whose update:data ratio is above this (> update_low).
    """

    vanishing: float = VANISHING_RATIO
    exploding: float = EXPLODING_RATIO
    dead: float = DEAD_FRACTION
    saturated: float = SATURATED_FRACTION
    update_low: float = UPDATE_RATIO_LOW
    update_high: float = UPDATE_RATIO_HIGH

    def __post_init__(self) -> None:
        check_float("vanishing", self.vanishing, 0.0, 1.0, strict_minimum=True)
        if self.vanishing >= 1.0:
            raise ValueError(f"vanishing must be in (0, 1); got {self.vanishing!r}")
        check_float("exploding", self.exploding, 1.0, strict_minimum=True)
        for name in ("dead", "saturated"):
            value = check_float(name, getattr(self, name), 0.0, 1.0)
            if value >= 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {value!r}")
        check_float("update_low", self.update_low, 0.0, strict_minimum=True)
        check_float("update_high", self.update_high, 0.0, strict_minimum=True)
        if self.update_high <= self.update_low:
            raise ValueError(
                f"update_high must be > update_low; got {self.update_high!r} <= {self.update_low!r}"
            )
        for f in fields(self):  # store ints given for floats as floats
            object.__setattr__(self, f.name, float(getattr(self, f.name)))


@dataclass(frozen=True)
class LayerDiagnosis:
    """One layer of a ``DiagnosisReport`` (NaN = not measured).

    Args:
        name: the layer's name (``named_layers``).
        index: 1 for the first layer, L for the output layer.
        kind: the module's class name (Linear, Conv2d, LSTM, ...).
        n_weights: n, the number of monitored weights (all ``weight_*`` of an RNN).
        grad_norm: ‖g‖₂ of the weight gradient.
        grad_rms: ‖g‖₂ / √n, the gradient per weight.
        ratio: grad_rms / the reference (output) layer's grad_rms.
        update_ratio: std(W_after − W_before) / std(W_before) of the optimizer step.
        dead_frac: fraction of ReLU-family units with pre-activation <= 0 on every example.
        saturated_frac: fraction of sigmoid/tanh outputs in the flat tails.
        status: "ok", "frozen" (no weight requires grad), "no gradient" (trainable, but grad is None)
            or "non-finite" (NaN/inf in its output or gradient).
        flags: the finding kinds this layer is flagged for (see ``FINDING_KINDS``).
    """

    name: str
    index: int
    kind: str
    n_weights: int
    grad_norm: float
    grad_rms: float
    ratio: float
    update_ratio: float
    dead_frac: float
    saturated_frac: float
    status: str
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Finding:
    """One thing the report found, with a one-line suggestion.

    Args:
        kind: one of ``FINDING_KINDS``.
        layers: the layers concerned, input to output (empty when it is about the whole model).
        message: what was measured, one line.
        suggestion: what to try, one line, naming the chapter(s) that explain it.
        chapters: the titles of those chapters (values of ``CHAPTERS``).
    """

    kind: str
    layers: tuple[str, ...]
    message: str
    suggestion: str
    chapters: tuple[str, ...] = ()

    @property
    def is_problem(self) -> bool:
        """False for notes (``no_gradient``, ``small_batch``), True otherwise."""
        return self.kind not in _NOTES


@dataclass(frozen=True, repr=False)
class DiagnosisReport:
    """What ``diagnose`` found: layers input to output, findings most urgent first.

    Args:
        model_name: the model's class name.
        layers: one ``LayerDiagnosis`` per layer.
        findings: problems and notes, in ``FINDING_KINDS`` order.
        reference: the layer the ratios are relative to (the output layer when it has a gradient).
        losses: the loss at each step run.
        steps_run: steps whose forward and backward pass ran (< the steps asked when a loss or gradient
            became NaN/inf: the run stops there, without applying that update).
        batch_size: examples in the batch.
        device: where the model lives.
        optimizer: the optimizer's description, e.g. "sgd lr=0.1".
        thresholds: the thresholds used.
        record: the ``MonitorRecord`` of every step (for ``vgcourse.plots`` over-training views).
        non_finite_at: where NaN/inf first appeared ("input", a layer name, "loss" or "gradient"), or None.
    """

    model_name: str
    layers: tuple[LayerDiagnosis, ...]
    findings: tuple[Finding, ...]
    reference: str | None
    losses: tuple[float, ...]
    steps_run: int
    batch_size: int
    device: str
    optimizer: str
    thresholds: Thresholds
    record: MonitorRecord = field(repr=False)
    non_finite_at: str | None = None

    @property
    def layer_names(self) -> list[str]:
        """The layer names, input to output."""
        return [layer.name for layer in self.layers]

    @property
    def problems(self) -> tuple[Finding, ...]:
        """The findings that are problems (not notes)."""
        return tuple(f for f in self.findings if f.is_problem)

    @property
    def healthy(self) -> bool:
        """True when nothing was flagged (notes do not count)."""
        return not self.problems

    @property
    def non_finite(self) -> bool:
        """True when the input, a layer's output, the loss or a gradient held NaN or inf."""
        return self.non_finite_at is not None

    def flagged(self, kind: str) -> list[str]:
        """Names of the layers flagged for ``kind`` (one of ``FINDING_KINDS``), input to output."""
        check_choice("kind", kind, FINDING_KINDS)
        return [layer.name for layer in self.layers if kind in layer.flags]

    def layer(self, name: str) -> LayerDiagnosis:
        """The ``LayerDiagnosis`` of the layer called ``name``."""
        return self.layers[self.layer_names.index(check_choice("name", name, self.layer_names))]

    def values(self, column: str) -> np.ndarray:
        """One numeric column over the layers, input to output: an (L,) float array.

        Args:
            column: grad_norm, grad_rms, ratio, update_ratio, dead_frac or saturated_frac.
        """
        check_choice("column", column, _NUMERIC)
        return np.array([getattr(layer, column) for layer in self.layers], dtype=np.float64)

    # -- rendering -----------------------------------------------------------------------------------

    def summary(self) -> str:
        """One line: the model, the batch, the steps and the verdict."""
        loss = " → ".join(_fmt(v, ".4g") for v in (self.losses[:1] + self.losses[1:][-1:]))
        verdict = "healthy" if self.healthy else f"{len(self.problems)} problem(s)"
        return (
            f"{self.model_name}: {len(self.layers)} layers, batch of {self.batch_size} on {self.device}, "
            f"{self.steps_run} step(s) of {self.optimizer}, loss {loss}: {verdict}"
        )

    def to_text(self) -> str:
        """The report as plain text: a summary line, a table of the layers and the findings."""
        header = ("layer", "weights", "grad rms", "÷ output", "update", "dead", "saturated", "flags")
        rows = [header] + [_text_row(layer) for layer in self.layers]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
        lines = [self.summary(), ""]
        for row in rows:
            cells = [row[0].ljust(widths[0])] + [
                c.rjust(w) for c, w in zip(row[1:-1], widths[1:], strict=True)
            ]
            lines.append("  ".join([*cells, row[-1]]).rstrip())
        lines.append("")
        if not self.findings:
            lines.append("No problems found.")
        for finding in self.findings:
            mark = "✗" if finding.is_problem else "·"
            lines.append(f"{mark} {finding.message}")
            lines.append(f"    → {finding.suggestion}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return f"<DiagnosisReport {self.summary()}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's plain-text display (a console): the text report."""
        printer.text(self.to_text())

    def _repr_html_(self) -> str:
        """A notebook table: flagged cells in red, then the findings with their suggestions."""
        esc = html.escape
        head = "".join(
            f"<th>{h}</th>"
            for h in ("layer", "weights", "grad rms", "÷ output", "update:data", "dead", "saturated", "flags")
        )
        body = []
        for layer in self.layers:
            cells = _text_row(layer)
            marks = [
                False,
                False,
                "non_finite" in layer.flags,
                bool({"vanishing", "exploding"} & set(layer.flags)),
                bool({"update_too_large", "update_too_small"} & set(layer.flags)),
                "dead" in layer.flags,
                "saturated" in layer.flags,
                bool(layer.flags),
            ]
            tds = "".join(
                f'<td style="color:#b00020;font-weight:bold">{esc(c)}</td>' if bad else f"<td>{esc(c)}</td>"
                for c, bad in zip(cells, marks, strict=True)
            )
            body.append(f"<tr>{tds}</tr>")
        items = "".join(
            f"<li><b>{'✗' if f.is_problem else '·'} {esc(f.message)}</b><br>→ {esc(f.suggestion)}</li>"
            for f in self.findings
        )
        findings = f"<ul>{items}</ul>" if items else "<p>No problems found.</p>"
        return (
            f"<div><p><b>{esc(self.summary())}</b></p>"
            f'<table style="font-size:small"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
            f"</table>{findings}</div>"
        )

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per layer (index: the layer name) and one column per field."""
        try:
            import pandas as pd
        except ImportError as error:  # pragma: no cover - pandas is a dependency of the course
            raise ImportError("DiagnosisReport.to_frame() needs pandas: pip install pandas") from error
        rows = [asdict(layer) for layer in self.layers]
        for row in rows:
            row["flags"] = ", ".join(row["flags"])
        return pd.DataFrame(rows).set_index("name")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN and inf become None)."""
        return _clean(
            {
                "model": self.model_name,
                "summary": self.summary(),
                "healthy": self.healthy,
                "reference": self.reference,
                "losses": list(self.losses),
                "steps_run": self.steps_run,
                "batch_size": self.batch_size,
                "device": self.device,
                "optimizer": self.optimizer,
                "non_finite_at": self.non_finite_at,
                "thresholds": asdict(self.thresholds),
                "layers": [asdict(layer) for layer in self.layers],
                "findings": [asdict(f) | {"is_problem": f.is_problem} for f in self.findings],
            }
        )

    def plot(self, **kwargs: Any) -> Any:
        """The report as a figure: ``vgcourse.plots.diagnose.diagnosis(self, **kwargs)``."""
        from vgcourse.plots.diagnose import diagnosis

        return diagnosis(self, **kwargs)


_NUMERIC = ("grad_norm", "grad_rms", "ratio", "update_ratio", "dead_frac", "saturated_frac")


def _fmt(value: float, spec: str = ".2e") -> str:
    return "—" if not math.isfinite(value) else format(value, spec)


def _text_row(layer: LayerDiagnosis) -> tuple[str, ...]:
    status = "" if layer.status == "ok" else f"[{layer.status}] "
    return (
        layer.name,
        str(layer.n_weights),
        _fmt(layer.grad_rms),
        _fmt(layer.ratio),
        _fmt(layer.update_ratio),
        _fmt(layer.dead_frac, ".2f"),
        _fmt(layer.saturated_frac, ".2f"),
        status + ", ".join(layer.flags),
    )


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------------
# Measuring


class _ForwardWatch:
    """Forward hooks that note, per layer, whether its output was finite (None: it did not run)."""

    def __init__(self, layers: Sequence[tuple[str, nn.Module]]) -> None:
        self.finite: list[Tensor | None] = [None] * len(layers)
        self.order: list[int] = []  # execution order of the layers in the last forward pass
        self._handles: list[RemovableHandle] = [
            module.register_forward_hook(self._hook(i)) for i, (_, module) in enumerate(layers)
        ]

    def _hook(self, index: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            self.order.append(index)
            if isinstance(out, Tensor) and out.is_floating_point():
                finite = torch.isfinite(out.detach()).all()
                previous = self.finite[index]
                self.finite[index] = finite if previous is None else previous & finite

        return hook

    def reset(self) -> None:
        self.finite = [None] * len(self.finite)
        self.order = []

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _check_batch(batch: Any) -> tuple[Tensor, Any]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError(f"batch must be a pair (x, y) of inputs and targets; got {type(batch).__name__}")
    x, y = batch
    check_tensor("x", x)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"x must hold at least one example (first dimension); got shape {tuple(x.shape)}")
    return x, y


def _check_loss(loss_fn: Any) -> Callable[[Any, Any], Tensor]:
    if isinstance(loss_fn, str):
        name = check_choice("loss_fn", loss_fn, LOSSES)
        return lambda output, target: loss_value(output, target, name)
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be callable (e.g. nn.CrossEntropyLoss()) or one of: {', '.join(LOSSES)}; "
            f"got {type(loss_fn).__name__}"
        )
    return loss_fn


def _check_thresholds(thresholds: Any) -> Thresholds:
    if thresholds is None:
        return Thresholds()
    if isinstance(thresholds, Thresholds):
        return thresholds
    if isinstance(thresholds, Mapping):
        valid = [f.name for f in fields(Thresholds)]
        unknown = sorted(set(thresholds) - set(valid))
        if unknown:
            raise ValueError(f"unknown threshold(s) {unknown}; valid: {', '.join(valid)}")
        return Thresholds(**thresholds)
    raise TypeError(f"thresholds must be a Thresholds, a dict or None; got {type(thresholds).__name__}")


def _make_step_optimizer(
    model: nn.Module, optimizer: Any, lr: float
) -> tuple[torch.optim.Optimizer | None, str]:
    """The optimizer over the trainable parameters (None when there are none) and its description."""
    if isinstance(optimizer, str):
        config = TrainConfig(steps=1, lr=lr, optimizer=check_choice("optimizer", optimizer, OPTIMIZERS))
        if not any(p.requires_grad for p in model.parameters()):
            return None, f"{optimizer} lr={lr:g}"
        return make_optimizer(model, config), f"{optimizer} lr={lr:g}"
    if not callable(optimizer):
        raise TypeError(
            f"optimizer must be one of {', '.join(OPTIMIZERS)} or a callable params -> "
            f"torch.optim.Optimizer; got {type(optimizer).__name__}"
        )
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return None, "custom optimizer"
    built = optimizer(params)
    if not isinstance(built, torch.optim.Optimizer):
        raise TypeError(f"optimizer(params) must return a torch.optim.Optimizer; got {type(built).__name__}")
    return built, type(built).__name__


def _to(value: Any, device: torch.device) -> Any:
    return value.to(device) if isinstance(value, Tensor) else value


def diagnose(
    model: nn.Module,
    loss_fn: Callable[[Any, Any], Tensor] | str,
    batch: tuple[Tensor, Any],
    *,
    steps: int = 1,
    lr: float = 0.01,
    optimizer: str | Callable[[list[nn.Parameter]], torch.optim.Optimizer] = "sgd",
    clip_norm: float | None = None,
    thresholds: Thresholds | Mapping[str, float] | None = None,
    saturation: float = SATURATION,
) -> DiagnosisReport:
    """Run ``steps`` training steps on one batch, on a copy of ``model``, and report what the gradients do.

    Step s: loss = loss_fn(model(x), y); backward; record per-layer statistics (``GradientMonitor``);
    clip the gradient norm (if asked); optimizer step; record the update:data ratio. The report describes
    the last step run. A NaN or infinite loss or gradient stops the run at that step and is reported,
    never raised. The model passed in is not modified (weights, gradients, batch-norm statistics and
    train/eval mode stay as they are); the copy runs on the model's device, and the batch is moved there.

    Args:
        model: any ``nn.Module`` (MLP, CNN, RNN, a torchvision model...); layers are ``named_layers(model)``.
        loss_fn: ``loss_fn(output, y)`` -> scalar tensor (e.g. ``nn.CrossEntropyLoss()``), or a name in
            ``LOSSES``.
        batch: the pair (x, y); x a tensor whose first dimension is the examples.
        steps: training steps on the batch (>= 1); the statistics are those of the last one.
        lr: learning rate of the optimizer, when it is given by name.
        optimizer: "sgd", "momentum" or "adam" (as ``TrainConfig``), or a callable building an optimizer
            from the list of trainable parameters.
        clip_norm: clip the total gradient norm to this before each update, as ``TrainConfig.clip_norm``
            (the gradient statistics are those before clipping); None: no clipping.
        thresholds: a ``Thresholds``, a dict overriding some of its fields, or None for the defaults.
        saturation: |u| above which a sigmoid/tanh output counts as saturated, in (0, 1).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
    loss_fn = _check_loss(loss_fn)
    x, y = _check_batch(batch)
    check_int("steps", steps, minimum=1, maximum=10_000)
    lr = check_float("lr", lr, 0.0, strict_minimum=True)
    if clip_norm is not None:
        clip_norm = check_float("clip_norm", clip_norm, 0.0, strict_minimum=True)
    limits = _check_thresholds(thresholds)
    check_float("saturation", saturation, 0.0, 1.0, strict_minimum=True)
    if saturation >= 1.0:
        raise ValueError(f"saturation must be in (0, 1); got {saturation!r}")
    first = next(iter(model.parameters()), None)
    if first is None:
        raise ValueError("model has no parameters: nothing to diagnose")
    layers = named_layers(model)
    if not layers:
        raise ValueError("model has no layers to diagnose (modules with a >= 2-D weight, or RNNs)")

    work = copy.deepcopy(model)
    device = first.device
    x, y = x.to(device), _to(y, device)
    work_layers = named_layers(work)
    opt, opt_name = _make_step_optimizer(work, optimizer, lr)
    watch = _ForwardWatch(work_layers)
    losses: list[float] = []
    non_finite_at = None if bool(torch.isfinite(x).all()) else "input"
    try:
        with GradientMonitor(work, work_layers, saturation=saturation) as monitor:
            for step in range(steps):
                watch.reset()
                work.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    loss = loss_fn(work(x), y)
                    if not isinstance(loss, Tensor) or loss.numel() != 1:
                        raise ValueError(f"loss_fn must return a scalar tensor; got {type(loss).__name__}")
                    if loss.requires_grad:
                        loss.backward()
                monitor.step(step)
                losses.append(float(loss.detach()))
                problem = non_finite_at or _first_non_finite(watch, loss, work, work_layers)
                if problem is not None:
                    non_finite_at = problem
                    break
                if opt is not None:
                    if clip_norm is not None:
                        nn.utils.clip_grad_norm_(
                            [p for p in work.parameters() if p.grad is not None], clip_norm
                        )
                    opt.step()
                    monitor.after_update()
        record = monitor.record()
    finally:
        watch.close()
    if clip_norm is not None:
        opt_name += f", clip {clip_norm:g}"
    return _report(model, work_layers, record, watch, losses, x, device, opt_name, limits, non_finite_at)


def _first_non_finite(
    watch: _ForwardWatch, loss: Tensor, model: nn.Module, layers: Sequence[tuple[str, nn.Module]]
) -> str | None:
    """Where NaN/inf first appeared in this step: a layer (in execution order), the loss or a gradient."""
    for i in watch.order:
        finite = watch.finite[i]
        if finite is not None and not bool(finite):
            return layers[i][0]
    if not bool(torch.isfinite(loss.detach())):
        return "loss"
    for p in model.parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            return "gradient"
    return None


def _report(
    model: nn.Module,
    layers: Sequence[tuple[str, nn.Module]],
    record: MonitorRecord,
    watch: _ForwardWatch,
    losses: list[float],
    x: Tensor,
    device: torch.device,
    optimizer: str,
    limits: Thresholds,
    non_finite_at: str | None,
) -> DiagnosisReport:
    """Turn the monitor's last row into per-layer diagnoses and findings."""
    n_layers = len(layers)
    last = {m: record.values(m)[-1] for m in ("grad_norm", "update_ratio", "dead_frac", "saturated_frac")}
    status, n_weights, kinds = [], [], []
    for i, (_, module) in enumerate(layers):
        weights = layer_weights(module)
        with_grad = [p for p in weights if p.grad is not None]
        n_weights.append(sum(p.numel() for p in (with_grad or weights)))
        kinds.append(type(module).__name__)
        finite_out = watch.finite[i]
        if not any(p.requires_grad for p in weights):
            status.append("frozen")
        elif (finite_out is not None and not bool(finite_out)) or (
            with_grad and not math.isfinite(last["grad_norm"][i])
        ):
            status.append("non-finite")
        elif not with_grad:
            status.append("no gradient")
        else:
            status.append("ok")
    with np.errstate(all="ignore"):
        rms = last["grad_norm"] / np.sqrt(np.array(n_weights, dtype=np.float64))
    ok = [i for i in range(n_layers) if status[i] == "ok" and math.isfinite(rms[i])]
    reference = ok[-1] if ok and rms[ok[-1]] > 0 else None
    with np.errstate(all="ignore"):
        ratio = rms / rms[reference] if reference is not None else np.full(n_layers, np.nan)

    flags: list[list[str]] = [[] for _ in range(n_layers)]
    for i in range(n_layers):
        if status[i] == "non-finite":
            flags[i].append("non_finite")
        if status[i] != "ok":
            continue
        checks = {
            "exploding": ratio[i] > limits.exploding,
            "vanishing": ratio[i] < limits.vanishing,
            "dead": last["dead_frac"][i] > limits.dead,
            "saturated": last["saturated_frac"][i] > limits.saturated,
            "update_too_large": last["update_ratio"][i] > limits.update_high,
            "update_too_small": last["update_ratio"][i] < limits.update_low,
        }
        flags[i] += [kind for kind, hit in checks.items() if hit]  # NaN compares False: not measured

    diagnoses = tuple(
        LayerDiagnosis(
            name=name,
            index=i + 1,
            kind=kinds[i],
            n_weights=int(n_weights[i]),
            grad_norm=float(last["grad_norm"][i]),
            grad_rms=float(rms[i]),
            ratio=float(ratio[i]),
            update_ratio=float(last["update_ratio"][i]),
            dead_frac=float(last["dead_frac"][i]),
            saturated_frac=float(last["saturated_frac"][i]),
            status=status[i],
            flags=tuple(k for k in _LAYER_FLAGS if k in flags[i]),
        )
        for i, (name, _) in enumerate(layers)
    )
    findings = _findings(model, layers, diagnoses, limits, non_finite_at, len(x), reference)
    return DiagnosisReport(
        model_name=type(model).__name__,
        layers=diagnoses,
        findings=findings,
        reference=None if reference is None else layers[reference][0],
        losses=tuple(losses),
        steps_run=len(losses),
        batch_size=len(x),
        device=str(device),
        optimizer=optimizer,
        thresholds=limits,
        record=record,
        non_finite_at=non_finite_at,
    )


def _names(names: Sequence[str], limit: int = 4) -> str:
    """'a, b, c' or 'a, b, …, z (12 layers)' for long lists."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[: limit - 1])}, …, {names[-1]} ({len(names)} layers)"


def _quote(*keys: str) -> tuple[str, ...]:
    return tuple(CHAPTERS[k] for k in keys)


def _see(chapters: tuple[str, ...]) -> str:
    return "see " + " and ".join(f'"{c}"' for c in chapters)


def _findings(
    model: nn.Module,
    layers: Sequence[tuple[str, nn.Module]],
    diagnoses: tuple[LayerDiagnosis, ...],
    limits: Thresholds,
    non_finite_at: str | None,
    batch_size: int,
    reference: int | None,
) -> tuple[Finding, ...]:
    """One finding per flag kind that some layer has (plus model-level ones), in ``FINDING_KINDS`` order."""
    by_kind = {kind: [d.name for d in diagnoses if kind in d.flags] for kind in _LAYER_FLAGS}
    is_recurrent = any(isinstance(module, nn.RNNBase) for _, module in layers)
    saturating = any(isinstance(module, _SATURATING) for module in model.modules())
    findings: list[Finding] = []

    if non_finite_at is not None:
        where = {
            "input": "the input batch holds NaN or inf",
            "loss": "the loss is NaN or inf (every layer output was finite)",
            "gradient": "a gradient holds NaN or inf (the forward pass was finite)",
        }.get(non_finite_at, f"the forward pass first produced NaN/inf at layer {non_finite_at!r}")
        if non_finite_at == "input":
            suggestion = "clean or standardize the data: NaN/inf in the input propagates everywhere."
            chapters: tuple[str, ...] = ()
        else:
            chapters = _quote("initialization", "recurrent_networks")
            suggestion = (
                "lower the learning rate, shrink the initial weights and clip the gradient norm; "
                + _see(chapters)
                + " (clipping)."
            )
        findings.append(Finding("non_finite", tuple(by_kind["non_finite"]), where, suggestion, chapters))

    names = by_kind["exploding"]
    if names:
        chapters = _quote("initialization", "recurrent_networks")
        extra = (
            " If only the first layer is flagged, check that the inputs are standardized."
            if names == [diagnoses[0].name]
            else ""
        )
        findings.append(
            Finding(
                "exploding",
                tuple(names),
                f"exploding gradient: {_names(names)} get more than {limits.exploding:g}× the output "
                "layer's gradient per weight.",
                "initialize with the variance-preserving scale (Xavier/He) and clip the gradient norm; "
                + _see(chapters)
                + "."
                + extra,
                chapters,
            )
        )

    names = by_kind["vanishing"]
    if names:
        if is_recurrent and any(isinstance(m, nn.RNNBase) and n in names for n, m in layers):
            chapters = _quote("recurrent_networks")
            fix = "use an LSTM or GRU (gated paths through time) instead of a vanilla RNN"
        elif saturating:
            chapters = _quote("sigmoid_bound", "initialization")
            fix = "replace sigmoid/tanh hidden activations by ReLU/GELU with He initialization"
        else:
            chapters = _quote("initialization", "residual_networks")
            fix = "initialize for the activation (He for ReLU), or add skip connections with normalization"
        findings.append(
            Finding(
                "vanishing",
                tuple(names),
                f"vanishing gradient: {_names(names)} get less than {limits.vanishing:g} of the output "
                "layer's gradient per weight.",
                f"{fix}; {_see(chapters)}.",
                chapters,
            )
        )

    names = by_kind["dead"]
    if names:
        chapters = _quote("relu_dying_units")
        findings.append(
            Finding(
                "dead",
                tuple(names),
                f"dead units: more than {limits.dead:.0%} of the units of {_names(names)} are <= 0 on every "
                f"example of the batch (they pass no gradient).",
                "lower the learning rate, start biases at 0 (not negative), or use LeakyReLU/GELU; "
                + _see(chapters)
                + ".",
                chapters,
            )
        )

    names = by_kind["saturated"]
    if names:
        chapters = _quote("sigmoid_bound", "initialization")
        findings.append(
            Finding(
                "saturated",
                tuple(names),
                f"saturated units: more than {limits.saturated:.0%} of the outputs of {_names(names)} sit in "
                "the flat tails of sigmoid/tanh, where the derivative is almost 0.",
                "shrink the weights (Xavier scale), standardize the inputs, or use a non-saturating "
                "activation; " + _see(chapters) + ".",
                chapters,
            )
        )

    names = by_kind["update_too_large"]
    if names:
        chapters = _quote("detecting_and_fixing")
        findings.append(
            Finding(
                "update_too_large",
                tuple(names),
                f"large steps: one update changes the weights of {_names(names)} by more than "
                f"{limits.update_high:g} of their scale (update:data ratio; about {UPDATE_RATIO_GUIDE:g} is "
                "typical).",
                "lower the learning rate, or clip the gradient norm; " + _see(chapters) + ".",
                chapters,
            )
        )

    names = by_kind["update_too_small"]
    if names:
        chapters = _quote("detecting_and_fixing")
        if by_kind["vanishing"]:
            cause = "fix the vanishing gradient first"
        elif by_kind["dead"]:
            cause = "revive the dead units first (no gradient passes through them)"
        else:
            cause = "raise the learning rate"
        findings.append(
            Finding(
                "update_too_small",
                tuple(names),
                f"layers not moving: one update changes the weights of {_names(names)} by less than "
                f"{limits.update_low:g} of their scale (update:data ratio; about {UPDATE_RATIO_GUIDE:g} is "
                "typical).",
                f"{cause}; " + _see(chapters) + ".",
                chapters,
            )
        )

    names = [d.name for d in diagnoses if d.status == "no gradient"]
    if names:
        findings.append(
            Finding(
                "no_gradient",
                tuple(names),
                f"no gradient reached {_names(names)} although their weights require grad.",
                "they are unused in this forward pass or detached from the loss (.detach(), torch.no_grad).",
            )
        )
    has_dead_units = any(math.isfinite(d.dead_frac) for d in diagnoses)
    if batch_size < MIN_BATCH and (has_dead_units or _has_batch_norm(model)):
        findings.append(
            Finding(
                "small_batch",
                (),
                f"the batch has only {batch_size} examples: dead-unit fractions and batch-norm statistics "
                "are noisy (a healthy unit looks dead on all of them with probability about "
                f"{0.5**batch_size:.2g}).",
                f"diagnose on a batch of {MIN_BATCH} or more examples for these numbers to mean much.",
            )
        )
    if reference is None and any(d.status == "ok" for d in diagnoses):
        findings.append(
            Finding(
                "no_gradient",
                (),
                "the output layer's gradient is 0 or not finite: ratios to it are not defined.",
                "check that the loss depends on the last layer (a dead or detached one gets no gradient).",
            )
        )
    return tuple(findings)


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
