"""Diagnose a model from one batch: signals collapsing or blowing up, vanishing or exploding gradients,
dead or saturated units, steps too large or too small; each finding with a suggestion naming a chapter.

``diagnose(model, loss_fn, (x, y))`` trains a copy of the model for ``steps`` steps (``training.train``
with a ``GradientMonitor``) and returns a ``DiagnosisReport`` of every layer, input to output: the gradient
per weight rms(g) = ‖g‖/√n and its ratio to the output layer's, the update:data ratio std(ΔW)/std(W), dead
and saturated unit fractions, the forward gain q_l/q_0 (q = mean(h²) of the layer's output), the mean
cosine between the examples' outputs, and the backward signal rms(∂L/∂h_l) ÷ the output layer's.

Both signals, because ∂L/∂W_l = Σ δ_l h_{l−1}ᵀ: when they collapse together (He et al. 2015's 30-layer ReLU
MLP with Xavier weights) the gradient ratios stay near 1. Per weight, because ‖g‖ grows like √n (ResNet-18:
9,408 weights in ``conv1``, 2,359,296 in ``layer4.1.conv2``). Not judged: weights feeding a normalization
layer (scale-invariant: an angular step), parameters starting at exactly 0 and the layers they block on the
first step. Vanishing/exploding are trends in depth: a layer is flagged when it and the median of the judged
layers from the input up to it cross the threshold (a squeeze-excitation gate alone does not).
"""

from __future__ import annotations

import copy
import functools
import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from vgcourse._validation import check_choice, check_int, check_tensor
from vgcourse.chapters import CHAPTERS as _REGISTRY
from vgcourse.config import Config, positive, real
from vgcourse.models import named_layers
from vgcourse.monitor import GradientMonitor, MonitorRecord, layer_weights
from vgcourse.training import (
    LOSS_FUNCTIONS,
    OPTIMIZERS,
    Callback,
    StepEvent,
    StopTraining,
    TrainConfig,
    _to,
    loss_value,
    make_optimizer,
    train,
)

# The thresholds (defaults of ``Thresholds``) and the evidence for them.
# Rms gradient ÷ the output layer's: healthy networks stay within 1.5-2 decades (He ReLU MLPs of width 64-1024
# reach 10^-1.4); vanishing is geometric in depth (a default sigmoid MLP loses ~0.85 decades per layer).
VANISHING_RATIO = 1e-3
EXPLODING_RATIO = 1e3  # a ResNet-18 on 16 images of 32×32 reaches 10^+1.7 in conv1 (every position adds)
# Dead: ReLU-family units with pre-activation <= 0 on every example; a healthy 10-layer He MLP on 128
# examples shows up to ~25 % (inputs correlate with depth).
DEAD_FRACTION = 0.5
# Saturated: sigmoid/tanh outputs with derivative < 2 % of its maximum; a Xavier tanh layer has ~1 %, 20 %
# means pre-activations spread about twice as wide.
SATURATED_FRACTION = 0.2
SATURATION = 0.99  # |u| above which a tanh output (|2u - 1| for a sigmoid's) counts as saturated
UPDATE_RATIO_GUIDE = 1e-3  # the rule-of-thumb update:data ratio std(ΔW)/std(W) of one step (Karpathy)
UPDATE_RATIO_LOW = 1e-5  # a layer barely moves: > 100,000 steps to change by its own scale
UPDATE_RATIO_HIGH = 1e-1  # one step rewrites a tenth of a layer
MIN_BATCH = 16  # fewer: dead fractions (a healthy unit looks dead w.p. 2^-B) and batch norm are unreliable
# Forward gain q_l/q_0, 1e-4 = two decades in rms: a variance-preserving network (He ReLU, Xavier tanh) stays
# within one; a wrong scale crosses it geometrically (Xavier on ReLU halves q per layer: 2^-13 < 1e-4).
FORWARD_LOW = 1e-4
FORWARD_HIGH = 1e4  # He × 2 quadruples q per layer
# A C-class cross-entropy starting above 4 ln C (Karpathy's check): He ReLU MLPs start up to 6.7 < 4 ln 10 =
# 9.2 at C = 10 on ``standard_batch`` seeds 0-7; tanh with N(0, 1) weights starts above 10.
INITIAL_LOSS_FACTOR = 4.0
ZERO_START_STEPS = 3  # steps run at least when a parameter starts at exactly 0 (it blocks the first step)

CHAPTERS = {c.id: c.title for c in _REGISTRY}  # findings name chapters by title

# What a finding can be about, most urgent first; the nine layer flags, then the model-level problem
# "initial_loss", then five notes.
FINDING_KINDS = (
    "non_finite",
    "forward_blowup",
    "forward_collapse",
    "exploding",
    "vanishing",
    "dead",
    "saturated",
    "update_too_large",
    "update_too_small",
    "initial_loss",
    "zero_start",
    "normalized",
    "adaptive",
    "no_gradient",
    "small_batch",
)
_NOTES = FINDING_KINDS[10:]
_LAYER_FLAGS = FINDING_KINDS[:9]
# the saturating activations, seen when called (nn.Sigmoid and nn.Tanh call torch.sigmoid and torch.tanh)
_SATURATING_CALLS = {
    **dict.fromkeys(
        (torch.sigmoid, torch.sigmoid_, Tensor.sigmoid, Tensor.sigmoid_, torch.special.expit), "sigmoid"
    ),
    **dict.fromkeys((torch.tanh, torch.tanh_, Tensor.tanh, Tensor.tanh_), "tanh"),
}
_NORMS = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
)
_ADAPTIVE = tuple(
    getattr(torch.optim, name)
    for name in ("Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta")
)
# The roles of the other parameters, in the order DiagnosisReport lists them, with their plurals.
PARAMETER_ROLES = {
    "norm weight": "norm weights",
    "norm bias": "norm biases",
    "bias": "biases",
    "matrix": "matrices",
    "vector": "vectors",
}


class Thresholds(Config):
    """Where ``diagnose`` draws its lines (defaults: the named constants above)."""

    # rms grad ÷ the output layer's
    vanishing: float = real(VANISHING_RATIO, low=0.0, high=1.0, low_open=True, high_open=True)
    exploding: float = real(EXPLODING_RATIO, low=1.0, low_open=True)
    dead: float = real(DEAD_FRACTION, low=0.0, high=1.0, high_open=True)  # fraction of dead units
    saturated: float = real(SATURATED_FRACTION, low=0.0, high=1.0, high_open=True)  # of saturated outputs
    update_low: float = positive(UPDATE_RATIO_LOW)  # update:data ratio
    update_high: float = positive(UPDATE_RATIO_HIGH)
    forward_low: float = real(FORWARD_LOW, low=0.0, high=1.0, low_open=True, high_open=True)  # gain q_l/q_0
    forward_high: float = real(FORWARD_HIGH, low=1.0, low_open=True)

    def check(self) -> None:
        if self.update_high <= self.update_low:
            raise ValueError(
                f"update_high must be > update_low; got {self.update_high!r} <= {self.update_low!r}"
            )


@dataclass(frozen=True)
class LayerDiagnosis:
    """One layer of a ``DiagnosisReport`` (NaN = not measured); h_l is the layer's output (pre-activation)."""

    name: str  # as in diagnosis_layers
    index: int  # 1 for the first layer, L for the output layer
    kind: str  # the module's class name (Linear, Conv2d, LSTM, ...)
    n_weights: int  # n, the monitored weights (all weight_* of an RNN)
    grad_norm: float  # ‖g‖₂ of the weight gradient
    grad_rms: float  # ‖g‖₂ / √n
    ratio: float  # grad_rms ÷ the reference (output) layer's
    update_ratio: float  # std(W_after − W_before) / std(W_before) of the step
    dead_frac: float  # ReLU-family units with pre-activation <= 0 on every example
    saturated_frac: float  # sigmoid/tanh outputs in the flat tails
    status: str  # "ok", "frozen", "no gradient" (trainable, grad None) or "non-finite" (output or gradient)
    flags: tuple[str, ...]  # the FINDING_KINDS it is flagged for
    forward_ms: float = math.nan  # q_l = mean(h_l²)
    forward_gain: float = math.nan  # q_l / q_0 (q_0 of the input, or of the first layer's output)
    similarity: float = math.nan  # mean cos(h_l(x_i), h_l(x_j)) over pairs i ≠ j: near 1, input ignored
    backward_norm: float = math.nan  # ‖∂L/∂h_l‖₂ (a tensor hook)
    backward_ratio: float = math.nan  # rms(∂L/∂h_l) ÷ the reference layer's
    feeds_norm: bool = False  # h_l goes straight into a normalization layer: scale-invariant W
    zero_start: bool = False  # every weight was exactly 0 before the first step


@dataclass(frozen=True)
class ParameterDiagnosis:
    """A trainable parameter that is not a layer weight (biases, norm affine parameters, tokens...)."""

    name: str  # model.named_parameters' name
    role: str  # one of PARAMETER_ROLES ("matrix": >= 2-D, e.g. a class token or position embedding)
    module: str  # the owning module's class name
    numel: int  # n
    grad_rms: float  # ‖g‖₂/√n (NaN: no gradient)
    update_ratio: float  # std(ΔP)/std(P) of the step; started at 0: inf if it moved, NaN (0/0) if not
    zero_start: bool  # every entry was exactly 0 before the first step (never for biases)
    status: str  # "ok", "frozen", "no gradient" or "non-finite"


@dataclass(frozen=True)
class Finding:
    """One thing the report found, with a one-line suggestion naming the chapter(s) that explain it."""

    kind: str  # one of FINDING_KINDS
    layers: tuple[str, ...]  # input to output; empty when it is about the whole model
    message: str  # what was measured
    suggestion: str  # what to try
    chapters: tuple[str, ...] = ()  # titles (values of CHAPTERS)

    @property
    def is_problem(self) -> bool:
        """False for notes (the last five FINDING_KINDS), True otherwise."""
        return self.kind not in _NOTES

    @property
    def label(self) -> str:
        """The kind in words with the number of layers it names, "vanishing (6 layers)"; a finding about the
        whole model, such as the initial loss, names none: "initial loss"."""
        n, name = len(self.layers), self.kind.replace("_", " ")
        return f"{name} ({n} layer{'' if n == 1 else 's'})" if n else name


_NUMERIC = tuple(f.name for f in fields(LayerDiagnosis) if f.type == "float")  # DiagnosisReport.columns


class _Index(dict):
    """One of DiagnosisReport's indexes: a read-only dict whose missing key is a KeyError naming the valid
    keys (a dict, not a MappingProxyType, so that the report pickles and deep-copies); its arrays are
    read-only too, also in a copy (``__reduce__`` builds the copy through ``__init__``)."""

    def __init__(self, what: str, items: Mapping[str, Any]) -> None:
        super().__init__(items)
        self.what = what
        for value in self.values():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)

    def __missing__(self, key: object) -> Any:
        raise KeyError(f"unknown {self.what} {key!r}; valid choices: {', '.join(self)}")

    def __reduce__(self) -> tuple[Any, ...]:
        return _Index, (self.what, dict(self))

    def _read_only(self, *args: object, **kwargs: object) -> None:
        raise TypeError(f"a DiagnosisReport is read-only: its {self.what} index cannot be changed")

    __setitem__ = __delitem__ = __ior__ = _read_only  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]


@dataclass(frozen=True, repr=False)
class DiagnosisReport:
    """What ``diagnose`` found: layers input to output, findings most urgent first."""

    model_name: str  # the model's class name
    layers: tuple[LayerDiagnosis, ...]
    findings: tuple[Finding, ...]  # in FINDING_KINDS order
    reference: str | None  # the layer ratios are relative to (the output layer when it has a gradient)
    losses: tuple[float, ...]  # the loss at each step run
    steps_run: int  # fewer than asked when NaN/inf stopped the run (before that step's update)
    batch_size: int
    device: str
    optimizer: str  # e.g. "sgd lr=0.1"
    thresholds: Thresholds
    record: MonitorRecord = field(repr=False)  # every step's statistics (over-training plots)
    non_finite_at: str | None = None  # where NaN/inf first appeared: "input", a layer, "loss" or "gradient"
    parameters: tuple[ParameterDiagnosis, ...] = ()  # the trainable parameters that are not layer weights
    input_ms: float = math.nan  # q_0, the second moment the forward gains are relative to
    steps_asked: int = 1  # steps_run can be more when a parameter starts at 0
    # Indexes built from ``layers``: report.layer["conv1"], report.flagged["dead"] (layer names, input to
    # output, for each of the nine layer flags) and report.columns["ratio"] (a float field of every layer).
    layer: dict[str, LayerDiagnosis] = field(init=False, repr=False, compare=False)
    flagged: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    columns: dict[str, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        columns = {c: np.array([getattr(d, c) for d in self.layers], dtype=np.float64) for c in _NUMERIC}
        flagged = {kind: tuple(d.name for d in self.layers if kind in d.flags) for kind in _LAYER_FLAGS}
        object.__setattr__(self, "layer", _Index("layer", {d.name: d for d in self.layers}))
        object.__setattr__(self, "flagged", _Index("layer flag", flagged))
        object.__setattr__(self, "columns", _Index("column", columns))

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
        rows = [_HEADER] + [_text_row(layer) for layer in self.layers]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER) - 1)]
        lines = [self.summary(), ""]
        for row in rows:
            cells = [row[0].ljust(widths[0])] + [
                c.rjust(w) for c, w in zip(row[1:-1], widths[1:], strict=True)
            ]
            lines.append("  ".join([*cells, row[-1]]).rstrip())
        lines.append("")
        groups = self.parameter_groups()
        if groups:
            lines.append("other parameters:")
            lines += ["  " + ", ".join(_group_cells(group)) for group in groups]
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
        head = "".join(f"<th>{esc(h)}</th>" for h in _HEADER)
        body = []
        for layer in self.layers:
            cells = _text_row(layer)
            marks = [bool(set(red) & set(layer.flags)) for _, red in _COLUMNS]
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
        groups = "".join(
            "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in _group_cells(group)) + "</tr>"
            for group in self.parameter_groups()
        )
        others = f'<p>other parameters:</p><table style="font-size:small">{groups}</table>' if groups else ""
        return (
            f"<div><p><b>{esc(self.summary())}</b></p>"
            f'<table style="font-size:small"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
            f"</table>{others}{findings}</div>"
        )

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The other parameters summarized per role (``PARAMETER_ROLES`` order): role, count, numel, the
        range of their gradient rms and of their update ratios, and how many start at 0 or are frozen."""
        groups = []
        for role in PARAMETER_ROLES:
            members = [p for p in self.parameters if p.role == role]
            if members:
                groups.append(
                    {
                        "role": role,
                        "count": len(members),
                        "numel": sum(p.numel for p in members),
                        "grad_rms": _range([p.grad_rms for p in members]),
                        "update_ratio": _range([p.update_ratio for p in members]),
                        "zero_start": sum(p.zero_start for p in members),
                        "frozen": sum(p.status == "frozen" for p in members),
                    }
                )
        return groups

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per layer (index: the layer name) and one column per field."""
        import pandas as pd

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
                "input_ms": self.input_ms,
                "steps_asked": self.steps_asked,
                "layers": [asdict(layer) for layer in self.layers],
                "parameters": [asdict(p) for p in self.parameters],
                "findings": [asdict(f) | {"is_problem": f.is_problem} for f in self.findings],
            }
        )


def _fmt(value: float, spec: str = ".2e") -> str:
    return "—" if not math.isfinite(value) else format(value, spec)


# The report's table: (column header, the flags that turn the layer's cell red in a notebook).
_COLUMNS = (
    ("layer", ()),
    ("weights", ()),
    ("grad rms", ("non_finite",)),
    ("÷ output", ("vanishing", "exploding")),
    ("update", ("update_too_large", "update_too_small")),
    ("fwd ÷ in", ("forward_blowup", "forward_collapse")),
    ("cos", ()),
    ("bwd ÷ out", ()),
    ("dead", ("dead",)),
    ("saturated", ("saturated",)),
    ("flags", _LAYER_FLAGS),
)
_HEADER = tuple(header for header, _ in _COLUMNS)


def _text_row(layer: LayerDiagnosis) -> tuple[str, ...]:
    notes = [] if layer.status == "ok" else [layer.status]
    notes += ["feeds norm"] if layer.feeds_norm else []
    notes += ["starts at 0"] if layer.zero_start else []
    prefix = "".join(f"[{n}] " for n in notes)
    return (
        layer.name,
        str(layer.n_weights),
        _fmt(layer.grad_rms),
        _fmt(layer.ratio),
        _fmt(layer.update_ratio),
        _fmt(layer.forward_gain),
        _fmt(layer.similarity, ".2f"),
        _fmt(layer.backward_ratio),
        _fmt(layer.dead_frac, ".2f"),
        _fmt(layer.saturated_frac, ".2f"),
        (prefix + ", ".join(layer.flags)).rstrip(),
    )


def _group_cells(group: Mapping[str, Any]) -> tuple[str, ...]:
    extra = [f"{group[k]} {k.replace('_', ' ')}" for k in ("zero_start", "frozen") if group[k]]
    role, count = group["role"], group["count"]
    return (
        f"{count} {role if count == 1 else PARAMETER_ROLES[role]} ({group['numel']} entries)",
        f"grad rms {group['grad_rms']}",
        f"update {group['update_ratio']}",
        *extra,
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


class _SignalWatch:
    """Forward hooks on every layer (is the output h finite, mean(h²) in float64, the examples' mean cosine,
    does h feed a normalization layer) and a tensor hook on h for ‖∂L/∂h‖ in float64 (it keeps working when
    an in-place activation overwrites h, unlike ``register_full_backward_hook``). The monitor's record has
    ‖h‖ and ‖∂L/∂h‖ too, reduced in the tensor's dtype: in float32 a norm loses digits below ~1e-19 and is
    inf once h² passes 3.4e38 (entries above ~1.8e19; measured again in float64 on the CPU only), where a
    blow-up or collapse still needs its gain."""

    def __init__(self, model: nn.Module, layers: Sequence[tuple[str, nn.Module]], batch_size: int) -> None:
        self.n = len(layers)
        self.batch_size = batch_size
        self.layers = [module for _, module in layers]
        self.feeds_norm = [False] * self.n
        self.reset()
        self._handles: list[RemovableHandle] = [
            module.register_forward_hook(functools.partial(self._hook, i))
            for i, module in enumerate(self.layers)
        ]
        self._handles += [
            m.register_forward_pre_hook(self._norm_hook) for m in model.modules() if isinstance(m, _NORMS)
        ]
        self._handles.append(model.register_forward_pre_hook(lambda *_: self.reset()))

    def reset(self) -> None:
        """Forget the last forward and backward pass (at the start of each forward pass of the model)."""
        self.finite: list[Tensor | None] = [None] * self.n
        self.order: list[int] = []  # execution order of the layers in the last forward pass
        self._outputs: dict[int, tuple[int, Tensor]] = {}  # storage address -> (layer, its output)
        self._sq: list[list[Tensor]] = [[] for _ in range(self.n)]
        self._count = [0] * self.n
        self._cos: list[list[Tensor]] = [[] for _ in range(self.n)]
        self._grad_sq: list[list[Tensor]] = [[] for _ in range(self.n)]
        self._grad_count = [0] * self.n

    def _hook(self, index: int, module: nn.Module, args: Any, output: Any) -> None:
        out = output[0] if isinstance(output, (tuple, list)) else output  # RNN, attention: (output, ...)
        self.order.append(index)
        if not (isinstance(out, Tensor) and out.is_floating_point()):
            return
        value = out.detach()
        finite = torch.isfinite(value).all()
        previous = self.finite[index]
        self.finite[index] = finite if previous is None else previous & finite
        if not torch.is_grad_enabled():
            return
        self._outputs[_address(value)] = (index, value)
        self._sq[index].append(value.double().square().sum())
        self._count[index] += value.numel()
        examples = _examples(value, module, self.batch_size)
        if examples is not None:
            self._cos[index].append(_mean_cosine(examples))
        if out.requires_grad:
            out.register_hook(functools.partial(self._grad_hook, index))

    def _grad_hook(self, index: int, grad: Tensor) -> None:
        self._grad_sq[index].append(grad.detach().double().square().sum())
        self._grad_count[index] += grad.numel()

    def _norm_hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0] if args else None
        if isinstance(x, Tensor) and x.is_floating_point():
            hit = self._outputs.get(_address(x))
            if hit is not None and hit[1].numel() == x.numel():  # the layer's output, or a view of it
                self.feeds_norm[hit[0]] = True

    def signals(self) -> dict[str, np.ndarray]:
        """Per layer, for the last forward and backward pass: forward_ms = mean(h²), similarity (NaN when
        the examples could not be told apart in the output's shape), backward_norm = ‖∂L/∂h‖ and
        backward_count, the entries of ∂L/∂h (0: no backward signal measured)."""
        self._outputs = {}
        nan = math.nan
        with torch.no_grad():
            forward = [
                float(torch.stack(v).sum()) / c if c else nan
                for v, c in zip(self._sq, self._count, strict=True)
            ]
            similarity = [float(torch.stack(v).mean()) if v else nan for v in self._cos]
            backward = [math.sqrt(float(torch.stack(v).sum())) if v else nan for v in self._grad_sq]
        return {
            "forward_ms": np.array(forward, dtype=np.float64),
            "similarity": np.array(similarity, dtype=np.float64),
            "backward_norm": np.array(backward, dtype=np.float64),
            "backward_count": np.array(self._grad_count, dtype=np.float64),
        }

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class _ActivationCalls(TorchFunctionMode):
    """The saturating activations ("sigmoid", "tanh") that the model's forward passes call, as modules or as
    functions (torch.sigmoid, F.tanh, x.sigmoid()): a mode entered by a forward pre-hook on the model and left
    by its forward hook. The gates of nn.LSTM/GRU/RNN run inside one fused call (_VF.lstm): not counted."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.seen: set[str] = set()
        self._depth = 0
        self._handles = [
            model.register_forward_pre_hook(self._enter),
            model.register_forward_hook(self._leave, always_call=True),  # also when the forward raises
        ]

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        try:
            self.seen.add(_SATURATING_CALLS[func])
        except (KeyError, TypeError):  # another function (TypeError: one that cannot be hashed)
            pass
        return func(*args, **(kwargs or {}))

    def _enter(self, *_: Any) -> None:
        self._depth += 1
        if self._depth == 1:
            self.__enter__()

    def _leave(self, *_: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.__exit__(None, None, None)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _address(t: Tensor) -> int:
    """Where a tensor's memory starts: equal for a tensor, its in-place results and its views."""
    return t.untyped_storage().data_ptr()


def _examples(value: Tensor, module: nn.Module, batch_size: int) -> Tensor | None:
    """The output as (B, features), one row per example; None when no dimension is the batch's."""
    if batch_size < 2 or value.ndim == 0:
        return None
    if isinstance(module, nn.RNNBase) and not module.batch_first and value.ndim == 3:
        value = value.transpose(0, 1)
    if value.shape[0] == batch_size:
        return value.reshape(batch_size, -1)
    if value.ndim >= 2 and value.shape[1] == batch_size:  # sequence-first (T, B, ...)
        return value.transpose(0, 1).reshape(batch_size, -1)
    return None


def _mean_cosine(examples: Tensor) -> Tensor:
    """mean over pairs i ≠ j of cos(e_i, e_j) = (‖Σ u_i‖² − m) / (m(m − 1)), u_i = e_i/‖e_i‖ (m rows ≠ 0)."""
    e = examples.double()
    norms = torch.linalg.vector_norm(e, dim=1, keepdim=True)
    keep = norms.squeeze(1) > 0
    u = e[keep] / norms[keep]
    m = u.shape[0]
    if m < 2:
        return torch.tensor(math.nan, dtype=torch.float64, device=e.device)
    total = u.sum(dim=0)
    return (total @ total - m) / (m * (m - 1))


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
        name = check_choice("loss_fn", loss_fn, LOSS_FUNCTIONS)

        def by_name(output: Any, target: Any) -> Tensor:
            return loss_value(output, target, name)

        by_name._vgcourse_loss = name  # type: ignore[attr-defined]
        return by_name
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be callable (e.g. nn.CrossEntropyLoss()) or one of: {', '.join(LOSS_FUNCTIONS)}; "
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
    model: nn.Module, optimizer: Any, config: TrainConfig
) -> tuple[torch.optim.Optimizer, str, bool]:
    """The optimizer over the trainable parameters, its description, and whether it is adaptive. With no
    trainable parameter, a placeholder SGD keeps ``train``'s loop (and the monitor's step hooks) running."""
    if not (isinstance(optimizer, str) or callable(optimizer)):
        raise TypeError(
            f"optimizer must be one of {', '.join(OPTIMIZERS)} or a callable params -> "
            f"torch.optim.Optimizer; got {type(optimizer).__name__}"
        )
    name = f"{optimizer} lr={config.lr:g}" if isinstance(optimizer, str) else "custom optimizer"
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        device = next(model.parameters()).device
        return torch.optim.SGD([torch.zeros(1, device=device, requires_grad=True)], lr=config.lr), name, False
    built = make_optimizer(model, config) if isinstance(optimizer, str) else optimizer(params)
    if not isinstance(built, torch.optim.Optimizer):
        raise TypeError(f"optimizer(params) must return a torch.optim.Optimizer; got {type(built).__name__}")
    if not isinstance(optimizer, str):
        name = type(built).__name__
    return built, name, isinstance(built, _ADAPTIVE)


class _Probe(Callback):
    """``train``'s callback for ``diagnose``. After each backward pass: the layers' signals and the gradient
    rms of the other parameters (those that are not layer weights), stopping before the update at the
    first NaN/inf; after each update: the other parameters' update ratios. ``loss`` wraps the loss
    function: a scalar check, and C from the first output."""

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[tuple[str, nn.Module]],
        loss_fn: Callable[[Any, Any], Tensor],
        x: Tensor,
        params: list[nn.Parameter],
    ) -> None:
        self.watch = _SignalWatch(model, layers, len(x))
        self.layers, self.loss_fn, self.params = layers, loss_fn, params
        self.classes: int | None = None
        self.signals: dict[str, np.ndarray] | None = None
        self.non_finite_at = None if bool(torch.isfinite(x).all()) else "input"
        self._first = True
        self.grad_rms = [math.nan] * len(params)
        self.update_ratio = [math.nan] * len(params)
        self._before: list[Tensor | None] = [None] * len(params)  # None: no gradient in the last step

    def loss(self, output: Any, y: Any) -> Tensor:
        loss = self.loss_fn(output, y)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError(f"loss_fn must return a scalar tensor; got {type(loss).__name__}")
        if self._first:
            self.classes, self._first = _classes(self.loss_fn, output), False
        return loss

    def on_backward(self, event: StepEvent) -> None:
        self.signals = self.watch.signals()
        with torch.no_grad():
            for k, p in enumerate(self.params):
                self.update_ratio[k], self._before[k] = math.nan, None
                if p.grad is None:
                    self.grad_rms[k] = math.nan
                    continue
                g = p.grad.detach().double()
                self.grad_rms[k] = float(torch.linalg.vector_norm(g)) / math.sqrt(max(p.numel(), 1))
                self._before[k] = p.detach().clone()
        problem = self.non_finite_at or _first_non_finite(self.watch, event.loss, event.model, self.layers)
        if problem is not None:
            self.non_finite_at = problem
            raise StopTraining(f"NaN or inf at {problem}")

    def on_step(self, event: StepEvent) -> None:
        with torch.no_grad(), np.errstate(all="ignore"):
            for k, p in enumerate(self.params):
                before = self._before[k]
                if before is None or p.numel() < 2:
                    continue
                change = float((p.detach() - before).double().std())
                scale = float(before.double().std())
                self.update_ratio[k] = change / scale if scale > 0 else (math.inf if change > 0 else math.nan)

    def status(self, k: int) -> str:
        """The k-th other parameter's status: "frozen", "no gradient", "ok" or "non-finite"."""
        if not self.params[k].requires_grad:
            return "frozen"
        if self._before[k] is None:
            return "no gradient"
        return "ok" if _finite(self.params[k]) else "non-finite"


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
    """Train a copy of ``model`` for ``steps`` steps on ``batch`` = (x, y) and report the last step run.

    ``loss_fn(output, y)`` returns a scalar (or is a name from ``LOSS_FUNCTIONS``); ``optimizer`` is a name
    from ``OPTIMIZERS`` (with ``lr``) or a callable params -> optimizer; ``clip_norm`` clips the total
    gradient norm before each update (the statistics are those before clipping); ``thresholds``: a
    ``Thresholds``, a dict of some of its fields or None; ``saturation``: |u| above which a sigmoid/tanh
    output is saturated. The steps are ``train`` with a ``GradientMonitor`` on the optimizer and a callback
    measuring the signals. NaN/inf stops the run before that step's update and is reported, never raised.
    ``model`` is not modified (weights, gradients, norm statistics, mode); the copy runs on its device and in
    its mode. The advice on activations sees sigmoid/tanh as modules and as calls in ``forward``
    (torch.sigmoid, F.tanh, x.sigmoid()).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
    loss_fn = _check_loss(loss_fn)
    x, y = _check_batch(batch)
    check_int("steps", steps, minimum=1, maximum=10_000)
    limits = _check_thresholds(thresholds)
    first = next(iter(model.parameters()), None)
    if first is None:
        raise ValueError("model has no parameters: nothing to diagnose")
    if not diagnosis_layers(model):
        raise ValueError("model has no layers to diagnose (modules with a >= 2-D weight, or RNNs)")
    zero_start = _zero_start(model)
    # checks lr, clip_norm and an optimizer's name; the probe stops at the first NaN/inf value, not at an
    # overflowing norm
    config = TrainConfig(
        steps=max(steps, ZERO_START_STEPS) if zero_start else steps,
        lr=lr,
        optimizer=optimizer if isinstance(optimizer, str) else "sgd",
        clip_norm=clip_norm,
        monitor_every=None,
        stop_on_divergence=False,
    )

    work = copy.deepcopy(model)
    device = first.device
    x, y = x.to(device), _to(y, device)
    work_layers = diagnosis_layers(work)
    opt, opt_name, adaptive = _make_step_optimizer(work, optimizer, config)
    others = _other_parameters(work, work_layers)
    with torch.no_grad():
        zero_layers = tuple(
            bool(ws) and all(p.requires_grad and not bool(p.any()) for p in ws)
            for ws in (layer_weights(m) for _, m in work_layers)
        )
    # the monitor checks saturation (in (0, 1)); it hooks the model only inside train, after the probe
    monitor = GradientMonitor(work, opt, layers=work_layers, stats="all", saturation=saturation)
    probe = _Probe(work, work_layers, loss_fn, x, [p for _, p, _, _ in others])
    calls = _ActivationCalls(work)
    try:
        with torch.enable_grad():
            history = train(
                work, (x, y), config, loss_fn=probe.loss, optimizer=opt, monitor=monitor, callbacks=[probe]
            )
    finally:
        probe.watch.close()
        calls.close()
    if config.clip_norm is not None:
        opt_name += f", clip {config.clip_norm:g}"
    input_ms = float(x.double().square().mean()) if x.is_floating_point() and x.numel() else math.nan
    layers, reference, input_ms, blocked = _judge_layers(
        work_layers, history.monitor, probe, zero_layers, bool(zero_start), input_ms, limits
    )
    report = DiagnosisReport(
        model_name=type(model).__name__,
        layers=layers,
        findings=(),
        reference=reference,
        losses=tuple(float(v) for v in history.loss),
        steps_run=len(history.loss),
        batch_size=len(x),
        device=str(device),
        optimizer=opt_name,
        thresholds=limits,
        record=history.monitor,
        non_finite_at=probe.non_finite_at,
        parameters=tuple(
            ParameterDiagnosis(
                name=name,
                role=role,
                module=kind,
                numel=p.numel(),
                grad_rms=probe.grad_rms[k],
                update_ratio=probe.update_ratio[k],
                zero_start=name in zero_start,
                status=probe.status(k),
            )
            for k, (name, p, role, kind) in enumerate(others)
        ),
        input_ms=input_ms,
        steps_asked=steps,
    )
    findings = _findings(
        report,
        model,
        work_layers,
        blocked,
        classes=probe.classes,
        zero_start=bool(zero_start),
        adaptive=adaptive,
        lr=config.lr if isinstance(optimizer, str) else None,
        called=frozenset(calls.seen),
    )
    return replace(report, findings=findings)


def diagnosis_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers ``diagnose`` reports, input to output: ``named_layers(model)`` and every
    ``nn.MultiheadAttention`` (whose input projections are not called ``weight``), in registration order."""
    layers = named_layers(model)
    known = {id(m) for _, m in layers}
    order = {id(m): k for k, m in enumerate(model.modules())}
    extra = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.MultiheadAttention) and id(m) not in known and layer_weights(m)
    ]
    return sorted(layers + extra, key=lambda item: order[id(item[1])])


def _role(name: str, p: nn.Parameter, module: nn.Module) -> str:
    leaf = name.rsplit(".", 1)[-1]
    if isinstance(module, _NORMS) or "norm" in type(module).__name__.lower():
        return "norm bias" if "bias" in leaf else "norm weight"
    if "bias" in leaf:
        return "bias"
    return "matrix" if p.ndim >= 2 else "vector"


def _other_parameters(
    model: nn.Module, layers: Sequence[tuple[str, nn.Module]]
) -> list[tuple[str, nn.Parameter, str, str]]:
    """(name, parameter, role, owning module's class) of every parameter that is not a layer weight."""
    covered = {id(p) for _, module in layers for p in layer_weights(module)}
    result = []
    for name, p in model.named_parameters():
        if id(p) in covered:
            continue
        owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        result.append((name, p, _role(name, p, owner), type(owner).__name__))
    return result


def _zero_start(model: nn.Module) -> frozenset[str]:
    """Trainable parameters (not biases: 0 is their usual start) whose entries are all exactly 0."""
    with torch.no_grad():
        return frozenset(
            name
            for name, p in model.named_parameters()
            if p.requires_grad and p.numel() and "bias" not in name.rsplit(".", 1)[-1] and not bool(p.any())
        )


def _classes(loss_fn: Callable[[Any, Any], Tensor], output: Any) -> int | None:
    """C, the number of classes, when the loss is cross-entropy on (B, C, ...) logits; else None."""
    is_ce = (
        isinstance(loss_fn, nn.CrossEntropyLoss)
        or getattr(loss_fn, "_vgcourse_loss", None) == "cross_entropy"
    )
    if is_ce and isinstance(output, Tensor) and output.ndim >= 2 and output.shape[1] >= 2:
        return int(output.shape[1])
    return None


def _finite(p: Tensor) -> bool:
    """Whether p's gradient holds no NaN or inf (True without one): asked of the tensor, not of its norm,
    which a float32 reduction makes inf for finite entries above ~1.8e19."""
    return p.grad is None or bool(torch.isfinite(p.grad).all())


def _first_non_finite(
    watch: _SignalWatch, loss: float, model: nn.Module, layers: Sequence[tuple[str, nn.Module]]
) -> str | None:
    """Where NaN/inf first appeared in this step: a layer (in execution order), the loss or a gradient."""
    for i in watch.order:
        finite = watch.finite[i]
        if finite is not None and not bool(finite):
            return layers[i][0]
    if not math.isfinite(loss):
        return "loss"
    for p in model.parameters():
        if not _finite(p):
            return "gradient"
    return None


def _judge_layers(
    layers: Sequence[tuple[str, nn.Module]],
    record: MonitorRecord,
    probe: _Probe,
    zero: tuple[bool, ...],
    zero_start: bool,
    input_ms: float,
    limits: Thresholds,
) -> tuple[tuple[LayerDiagnosis, ...], str | None, float, tuple[str, ...]]:
    """The monitor's last row and the probe's signals as per-layer diagnoses (``zero``: the layers starting
    at 0; ``zero_start``: some parameter does), with the reference layer's name, q_0 and the layers the zero
    start blocked on the first step."""
    n_layers = len(layers)
    # a fraction no activation module of the model gives is not in record.recorded: NaN, never flagged
    last = {m: getattr(record, m)[-1] for m in ("grad_norm", "update_ratio", "dead_frac", "saturated_frac")}
    first_grad = record.values("grad_norm")[0]
    signals = probe.signals if probe.signals is not None else probe.watch.signals()
    feeds_norm = probe.watch.feeds_norm
    status, n_weights = [], []
    for i, (_, module) in enumerate(layers):
        weights = layer_weights(module)
        with_grad = [p for p in weights if p.grad is not None]
        n_weights.append(sum(p.numel() for p in (with_grad or weights)))
        finite_out = probe.watch.finite[i]
        if not any(p.requires_grad for p in weights):
            status.append("frozen")
        elif (finite_out is not None and not bool(finite_out)) or not all(map(_finite, with_grad)):
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
        if not (math.isfinite(input_ms) and input_ms > 0):
            input_ms = float(signals["forward_ms"][0])
        gain = signals["forward_ms"] / input_ms
        back_rms = signals["backward_norm"] / np.sqrt(signals["backward_count"])
        usable = [i for i in range(n_layers) if math.isfinite(back_rms[i]) and back_rms[i] > 0]
        back_ref = reference if reference in usable else (usable[-1] if usable else None)
        back_ratio = back_rms / back_rms[back_ref] if back_ref is not None else np.full(n_layers, np.nan)
    # On the first step a parameter at 0 passes no gradient back: the layers before it get exactly 0.
    blocked = {i for i in range(n_layers) if zero_start and first_grad[i] == 0 and not zero[i]}

    # Vanishing and exploding gradients are trends in depth: a layer is judged with the median ratio of
    # the judged layers from the input up to it, so one small side layer (a squeeze-excitation gate) whose
    # neighbours below are healthy is not a vanishing gradient.
    judged = [i for i in ok if not zero[i] and i not in blocked]
    trend = np.full(n_layers, np.nan)
    for k, i in enumerate(judged):
        trend[i] = float(np.median(ratio[judged[: k + 1]]))

    flags: list[list[str]] = [[] for _ in range(n_layers)]
    for i in range(n_layers):
        if status[i] == "non-finite":
            flags[i].append("non_finite")
            continue
        if not (zero[i] or feeds_norm[i]):
            flags[i] += ["forward_blowup"] if gain[i] > limits.forward_high else []
            flags[i] += ["forward_collapse"] if gain[i] < limits.forward_low else []
        if status[i] != "ok":
            continue
        checks = {
            "exploding": ratio[i] > limits.exploding and trend[i] > limits.exploding,
            "vanishing": ratio[i] < limits.vanishing and trend[i] < limits.vanishing,
            "dead": last["dead_frac"][i] > limits.dead,
            "saturated": last["saturated_frac"][i] > limits.saturated,
        }
        if not (zero[i] or feeds_norm[i] or i in blocked):
            checks["update_too_large"] = last["update_ratio"][i] > limits.update_high
            checks["update_too_small"] = last["update_ratio"][i] < limits.update_low
        flags[i] += [kind for kind, hit in checks.items() if hit]  # NaN compares False: not measured

    diagnoses = tuple(
        LayerDiagnosis(
            name=name,
            index=i + 1,
            kind=type(module).__name__,
            n_weights=int(n_weights[i]),
            grad_norm=float(last["grad_norm"][i]),
            grad_rms=float(rms[i]),
            ratio=float(ratio[i]),
            update_ratio=float(last["update_ratio"][i]),
            dead_frac=float(last["dead_frac"][i]),
            saturated_frac=float(last["saturated_frac"][i]),
            status=status[i],
            flags=tuple(k for k in _LAYER_FLAGS if k in flags[i]),
            forward_ms=float(signals["forward_ms"][i]),
            forward_gain=float(gain[i]),
            similarity=float(signals["similarity"][i]),
            backward_norm=float(signals["backward_norm"][i]),
            backward_ratio=float(back_ratio[i]),
            feeds_norm=bool(feeds_norm[i]),
            zero_start=bool(zero[i]),
        )
        for i, (name, module) in enumerate(layers)
    )
    reference_name = None if reference is None else layers[reference][0]
    return diagnoses, reference_name, float(input_ms), tuple(diagnoses[i].name for i in sorted(blocked))


def _names(names: Sequence[str], limit: int = 4) -> str:
    """'a, b, c' or 'a, b, …, z (12 layers)' for long lists."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[: limit - 1])}, …, {names[-1]} ({len(names)} layers)"


def _see(chapters: tuple[str, ...]) -> str:
    return "see " + " and ".join(f'"{c}"' for c in chapters)


def _range(values: Sequence[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "—"
    low, high = min(finite), max(finite)
    return f"{low:.2g}" if f"{low:.2g}" == f"{high:.2g}" else f"{low:.2g} to {high:.2g}"


def _findings(
    report: DiagnosisReport,
    model: nn.Module,
    layers: Sequence[tuple[str, nn.Module]],
    blocked: tuple[str, ...],
    *,
    classes: int | None,
    zero_start: bool,
    adaptive: bool,
    lr: float | None,
    called: frozenset[str],
) -> tuple[Finding, ...]:
    """One finding per flag kind that some layer has (plus model-level ones), in ``FINDING_KINDS`` order.
    ``called``: the saturating activations the forward pass called ("sigmoid", "tanh"), as modules or not."""
    diagnoses, limits, losses, batch_size = report.layers, report.thresholds, report.losses, report.batch_size
    by_kind = report.flagged
    findings: list[Finding] = []

    def add(
        kind: str, names: Sequence[str], message: str, fix: str, see: tuple = (), after: str = ""
    ) -> None:
        """A finding whose suggestion is ``fix``, then "; see <the chapters with ids see>." and ``after``."""
        chapters = tuple(CHAPTERS[k] for k in see)
        suggestion = f"{fix}; {_see(chapters)}.{after}" if see else fix
        findings.append(Finding(kind, tuple(names), message, suggestion, chapters))

    sigmoid, saturating = "sigmoid" in called, bool(called)  # called: nn.Sigmoid/nn.Tanh modules included
    activation_init = "He (Kaiming) for ReLU, Xavier for tanh" + (
        "; replace sigmoid by ReLU or tanh" if sigmoid else ""
    )

    where = report.non_finite_at
    if where == "input":
        fix = "clean or standardize the data: NaN/inf in the input propagates everywhere."
        add("non_finite", by_kind["non_finite"], "the input batch holds NaN or inf", fix)
    elif where is not None:
        message = {
            "loss": "the loss is NaN or inf (every layer output was finite)",
            "gradient": "a gradient holds NaN or inf (the forward pass was finite)",
        }.get(where, f"the forward pass first produced NaN/inf at layer {where!r}")
        chapters = (CHAPTERS["initialization"], CHAPTERS["recurrent_networks"])
        fix = "lower the learning rate, shrink the initial weights and clip the gradient norm"
        fix = f"{fix}; {_see(chapters)} (clipping)."
        findings.append(Finding("non_finite", by_kind["non_finite"], message, fix, chapters))

    names = by_kind["forward_blowup"]
    if names:
        gains = [d.forward_gain for d in diagnoses if d.name in names]
        add(
            "forward_blowup",
            names,
            f"forward signal blows up: the second moment mean(h²) of the outputs of {_names(names)} is "
            f"more than {limits.forward_high:g}× the input's (up to {max(gains):.2g}×): the weights are "
            "too large for the activation, and the backward signal grows with the forward one.",
            f"initialize with the variance-preserving scale ({activation_init}) and standardize the inputs",
            ("initialization",),
        )

    names = by_kind["forward_collapse"]
    if names:
        gains = [d.forward_gain for d in diagnoses if d.name in names]
        back = diagnoses[0].backward_ratio
        back_text = (
            f" The backward signal shrinks alike toward the input (‖∂L/∂h‖ per entry at the first layer: "
            f"{back:.2g} of the output layer's), so the weight gradients, products of the two, can look "
            "balanced."
            if math.isfinite(back) and back < 1
            else ""
        )
        add(
            "forward_collapse",
            names,
            f"forward signal collapses: the second moment mean(h²) of the outputs of {_names(names)} is "
            f"below {limits.forward_low:g} of the input's (down to {min(gains):.2g}): each layer shrinks "
            f"it, and the output hardly depends on the input.{back_text}",
            f"initialize for the activation ({activation_init}): the learning rate is not the cause",
            ("initialization",),
        )

    names = by_kind["exploding"]
    if names:
        add(
            "exploding",
            names,
            f"exploding gradient: {_names(names)} get more than {limits.exploding:g}× the output "
            "layer's gradient per weight.",
            "initialize with the variance-preserving scale (Xavier/He) and clip the gradient norm",
            ("initialization", "recurrent_networks"),
            " If only the first layer is flagged, check that the inputs are standardized."
            if names == (diagnoses[0].name,)
            else "",
        )

    names = by_kind["vanishing"]
    if names:
        flagged = [m for n, m in layers if n in names]
        if any(isinstance(m, nn.RNN) for m in flagged):  # a vanilla RNN (an LSTM or GRU is no nn.RNN)
            see = ("recurrent_networks",)
            fix = "use an LSTM or GRU (gated paths through time) instead of a vanilla RNN"
        elif saturating:
            see = ("sigmoid_bound", "initialization")
            fix = "replace sigmoid/tanh hidden activations by ReLU/GELU with He initialization"
        elif any(isinstance(m, nn.LSTM) for m in flagged):
            see = ("recurrent_networks",)
            fix = (
                "the LSTM is gated already: start its forget-gate bias at 1, so that its cell path carries "
                "the gradient across more time steps"
            )
        else:
            see = ("initialization", "residual_networks")
            fix = "initialize for the activation (He for ReLU), or add skip connections with normalization"
        add(
            "vanishing",
            names,
            f"vanishing gradient: {_names(names)} get less than {limits.vanishing:g} of the output "
            "layer's gradient per weight.",
            fix,
            see,
        )

    names = by_kind["dead"]
    if names:
        add(
            "dead",
            names,
            f"dead units: more than {limits.dead:.0%} of the units of {_names(names)} are <= 0 on every "
            f"example of the batch (they pass no gradient).",
            "lower the learning rate, start biases at 0 (not negative), or use LeakyReLU/GELU",
            ("relu_dying_units",),
        )

    names = by_kind["saturated"]
    if names:
        add(
            "saturated",
            names,
            f"saturated units: more than {limits.saturated:.0%} of the outputs of {_names(names)} sit in "
            "the flat tails of sigmoid/tanh, where the derivative is almost 0.",
            "shrink the weights (Xavier scale), standardize the inputs, or use a non-saturating activation",
            ("sigmoid_bound", "initialization"),
        )

    moving = [d.name for d in diagnoses if math.isfinite(d.update_ratio) and d.status == "ok"]
    names = by_kind["update_too_large"]
    if names:
        see = ("detecting_and_fixing",)
        if by_kind["forward_blowup"] or by_kind["exploding"]:
            see = ("initialization", "detecting_and_fixing")
            fix = (
                "the steps are large because the signal is too large (above): fix the initialization first; "
                "clipping the gradient norm bounds the step meanwhile"
            )
        elif 2 * len(names) < len(moving):
            fix = (
                f"the other {len(moving) - len(names)} layers move at typical rates, so these start small (a "
                "head initialized at a small scale) and one step is large for them: watch that their ratio "
                "settles over training; a smaller learning rate only if the loss jumps, or clip the "
                "gradient norm"
            )
        else:
            fix = "lower the learning rate, or clip the gradient norm"
        add(
            "update_too_large",
            names,
            f"large steps: one update changes the weights of {_names(names)} by more than "
            f"{limits.update_high:g} of their scale (update:data ratio; about {UPDATE_RATIO_GUIDE:g} is "
            "typical).",
            fix,
            see,
        )

    names = by_kind["update_too_small"]
    if names:
        see = ("detecting_and_fixing",)
        if by_kind["forward_collapse"]:
            see = ("initialization", "detecting_and_fixing")
            cause = (
                "the forward and backward signals collapsed (above): fix the initialization, not the "
                "learning rate"
            )
        elif by_kind["vanishing"]:
            cause = "fix the vanishing gradient first"
        elif by_kind["dead"]:
            cause = "revive the dead units first (no gradient passes through them)"
        elif 2 * len(names) < len(moving):
            cause = (
                f"not the learning rate: the other {len(moving) - len(names)} layers move at typical rates "
                "(a larger one would make their steps too large); slow layers of this kind are often "
                "embeddings (large initial weights, sparse gradients) or gates (squeeze-excitation): "
                "watch them over training"
            )
        elif adaptive:
            cause = "raise the learning rate (an adaptive optimizer moves each weight by about lr per step)"
        else:
            cause = "raise the learning rate (the signals are balanced: the step size is the cause)"
        add(
            "update_too_small",
            names,
            f"layers not moving: one update changes the weights of {_names(names)} by less than "
            f"{limits.update_low:g} of their scale (update:data ratio; about {UPDATE_RATIO_GUIDE:g} is "
            "typical).",
            cause,
            see,
        )

    if classes is not None and losses and losses[0] > INITIAL_LOSS_FACTOR * math.log(classes):
        chance = math.log(classes)
        add(
            "initial_loss",
            (),
            f"the first loss is {losses[0]:.3g}, more than {INITIAL_LOSS_FACTOR:g} × ln C = "
            f"{INITIAL_LOSS_FACTOR * chance:.3g}; a {classes}-class classifier that knows nothing scores "
            f"ln C = {chance:.3g} (Karpathy's check): the right class gets probability e^-loss = "
            f"{math.exp(-losses[0]):.2g} on (geometric) average, so the first logits are large and "
            "confidently wrong.",
            "scale the output layer's initial weights down (or start them at 0) so that the first "
            "logits are near 0, and check the labels",
            ("initialization",),
        )

    if zero_start:
        zero_layers = [d.name for d in diagnoses if d.zero_start]
        zero_params = sorted(p.name for p in report.parameters if p.zero_start)
        passed = (
            f"on the first step no gradient passed back through them, so {_names(list(blocked))} got "
            "exactly 0 (not judged as vanishing or not moving); "
            if blocked
            else ""
        )
        ran = (
            f"diagnose ran {len(losses)} steps (not {report.steps_asked}) to see past it"
            if len(losses) > report.steps_asked
            else f"the report shows step {len(losses)}"
        )
        add(
            "zero_start",
            zero_layers,
            f"starting at exactly 0: {_names(zero_layers + zero_params)} (a zero-initialized output "
            f"layer, residual-branch end or normalization scale: a design, not a fault); {passed}{ran}.",
            "nothing to fix; judge the layers before them after more steps (diagnose(..., steps=n)); "
            "neither they nor the layers they block are flagged for their update ratios.",
        )

    names = [d.name for d in diagnoses if d.feeds_norm and d.status == "ok"]
    if names:
        steps = [d.update_ratio for d in diagnoses if d.name in names]
        effective = ""
        if lr is not None and not adaptive:
            sq = [
                sum(float(p.detach().double().square().sum()) for p in layer_weights(m))
                for n, m in layers
                if n in names
            ]
            lrs = [lr / v for v in sq if v > 0]
            effective = f" (effective learning rate lr/‖W‖² now {_range(lrs)})"
        add(
            "normalized",
            names,
            f"{_names(names)} feed a normalization layer, so the loss does not change when their "
            "weights are scaled: their update:data ratio "
            f"({_range(steps)}) is an effective, angular step{effective}, and a large one grows ‖W‖, "
            "which shrinks the next steps.",
            "their update ratios are reported, not flagged; the norm layers' own scales and shifts are "
            "listed among the other parameters.",
        )

    if adaptive:
        add(
            "adaptive",
            (),
            "with an adaptive optimizer (Adam, RMSprop...), each weight moves by about lr per step "
            "whatever its gradient's size (the update is g/√v): a small gradient does not by itself slow "
            "a layer down; it does mean that the layer changes the loss little, or that its gradient is "
            "mostly noise (and a gradient far below Adam's eps, 1e-8, moves the weight by only about "
            "lr·|g|/eps).",
            "read the update column, not the gradient column, for how fast a layer learns; a vanishing "
            "gradient still means a network that passes little signal back.",
        )

    names = [d.name for d in diagnoses if d.status == "no gradient"]
    if names:
        add(
            "no_gradient",
            names,
            f"no gradient reached {_names(names)} although their weights require grad.",
            "they are unused in this forward pass or detached from the loss (.detach(), torch.no_grad).",
        )
    if report.reference is None and any(d.status == "ok" for d in diagnoses):
        add(
            "no_gradient",
            (),
            "the output layer's gradient is 0 or not finite: ratios to it are not defined.",
            "check that the loss depends on the last layer (a dead or detached one gets no gradient).",
        )
    has_dead_units = any(math.isfinite(d.dead_frac) for d in diagnoses)
    has_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if batch_size < MIN_BATCH and (has_dead_units or has_batch_norm):
        add(
            "small_batch",
            (),
            f"the batch has only {batch_size} examples: dead-unit fractions and batch-norm statistics "
            "are noisy (a healthy unit looks dead on all of them with probability about "
            f"{0.5**batch_size:.2g}).",
            f"diagnose on a batch of {MIN_BATCH} or more examples for these numbers to mean much.",
        )
    return tuple(findings)
