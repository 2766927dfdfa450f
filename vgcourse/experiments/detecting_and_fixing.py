"""Chapter 9, detecting and fixing vanishing gradients: the warning signs, ``diagnose``, and the remedies.

``vgcourse.diagnose`` flags layers whose gradient per weight, rms(g_l) = ‖g_l‖/√n_l, is below 10^-3
(vanishing) or above 10^3 (exploding) times the output layer's. Here: the calibration of those lines,
runs that show each warning sign, sanity checks at initialization, and the remedies grid on digits.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

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
from vgcourse.models import MLP, ResidualMLP, named_layers
from vgcourse.monitor import DEFAULT_STATS
from vgcourse.training import History, TrainConfig, train

GRID_ACTIVATIONS = ("sigmoid", "tanh", "relu", "gelu")
GRID_INITS = ("default", "xavier", "he")  # PyTorch's default, Xavier/Glorot normal, He/Kaiming normal
GRID_NORMS = ("none", "batch", "layer")  # inside each block
FACTORS = ("activation", "init", "skip", "norm", "clip")
DESIGNS = ("fractional", "full")  # the baseline, each factor alone and INTERACTIONS; or all 144 cells
_SCHEMES = {"default": "default", "xavier": "xavier_normal", "he": "kaiming_normal"}
_NORM_NAMES = {"none": None, "batch": "batch", "layer": "layer"}
_CE = nn.CrossEntropyLoss()


def _diagnosis_batch(data: DataSplit, size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` training examples: the fixed batch every ``diagnose`` call of the chapter uses."""
    return data.x_train[:size], data.y_train[:size]


def steps_to_target(history: History, target: float) -> int | None:
    """Steps after which the validation loss first was <= ``target`` (None: never; eval_steps are 0-based)."""
    hits = np.flatnonzero(np.asarray(history.val_loss) <= target)
    return int(history.eval_steps[hits[0]]) + 1 if len(hits) else None


def _final_accuracy(history: History) -> float:
    """Validation accuracy at the end (NaN when the run diverged)."""
    return math.nan if history.diverged else history.final_val_accuracy


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [module.weight.detach().clone() for _, module in named_layers(model)]


def weight_change(before: list[torch.Tensor], after: list[torch.Tensor]) -> np.ndarray:
    """Per layer (input to output), how far training moved the weights: ‖W_after − W_before‖ / ‖W_before‖."""
    if len(before) != len(after):
        raise ValueError(f"before and after must list the same layers; got {len(before)} and {len(after)}")
    return np.array([float((a - b).norm() / b.norm()) for b, a in zip(before, after, strict=True)])


# --- Calibration: where healthy networks sit, and how fast a vanishing one leaves

CASES = ("he_relu", "he_relu_wide", "xavier_tanh", "default_sigmoid")
"""He-initialized ReLU (width w and 4w), Xavier tanh, PyTorch's default sigmoid."""


class CalibrationConfig(Config):
    """MLPs of ``depth`` hidden layers at initialization, one per case and seed, diagnosed on the same
    batch of digits (``data_seed`` seeds the split)."""

    depth: int = integer(10, low=2, high=200)
    width: int = integer(64, low=1, high=2048)
    seeds: tuple[int, ...] = nonempty(seed_field(), default=(0,), unique=True)
    data_seed: int = seed_field()


@dataclass(frozen=True)
class CalibrationResult:
    """Grids over (case, seed | layer, input to output), and four summaries."""

    config: CalibrationConfig
    log_ratio: Grid  # log10 rms(g_l)/rms(g_output)
    saturated: Grid  # saturated output fractions (NaN: not sigmoid/tanh)
    healthy_lowest: float  # the lowest log10 ratio of any layer of the healthy cases (CASES[:3])
    healthy_highest: float  # the highest of any hidden layer of the healthy cases
    sigmoid_decades_per_layer: float  # median drop of log10 ratio per hidden layer, default sigmoid
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
    """Diagnose every case at every seed on the first 128 training examples of digits."""
    check_config(config, CalibrationConfig)
    batch = _diagnosis_batch(shared_digits(config.data_seed))
    log_ratio, saturated = {}, {}
    for case in CASES:
        reports = [
            diagnose(_calibration_model(case, config.depth, config.width, seed), _CE, batch)
            for seed in config.seeds
        ]
        log_ratio[case] = np.stack([np.log10(r.columns["ratio"]) for r in reports])
        saturated[case] = np.stack([r.columns["saturated_frac"] for r in reports])
    healthy = [log_ratio[case] for case in CASES[:3]]
    axes = {"case": CASES, "seed": config.seeds}
    return CalibrationResult(
        config,
        Grid(np.stack(list(log_ratio.values())), name="log10 gradient ratio", **axes),
        Grid(np.stack(list(saturated.values())), name="saturated fraction", **axes),
        float(min(v.min() for v in healthy)),
        float(max(v[:, :-1].max() for v in healthy)),
        float(np.median(np.diff(log_ratio["default_sigmoid"][:, :-1], axis=1))),
        float(np.nanmax(saturated["xavier_tanh"])),
    )


# --- The warning signs, each on a real run

SIGNS = ("healthy", "vanishing", "dead", "saturated", "exploding", "exploding_clipped")
"""The runs of ``run_warning_signs``: a healthy reference and one run per warning sign."""
_SIGN_TEXT = {
    "healthy": "He-initialized ReLU (the reference)",
    "vanishing": "sigmoid, PyTorch's default initialization",
    "dead": "ReLU, He initialization, every bias starting at -1",
    "saturated": "tanh, weights N(0, 1) (far too large)",
    "exploding": "ReLU, He initialization × 2",
    "exploding_clipped": "the same, with gradient-norm clipping at 1",
}


class WarningSignsConfig(Config):
    """Six MLPs trained on digits with SGD (momentum 0.9) at one learning rate; each shows one warning
    sign (or none). ``seed`` seeds the initializations and minibatches, ``data_seed`` the split."""

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
    description: str
    history: History
    report: DiagnosisReport
    weight_change: np.ndarray

    @property
    def initial_loss(self) -> float:
        """Training loss of the first step."""
        return float(self.history.loss[0])

    @property
    def final_loss(self) -> float:
        """Mean training loss of the last 10 steps (NaN when the run diverged)."""
        return math.nan if self.history.diverged else float(np.mean(self.history.loss[-10:]))

    @property
    def final_accuracy(self) -> float:
        return _final_accuracy(self.history)


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

        rows = []
        for run in self.runs.values():
            flags = [f"{f.kind.replace('_', ' ')} ({len(f.layers)})" for f in run.report.problems]
            rows.append(
                {
                    "run": run.name,
                    "network": run.description,
                    "first loss": run.initial_loss,
                    "final loss": run.final_loss,
                    "val accuracy": run.final_accuracy,
                    "diverged at step": run.history.diverged_step,
                    "layer 1 moved": float(run.weight_change[0]),
                    "output moved": float(run.weight_change[-1]),
                    "diagnose at init": ", ".join(flags) or "nothing",
                }
            )
        return pd.DataFrame(rows).set_index("run")


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
        he_std = math.sqrt(2.0 / width)
        initialize(model, "normal", std=config.exploding_scale * he_std, generator=generator)
        with torch.no_grad():  # the first layer has 64 inputs, not width
            model.layers[0].linear.weight.mul_(math.sqrt(width / 64))
        return model
    bias = config.dead_bias if name == "dead" else 0.0
    return initialize(model, "kaiming_normal", bias=bias, generator=generator)


def run_warning_signs(config: WarningSignsConfig) -> WarningSignsResult:
    """Train each network of ``SIGNS`` and diagnose it at initialization."""
    check_config(config, WarningSignsConfig)
    data = shared_digits(config.data_seed)
    batch = _diagnosis_batch(data)
    device = pick_device(config.device)
    runs = {}
    for name in SIGNS:
        model = _sign_model(name, config).to(device)
        clip = config.clip_norm if name == "exploding_clipped" else None
        report = diagnose(model, _CE, batch, lr=config.lr, optimizer="momentum", clip_norm=clip)
        if name == "exploding":
            exploding_steps = diagnose(
                model, _CE, batch, steps=config.diagnose_steps, lr=config.lr, optimizer="momentum"
            )
        before = _weights(model)
        train_config = derive(
            TrainConfig,
            config,
            optimizer="momentum",
            clip_norm=clip,
            monitor_every=None,
            eval_every=config.steps,
        )
        history = train(model, data, train_config)
        runs[name] = SignRun(name, _SIGN_TEXT[name], history, report, weight_change(before, _weights(model)))
    return WarningSignsResult(config, runs, exploding_steps)


GALLERY = ("forward_collapse", "zero_head")
"""Two networks the signals and the zero-start rule judge: He et al. 2015's 30-layer ReLU MLP with Xavier
weights (forward and backward signals collapse together), and a healthy He ReLU MLP whose output layer
starts at 0 (a design choice, not a disease)."""


def diagnosis_gallery(seed: int = 0, collapse_depth: int = 30) -> dict[str, DiagnosisReport]:
    """``diagnose`` at initialization of each network of ``GALLERY`` on the chapter's digits batch, at the
    warning signs' learning rate with momentum. ``forward_collapse``: Var(W) = 1/n where ReLU needs 2/n,
    so q_l halves per layer (2^-13 < 1e-4 after 13 layers); ``zero_head``: the warning signs' healthy
    reference with its output weights 0."""
    seed = check_int("seed", seed, minimum=0)
    collapse_depth = check_int("collapse_depth", collapse_depth, minimum=1)
    config = WarningSignsConfig(seed=seed)
    batch = _diagnosis_batch(shared_digits(config.data_seed))
    collapse = MLP(64, 10, collapse_depth, 64, "relu", seed=seed)
    initialize(collapse, "xavier_normal", generator=torch.Generator().manual_seed(seed))
    zero_head = _sign_model("healthy", config)
    nn.init.zeros_(zero_head.head.weight)
    return {
        name: diagnose(model, _CE, batch, lr=config.lr, optimizer="momentum")
        for name, model in zip(GALLERY, (collapse, zero_head), strict=True)
    }


# --- Karpathy's sanity checks at initialization: the first loss against ln C, activation histograms

HEAD_SCALE = 0.1
""""healthy_small_head" is the healthy reference with its output weights × this and its bias 0:
Karpathy's fix for a first loss above ln C."""
SANITY_CASES = ("xavier_tanh", "saturated")
"""The tanh networks of the histograms: Xavier weights and the warning signs' saturated network."""


@dataclass(frozen=True)
class SanityResult:
    """The sanity checks of a classifier at initialization, on the chapter's diagnosis batch."""

    config: WarningSignsConfig
    initial_loss: dict[str, float]  # per network of SIGNS (not the clipped twin) and "healthy_small_head"
    chance_loss: float  # ln C for C = 10 classes: the loss of a uniform prediction
    activations: dict[str, np.ndarray] = field(repr=False)  # per SANITY_CASES: (hidden layer, values)
    saturated: dict[str, np.ndarray]  # per case and hidden layer: the fraction with |u| > SATURATION


def _hidden_outputs(model: MLP, x: torch.Tensor) -> np.ndarray:
    """Every hidden layer's output (layer, example·unit) from one forward pass."""
    outputs = []
    with torch.no_grad():
        for layer in model.layers:
            x = layer(x)
            outputs.append(x.reshape(-1).numpy())
    return np.stack(outputs)


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
    xavier = initialize(
        MLP(64, 10, config.depth, config.width, "tanh", seed=config.seed),
        "xavier_normal",
        generator=torch.Generator().manual_seed(config.seed),
    )
    activations = {
        case: _hidden_outputs(model, x)
        for case, model in zip(SANITY_CASES, (xavier, _sign_model("saturated", config)), strict=True)
    }
    saturated = {case: np.mean(np.abs(values) > SATURATION, axis=1) for case, values in activations.items()}
    return SanityResult(config, initial_loss, math.log(10), activations, saturated)


# --- The remedies grid


class Remedy(Config, kw_only=False):
    """One cell of the remedies grid (fields in order: ``Remedy("relu", "he")``). ``init`` "he" uses the
    activation's gain; ``skip``: each block adds its input (x + F(x)); ``norm``: after each Linear inside
    a block; ``clip``: training clips the gradient norm."""

    activation: str = one_of(*GRID_ACTIVATIONS, default="sigmoid")
    init: str = one_of(*GRID_INITS, default="default")
    skip: bool = flag(False)
    norm: str = one_of(*GRID_NORMS, default="none")
    clip: bool = flag(False)

    @property
    def label(self) -> str:
        """A short name, e.g. "relu · he · skip · LayerNorm · clip"."""
        parts = [self.activation, self.init]
        parts += ["skip"] if self.skip else []
        parts += [{"batch": "BatchNorm", "layer": "LayerNorm"}[self.norm]] if self.norm != "none" else []
        parts += ["clip"] if self.clip else []
        return " · ".join(parts)

    def changes(self, baseline: Remedy) -> tuple[str, ...]:
        """The factors (names from ``FACTORS``) in which this cell differs from ``baseline``."""
        return tuple(f for f in FACTORS if getattr(self, f) != getattr(baseline, f))

    def build(self, blocks: int, width: int, seed: int) -> ResidualMLP:
        """Stem Linear(64, width), ``blocks`` blocks of two Linears, head Linear(width, 10)."""
        act, norm = self.activation, _NORM_NAMES[self.norm]
        model = ResidualMLP(64, 10, blocks, width, activation=act, norm=norm, skip=self.skip, seed=seed)
        if self.init != "default":
            generator = torch.Generator().manual_seed(seed)
            initialize(model, _SCHEMES[self.init], activation=self.activation, generator=generator)
        return model


BASELINE = Remedy()
"""The broken network every remedy is compared with: sigmoid, default init, no skip, no norm, no clip."""

INTERACTIONS = (
    Remedy("tanh", "xavier"),
    Remedy("relu", "he"),
    Remedy("relu", "he", clip=True),
    Remedy("relu", "he", skip=True),
    Remedy("relu", "he", skip=True, clip=True),
    Remedy("relu", "he", skip=True, norm="batch"),
    Remedy("relu", "he", skip=True, norm="layer"),
)
"""Each activation with its own initialization, and the modern recipe built up one piece at a time."""


def fractional_design(
    baseline: Remedy = BASELINE, interactions: tuple[Remedy, ...] = INTERACTIONS
) -> tuple[Remedy, ...]:
    """The baseline, every other level of every factor changed alone, then ``interactions`` (no repeats)."""
    levels = (GRID_ACTIVATIONS, GRID_INITS, (False, True), GRID_NORMS, (False, True))
    cells = [baseline]
    for factor, values in zip(FACTORS, levels, strict=True):
        cells += [replace(baseline, **{factor: v}) for v in values if v != getattr(baseline, factor)]
    return tuple(dict.fromkeys(cells + list(interactions)))


def full_design() -> tuple[Remedy, ...]:
    """All 4 × 3 × 2 × 3 × 2 = 144 cells."""
    levels = (GRID_ACTIVATIONS, GRID_INITS, (False, True), GRID_NORMS, (False, True))
    return tuple(Remedy(*values) for values in itertools.product(*levels))


class _GridConfig(Config):
    """Shared by the remedies grids: the cells (``remedies`` instead of ``design`` when given), the network
    (``blocks`` of two Linears: 20 hidden layers for 10), the recipe, and the target validation loss."""

    design: str = one_of(*DESIGNS, default="fractional")
    remedies: tuple[Remedy, ...] | None = nonempty(instance_of(Remedy), default=None, optional=True)
    blocks: int = integer(10, low=1, high=200)
    width: int = integer(32, low=1, high=4096)
    steps: int = positive(150, integer=True)
    batch_size: int = positive(64, integer=True)
    clip_norm: float = positive(1.0)  # of the cells with ``clip``
    target_loss: float = positive(0.5)
    eval_every: int = positive(10, integer=True)  # the resolution of steps-to-target
    data_seed: int = seed_field()

    @property
    def cells(self) -> tuple[Remedy, ...]:
        """The cells this configuration runs."""
        if self.remedies is not None:
            return self.remedies
        return fractional_design() if self.design == "fractional" else full_design()

    @property
    def depth(self) -> int:
        """Hidden Linear layers: 2 per block."""
        return 2 * self.blocks


class MonitoredRemediesConfig(_GridConfig):
    """The remedies grid on digits at one depth, SGD with momentum 0.9 at ``lr``; a ``GradientMonitor``
    records every ``monitor_every`` steps; ``seed`` seeds every cell's initialization and minibatches."""

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
    def grad_ratio(self) -> float:
        """rms(g_first) / rms(g_output) at initialization: the first layer's gradient ratio."""
        return float(self.report.layers[0].ratio)

    @property
    def final_accuracy(self) -> float:
        return _final_accuracy(self.history)

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
    """The trained cells by cell, in the design's order."""

    config: MonitoredRemediesConfig
    runs: dict[Remedy, RemedyRun]


def run_monitored_remedies(config: MonitoredRemediesConfig) -> MonitoredRemediesResult:
    """Diagnose every cell at initialization, then train it and measure the outcome."""
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

LEARNING_RATES = (0.003, 0.01, 0.03, 0.1)
"""The learning rates every cell of the robust grid is trained at (SGD with momentum 0.9)."""


def _stacked_forward(
    remedy: Remedy,
    blocks: int,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    x: torch.Tensor,
) -> torch.Tensor:
    """``ResidualMLP.forward`` of E networks at once: parameters stacked on a first axis, x (E, B, 64);
    equals ``remedy.build(...)(x[e])`` for member e (tested). BatchNorm normalizes each member over its
    own batch and updates its running statistics when gradients are enabled, and uses them under
    ``torch.no_grad()``."""
    training = torch.is_grad_enabled()
    act = make_activation(remedy.activation)

    def linear(name: str, h: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(params[f"{name}.bias"].unsqueeze(1), h, params[f"{name}.weight"].transpose(1, 2))

    def norm(name: str, h: torch.Tensor) -> torch.Tensor:
        weight, bias = params[f"{name}.weight"], params[f"{name}.bias"]
        if remedy.norm == "layer":
            return nn.functional.layer_norm(h, h.shape[-1:]) * weight.unsqueeze(1) + bias.unsqueeze(1)
        # BatchNorm of member e over its own batch: the E·C channels of (B, E·C) are independent
        members, rows, width = h.shape
        flat = nn.functional.batch_norm(
            h.transpose(0, 1).reshape(rows, members * width),
            buffers[f"{name}.running_mean"].view(-1),
            buffers[f"{name}.running_var"].view(-1),
            weight.reshape(-1),
            bias.reshape(-1),
            training=training,
        )
        return flat.reshape(rows, members, width).transpose(0, 1)

    h = linear("stem", x)
    for i in range(blocks):
        f = linear(f"blocks.{i}.fc1", h)
        f = norm(f"blocks.{i}.norm1", f) if remedy.norm != "none" else f
        f = linear(f"blocks.{i}.fc2", act(f))
        f = norm(f"blocks.{i}.norm2", f) if remedy.norm != "none" else f
        h = h + f if remedy.skip else f
    return linear("head", h)


class RobustRemediesConfig(_GridConfig):
    """The remedies grid with every cell trained at each of ``lrs`` and ``seeds`` (best lr kept): the
    monitored grid's networks, data, optimizer and target, at width 16 and 100 steps (12 runs per cell
    within the chapter's time budget), runs of one architecture trained side by side, no monitor."""

    width: int = integer(16, low=1, high=4096)
    steps: int = positive(100, integer=True)
    lrs: tuple[float, ...] = nonempty(positive(), default=LEARNING_RATES)
    seeds: tuple[int, ...] = nonempty(seed_field(), default=(0, 1, 2))


@dataclass(frozen=True)
class CellRuns:
    """One cell of the robust grid: arrays (lr, seed) of every run, and per seed ``diagnose`` at init (at
    the middle lr). A diverged run has NaN accuracy and counts as 0 in the best lr's (highest mean
    accuracy's) statistics; the slowest seed's steps to the target are inf when one never got there."""

    remedy: Remedy
    lrs: tuple[float, ...]
    accuracy: np.ndarray  # final validation accuracy
    steps_to_target: np.ndarray  # until the validation loss first was <= the target; inf: never
    diverged_step: np.ndarray  # the step whose loss or gradient was NaN/inf; NaN: never
    grad_ratio: np.ndarray  # per seed, rms(g_first)/rms(g_output) at initialization
    flags: tuple[tuple[str, ...], ...]  # per seed, the kinds of diagnose's problems

    @property
    def best_index(self) -> int:
        return int(np.argmax(np.nan_to_num(self.accuracy, nan=0.0).mean(axis=1)))

    @property
    def best_lr(self) -> float:
        return self.lrs[self.best_index]

    @property
    def best_accuracy(self) -> np.ndarray:
        return self.accuracy[self.best_index]

    @property
    def best_steps(self) -> np.ndarray:
        return self.steps_to_target[self.best_index]

    @property
    def best_mean(self) -> float:
        return float(np.nan_to_num(self.best_accuracy, nan=0.0).mean())

    @property
    def best_low(self) -> float:
        return float(np.nan_to_num(self.best_accuracy, nan=0.0).min())

    @property
    def best_high(self) -> float:
        return float(np.nan_to_num(self.best_accuracy, nan=0.0).max())

    @property
    def slowest(self) -> float:
        return float(self.best_steps.max())

    @property
    def max_accuracy(self) -> float:
        return float(np.nan_to_num(self.accuracy, nan=0.0).max())

    def flagged(self, kind: str) -> int:
        """At how many seeds ``diagnose`` reported a problem of ``kind`` (e.g. "vanishing") at init."""
        return sum(kind in flags for flags in self.flags)

    @property
    def reached(self) -> bool:
        return bool(np.all(np.isfinite(self.best_steps)))

    @property
    def diverged_runs(self) -> int:
        return int(np.sum(np.isfinite(self.diverged_step)))

    def lr_diverged(self, lr: float) -> int:
        return int(np.sum(np.isfinite(self.diverged_step[self.lrs.index(lr)])))


@dataclass(frozen=True)
class RobustRemediesResult:
    """The robust grid's cells by cell, in the design's order."""

    config: RobustRemediesConfig
    cells: dict[Remedy, CellRuns]

    def to_frame(self) -> Any:
        """One row per cell, with readable column names."""
        import pandas as pd

        n_runs = len(self.config.lrs) * len(self.config.seeds)
        rows = []
        for cell in self.cells.values():
            flags = sorted({kind.replace("_", " ") for seed_flags in cell.flags for kind in seed_flags})
            rows.append(
                {
                    "cell": cell.remedy.label,
                    "layer 1 ÷ output at init (median)": float(np.median(cell.grad_ratio)),
                    "diagnose at init": ", ".join(flags) or "healthy",
                    "best learning rate": cell.best_lr,
                    "val accuracy (mean)": cell.best_mean,
                    "val accuracy (lowest seed)": cell.best_low,
                    "val accuracy (highest seed)": cell.best_high,
                    f"steps to val loss ≤ {self.config.target_loss:g} (slowest seed)": cell.slowest,
                    f"diverged runs (of {n_runs})": cell.diverged_runs,
                }
            )
        return pd.DataFrame(rows)


def _train_stacked(
    members: list[tuple[Remedy, float, int]], config: RobustRemediesConfig, data: DataSplit
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train runs (cell, lr, seed) of one architecture side by side; per run return the final accuracy
    (NaN: diverged), the steps to the target (inf: never) and the step that diverged (NaN: none).

    Per run r and step: loss_r = CE on its own minibatch (its seed's order); clip ‖g_r‖ when its cell
    clips; v_r ← 0.9 v_r + g_r; θ_r ← θ_r − lr_r v_r (``torch.optim.SGD`` with momentum 0.9). A run whose
    loss or gradient norm is NaN/inf stops there (its updates become 0).
    """
    architecture = members[0][0]
    n_members = len(members)
    models = [remedy.build(config.blocks, config.width, seed) for remedy, _, seed in members]
    per_model = [dict(m.named_parameters()) for m in models]
    params = {
        name: torch.stack([p[name].detach() for p in per_model]).requires_grad_(True) for name in per_model[0]
    }
    per_model = [{k: v for k, v in m.named_buffers() if v.is_floating_point()} for m in models]
    buffers = {name: torch.stack([b[name] for b in per_model]).clone() for name in per_model[0]}
    tensors = list(params.values())
    velocity = [torch.zeros_like(p) for p in tensors]
    shapes = [(n_members,) + (1,) * (p.dim() - 1) for p in tensors]
    lr = torch.tensor([lr for _, lr, _ in members])
    clips = torch.tensor([remedy.clip for remedy, _, _ in members])
    alive = torch.ones(n_members, dtype=torch.bool)
    diverged = np.full(n_members, np.nan)
    reached = np.full(n_members, np.inf)
    n_train = len(data.x_train)
    batch = min(config.batch_size, n_train)
    per_epoch = n_train // batch
    generators = {seed: torch.Generator().manual_seed(seed) for seed in sorted({s for _, _, s in members})}
    orders: dict[int, torch.Tensor] = {}
    accuracy = torch.zeros(n_members)
    y_val = data.y_val.repeat(n_members)
    for step in range(config.steps):
        i = step % per_epoch
        if i == 0:
            orders = {seed: torch.randperm(n_train, generator=g) for seed, g in generators.items()}
        index = torch.stack([orders[seed][i * batch : (i + 1) * batch] for _, _, seed in members])
        logits = _stacked_forward(architecture, config.blocks, params, buffers, data.x_train[index])
        losses = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), data.y_train[index].reshape(-1), reduction="none"
        )
        losses = losses.reshape(n_members, -1).mean(1)
        grads = list(torch.autograd.grad(losses.sum(), tensors))
        with torch.no_grad():
            norm = torch.linalg.vector_norm(torch.cat([g.reshape(n_members, -1) for g in grads], 1), dim=1)
            bad = alive & ~(torch.isfinite(losses) & torch.isfinite(norm))
            if bad.any():
                diverged[bad.numpy()] = step
                alive &= ~bad
                grads = [g.nan_to_num(0.0, 0.0, 0.0) for g in grads]
                if not alive.any():
                    break
            clipped = torch.where(clips, torch.clamp(config.clip_norm / (norm + 1e-6), max=1.0), 1.0)
            scale = torch.where(alive, clipped, 0.0)
            torch._foreach_mul_(velocity, 0.9)
            torch._foreach_add_(velocity, torch._foreach_mul(grads, [scale.view(s) for s in shapes]))
            step_lr = torch.where(alive, lr, 0.0)
            torch._foreach_sub_(tensors, torch._foreach_mul(velocity, [step_lr.view(s) for s in shapes]))
        if (step + 1) % config.eval_every == 0 or step == config.steps - 1:
            with torch.no_grad():
                x_val = data.x_val.expand(n_members, *data.x_val.shape)
                out = _stacked_forward(architecture, config.blocks, params, buffers, x_val)
                val_loss = nn.functional.cross_entropy(
                    out.reshape(-1, out.shape[-1]), y_val, reduction="none"
                )
                val_loss = val_loss.reshape(n_members, -1).mean(1)
                accuracy = (out.argmax(-1) == data.y_val).float().mean(1)
            hit = (val_loss <= config.target_loss).numpy() & alive.numpy() & np.isinf(reached)
            reached[hit] = step + 1
    final = accuracy.numpy().astype(np.float64)
    final[np.isfinite(diverged)] = np.nan
    return final, reached, diverged


def run_robust_remedies(config: RobustRemediesConfig) -> RobustRemediesResult:
    """Every cell: ``diagnose`` at initialization per seed (one SGD-momentum step at the middle learning
    rate, ``sorted(lrs)[len(lrs) // 2]``); then every (lr, seed) run of every cell, trained side by side
    with the runs of cells of the same architecture (activation, skip, norm: differing only in init and
    clipping)."""
    check_config(config, RobustRemediesConfig)
    data = shared_digits(config.data_seed)
    batch = _diagnosis_batch(data)
    shape = (len(config.lrs), len(config.seeds))
    middle_lr = sorted(config.lrs)[len(config.lrs) // 2]
    groups: dict[tuple[str, bool, str], list[Remedy]] = {}
    for remedy in config.cells:
        groups.setdefault((remedy.activation, remedy.skip, remedy.norm), []).append(remedy)
    outcomes: dict[Remedy, tuple[np.ndarray, ...]] = {}
    for remedies in groups.values():
        members = [(remedy, lr, seed) for remedy in remedies for lr in config.lrs for seed in config.seeds]
        results = _train_stacked(members, config, data)
        for k, remedy in enumerate(remedies):
            part = slice(k * shape[0] * shape[1], (k + 1) * shape[0] * shape[1])
            outcomes[remedy] = tuple(values[part].reshape(shape) for values in results)
    cells = {}
    for remedy in config.cells:
        clip = config.clip_norm if remedy.clip else None
        reports = [
            diagnose(
                remedy.build(config.blocks, config.width, seed),
                _CE,
                batch,
                lr=middle_lr,
                optimizer="momentum",
                clip_norm=clip,
            )
            for seed in config.seeds
        ]
        cells[remedy] = CellRuns(
            remedy,
            config.lrs,
            *outcomes[remedy],
            np.array([report.layers[0].ratio for report in reports]),
            tuple(tuple(sorted({f.kind for f in report.problems})) for report in reports),
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

    @property
    def remedy(self) -> Remedy:
        return derive(Remedy, self)


@dataclass(frozen=True)
class RemedyDiagnosisResult:
    config: RemedyDiagnosisConfig
    report: DiagnosisReport = field(repr=False)


def run_remedy_diagnosis(config: RemedyDiagnosisConfig) -> RemedyDiagnosisResult:
    """Build the cell on the CPU and diagnose it (one forward, backward and update)."""
    check_config(config, RemedyDiagnosisConfig)
    model = config.remedy.build(config.blocks, config.width, config.seed)
    batch = _diagnosis_batch(shared_digits(config.data_seed))
    return RemedyDiagnosisResult(config, diagnose(model, _CE, batch, lr=config.lr, optimizer="momentum"))
