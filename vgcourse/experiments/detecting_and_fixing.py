"""Chapter 7, detecting and fixing vanishing gradients: the warning signs, ``diagnose``, and the remedies.

``vgcourse.diagnose`` compares each layer's gradient per weight, rms(g_l) = ‖g_l‖/√n_l, with the output
layer's, and flags ratios below 10^-3 (vanishing) or above 10^3 (exploding); it also flags dead and
saturated units and one step's update:data ratio std(ΔW)/std(W) far from the 10^-3 guide.

Experiments (a frozen ``...Config`` and a ``run_...`` function each):

- ``run_calibration``: the ratio profile of healthy and of vanishing networks at initialization: why the
  thresholds sit at three decades.
- ``run_warning_signs``: short training runs that show each warning sign (slow progress, early layers
  not moving, dead units, saturated activations, exploding norms and NaN), with ``diagnose`` on each.
- ``run_remedies``: the remedies grid on the digits data at depth 20: activation × initialization ×
  skip connections × normalization × gradient clipping, as a fractional design (one factor at a time
  from a broken baseline, plus the interactions that matter) or the full factorial; per run the first
  layer's gradient ratio at initialization, the steps to reach a target validation loss and the final
  validation accuracy.
- ``run_remedy_diagnosis``: ``diagnose`` of one grid cell at initialization (the explorer's run).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from vgcourse._validation import check_choice, check_float, check_int
from vgcourse.data import DataSplit, digits
from vgcourse.device import DEVICES, pick_device
from vgcourse.diagnose import DiagnosisReport, diagnose
from vgcourse.initializers import initialize
from vgcourse.models import MLP, ResidualMLP, named_layers
from vgcourse.seeding import seed_everything
from vgcourse.training import History, TrainConfig, train

__all__ = [
    "BASELINE",
    "CASES",
    "DESIGNS",
    "FACTORS",
    "GALLERY",
    "GRID_ACTIVATIONS",
    "GRID_INITS",
    "GRID_NORMS",
    "INTERACTIONS",
    "SIGNS",
    "CalibrationConfig",
    "CalibrationResult",
    "Remedy",
    "RemediesConfig",
    "RemediesResult",
    "RemedyDiagnosisConfig",
    "RemedyDiagnosisResult",
    "RemedyRun",
    "SignRun",
    "WarningSignsConfig",
    "WarningSignsResult",
    "diagnosis_gallery",
    "full_design",
    "fractional_design",
    "run_calibration",
    "run_remedies",
    "run_remedy_diagnosis",
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


@functools.cache
def _digits(seed: int) -> DataSplit:
    return digits(seed=seed)


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
    """Per layer, how far training moved the weights: ‖W_after − W_before‖ / ‖W_before‖.

    Args:
        before: the layers' weights before training (input to output).
        after: the same weights after training.
    """
    if len(before) != len(after):
        raise ValueError(f"before and after must list the same layers; got {len(before)} and {len(after)}")
    return np.array([float((a - b).norm() / b.norm()) for b, a in zip(before, after, strict=True)])


def _check_seeds(seeds: Any) -> None:
    if not isinstance(seeds, tuple) or not seeds:
        raise TypeError(f"seeds must be a non-empty tuple of integers; got {seeds!r}")
    for seed in seeds:
        check_int("seed", seed, minimum=0)


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


@dataclass(frozen=True)
class CalibrationConfig:
    """MLPs of one depth at initialization, each diagnosed on the same batch of digits.

    Args:
        depth: hidden layers of every network.
        width: w, the hidden width ("he_relu_wide" uses 4w).
        seeds: one network of each case per seed.
        data_seed: seed of the digits train/validation split.
    """

    depth: int = 10
    width: int = 64
    seeds: tuple[int, ...] = (0,)
    data_seed: int = 0

    def __post_init__(self) -> None:
        check_int("depth", self.depth, minimum=2, maximum=200)
        check_int("width", self.width, minimum=1, maximum=2048)
        _check_seeds(self.seeds)
        check_int("data_seed", self.data_seed, minimum=0)


@dataclass(frozen=True)
class CalibrationResult:
    """log10 of each layer's gradient ratio to the output layer, per case and seed.

    Args:
        config: the configuration that produced it.
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
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    if case in ("he_relu", "he_relu_wide"):
        model = MLP(64, 10, depth, width * (4 if case == "he_relu_wide" else 1), "relu")
        return initialize(model, "kaiming_normal", generator=generator)
    if case == "xavier_tanh":
        return initialize(MLP(64, 10, depth, width, "tanh"), "xavier_normal", generator=generator)
    return MLP(64, 10, depth, width, "sigmoid")  # PyTorch's default initialization


def run_calibration(config: CalibrationConfig) -> CalibrationResult:
    """Diagnose every case at every seed on the first 128 training examples of digits."""
    batch = _diagnosis_batch(_digits(config.data_seed))
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


@dataclass(frozen=True)
class WarningSignsConfig:
    """Six MLPs trained on digits with the same optimizer; each shows one warning sign (or none).

    Args:
        depth: hidden layers.
        width: hidden units per layer.
        steps: training steps (SGD with momentum 0.9).
        batch_size: examples per step.
        lr: learning rate, the same for every run.
        dead_bias: the initial bias of every hidden layer of the "dead" run.
        saturated_std: the weight standard deviation of the "saturated" tanh run.
        exploding_scale: the "exploding" run's weights are this many times He's standard deviation.
        clip_norm: the gradient-norm clipping of the "exploding_clipped" run.
        diagnose_steps: steps of the ``diagnose`` call that repeats the exploding run on one batch.
        seed: seeds the initializations and the minibatches.
        data_seed: seed of the digits train/validation split.
        device: "auto", "cpu" or "cuda".
    """

    depth: int = 8
    width: int = 64
    steps: int = 150
    batch_size: int = 64
    lr: float = 0.01
    dead_bias: float = -1.0
    saturated_std: float = 1.0
    exploding_scale: float = 2.0
    clip_norm: float = 1.0
    diagnose_steps: int = 10
    seed: int = 0
    data_seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        check_int("depth", self.depth, minimum=1, maximum=100)
        check_int("width", self.width, minimum=1, maximum=4096)
        check_int("steps", self.steps, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_float("lr", self.lr, 0.0, strict_minimum=True)
        check_float("dead_bias", self.dead_bias)
        check_float("saturated_std", self.saturated_std, 0.0, strict_minimum=True)
        check_float("exploding_scale", self.exploding_scale, 0.0, strict_minimum=True)
        check_float("clip_norm", self.clip_norm, 0.0, strict_minimum=True)
        check_int("diagnose_steps", self.diagnose_steps, minimum=1, maximum=1000)
        check_int("seed", self.seed, minimum=0)
        check_int("data_seed", self.data_seed, minimum=0)
        check_choice("device", self.device, DEVICES)


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
        config: the configuration that produced it.
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
    seed_everything(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    depth, width = config.depth, config.width
    if name == "vanishing":
        return MLP(64, 10, depth, width, "sigmoid")
    if name == "saturated":
        model = MLP(64, 10, depth, width, "tanh")
        return initialize(model, "normal", std=config.saturated_std, generator=generator)
    model = MLP(64, 10, depth, width, "relu")
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
    data = _digits(config.data_seed)
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
        train_config = TrainConfig(
            steps=config.steps,
            batch_size=config.batch_size,
            lr=config.lr,
            optimizer="momentum",
            clip_norm=clip,
            monitor_every=None,
            eval_every=config.steps,
            seed=config.seed,
            device=config.device,
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
    batch = _diagnosis_batch(_digits(config.data_seed))
    seed_everything(seed)
    collapse = MLP(64, 10, collapse_depth, 64, "relu")
    initialize(collapse, "xavier_normal", generator=torch.Generator().manual_seed(seed))
    zero_head = _sign_model("healthy", config)
    nn.init.zeros_(zero_head.head.weight)
    return {
        name: diagnose(model, _CE, batch, lr=config.lr, optimizer="momentum")
        for name, model in zip(GALLERY, (collapse, zero_head), strict=True)
    }


# ----------------------------------------------------------------------------------------------------
# The remedies grid


@dataclass(frozen=True)
class Remedy:
    """One cell of the remedies grid.

    Args:
        activation: hidden activation, one of ``GRID_ACTIVATIONS``.
        init: "default" (PyTorch's), "xavier" (Glorot normal) or "he" (Kaiming normal, gain of the
            activation).
        skip: whether each block adds its input (x + F(x)) or replaces it (F(x)).
        norm: "none", "batch" or "layer" normalization after each Linear inside a block.
        clip: whether training clips the gradient norm.
    """

    activation: str = "sigmoid"
    init: str = "default"
    skip: bool = False
    norm: str = "none"
    clip: bool = False

    def __post_init__(self) -> None:
        check_choice("activation", self.activation, GRID_ACTIVATIONS)
        check_choice("init", self.init, GRID_INITS)
        check_choice("norm", self.norm, GRID_NORMS)
        for name in ("skip", "clip"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False; got {getattr(self, name)!r}")

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
        """The network: stem Linear(64, width), ``blocks`` blocks of two Linears, head Linear(width, 10).

        Args:
            blocks: number of blocks (2·blocks hidden Linear layers).
            width: width of every hidden layer.
            seed: seeds the initialization.
        """
        seed_everything(seed)
        model = ResidualMLP(
            64, 10, blocks, width, activation=self.activation, norm=_NORM_NAMES[self.norm], skip=self.skip
        )
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
                cells.append(Remedy(**{**_fields(baseline), factor: level}))
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


def _fields(remedy: Remedy) -> dict[str, Any]:
    return {f: getattr(remedy, f) for f in FACTORS}


@dataclass(frozen=True)
class RemediesConfig:
    """The remedies grid: one task (digits), one depth, one optimizer; only the five factors vary.

    Args:
        design: "fractional" (``fractional_design()``: 17 cells) or "full" (144 cells).
        remedies: explicit cells to run instead of ``design``.
        blocks: blocks of two Linear layers each (20 hidden layers for 10 blocks).
        width: width of every hidden layer.
        steps: training steps (SGD with momentum 0.9).
        batch_size: examples per step.
        lr: learning rate.
        clip_norm: the gradient-norm bound of the cells with ``clip``.
        target_loss: the validation loss whose first crossing counts as "reached".
        eval_every: steps between validation evaluations (the resolution of steps-to-target).
        monitor_every: steps between ``GradientMonitor`` records (for the over-training views).
        seed: seeds every cell's initialization and minibatches.
        data_seed: seed of the digits train/validation split.
        device: "auto", "cpu" or "cuda".
    """

    design: str = "fractional"
    remedies: tuple[Remedy, ...] | None = None
    blocks: int = 10
    width: int = 32
    steps: int = 150
    batch_size: int = 64
    lr: float = 0.05
    clip_norm: float = 1.0
    target_loss: float = 0.5
    eval_every: int = 10
    monitor_every: int = 5
    seed: int = 0
    data_seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        check_choice("design", self.design, DESIGNS)
        if self.remedies is not None:
            if not isinstance(self.remedies, tuple) or not self.remedies:
                raise TypeError(
                    f"remedies must be None or a non-empty tuple of Remedy; got {self.remedies!r}"
                )
            for remedy in self.remedies:
                if not isinstance(remedy, Remedy):
                    raise TypeError(f"remedies must hold Remedy cells; got {type(remedy).__name__}")
        check_int("blocks", self.blocks, minimum=1, maximum=200)
        check_int("width", self.width, minimum=1, maximum=4096)
        check_int("steps", self.steps, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_float("lr", self.lr, 0.0, strict_minimum=True)
        check_float("clip_norm", self.clip_norm, 0.0, strict_minimum=True)
        check_float("target_loss", self.target_loss, 0.0, strict_minimum=True)
        check_int("eval_every", self.eval_every, minimum=1)
        check_int("monitor_every", self.monitor_every, minimum=1)
        check_int("seed", self.seed, minimum=0)
        check_int("data_seed", self.data_seed, minimum=0)
        check_choice("device", self.device, DEVICES)

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

    def train_config(self, remedy: Remedy) -> TrainConfig:
        """The ``TrainConfig`` of one cell."""
        return TrainConfig(
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer="momentum",
            clip_norm=self.clip_norm if remedy.clip else None,
            monitor_every=self.monitor_every,
            eval_every=self.eval_every,
            seed=self.seed,
            device=self.device,
        )


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


@dataclass(frozen=True)
class RemediesResult:
    """The trained cells, in the design's order.

    Args:
        config: the configuration that produced it.
        runs: one ``RemedyRun`` per cell.
    """

    config: RemediesConfig
    runs: tuple[RemedyRun, ...]

    def run(self, remedy: Remedy | None = None, **changes: Any) -> RemedyRun:
        """The run of ``remedy``, or of the baseline with ``changes`` (e.g. ``run(skip=True)``)."""
        if remedy is None:
            remedy = Remedy(**{**_fields(BASELINE), **changes})
        elif changes:
            raise TypeError("give a Remedy or keyword changes to the baseline, not both")
        for run in self.runs:
            if run.remedy == remedy:
                return run
        raise ValueError(
            f"{remedy.label!r} is not in this design; it has: {[r.remedy.label for r in self.runs]}"
        )

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


def run_remedies(config: RemediesConfig) -> RemediesResult:
    """Diagnose every cell at initialization, then train it and measure the outcome."""
    data = _digits(config.data_seed)
    batch = _diagnosis_batch(data)
    device = pick_device(config.device)
    runs = []
    for remedy in config.cells:
        model = remedy.build(config.blocks, config.width, config.seed).to(device)
        clip = config.clip_norm if remedy.clip else None
        report = diagnose(model, _CE, batch, lr=config.lr, optimizer="momentum", clip_norm=clip)
        history = train(model, data, config.train_config(remedy))
        runs.append(RemedyRun(remedy, report, history, steps_to_target(history, config.target_loss)))
    return RemediesResult(config, tuple(runs))


# ----------------------------------------------------------------------------------------------------
# One cell at initialization (the explorer)


@dataclass(frozen=True)
class RemedyDiagnosisConfig:
    """``diagnose`` of one grid cell at initialization, on the first 128 training examples of digits.

    Args:
        activation: one of ``GRID_ACTIVATIONS``.
        init: one of ``GRID_INITS``.
        skip: whether blocks add their input.
        norm: one of ``GRID_NORMS``.
        blocks: blocks of two Linear layers.
        width: width of every hidden layer.
        lr: learning rate of the one SGD-momentum step.
        seed: seeds the initialization.
        data_seed: seed of the digits split.
    """

    activation: str = "sigmoid"
    init: str = "default"
    skip: bool = False
    norm: str = "none"
    blocks: int = 10
    width: int = 32
    lr: float = 0.05
    seed: int = 0
    data_seed: int = 0

    def __post_init__(self) -> None:
        Remedy(self.activation, self.init, self.skip, self.norm)  # validates the four factors
        check_int("blocks", self.blocks, minimum=1, maximum=100)
        check_int("width", self.width, minimum=1, maximum=1024)
        check_float("lr", self.lr, 0.0, strict_minimum=True)
        check_int("seed", self.seed, minimum=0)
        check_int("data_seed", self.data_seed, minimum=0)

    @property
    def remedy(self) -> Remedy:
        """The grid cell (without clipping, which does not act at initialization)."""
        return Remedy(self.activation, self.init, self.skip, self.norm)


@dataclass(frozen=True)
class RemedyDiagnosisResult:
    """The configuration and its ``DiagnosisReport``."""

    config: RemedyDiagnosisConfig
    report: DiagnosisReport = field(repr=False)


def run_remedy_diagnosis(config: RemedyDiagnosisConfig) -> RemedyDiagnosisResult:
    """Build the cell on the CPU and diagnose it (one forward, backward and update)."""
    model = config.remedy.build(config.blocks, config.width, config.seed)
    batch = _diagnosis_batch(_digits(config.data_seed))
    return RemedyDiagnosisResult(config, diagnose(model, _CE, batch, lr=config.lr, optimizer="momentum"))
