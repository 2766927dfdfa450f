"""The chapter on detecting and fixing vanishing gradients: the warning signs, ``diagnose``, and the remedies.

``vgcourse.diagnose`` flags layers whose gradient per weight, rms(g_l) = ‖g_l‖/√n_l, is below 10^-3
(vanishing) or above 10^3 (exploding) times the output layer's. Here: the calibration of those lines,
runs that show each warning sign, sanity checks at initialization, and the remedies grid on digits."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import stack_module_state

from vgcourse._validation import check_int
from vgcourse.activations import make_activation
from vgcourse.config import (
    Config,
    Grid,
    check_config,
    derive,
    device_field,
    flag,
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
from vgcourse.diagnose import SATURATION, DiagnosisReport, diagnose
from vgcourse.initializers import initialize
from vgcourse.models import MLP, ResidualMLP, check_norm_sizes, keep_outputs, named_layers
from vgcourse.monitor import DEFAULT_STATS
from vgcourse.training import Callback, History, StepEvent, StopTraining, TrainConfig, minibatches, train

GRID_ACTIVATIONS = ("sigmoid", "tanh", "relu", "gelu")
GRID_INITS = ("default", "xavier", "he")  # PyTorch's default, Xavier/Glorot normal, He/Kaiming normal
GRID_NORMS = ("none", "batch", "layer")  # inside each block
FACTORS = ("activation", "init", "skip", "norm", "clip")
_SCHEMES = {"default": "default", "xavier": "xavier_normal", "he": "kaiming_normal"}
_LEVELS = (GRID_ACTIVATIONS, GRID_INITS, (False, True), GRID_NORMS, (False, True))  # of FACTORS
_CE = nn.CrossEntropyLoss()


def _diagnosis_batch(data: DataSplit, size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` training examples: the fixed batch every ``diagnose`` call of the chapter uses."""
    return data.x_train[:size], data.y_train[:size]


def steps_to_target(history: History, target: float) -> int | None:
    """Steps after which the validation loss first was <= ``target`` (None: never; eval_steps are 0-based)."""
    hits = np.flatnonzero(np.asarray(history.val_loss) <= target)
    return int(history.eval_steps[hits[0]]) + 1 if len(hits) else None


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [module.weight.detach().clone() for _, module in named_layers(model)]


def weight_change(before: list[torch.Tensor], after: list[torch.Tensor]) -> np.ndarray:
    """Per layer (input to output), how far training moved the weights: ‖W_after − W_before‖ / ‖W_before‖."""
    return np.array([float((a - b).norm() / b.norm()) for b, a in zip(before, after, strict=True)])


# --- Calibration: where healthy networks sit, and how fast a vanishing one leaves

CASES = ("he_relu", "he_relu_wide", "xavier_tanh", "default_sigmoid")  # He ReLU (width w, 4w), Xavier tanh


class CalibrationConfig(Config):
    """MLPs of ``depth`` hidden layers at initialization, one per case and seed, diagnosed on digits."""

    depth: int = integer(10, low=2, high=200)
    width: int = integer(64, low=1, high=2048)
    seeds: tuple[int, ...] = nonempty(seed_field(), default=(0,), unique=True)
    data_seed: int = seed_field()


@dataclass(frozen=True)
class CalibrationResult:
    """Grids over (case, seed | layer, input to output), and four summaries."""

    config: CalibrationConfig
    log_ratio: Grid  # log10 rms(g_l)/rms(g_output); −inf where float32 underflowed g_l to 0 (a deep sigmoid)
    saturated: Grid  # saturated output fractions (NaN: not sigmoid/tanh)
    healthy_lowest: float  # the lowest log10 ratio of any layer of the healthy cases (CASES[:3])
    healthy_highest: float  # the highest of any hidden layer of the healthy cases
    sigmoid_decades_per_layer: float  # median log10 ratio drop per hidden layer, default sigmoid, ratios > 0
    xavier_tanh_saturated: float  # the largest saturated fraction of any Xavier tanh layer


def _calibration_model(case: str, depth: int, width: int, seed: int) -> MLP:
    generator = torch.Generator().manual_seed(seed)
    if case in ("he_relu", "he_relu_wide"):
        model = MLP(64, 10, depth, width * (4 if case == "he_relu_wide" else 1), "relu", seed=seed)
        return initialize(model, "kaiming_normal", generator=generator)
    if case == "xavier_tanh":
        return initialize(MLP(64, 10, depth, width, "tanh", seed=seed), "xavier_normal", generator=generator)
    return MLP(64, 10, depth, width, "sigmoid", seed=seed)  # PyTorch's default initialization


def run_calibration(config: CalibrationConfig) -> CalibrationResult:
    check_config(config, CalibrationConfig)
    batch = _diagnosis_batch(shared_digits(config.data_seed))
    log_ratio, saturated = {}, {}
    for case in CASES:
        models = [_calibration_model(case, config.depth, config.width, seed) for seed in config.seeds]
        reports = [diagnose(model, _CE, batch) for model in models]
        ratio = np.stack([r.columns["ratio"] for r in reports])
        # a healthy case has a gradient in every layer (ratio 0: none; NaN: 0/0, none in the output layer)
        if case in CASES[:3] and not np.all((ratio > 0) & (ratio < math.inf)):
            where = f"{case} at depth {config.depth}, width {config.width}"
            raise ValueError(f"{where} has a layer without gradient: try a larger width or a smaller depth")
        with np.errstate(divide="ignore"):  # ratio 0: g_l underflowed float32
            log_ratio[case] = np.log10(ratio)
        saturated[case] = np.stack([r.columns["saturated_frac"] for r in reports])
    healthy = [log_ratio[case] for case in CASES[:3]]
    with np.errstate(invalid="ignore"):  # −inf − (−inf) between two underflowed layers
        drops = np.diff(log_ratio["default_sigmoid"][:, :-1], axis=1)
    axes = {"case": CASES, "seed": config.seeds}
    return CalibrationResult(
        config,
        Grid(np.stack(list(log_ratio.values())), name="log10 gradient ratio", **axes),
        Grid(np.stack(list(saturated.values())), name="saturated fraction", **axes),
        float(min(v.min() for v in healthy)),
        float(max(v[:, :-1].max() for v in healthy)),
        float(np.median(drops[np.isfinite(drops)])),
        float(np.nanmax(saturated["xavier_tanh"])),
    )


# --- The warning signs, each on a real run

SIGNS = {  # the runs of ``run_warning_signs``: a healthy reference and one run per warning sign
    "healthy": "He-initialized ReLU (the reference)",
    "vanishing": "sigmoid, PyTorch's default initialization",
    "dead": "ReLU, He initialization, every bias starting at -1",
    "saturated": "tanh, weights N(0, 1) (far too large)",
    "exploding": "ReLU, He initialization × 2",
    "exploding_clipped": "the same, with gradient-norm clipping at 1",
}


class WarningSignsConfig(Config):
    """Six MLPs trained on digits with SGD (momentum 0.9) at one lr, each showing one warning sign or none."""

    depth: int = integer(8, low=1, high=100)
    width: int = integer(64, low=1, high=4096)
    steps: int = positive(150, integer=True)
    batch_size: int = positive(64, integer=True)
    lr: float = positive(0.01)
    dead_bias: float = real(-1.0)  # every hidden bias of the "dead" run
    saturated_std: float = positive(1.0)  # the weight std of the "saturated" tanh run
    exploding_scale: float = positive(2.0)  # the "exploding" run's weights: this × He's std
    clip_norm: float = positive(1.0)  # of the "exploding_clipped" run
    diagnose_steps: int = integer(10, low=1, high=1000)  # of diagnose repeating the exploding run
    seed: int = seed_field()
    data_seed: int = seed_field()
    device: str = device_field("auto")


@dataclass(frozen=True)
class SignRun:
    """One run of ``run_warning_signs``: its history (stopped at a NaN/inf), ``diagnose`` at
    initialization (with the run's optimizer, lr and clipping), and per layer ‖W_T − W_0‖ / ‖W_0‖."""

    name: str
    history: History
    report: DiagnosisReport
    weight_change: np.ndarray
    initial_loss: float  # training loss of the first step
    final_loss: float  # mean training loss of the last 10 steps (NaN when the run diverged)
    final_accuracy: float  # validation accuracy at the end (NaN when the run diverged)


@dataclass(frozen=True)
class WarningSignsResult:
    """The runs by name (``SIGNS`` order), and ``diagnose(..., steps=diagnose_steps)`` of the exploding
    network, which reports where the NaN/inf appeared instead of raising."""

    config: WarningSignsConfig
    runs: dict[str, SignRun]
    exploding_steps: DiagnosisReport

    def to_frame(self) -> Any:
        """One row per run: what training showed and what ``diagnose`` flagged."""
        import pandas as pd

        def row(run: SignRun) -> dict[str, Any]:
            flags = [f.label for f in run.report.problems]
            return {
                "run": run.name,
                "network": SIGNS[run.name],
                "first loss": run.initial_loss,
                "final loss": run.final_loss,
                "val accuracy": run.final_accuracy,
                "diverged at step": run.history.diverged_step,
                "layer 1 moved": float(run.weight_change[0]),
                "output moved": float(run.weight_change[-1]),
                "diagnose at init": ", ".join(flags) or "nothing",
            }

        return pd.DataFrame([row(run) for run in self.runs.values()]).set_index("run")


def _sign_model(name: str, config: WarningSignsConfig) -> MLP:
    generator = torch.Generator().manual_seed(config.seed)
    depth, width, seed = config.depth, config.width, config.seed
    if name == "vanishing":
        return MLP(64, 10, depth, width, "sigmoid", seed=seed)
    if name == "saturated":
        model = MLP(64, 10, depth, width, "tanh", seed=seed)
        return initialize(model, "normal", std=config.saturated_std, generator=generator)
    model = MLP(64, 10, depth, width, "relu", seed=seed)
    if name in ("exploding", "exploding_clipped"):
        initialize(model, "normal", std=config.exploding_scale * math.sqrt(2.0 / width), generator=generator)
        with torch.no_grad():  # the first layer has 64 inputs, not width
            model.layers[0].linear.weight.mul_(math.sqrt(width / 64))
        return model
    bias = config.dead_bias if name == "dead" else 0.0
    return initialize(model, "kaiming_normal", bias=bias, generator=generator)


def run_warning_signs(config: WarningSignsConfig) -> WarningSignsResult:
    check_config(config, WarningSignsConfig)
    data = shared_digits(config.data_seed)
    batch = _diagnosis_batch(data)
    device = pick_device(config.device)
    setup = derive(TrainConfig, config, optimizer="momentum", monitor_every=None, eval_every=config.steps)
    runs = {}
    for name in SIGNS:
        model = _sign_model(name, config).to(device)
        clip = config.clip_norm if name == "exploding_clipped" else None
        report = diagnose(model, _CE, batch, lr=config.lr, optimizer="momentum", clip_norm=clip)
        before = _weights(model)
        history = train(model, data, replace(setup, clip_norm=clip))
        runs[name] = SignRun(
            name,
            history,
            report,
            weight_change(before, _weights(model)),
            float(history.loss[0]),
            math.nan if history.diverged else float(np.mean(history.loss[-10:])),
            math.nan if history.diverged else history.final_val_accuracy,
        )
    exploding = _sign_model("exploding", config).to(device)  # afresh: diagnose it over diagnose_steps steps
    steps = diagnose(exploding, _CE, batch, steps=config.diagnose_steps, lr=config.lr, optimizer="momentum")
    return WarningSignsResult(config, runs, steps)


def diagnosis_gallery(seed: int = 0, collapse_depth: int = 30) -> dict[str, DiagnosisReport]:
    """``diagnose`` at initialization of two networks on the chapter's digits batch, at the
    warning signs' learning rate with momentum. ``forward_collapse``: He et al. 2015's ReLU MLP with Xavier
    weights, Var(W) = 1/n where ReLU needs 2/n, so q_l halves per layer (2^-13 < 1e-4 after 13 layers):
    forward and backward signals collapse together; ``zero_head``: the warning signs' healthy reference with
    its output weights 0 (a design choice, not a disease)."""
    seed = check_int("seed", seed, minimum=0)
    collapse_depth = check_int("collapse_depth", collapse_depth, minimum=1)
    config = WarningSignsConfig(seed=seed)
    batch = _diagnosis_batch(shared_digits(config.data_seed))
    collapse = MLP(64, 10, collapse_depth, 64, "relu", seed=seed)
    initialize(collapse, "xavier_normal", generator=torch.Generator().manual_seed(seed))
    zero_head = _sign_model("healthy", config)
    nn.init.zeros_(zero_head.head.weight)
    models = {"forward_collapse": collapse, "zero_head": zero_head}
    return {name: diagnose(m, _CE, batch, lr=config.lr, optimizer="momentum") for name, m in models.items()}


# --- Karpathy's sanity checks at initialization: the first loss against ln C, activation histograms

HEAD_SCALE = 0.1  # "healthy_small_head": output weights × this, bias 0 (Karpathy's fix for a loss above ln C)
SANITY_CASES = ("xavier_tanh", "saturated")  # the tanh networks of the histograms


@dataclass(frozen=True)
class SanityResult:
    """The sanity checks of a classifier at initialization, on the chapter's diagnosis batch."""

    config: WarningSignsConfig
    initial_loss: dict[str, float]  # per network of SIGNS (not the clipped twin) and "healthy_small_head"
    activations: dict[str, np.ndarray] = field(repr=False)  # per SANITY_CASES: (hidden layer, values)
    saturated: dict[str, np.ndarray]  # per case and hidden layer: the fraction with |u| > SATURATION


def run_sanity_checks(config: WarningSignsConfig | None = None) -> SanityResult:
    """The first loss of every warning-signs network at initialization (a first loss far above ln C
    means confidently wrong logits), and the hidden activations of a Xavier and a saturated tanh MLP."""
    config = WarningSignsConfig(device="cpu") if config is None else config
    x, y = _diagnosis_batch(shared_digits(config.data_seed))
    models = {name: _sign_model(name, config) for name in SIGNS if name != "exploding_clipped"}
    models["healthy_small_head"] = _sign_model("healthy", config)
    with torch.no_grad():
        models["healthy_small_head"].head.weight.mul_(HEAD_SCALE)
        models["healthy_small_head"].head.bias.zero_()
        initial_loss = {name: float(_CE(model(x), y)) for name, model in models.items()}
    xavier = _calibration_model("xavier_tanh", config.depth, config.width, config.seed)
    activations = {}  # every hidden layer's output (layer, example·unit), from one forward pass
    for case, model in zip(SANITY_CASES, (xavier, _sign_model("saturated", config)), strict=True):
        with torch.no_grad(), keep_outputs(model.layers) as outputs:
            model(x)
        activations[case] = np.stack([output.reshape(-1).numpy() for output in outputs])
    saturated = {case: np.mean(np.abs(values) > SATURATION, axis=1) for case, values in activations.items()}
    return SanityResult(config, initial_loss, activations, saturated)


# --- The remedies grid


class Remedy(Config, kw_only=False):
    """A cell of the remedies grid, fields in order (``Remedy("relu", "he")``): "he" init uses the
    activation's gain; ``skip``: blocks are x + F(x); ``norm``: after each Linear in a block; ``clip``: of
    the gradient norm."""

    activation: str = one_of(*GRID_ACTIVATIONS, default="sigmoid")
    init: str = one_of(*GRID_INITS, default="default")
    skip: bool = flag(False)
    norm: str = one_of(*GRID_NORMS, default="none")
    clip: bool = flag(False)

    @property
    def label(self) -> str:
        """A short name, e.g. "relu · he · skip · LayerNorm · clip"."""
        norm = {"none": "", "batch": "BatchNorm", "layer": "LayerNorm"}[self.norm]
        parts = (self.activation, self.init, "skip" if self.skip else "", norm, "clip" if self.clip else "")
        return " · ".join(part for part in parts if part)

    def changes(self, baseline: Remedy) -> tuple[str, ...]:
        """The factors (names from ``FACTORS``) in which this cell differs from ``baseline``."""
        return tuple(f for f in FACTORS if getattr(self, f) != getattr(baseline, f))

    def build(self, blocks: int, width: int, seed: int) -> ResidualMLP:
        """Stem Linear(64, width), ``blocks`` blocks of two Linears, head Linear(width, 10)."""
        norm = None if self.norm == "none" else self.norm
        model = ResidualMLP(64, 10, blocks, width, self.activation, norm, skip=self.skip, seed=seed)
        if self.init != "default":
            generator = torch.Generator().manual_seed(seed)
            initialize(model, _SCHEMES[self.init], activation=self.activation, generator=generator)
        return model


BASELINE = Remedy()  # the broken network every remedy is compared with: sigmoid, default init, nothing else

INTERACTIONS = (
    Remedy("tanh", "xavier"),
    Remedy("relu", "he"),
    Remedy("relu", "he", clip=True),
    Remedy("relu", "he", skip=True),
    Remedy("relu", "he", skip=True, clip=True),
    Remedy("relu", "he", skip=True, norm="batch"),
    Remedy("relu", "he", skip=True, norm="layer"),
)  # each activation with its own initialization, and the modern recipe built up one piece at a time


def fractional_design() -> tuple[Remedy, ...]:
    """The baseline, every other level of every factor changed alone, then ``INTERACTIONS`` (no repeats)."""
    alone = [replace(BASELINE, **{f: v}) for f, values in zip(FACTORS, _LEVELS, strict=True) for v in values]
    return tuple(dict.fromkeys([BASELINE, *alone, *INTERACTIONS]))


def full_design() -> tuple[Remedy, ...]:
    """All 4 × 3 × 2 × 3 × 2 = 144 cells."""
    return tuple(Remedy(*values) for values in itertools.product(*_LEVELS))


class _GridConfig(Config):
    """Shared by the remedies grids: the cells (``remedies`` instead of ``design`` when given), the network
    (``blocks`` of two Linears: 20 hidden layers for 10), the recipe, and the target validation loss."""

    design: str = one_of("fractional", "full", default="fractional")  # fractional_design or full_design
    remedies: tuple[Remedy, ...] | None = nonempty(instance_of(Remedy), default=None, optional=True)
    blocks: int = integer(10, low=1, high=200)
    width: int = integer(32, low=1, high=4096)
    steps: int = positive(150, integer=True)
    batch_size: int = positive(64, integer=True)
    clip_norm: float = positive(1.0)  # of the cells with ``clip``
    target_loss: float = positive(0.5)
    eval_every: int = positive(10, integer=True)  # the resolution of steps-to-target
    data_seed: int = seed_field()

    def check(self) -> None:
        check_norm_sizes((cell.norm for cell in self.cells), self.width, self.batch_size)

    @property
    def cells(self) -> tuple[Remedy, ...]:
        if self.remedies is not None:
            return self.remedies
        return fractional_design() if self.design == "fractional" else full_design()


class MonitoredRemediesConfig(_GridConfig):
    """The remedies grid on digits: SGD (momentum 0.9) at ``lr``, recorded every ``monitor_every`` steps."""

    lr: float = positive(0.05)
    monitor_every: int = positive(5, integer=True)
    seed: int = seed_field()
    device: str = device_field("auto")


@dataclass(frozen=True)
class RemedyRun:
    """One trained cell: ``diagnose`` at initialization (one SGD-momentum step at the grid's lr, clipped
    like the training), the history with the monitor's record, and the steps to the target (None: never)."""

    remedy: Remedy
    report: DiagnosisReport
    history: History
    steps_to_target: int | None

    @property
    def frozen_layers(self) -> int:
        """Layers whose update:data ratio was exactly 0 at every recorded step: W + ΔW == W in float32."""
        return int(np.sum(np.all(self.history.monitor.update_ratio == 0, axis=0)))

    def log_update_range(self, step: int = -1) -> tuple[float, float]:
        """The lowest and highest log10 update:data ratio of the layers that moved, at one recorded step."""
        row = self.history.monitor.update_ratio[step]
        row = row[np.isfinite(row) & (row > 0)]
        return float(np.log10(row.min())), float(np.log10(row.max()))

    def log_grad_ratio_over_training(self) -> np.ndarray:
        """log10 rms(g_first)/rms(g_output) at every recorded step (the report's ratio, over training)."""
        n = np.array([layer.n_weights for layer in self.report.layers], dtype=np.float64)
        rms = self.history.monitor.grad_norm / np.sqrt(n)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log10(rms[:, 0] / rms[:, -1])


@dataclass(frozen=True)
class MonitoredRemediesResult:
    config: MonitoredRemediesConfig
    runs: dict[Remedy, RemedyRun]  # the trained cells, in the design's order


def run_monitored_remedies(config: MonitoredRemediesConfig) -> MonitoredRemediesResult:
    check_config(config, MonitoredRemediesConfig)
    data = shared_digits(config.data_seed)
    batch = _diagnosis_batch(data)
    device = pick_device(config.device)
    runs = {}
    for remedy in config.cells:
        model = remedy.build(config.blocks, config.width, config.seed).to(device)
        clip = config.clip_norm if remedy.clip else None
        report = diagnose(model, _CE, batch, lr=config.lr, optimizer="momentum", clip_norm=clip)
        stats = (*DEFAULT_STATS, "update_ratio")  # RemedyRun reads the update ratios
        train_config = derive(TrainConfig, config, optimizer="momentum", clip_norm=clip, monitor_stats=stats)
        history = train(model, data, train_config)
        runs[remedy] = RemedyRun(remedy, report, history, steps_to_target(history, config.target_loss))
    return MonitoredRemediesResult(config, runs)


# --- The remedies grid, robust: every cell at several learning rates and seeds, trained side by side


class _StackedNets(nn.Module):
    """E ``remedy.build(blocks, ...)`` networks as one module, parameters and buffers stacked on a first axis:
    output[e] = network e's output on x[e] for x (E, B, 64) (tested). BatchNorm normalizes each over its own
    batch, updating its running statistics when gradients are enabled, using them under ``no_grad``."""

    def __init__(self, remedy: Remedy, blocks: int, models: list[ResidualMLP]) -> None:
        super().__init__()
        params, self.stacked_buffers = stack_module_state(models)
        self.tensors = nn.ParameterList(params.values())
        self.params = dict(zip(params, self.tensors, strict=True))
        self.remedy, self.blocks, self.act = remedy, blocks, make_activation(remedy.activation)

    def linear(self, name: str, h: torch.Tensor) -> torch.Tensor:
        weight, bias = self.params[f"{name}.weight"], self.params[f"{name}.bias"]
        return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))

    def norm(self, name: str, h: torch.Tensor) -> torch.Tensor:
        weight, bias = self.params[f"{name}.weight"], self.params[f"{name}.bias"]
        if self.remedy.norm == "layer":
            return nn.functional.layer_norm(h, h.shape[-1:]) * weight.unsqueeze(1) + bias.unsqueeze(1)
        members, rows, width = h.shape  # BatchNorm: the E·C channels of (B, E·C) are independent
        mean, var = (self.stacked_buffers[f"{name}.running_{stat}"].view(-1) for stat in ("mean", "var"))
        flat = h.transpose(0, 1).reshape(rows, members * width)
        flat = nn.functional.batch_norm(
            flat, mean, var, weight.reshape(-1), bias.reshape(-1), training=torch.is_grad_enabled()
        )
        return flat.reshape(rows, members, width).transpose(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear("stem", x)
        for i in range(self.blocks):
            f = self.linear(f"blocks.{i}.fc1", h)
            f = self.norm(f"blocks.{i}.norm1", f) if self.remedy.norm != "none" else f
            f = self.linear(f"blocks.{i}.fc2", self.act(f))
            f = self.norm(f"blocks.{i}.norm2", f) if self.remedy.norm != "none" else f
            h = h + f if self.remedy.skip else f
        return self.linear("head", h)


class _RunwiseMomentum(torch.optim.Optimizer):
    """SGD, momentum 0.9, on parameters stacked over runs (dim 0): g_r clipped to norm c if ``clips[r]``;
    v_r ← 0.9 v_r + g_r; θ_r ← θ_r − lr_r v_r; a NaN/inf ``closure()[r]`` or ‖g_r‖ stops run r (``alive``)."""

    def __init__(self, params: Any, lr: torch.Tensor, clips: torch.Tensor, clip_norm: float) -> None:
        super().__init__(params, {"lr": lr})
        self.clips, self.clip_norm = clips, clip_norm
        self.alive = torch.ones(len(lr), dtype=torch.bool)
        self.velocity = [torch.zeros_like(p) for p in self.param_groups[0]["params"]]

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> None:
        (group,) = self.param_groups
        tensors, runs = group["params"], len(group["lr"])
        shapes = [(runs,) + (1,) * (p.dim() - 1) for p in tensors]
        norm = torch.linalg.vector_norm(torch.cat([p.grad.reshape(runs, -1) for p in tensors], 1), dim=1)
        self.alive &= torch.isfinite(closure()) & torch.isfinite(norm)
        clipped = torch.where(self.clips, torch.clamp(self.clip_norm / (norm + 1e-6), max=1.0), 1.0)
        scale = torch.where(self.alive, clipped, 0.0)
        torch._foreach_mul_(self.velocity, 0.9)
        grads = torch._foreach_mul([p.grad for p in tensors], [scale.view(s) for s in shapes])
        torch._foreach_add_(self.velocity, grads)  # a stopped run's NaN/inf: its outcome is discarded
        step_lr = torch.where(self.alive, group["lr"], 0.0)
        torch._foreach_sub_(tensors, torch._foreach_mul(self.velocity, [step_lr.view(s) for s in shapes]))


class RobustRemediesConfig(_GridConfig):
    """The monitored grid's networks, data, optimizer and target, every cell trained at each of ``lrs`` and
    ``seeds`` (the best lr kept), at width 16 and 100 steps: 12 runs per cell within the time budget."""

    width: int = integer(16, low=1, high=4096)
    steps: int = positive(100, integer=True)
    lrs: tuple[float, ...] = nonempty(positive(), default=(0.003, 0.01, 0.03, 0.1))  # every cell at each
    seeds: tuple[int, ...] = nonempty(seed_field(), default=(0, 1, 2))


@dataclass(frozen=True)
class CellRuns:
    """One cell of the robust grid: arrays (lr, seed) of every run, per seed ``diagnose`` at init (at the
    middle lr), and the runs at the best lr: the highest mean accuracy, a diverged run counting as 0."""

    remedy: Remedy
    accuracy: np.ndarray  # final validation accuracy; NaN: diverged
    steps_to_target: np.ndarray  # until the validation loss first was <= the target; inf: never
    diverged: np.ndarray  # per lr, at how many seeds the loss or gradient became NaN/inf
    grad_ratio: np.ndarray  # per seed, rms(g_first)/rms(g_output) at initialization
    flagged: Counter[str]  # per kind of diagnose's problems at init, at how many seeds (0: none)
    best_lr: float
    best_accuracy: np.ndarray  # per seed at the best lr (a diverged run: 0)
    best_steps: np.ndarray  # per seed at the best lr
    reached: bool  # every seed reached the target at the best lr


@dataclass(frozen=True)
class RobustRemediesResult:
    config: RobustRemediesConfig
    cells: dict[Remedy, CellRuns]  # in the design's order

    def to_frame(self) -> Any:
        """One row per cell, with readable column names."""
        import pandas as pd

        slowest = f"steps to val loss ≤ {self.config.target_loss:g} (slowest seed)"

        def row(cell: CellRuns) -> dict[str, Any]:
            flags = sorted(kind.replace("_", " ") for kind in cell.flagged)
            return {
                "cell": cell.remedy.label,
                "layer 1 ÷ output at init (median)": float(np.median(cell.grad_ratio)),
                "diagnose at init": ", ".join(flags) or "healthy",
                "best learning rate": cell.best_lr,
                "val accuracy (mean)": float(cell.best_accuracy.mean()),
                "val accuracy (lowest seed)": float(cell.best_accuracy.min()),
                "val accuracy (highest seed)": float(cell.best_accuracy.max()),
                slowest: float(cell.best_steps.max()),
                f"diverged runs (of {cell.accuracy.size})": int(cell.diverged.sum()),
            }

        return pd.DataFrame([row(cell) for cell in self.cells.values()])


def _train_stacked(
    remedies: list[Remedy], config: RobustRemediesConfig, data: DataSplit
) -> dict[Remedy, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Train the (lr, seed) runs of ``remedies`` (one architecture) side by side, each on its seed's batches.
    Per cell, arrays (lr, seed): final accuracy (NaN: diverged), steps to target (inf: never), diverged."""
    members = [(remedy, lr, seed) for remedy in remedies for lr in config.lrs for seed in config.seeds]
    runs = len(members)
    nets = [remedy.build(config.blocks, config.width, seed) for remedy, _, seed in members]
    model = _StackedNets(remedies[0], config.blocks, nets)
    lr, clips = torch.tensor([lr for _, lr, _ in members]), torch.tensor([r.clip for r, _, _ in members])
    optimizer = _RunwiseMomentum(model.parameters(), lr, clips, config.clip_norm)
    train_config = derive(TrainConfig, config, clip_norm=None, monitor_every=None, stop_on_divergence=False)
    sources = {seed: minibatches(data, replace(train_config, seed=seed), "cpu")[0] for seed in config.seeds}

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        drawn = {seed: source(step) for seed, source in sources.items()}
        xs, ys = zip(*(drawn[seed] for *_, seed in members), strict=True)
        return torch.stack(xs), torch.stack(ys)

    def run_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # (runs,): each run's mean
        losses = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        return losses.view(runs, -1).mean(1)

    reached, accuracy = np.full(runs, np.inf), torch.zeros(runs)

    class Validate(Callback):  # every eval_every steps and at the last; stops when every run stopped
        def on_step(self, event: StepEvent) -> None:
            alive = optimizer.alive.numpy()
            if not alive.any():
                raise StopTraining("every run diverged")
            if (event.step + 1) % config.eval_every == 0 or event.step == config.steps - 1:
                with torch.no_grad():
                    out = model(data.x_val.expand(runs, *data.x_val.shape))
                    val_loss = run_losses(out, data.y_val.expand(runs, -1))
                    accuracy.copy_((out.argmax(-1) == data.y_val).float().mean(1))
                reached[(val_loss <= config.target_loss).numpy() & alive & np.isinf(reached)] = event.step + 1

    train(
        model, batch, train_config, callbacks=[Validate()], loss_fn=run_losses, optimizer=optimizer, runs=runs
    )
    final = np.where(optimizer.alive.numpy(), accuracy.double().numpy(), np.nan)  # NaN: diverged
    shape = (len(remedies), len(config.lrs), len(config.seeds))
    outcomes = [values.reshape(shape) for values in (final, reached, ~optimizer.alive.numpy())]
    return {remedy: tuple(values[k] for values in outcomes) for k, remedy in enumerate(remedies)}


def run_robust_remedies(config: RobustRemediesConfig) -> RobustRemediesResult:
    """Every cell: ``diagnose`` at init per seed (one SGD-momentum step at the middle lr); then its (lr, seed)
    runs, trained side by side with those of every cell of its architecture (activation, skip, norm)."""
    check_config(config, RobustRemediesConfig)
    data = shared_digits(config.data_seed)
    batch = _diagnosis_batch(data)
    middle_lr = sorted(config.lrs)[len(config.lrs) // 2]
    outcomes = {}  # the cells of one architecture (activation, skip, norm) train side by side
    for arch in dict.fromkeys((r.activation, r.skip, r.norm) for r in config.cells):
        remedies = [r for r in config.cells if (r.activation, r.skip, r.norm) == arch]
        outcomes |= _train_stacked(remedies, config, data)
    cells = {}
    for remedy in config.cells:
        clip = config.clip_norm if remedy.clip else None
        nets = [remedy.build(config.blocks, config.width, seed) for seed in config.seeds]
        reports = [diagnose(m, _CE, batch, lr=middle_lr, optimizer="momentum", clip_norm=clip) for m in nets]
        accuracy, steps, diverged = outcomes[remedy]
        best = int(np.argmax(np.nan_to_num(accuracy, nan=0.0).mean(axis=1)))
        cells[remedy] = CellRuns(
            remedy,
            accuracy,
            steps,
            diverged.sum(axis=1),
            np.array([report.layers[0].ratio for report in reports]),
            Counter(kind for report in reports for kind in {f.kind for f in report.problems}),
            config.lrs[best],
            np.nan_to_num(accuracy[best], nan=0.0),
            steps[best],
            bool(np.all(np.isfinite(steps[best]))),
        )
    return RobustRemediesResult(config, cells)


# --- One cell at initialization (the explorer)


class RemedyDiagnosisConfig(Config):
    """``diagnose`` of one grid cell (see ``Remedy``; clipping does not act at initialization) on the first
    128 training examples of digits: one SGD-momentum step at ``lr``; ``seed`` seeds the initialization."""

    activation: str = one_of(*GRID_ACTIVATIONS, default="sigmoid")
    init: str = one_of(*GRID_INITS, default="default")
    skip: bool = flag(False)
    norm: str = one_of(*GRID_NORMS, default="none")
    blocks: int = integer(10, low=1, high=100)
    width: int = integer(32, low=1, high=1024)
    lr: float = positive(0.05)
    seed: int = seed_field()
    data_seed: int = seed_field()

    def check(self) -> None:
        check_norm_sizes([self.norm], self.width)

    @property
    def remedy(self) -> Remedy:
        return derive(Remedy, self)


@dataclass(frozen=True)
class RemedyDiagnosisResult:
    config: RemedyDiagnosisConfig
    report: DiagnosisReport = field(repr=False)


def run_remedy_diagnosis(config: RemedyDiagnosisConfig) -> RemedyDiagnosisResult:
    check_config(config, RemedyDiagnosisConfig)
    model = config.remedy.build(config.blocks, config.width, config.seed)
    batch = _diagnosis_batch(shared_digits(config.data_seed))
    return RemedyDiagnosisResult(config, diagnose(model, _CE, batch, lr=config.lr, optimizer="momentum"))
