"""Chapter 9, detecting and fixing vanishing gradients: the warning signs, ``diagnose``, and the remedies.

``vgcourse.diagnose`` compares each layer's gradient per weight, rms(g_l) = ‖g_l‖/√n_l, with the output
layer's, and flags ratios below 10^-3 (vanishing) or above 10^3 (exploding); it also flags dead and
saturated units and one step's update:data ratio std(ΔW)/std(W) far from the 10^-3 guide.

Experiments (a frozen ``...Config`` and a ``run_...`` function each):

- ``run_calibration``: the ratio profile of healthy and of vanishing networks at initialization: why the
  thresholds sit at three decades.
- ``run_warning_signs``: short training runs that show each warning sign (slow progress, early layers
  not moving, dead units, saturated activations, exploding norms and NaN), with ``diagnose`` on each.
- ``run_sanity_checks``: Karpathy's checks at initialization: the first loss against ln C, and the
  per-layer activation histograms and saturated fractions of a Xavier and of a saturated tanh network.
- ``run_monitored_remedies``: the remedies grid on the digits data at depth 20: activation × initialization ×
  skip connections × normalization × gradient clipping, as a fractional design (one factor at a time
  from a broken baseline, plus the interactions that matter) or the full factorial; per run the first
  layer's gradient ratio at initialization, the steps to reach a target validation loss and the final
  validation accuracy.
- ``run_robust_remedies``: the same cells, each trained at several learning rates and seeds side by
  side (one stacked network per architecture); per cell the best learning rate and the spread over seeds.
- ``run_remedy_diagnosis``: ``diagnose`` of one grid cell at initialization (the explorer's run).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from vgcourse._validation import check_choice, check_int
from vgcourse.config import (
    Config,
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
from vgcourse.training import History, TrainConfig, train

__all__ = [
    "BASELINE",
    "CASES",
    "DESIGNS",
    "FACTORS",
    "GALLERY",
    "HEAD_SCALE",
    "GRID_ACTIVATIONS",
    "GRID_INITS",
    "GRID_NORMS",
    "INTERACTIONS",
    "LEARNING_RATES",
    "SANITY_CASES",
    "SIGNS",
    "CalibrationConfig",
    "CalibrationResult",
    "CellRuns",
    "Remedy",
    "MonitoredRemediesConfig",
    "MonitoredRemediesResult",
    "RemedyDiagnosisConfig",
    "RemedyDiagnosisResult",
    "RemedyRun",
    "RobustRemediesConfig",
    "RobustRemediesResult",
    "SanityResult",
    "SignRun",
    "WarningSignsConfig",
    "WarningSignsResult",
    "diagnosis_gallery",
    "full_design",
    "fractional_design",
    "run_calibration",
    "run_monitored_remedies",
    "run_remedy_diagnosis",
    "run_robust_remedies",
    "run_sanity_checks",
    "run_warning_signs",
    "steps_to_target",
    "weight_change",
]

GRID_ACTIVATIONS = ("sigmoid", "tanh", "relu", "gelu")
"""Hidden activations of the remedies grid."""
GRID_INITS = ("default", "xavier", "he")
"""Initializations of the grid: PyTorch's default, Xavier/Glorot normal, He/Kaiming normal."""
GRID_NORMS = ("none", "batch", "layer")
"""Normalization inside each block: none, BatchNorm or LayerNorm."""
FACTORS = ("activation", "init", "skip", "norm", "clip")
"""The five factors of the grid."""
DESIGNS = ("fractional", "full")
"""``fractional``: the baseline, each factor changed alone, and ``INTERACTIONS``; ``full``: all 144 cells."""
_SCHEMES = {"default": "default", "xavier": "xavier_normal", "he": "kaiming_normal"}
_NORM_NAMES = {"none": None, "batch": "batch", "layer": "layer"}
_CE = nn.CrossEntropyLoss()


# ----------------------------------------------------------------------------------------------------
# Shared pieces


def _diagnosis_batch(data: DataSplit, size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` training examples: the fixed batch every ``diagnose`` call of the chapter uses."""
    return data.x_train[:size], data.y_train[:size]


def steps_to_target(history: History, target: float) -> int | None:
    """The number of steps after which the validation loss first was <= ``target`` (None: never).

    Args:
        history: a ``train`` history with evaluations (``eval_steps`` are 0-based steps).
        target: the validation loss to reach.
    """
    hits = np.flatnonzero(np.asarray(history.val_loss) <= target)
    return int(history.eval_steps[hits[0]]) + 1 if len(hits) else None


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [module.weight.detach().clone() for _, module in named_layers(model)]


def weight_change(before: list[torch.Tensor], after: list[torch.Tensor]) -> np.ndarray:
    """Per layer (input to output), how far training moved the weights: ‖W_after − W_before‖ / ‖W_before‖."""
    if len(before) != len(after):
        raise ValueError(f"before and after must list the same layers; got {len(before)} and {len(after)}")
    return np.array([float((a - b).norm() / b.norm()) for b, a in zip(before, after, strict=True)])


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as error:  # pragma: no cover - pandas is a dependency of the course
        raise ImportError("to_frame() needs pandas: pip install pandas") from error
    return pd


# ----------------------------------------------------------------------------------------------------
# Calibration: where healthy networks sit, and how fast a vanishing one leaves


CASES = ("he_relu", "he_relu_wide", "xavier_tanh", "default_sigmoid")
"""Networks of the calibration: He-initialized ReLU (width w and 4w), Xavier tanh, default sigmoid."""


class CalibrationConfig(Config):
    """MLPs of ``depth`` hidden layers at initialization, one network of each case per seed, each diagnosed
    on the same batch of digits (``data_seed`` seeds the train/validation split). "he_relu_wide" uses
    width 4w."""

    depth: int = integer(10, low=2, high=200)
    width: int = integer(64, low=1, high=2048)
    seeds: tuple[int, ...] = nonempty(seed_field(), default=(0,))
    data_seed: int = seed_field()


@dataclass(frozen=True)
class CalibrationResult:
    """log10 of each layer's gradient ratio to the output layer, per case and seed.

    Args:
        log_ratio: case -> (n_seeds, depth + 1) array of log10 rms(g_l)/rms(g_output), input to output.
        saturated: case -> (n_seeds, depth + 1) array of saturated output fractions (NaN: not sigmoid/tanh).
    """

    config: CalibrationConfig
    log_ratio: dict[str, np.ndarray]
    saturated: dict[str, np.ndarray]

    @property
    def xavier_tanh_saturated(self) -> float:
        """The largest saturated fraction of any layer of the Xavier tanh network, over the seeds."""
        return float(np.nanmax(self.saturated["xavier_tanh"]))

    @property
    def healthy_lowest(self) -> float:
        """The lowest log10 ratio of any layer of the healthy cases (He ReLU, Xavier tanh)."""
        return float(min(self.log_ratio[c].min() for c in CASES[:3]))

    @property
    def healthy_highest(self) -> float:
        """The highest log10 ratio of any hidden layer of the healthy cases."""
        return float(max(self.log_ratio[c][:, :-1].max() for c in CASES[:3]))

    @property
    def sigmoid_decades_per_layer(self) -> float:
        """Median loss of log10 ratio from one hidden layer of the default sigmoid MLP to the one below."""
        hidden = self.log_ratio["default_sigmoid"][:, :-1]
        return float(np.median(np.diff(hidden, axis=1)))

    def sigmoid_layers_below(self, log_threshold: float = -3.0) -> int:
        """How many layers of the default sigmoid MLP (seed 0) are below 10^log_threshold."""
        return int(np.sum(self.log_ratio["default_sigmoid"][0] < log_threshold))


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
    batch = _diagnosis_batch(shared_digits(config.data_seed))
    log_ratio, saturated = {}, {}
    for case in CASES:
        reports = [
            diagnose(_calibration_model(case, config.depth, config.width, seed), _CE, batch)
            for seed in config.seeds
        ]
        log_ratio[case] = np.stack([np.log10(r.values("ratio")) for r in reports])
        saturated[case] = np.stack([r.values("saturated_frac") for r in reports])
    return CalibrationResult(config, log_ratio, saturated)


# ----------------------------------------------------------------------------------------------------
# The warning signs, each on a real run


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
    """Six MLPs trained on digits with the same optimizer (SGD with momentum 0.9) and learning rate; each
    shows one warning sign (or none).

    Args:
        dead_bias: the initial bias of every hidden layer of the "dead" run.
        saturated_std: the weight standard deviation of the "saturated" tanh run.
        exploding_scale: the "exploding" run's weights are this many times He's standard deviation.
        clip_norm: the gradient-norm clipping of the "exploding_clipped" run.
        diagnose_steps: steps of the ``diagnose`` call that repeats the exploding run on one batch.
        seed: seeds the initializations and the minibatches (``data_seed``: the digits split).
    """

    depth: int = integer(8, low=1, high=100)
    width: int = integer(64, low=1, high=4096)
    steps: int = positive(150, integer=True)
    batch_size: int = positive(64, integer=True)
    lr: float = positive(0.01)
    dead_bias: float = real(-1.0)
    saturated_std: float = positive(1.0)
    exploding_scale: float = positive(2.0)
    clip_norm: float = positive(1.0)
    diagnose_steps: int = integer(10, low=1, high=1000)
    seed: int = seed_field()
    data_seed: int = seed_field()
    device: str = device_field("auto")


@dataclass(frozen=True)
class SignRun:
    """One run of ``run_warning_signs``.

    Args:
        name: one of ``SIGNS``.
        description: the network, in a few words.
        history: the training history (stops at the step where a loss or gradient became NaN/inf).
        report: ``diagnose`` of the network at initialization, with the run's optimizer, learning rate and
            clipping.
        weight_change: per layer ‖W_T − W_0‖ / ‖W_0‖ after training.
    """

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
        """Validation accuracy at the end (NaN when the run diverged)."""
        return math.nan if self.history.diverged else self.history.final_val_accuracy


@dataclass(frozen=True)
class WarningSignsResult:
    """The runs, in ``SIGNS`` order, and ``diagnose`` repeating the exploding run on one batch.

    Args:
        runs: one ``SignRun`` per name of ``SIGNS``.
        exploding_steps: ``diagnose(..., steps=config.diagnose_steps)`` of the exploding network: it
            reports where the NaN/inf appeared instead of raising.
    """

    config: WarningSignsConfig
    runs: tuple[SignRun, ...]
    exploding_steps: DiagnosisReport

    def run(self, name: str) -> SignRun:
        """The run called ``name`` (one of ``SIGNS``)."""
        return self.runs[SIGNS.index(check_choice("name", name, SIGNS))]

    def to_frame(self) -> Any:
        """A pandas DataFrame: one row per run, what training showed and what ``diagnose`` flagged."""
        pd = _pandas()
        rows = []
        for run in self.runs:
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
    data = shared_digits(config.data_seed)
    batch = _diagnosis_batch(data)
    device = pick_device(config.device)
    runs = []
    exploding_steps = None
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
        runs.append(SignRun(name, _SIGN_TEXT[name], history, report, weight_change(before, _weights(model))))
    assert exploding_steps is not None
    return WarningSignsResult(config, tuple(runs), exploding_steps)


GALLERY = ("forward_collapse", "zero_head")
"""Two networks that the signals and the zero-start rule judge: He et al. 2015's 30-layer ReLU MLP with
Xavier weights (forward and backward signals collapse together), and a healthy He ReLU MLP whose output
layer starts at 0 (a design choice, not a disease)."""


def diagnosis_gallery(seed: int = 0, collapse_depth: int = 30) -> dict[str, DiagnosisReport]:
    """``diagnose`` at initialization of each network of ``GALLERY`` on the chapter's digits batch.

    ``forward_collapse``: ``collapse_depth`` ReLU layers of width 64 with Xavier-normal weights, Var(W) =
    1/n where ReLU needs 2/n, so q_l halves per layer (2^-13 < 1e-4 after 13 layers). ``zero_head``: the
    warning signs' healthy reference (8 He-initialized ReLU layers of width 64) with its output weights 0.
    Both at the warning signs' learning rate with momentum.
    """
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


# ----------------------------------------------------------------------------------------------------
# Karpathy's sanity checks at initialization: the first loss against ln C, activation histograms

HEAD_SCALE = 0.1
"""The sanity checks' "healthy_small_head" network is the healthy reference with its output layer's
weights multiplied by this (and its bias set to 0): Karpathy's fix for a first loss above ln C."""

SANITY_CASES = ("xavier_tanh", "saturated")
"""The tanh networks of the activation histograms: Xavier weights (std 1/√n) and the warning signs'
saturated network (weights N(0, ``saturated_std``²))."""


@dataclass(frozen=True)
class SanityResult:
    """The sanity checks of a classifier at initialization, on the chapter's diagnosis batch.

    Args:
        config: the warning signs' configuration (depth, width, seed, saturated_std).
        initial_loss: per network of ``SIGNS`` (the clipped twin left out) and "healthy_small_head" (the
            reference with its output weights × ``HEAD_SCALE``), the cross-entropy at initialization.
        chance_loss: ln C for C = 10 classes: the loss of a uniform prediction.
        activations: per case of ``SANITY_CASES``, every hidden layer's outputs on the batch (layer, values).
        saturated: per case, every hidden layer's fraction of outputs with |u| > ``SATURATION``.
    """

    config: WarningSignsConfig
    initial_loss: dict[str, float]
    chance_loss: float
    activations: dict[str, np.ndarray] = field(repr=False)
    saturated: dict[str, np.ndarray]


def _hidden_outputs(model: MLP, x: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Every hidden layer's output (layer, example·unit) and the logits, from one forward pass."""
    outputs = []
    handles = [
        layer.register_forward_hook(lambda m, a, out: outputs.append(out.detach())) for layer in model.layers
    ]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return np.stack([out.reshape(-1).numpy() for out in outputs]), logits


def run_sanity_checks(config: WarningSignsConfig | None = None) -> SanityResult:
    """The first loss of every warning-signs network at initialization, and the activation histograms
    and saturated fractions (|tanh| > ``SATURATION``) of a Xavier and of the saturated tanh network.

    A classifier that knows nothing should predict 1/C for every class, a loss of ln C; a first loss far
    above it means confidently wrong logits (too large weights), the first thing Karpathy checks.
    """
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
    activations, saturated = {}, {}
    for case, model in zip(SANITY_CASES, (xavier, _sign_model("saturated", config)), strict=True):
        values, _ = _hidden_outputs(model, x)
        activations[case] = values
        saturated[case] = np.mean(np.abs(values) > SATURATION, axis=1)
    return SanityResult(config, initial_loss, math.log(10), activations, saturated)


# ----------------------------------------------------------------------------------------------------
# The remedies grid


class Remedy(Config, kw_only=False):
    """One cell of the remedies grid (its fields may be given in order: ``Remedy("relu", "he")``).

    Args:
        activation: hidden activation, one of ``GRID_ACTIVATIONS``.
        init: "default" (PyTorch's), "xavier" (Glorot normal) or "he" (Kaiming normal, gain of the
            activation).
        skip: whether each block adds its input (x + F(x)) or replaces it (F(x)).
        norm: "none", "batch" or "layer" normalization after each Linear inside a block.
        clip: whether training clips the gradient norm.
    """

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
        """The network: stem Linear(64, width), ``blocks`` blocks of two Linears (2·blocks hidden Linear
        layers), head Linear(width, 10); ``seed`` seeds the initialization."""
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
"""Combinations the fractional design adds: each activation with its own initialization, and the
modern recipe built up one piece at a time."""


def fractional_design(
    baseline: Remedy = BASELINE, interactions: tuple[Remedy, ...] = INTERACTIONS
) -> tuple[Remedy, ...]:
    """The baseline, every other level of every factor changed alone, then ``interactions``.

    Args:
        baseline: the cell the one-factor-at-a-time changes start from.
        interactions: further cells (duplicates of earlier ones are dropped).
    """
    levels = {
        "activation": GRID_ACTIVATIONS,
        "init": GRID_INITS,
        "skip": (False, True),
        "norm": GRID_NORMS,
        "clip": (False, True),
    }
    cells = [baseline]
    for factor in FACTORS:
        for level in levels[factor]:
            if level != getattr(baseline, factor):
                cells.append(replace(baseline, **{factor: level}))
    cells += list(interactions)
    return tuple(dict.fromkeys(cells))


def full_design() -> tuple[Remedy, ...]:
    """All 4 × 3 × 2 × 3 × 2 = 144 cells."""
    return tuple(
        Remedy(a, i, s, n, c)
        for a, i, s, n, c in itertools.product(
            GRID_ACTIVATIONS, GRID_INITS, (False, True), GRID_NORMS, (False, True)
        )
    )


class _GridConfig(Config):
    """Fields and helpers shared by the remedies grids: the cells, the network and the recipe.

    Args:
        design: "fractional" (``fractional_design()``: 17 cells) or "full" (144 cells).
        remedies: explicit cells to run instead of ``design``.
        blocks: blocks of two Linear layers each (20 hidden layers for 10 blocks).
        clip_norm: the gradient-norm bound of the cells with ``clip``.
        target_loss: the validation loss whose first crossing counts as "reached".
        eval_every: steps between validation evaluations (the resolution of steps-to-target).
    """

    design: str = one_of(*DESIGNS, default="fractional")
    remedies: tuple[Remedy, ...] | None = nonempty(instance_of(Remedy), default=None, optional=True)
    blocks: int = integer(10, low=1, high=200)
    width: int = integer(32, low=1, high=4096)
    steps: int = positive(150, integer=True)
    batch_size: int = positive(64, integer=True)
    clip_norm: float = positive(1.0)
    target_loss: float = positive(0.5)
    eval_every: int = positive(10, integer=True)
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
    """The remedies grid: one task (digits), one depth, one optimizer (SGD with momentum 0.9, learning
    rate ``lr``); only the five factors vary. ``GradientMonitor`` records every ``monitor_every`` steps (for
    the over-training views); ``seed`` seeds every cell's initialization and minibatches."""

    lr: float = positive(0.05)
    monitor_every: int = positive(5, integer=True)
    seed: int = seed_field()
    device: str = device_field("auto")

    def train_config(self, remedy: Remedy) -> TrainConfig:
        """The ``TrainConfig`` of one cell."""
        clip_norm = self.clip_norm if remedy.clip else None
        return derive(TrainConfig, self, optimizer="momentum", clip_norm=clip_norm)


@dataclass(frozen=True)
class RemedyRun:
    """One trained cell of the grid.

    Args:
        remedy: the cell.
        report: ``diagnose`` of the network at initialization (one SGD-momentum step at the grid's lr,
            clipped like the training when the cell clips).
        history: the training history (with the monitor's per-layer record every ``monitor_every`` steps).
        steps_to_target: steps until the validation loss first reached the target (None: never).
    """

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
        """Validation accuracy at the end (NaN when training diverged)."""
        return math.nan if self.history.diverged else self.history.final_val_accuracy

    @property
    def diverged(self) -> bool:
        """Whether a loss or gradient became NaN/inf."""
        return self.history.diverged

    @property
    def reached(self) -> bool:
        """Whether the validation loss reached the target."""
        return self.steps_to_target is not None

    @property
    def frozen_layers(self) -> int:
        """Layers whose update:data ratio was exactly 0 at every recorded step: W + ΔW == W in float32."""
        ratio = self.history.monitor.update_ratio
        return int(np.sum(np.all(ratio == 0, axis=0)))

    def log_update_range(self, step: int = -1) -> tuple[float, float]:
        """The lowest and highest log10 update:data ratio over the layers that moved, at one recorded step.

        Args:
            step: row of the monitor record (-1: the last recorded step).
        """
        row = self.history.monitor.update_ratio[step]
        row = row[np.isfinite(row) & (row > 0)]
        return float(np.log10(row.min())), float(np.log10(row.max()))

    def log_grad_ratio_over_training(self) -> np.ndarray:
        """log10 rms(g_first)/rms(g_output) at every recorded step (the report's ratio, over training)."""
        record = self.history.monitor
        n = np.array([layer.n_weights for layer in self.report.layers], dtype=np.float64)
        rms = record.grad_norm / np.sqrt(n)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log10(rms[:, 0] / rms[:, -1])


def _find_remedy(entries: tuple[Any, ...], remedy: Remedy | None, changes: dict[str, Any], what: str) -> Any:
    """The entry of ``entries`` (each has a ``remedy``) for ``remedy``, or the baseline with ``changes``."""
    if remedy is None:
        remedy = replace(BASELINE, **changes)
    elif changes:
        raise TypeError("give a Remedy or keyword changes to the baseline, not both")
    for entry in entries:
        if entry.remedy == remedy:
            return entry
    raise ValueError(f"{remedy.label!r} is not in this {what}; it has: {[e.remedy.label for e in entries]}")


@dataclass(frozen=True)
class MonitoredRemediesResult:
    """The trained cells, in the design's order.

    Args:
        runs: one ``RemedyRun`` per cell.
    """

    config: MonitoredRemediesConfig
    runs: tuple[RemedyRun, ...]

    def run(self, remedy: Remedy | None = None, **changes: Any) -> RemedyRun:
        """The run of ``remedy``, or of the baseline with ``changes`` (e.g. ``run(skip=True)``)."""
        return _find_remedy(self.runs, remedy, changes, "design")

    @property
    def reached(self) -> list[str]:
        """Labels of the cells whose validation loss reached the target."""
        return [r.remedy.label for r in self.runs if r.reached]

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per cell (index: its label)."""
        pd = _pandas()
        rows = []
        for run in self.runs:
            flags = sorted({f.kind.replace("_", " ") for f in run.report.problems})
            rows.append(
                {
                    "cell": run.remedy.label,
                    "changed": ", ".join(run.remedy.changes(BASELINE)) or "(baseline)",
                    "layer 1 ÷ output": run.grad_ratio,
                    "diagnose at init": ", ".join(flags) or "healthy",
                    f"steps to val loss ≤ {self.config.target_loss:g}": run.steps_to_target,
                    "val accuracy": run.final_accuracy,
                    "diverged": run.diverged,
                }
            )
        frame = pd.DataFrame(rows).set_index("cell")
        column = f"steps to val loss ≤ {self.config.target_loss:g}"
        frame[column] = frame[column].astype("Int64")
        return frame


def run_monitored_remedies(config: MonitoredRemediesConfig) -> MonitoredRemediesResult:
    """Diagnose every cell at initialization, then train it and measure the outcome."""
    data = shared_digits(config.data_seed)
    batch = _diagnosis_batch(data)
    device = pick_device(config.device)
    runs = []
    for remedy in config.cells:
        model = remedy.build(config.blocks, config.width, config.seed).to(device)
        clip = config.clip_norm if remedy.clip else None
        report = diagnose(model, _CE, batch, lr=config.lr, optimizer="momentum", clip_norm=clip)
        history = train(model, data, config.train_config(remedy))
        runs.append(RemedyRun(remedy, report, history, steps_to_target(history, config.target_loss)))
    return MonitoredRemediesResult(config, tuple(runs))


# ----------------------------------------------------------------------------------------------------
# The remedies grid, robust: every cell at several learning rates and seeds, trained side by side

LEARNING_RATES = (0.003, 0.01, 0.03, 0.1)
"""The learning rates every cell of the robust grid is trained at (SGD with momentum 0.9)."""

_ACTIVATION_FUNCTIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "gelu": nn.functional.gelu,
}


def _stacked_forward(
    remedy: Remedy,
    blocks: int,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    x: torch.Tensor,
) -> torch.Tensor:
    """``ResidualMLP.forward`` of E networks at once: parameters stacked on a first axis, x (E, B, 64).

    Linear: h W^T + b per member (``baddbmm``). BatchNorm (``F.batch_norm`` on the members' channels side
    by side) normalizes over each member's own batch and updates its running statistics when gradients
    are enabled (training), and uses the running statistics under ``torch.no_grad()`` (evaluation);
    LayerNorm normalizes each example over its units. Every other detail is ResidualMLP's (α = 1), and
    the output equals ``remedy.build(...)(x[e])`` for member e (tested).
    """
    training = torch.is_grad_enabled()
    act = _ACTIVATION_FUNCTIONS[remedy.activation]

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
    """The remedies grid with every cell trained at each of ``lrs`` and ``seeds`` (best learning rate kept).

    The networks, data, optimizer (SGD with momentum 0.9), clipping (per run) and target are those of
    ``MonitoredRemediesConfig`` except the width (16 instead of 32, and 100 steps instead of 150: the grid
    trains 12 runs per cell, and this keeps it within the chapter's time budget). The runs of cells that
    share an architecture train side by side as one stacked network (``_stacked_forward``), each with its
    own initialization seed, minibatch order and learning rate. No ``GradientMonitor`` runs during
    training.
    """

    width: int = integer(16, low=1, high=4096)
    steps: int = positive(100, integer=True)
    lrs: tuple[float, ...] = nonempty(positive(), default=LEARNING_RATES)
    seeds: tuple[int, ...] = nonempty(seed_field(), default=(0, 1, 2))


@dataclass(frozen=True)
class CellRuns:
    """One cell of the robust grid: every (learning rate, seed) run.

    Args:
        remedy: the cell.
        lrs: the learning rates (rows of the arrays).
        seeds: the seeds (columns).
        accuracy: final validation accuracy, (len(lrs), len(seeds)); NaN where the run diverged.
        steps_to_target: steps until the validation loss first was <= the target; inf: never.
        diverged_step: the step whose loss or gradient was NaN/inf; NaN: never.
        grad_ratio: per seed, rms(g_first)/rms(g_output) at initialization (``diagnose``'s first ratio).
        flags: per seed, the kinds of ``diagnose``'s problems at initialization (at the middle lr).
    """

    remedy: Remedy
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    accuracy: np.ndarray
    steps_to_target: np.ndarray
    diverged_step: np.ndarray
    grad_ratio: np.ndarray
    flags: tuple[tuple[str, ...], ...]

    @property
    def best_index(self) -> int:
        """Row of the best learning rate: the highest mean accuracy over seeds, a diverged run scoring 0."""
        return int(np.argmax(np.nan_to_num(self.accuracy, nan=0.0).mean(axis=1)))

    @property
    def best_lr(self) -> float:
        """The learning rate with the highest mean final accuracy (diverged runs count as 0)."""
        return self.lrs[self.best_index]

    @property
    def best_accuracy(self) -> np.ndarray:
        """Per seed, the final accuracy at the best learning rate (NaN: diverged)."""
        return self.accuracy[self.best_index]

    @property
    def best_steps(self) -> np.ndarray:
        """Per seed, the steps to the target at the best learning rate (inf: never)."""
        return self.steps_to_target[self.best_index]

    @property
    def best_mean(self) -> float:
        """Mean final accuracy over seeds at the best learning rate (a diverged run counts as 0)."""
        return float(np.nan_to_num(self.best_accuracy, nan=0.0).mean())

    @property
    def best_low(self) -> float:
        """The lowest seed's final accuracy at the best learning rate (0 when it diverged)."""
        return float(np.nan_to_num(self.best_accuracy, nan=0.0).min())

    @property
    def best_high(self) -> float:
        """The highest seed's final accuracy at the best learning rate."""
        return float(np.nan_to_num(self.best_accuracy, nan=0.0).max())

    @property
    def slowest(self) -> float:
        """The most steps any seed needed to reach the target at the best lr (inf: one never did)."""
        return float(self.best_steps.max())

    @property
    def max_accuracy(self) -> float:
        """The highest final accuracy of any run of the cell, any lr and seed (0: all diverged)."""
        return float(np.nan_to_num(self.accuracy, nan=0.0).max())

    def flagged(self, kind: str) -> int:
        """At how many seeds ``diagnose`` reported a problem of ``kind`` (e.g. "vanishing") at init."""
        return sum(kind in flags for flags in self.flags)

    @property
    def reached(self) -> bool:
        """Whether every seed reached the target at the best learning rate."""
        return bool(np.all(np.isfinite(self.best_steps)))

    @property
    def diverged_runs(self) -> int:
        """How many of the len(lrs) × len(seeds) runs diverged."""
        return int(np.sum(np.isfinite(self.diverged_step)))

    def lr_diverged(self, lr: float) -> int:
        """How many seeds diverged at learning rate ``lr`` (one of ``lrs``)."""
        return int(np.sum(np.isfinite(self.diverged_step[self.lrs.index(lr)])))


@dataclass(frozen=True)
class RobustRemediesResult:
    """The robust grid's cells, in the design's order."""

    config: RobustRemediesConfig
    cells: tuple[CellRuns, ...]

    def cell(self, remedy: Remedy | None = None, **changes: Any) -> CellRuns:
        """The runs of ``remedy``, or of the baseline with ``changes`` (e.g. ``cell(skip=True)``)."""
        return _find_remedy(self.cells, remedy, changes, "grid")

    @property
    def reached(self) -> list[str]:
        """Labels of the cells whose every seed reached the target at their best learning rate."""
        return [c.remedy.label for c in self.cells if c.reached]

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per cell, with readable column names."""
        pd = _pandas()
        n_runs = len(self.config.lrs) * len(self.config.seeds)
        rows = []
        for cell in self.cells:
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


def _architecture(remedy: Remedy) -> tuple[str, bool, str]:
    """What the stacked forward pass depends on: cells that differ only in init and clipping share it."""
    return remedy.activation, remedy.skip, remedy.norm


def _train_stacked(
    members: list[tuple[Remedy, float, int]], config: RobustRemediesConfig, data: DataSplit
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train runs (cell, lr, seed) of one architecture side by side; per run return the final accuracy
    (NaN: diverged), the steps to the target (inf: never) and the step that diverged (NaN: none).

    Each step, per run r: loss_r = CE on its own minibatch (the order of its seed); g_r = ∇loss_r; clip
    ‖g_r‖ to ``clip_norm`` when its cell clips; v_r ← 0.9 v_r + g_r; θ_r ← θ_r − lr_r v_r (what
    ``torch.optim.SGD`` with momentum 0.9 does). A run whose loss or gradient norm is NaN/inf stops
    there (its updates become 0); when every run has stopped, training ends.
    """
    architecture = members[0][0]
    if any(_architecture(remedy) != _architecture(architecture) for remedy, _, _ in members):
        raise ValueError("stacked runs must share activation, skip and norm")
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
    seeds = sorted({seed for _, _, seed in members})
    generators = {seed: torch.Generator().manual_seed(seed) for seed in seeds}
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
    with the other runs of the same architecture (cells that differ only in initialization or clipping)."""
    data = shared_digits(config.data_seed)
    batch = _diagnosis_batch(data)
    shape = (len(config.lrs), len(config.seeds))
    middle_lr = sorted(config.lrs)[len(config.lrs) // 2]
    groups: dict[tuple[str, bool, str], list[Remedy]] = {}
    for remedy in config.cells:
        groups.setdefault(_architecture(remedy), []).append(remedy)
    outcomes: dict[Remedy, tuple[np.ndarray, ...]] = {}
    for remedies in groups.values():
        members = [(remedy, lr, seed) for remedy in remedies for lr in config.lrs for seed in config.seeds]
        results = _train_stacked(members, config, data)
        for k, remedy in enumerate(remedies):
            part = slice(k * shape[0] * shape[1], (k + 1) * shape[0] * shape[1])
            outcomes[remedy] = tuple(values[part].reshape(shape) for values in results)
    cells = []
    for remedy in config.cells:
        reports = [
            diagnose(
                remedy.build(config.blocks, config.width, seed),
                _CE,
                batch,
                lr=middle_lr,
                optimizer="momentum",
                clip_norm=config.clip_norm if remedy.clip else None,
            )
            for seed in config.seeds
        ]
        accuracy, reached, diverged = outcomes[remedy]
        cells.append(
            CellRuns(
                remedy,
                config.lrs,
                config.seeds,
                accuracy,
                reached,
                diverged,
                np.array([report.layers[0].ratio for report in reports]),
                tuple(tuple(sorted({f.kind for f in report.problems})) for report in reports),
            )
        )
    return RobustRemediesResult(config, tuple(cells))


# ----------------------------------------------------------------------------------------------------
# One cell at initialization (the explorer)


class RemedyDiagnosisConfig(Config):
    """``diagnose`` of one grid cell (see ``Remedy``) at initialization, on the first 128 training examples
    of digits: one SGD-momentum step at ``lr``; ``seed`` seeds the initialization, ``data_seed`` the split.
    """

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
        """The grid cell (without clipping, which does not act at initialization)."""
        return derive(Remedy, self)


@dataclass(frozen=True)
class RemedyDiagnosisResult:
    """The configuration and its ``DiagnosisReport``."""

    config: RemedyDiagnosisConfig
    report: DiagnosisReport = field(repr=False)


def run_remedy_diagnosis(config: RemedyDiagnosisConfig) -> RemedyDiagnosisResult:
    """Build the cell on the CPU and diagnose it (one forward, backward and update)."""
    model = config.remedy.build(config.blocks, config.width, config.seed)
    batch = _diagnosis_batch(shared_digits(config.data_seed))
    return RemedyDiagnosisResult(config, diagnose(model, _CE, batch, lr=config.lr, optimizer="momentum"))
