"""The initialization chapter, Xavier/Glorot and He/Kaiming: variance propagation, predicted and measured.

A plain network a_l = W_l h_{l-1}, h_l = f(a_l) (no biases), zero-mean weights of variance σ_l², fan-in
n_l and fan-out m_l, δ_l = ∂L/∂a_l:

    forward    Var(a_l) = n_l σ_l² E[h_{l-1}²],            E[h_l²] = E[f(a_l)²]
    backward   Var(δ_l) = E[f'(a_l)²] Var(∂L/∂h_l),        Var(∂L/∂h_{l-1}) = m_l σ_l² Var(δ_l)

``predict_variances`` runs this recursion with the per-layer moments of ``vgcourse.meanfield``;
``run_variance_profile`` measures it with autograd. The other experiments reproduce Glorot & Bengio
(2010)'s back-propagated gradient histograms, He et al. (2015)'s 30-layer ReLU network, the critical line
of tanh networks with biases (its theory in ``vgcourse.meanfield``) and symmetry breaking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vgcourse._validation import check_choice, check_float, check_int
from vgcourse.activations import ACTIVATIONS
from vgcourse.config import (
    Config,
    Grid,
    check_config,
    derive,
    device_field,
    flag,
    geometric_mean,
    integer,
    nonempty,
    one_of,
    positive,
    real,
    seed_field,
)
from vgcourse.data import digits
from vgcourse.device import pick_device
from vgcourse.initializers import expected_weight_variance, initialize
from vgcourse.meanfield import (
    PREDICTION_METHODS,
    critical_weight_var,
    layer_moments,
    predict_tanh_with_bias,
    tanh_chi,
    tanh_fixed_point,
)
from vgcourse.models import MLP, keep_outputs, named_layers
from vgcourse.training import OPTIMIZERS, History, TrainConfig, train

INIT_SCHEMES = ("naive", "small", "standard", "xavier", "he")
SCHEME_LABELS = {
    "naive": "naive N(0, 1)",
    "small": "small N(0, 0.01²)",
    "standard": "standard U(±1/√n_in)",
    "xavier": "Xavier U(±√6/√(n_in+n_out))",
    "he": "He N(0, 2/n_in)",
}

# The schemes as arguments of vgcourse.initializers.initialize. "standard" is Glorot & Bengio's name for
# U(±1/√n_in), which is also what PyTorch's nn.Linear draws by default.
_INIT_KWARGS: dict[str, dict[str, Any]] = {
    "naive": {"scheme": "normal", "std": 1.0},
    "small": {"scheme": "normal", "std": 0.01},
    "standard": {"scheme": "default"},
    "xavier": {"scheme": "xavier_uniform"},
    "he": {"scheme": "kaiming_normal", "activation": "relu"},
}
_MAX_WEIGHTS = 100_000_000  # float64 weights held at once by run_variance_profile (800 MB)
_DIGITS_FEATURES = 64  # 8 x 8 pixels


# ----------------------------------------------------------------------------------------- schemes
def init_kwargs(scheme: str) -> dict[str, Any]:
    """The keyword arguments of ``vgcourse.initializers.initialize`` that draw ``scheme``."""
    return dict(_INIT_KWARGS[check_choice("scheme", scheme, INIT_SCHEMES)])


def weight_variance(scheme: str, fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """Var(W_ij) = gain² · σ²(scheme): 1, 10⁻⁴, 1/(3 n_in), 2/(n_in + n_out) or 2/n_in."""
    gain = check_float("gain", gain, 0.0, strict_minimum=True)
    return gain**2 * expected_weight_variance(fan_in=fan_in, fan_out=fan_out, **init_kwargs(scheme))


def init_network(
    model: nn.Module, scheme: str, *, gain: float = 1.0, generator: torch.Generator | None = None
) -> nn.Module:
    """Initialize every layer of ``model`` with ``scheme``, multiply the weights by ``gain`` (> 0), zero
    the biases; ``generator`` (default: the global RNG) draws the weights."""
    gain = check_float("gain", gain, 0.0, strict_minimum=True)
    initialize(model, **init_kwargs(scheme), generator=generator)
    if gain != 1.0:
        with torch.no_grad():
            for _, layer in named_layers(model):
                for name, param in layer.named_parameters(recurse=False):
                    if name.startswith("weight") and param.ndim >= 2:
                        param.mul_(gain)
    return model


def draw_weights(scheme: str, fan_in: int, fan_out: int, *, gain: float = 1.0, seed: int = 0) -> np.ndarray:
    """One (fan_out, fan_in) weight matrix of a linear layer drawn with ``scheme`` (and ``gain``)."""
    check_int("fan_in", fan_in, minimum=1)
    check_int("fan_out", fan_out, minimum=1)
    check_int("seed", seed, minimum=0)
    layer = nn.Linear(fan_in, fan_out, bias=False)
    init_network(layer, scheme, gain=gain, generator=torch.Generator().manual_seed(seed))
    return layer.weight.detach().numpy().copy()


# -------------------------------------------------------------------------------------- prediction
@dataclass(frozen=True)
class VariancePrediction:
    """Per-layer variances predicted by the recursion, layers 1..L (input to output)."""

    method: str  # "gaussian" or "linear" (see layer_moments)
    activation_var: np.ndarray  # (L,) Var(a_l) (inf once it leaves float64's range)
    grad_var: np.ndarray  # (L,) Var(δ_l) for a unit-variance gradient at h_L (all NaN once a Var(a_l) is inf)
    weight_var: np.ndarray  # (L,) Var(W_l) of the scheme

    @property
    def grad_ratio(self) -> float:
        """Var(δ_1) / Var(δ_L): < 1 the gradient vanishes on its way down, > 1 it explodes."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(self.grad_var[0] / self.grad_var[-1])


def predict_variances(
    scheme: str,
    activation: str,
    depth: int,
    width: int,
    *,
    in_features: int | None = None,
    gain: float = 1.0,
    input_var: float = 1.0,
    method: str = "gaussian",
) -> VariancePrediction:
    """Var(a_l) and Var(δ_l) of a ``depth``-layer network of ``width`` units (layer 1 has ``in_features``
    inputs, default ``width``), weights times ``gain``, E[h_0²] = ``input_var`` and Var(∂L/∂h_L) = 1.

    "gaussian" takes a_l ~ N(0, q_l) (exact for wide networks), "linear" f ≈ its tangent at 0.
    """
    check_choice("scheme", scheme, INIT_SCHEMES)
    check_choice("activation", activation, ACTIVATIONS)
    check_int("depth", depth, minimum=1)
    check_int("width", width, minimum=1)
    in_features = width if in_features is None else check_int("in_features", in_features, minimum=1)
    input_var = check_float("input_var", input_var, 0.0)
    check_choice("method", method, PREDICTION_METHODS)
    fans = [(in_features, width)] + [(width, width)] * (depth - 1)
    weight_var = np.array([weight_variance(scheme, n_in, n_out, gain) for n_in, n_out in fans])
    activation_var, slope = np.zeros(depth), np.zeros(depth)
    second = input_var  # E[h_{l-1}²]
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float64's range: inf, then NaN
        for i, (n_in, _) in enumerate(fans):  # layer i + 1
            activation_var[i] = n_in * weight_var[i] * second
            if math.isfinite(activation_var[i]):
                second, slope[i] = layer_moments(activation, float(activation_var[i]), method)
            else:
                second, slope[i] = math.inf, math.nan
        grad_var = np.zeros(depth)
        upstream = 1.0  # Var(∂L/∂h_l)
        for i in reversed(range(depth)):
            grad_var[i] = slope[i] * upstream
            upstream = fans[i][1] * weight_var[i] * grad_var[i]
    return VariancePrediction(method, activation_var, grad_var, weight_var)


# ------------------------------------------------------------------------------ measured profiles
def _check_size(weights: int) -> None:
    if weights > _MAX_WEIGHTS:
        raise ValueError(
            f"seeds × depth × width² = {weights:,} weights exceeds {_MAX_WEIGHTS:,} (all seeds run at "
            "once, in float64); use fewer seeds, fewer layers or a narrower network"
        )


class _Network(Config):
    """A plain network's shape and the seeds it is measured over (``VarianceConfig`` and its sweeps)."""

    depth: int = integer(30, low=1, high=500)
    width: int = integer(128, low=1, high=2048)  # also the input's features
    batch_size: int = integer(64, low=2)
    seeds: tuple[int, ...] = nonempty(seed_field(), default=tuple(range(10)), unique=True)
    device: str = device_field()

    def check(self) -> None:
        _check_size(len(self.seeds) * self.depth * self.width**2)


class VarianceConfig(_Network):
    """One scheme on one plain network, measured at initialization over several seeds: per seed a network,
    an input batch x ~ N(0, I) and a backward signal, in float64 (the naive schemes reach 10^±100)."""

    scheme: str = one_of(*INIT_SCHEMES, default="he")
    activation: str = one_of(*ACTIVATIONS, default="relu")
    depth: int = integer(50, low=1, high=500)
    gain: float = positive(1.0)  # multiplies every weight after the draw


@dataclass(frozen=True)
class VarianceProfile:
    """Measured and predicted per-layer variances of one configuration; rows = seeds, columns = layers."""

    config: VarianceConfig
    activation_var: np.ndarray  # (S, L) E[a_l²] over the batch and the units (the mean of a_l is 0)
    grad_var: np.ndarray  # (S, L) E[δ_l²] by autograd
    predicted: VariancePrediction  # "gaussian"
    linear: VariancePrediction  # Glorot & Bengio's linear regime

    @property
    def layers(self) -> np.ndarray:
        return np.arange(1, self.config.depth + 1)

    @property
    def grad_ratio(self) -> np.ndarray:
        """(S,) Var(δ_1) / Var(δ_L) per seed (NaN where float64 under- or overflowed)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.grad_var[:, 0] / self.grad_var[:, -1]

    def per_layer_factor(self, quantity: str = "activation") -> np.ndarray:
        """(S,) the average factor per layer (v_L / v_1)^(1/(L-1)) of Var(a_l) ("activation", from layer 1
        up) or, for "grad", of Var(δ_l) from layer L down: (Var(δ_1)/Var(δ_L))^(1/(L-1))."""
        check_choice("quantity", quantity, ("activation", "grad"))
        if self.config.depth < 2:
            raise ValueError("a per-layer factor needs depth >= 2")
        with np.errstate(divide="ignore", invalid="ignore"):
            if quantity == "activation":
                ratio = self.activation_var[:, -1] / self.activation_var[:, 0]
            else:
                ratio = self.grad_ratio
            return ratio ** (1.0 / (self.config.depth - 1))

    def deviation_factor(self, quantity: str = "activation") -> float:
        """The largest factor, over the layers, between the measured geometric mean of Var(a_l)
        ("activation") or Var(δ_l) ("grad") and the Gaussian prediction."""
        check_choice("quantity", quantity, ("activation", "grad"))
        measured = self.activation_var if quantity == "activation" else self.grad_var
        predicted = self.predicted.activation_var if quantity == "activation" else self.predicted.grad_var
        center = geometric_mean(measured, axis=0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return float(np.exp(np.max(np.abs(np.log(center / predicted)))))

    @property
    def label(self) -> str:
        """The scheme's label, with its gain when it is not 1."""
        label = SCHEME_LABELS[self.config.scheme]
        return label if self.config.gain == 1.0 else f"{label} × {self.config.gain:.3g}"


def _measure(w: Tensor, b: Tensor | None, x: Tensor, g: Tensor, f: Any) -> tuple[np.ndarray, np.ndarray]:
    """(S, L) E[a_l²] and E[δ_l²] of S batched networks a_l = h_{l-1} W_l^T (+ b_l), h_l = f(a_l), h_0 = x
    (S, B, n), with the loss Σ g·h_L (so ∂L/∂h_L = g): one forward and one backward pass."""
    h = x.requires_grad_(True)
    pre: list[Tensor] = []
    for i in range(w.shape[1]):
        weight = w[:, i].transpose(1, 2)
        pre.append(torch.bmm(h, weight) if b is None else torch.baddbmm(b[:, i], h, weight))
        h = f(pre[-1])
    grads = torch.autograd.grad((h * g).sum(), pre)
    activation_var = torch.stack([a.detach().pow(2).mean(dim=(1, 2)) for a in pre], dim=1)
    grad_var = torch.stack([d.pow(2).mean(dim=(1, 2)) for d in grads], dim=1)
    return activation_var.cpu().numpy(), grad_var.cpu().numpy()


def run_variance_profile(config: VarianceConfig) -> VarianceProfile:
    """Measure E[a_l²] and E[δ_l²] at initialization for every seed; predict both with ``predict_variances``.

    Per seed: the network (``init_network``), x ~ N(0, I) and g ~ N(0, I) at the top, so L = Σ g·h_L and
    ∂L/∂h_L = g; all seeds run as one batched float64 forward and backward pass.
    """
    c = check_config(config, VarianceConfig)
    device = pick_device(c.device)
    model = MLP(c.width, 1, c.depth, c.width, c.activation, bias=False, seed=c.seeds[0])  # redrawn per seed
    weights, inputs, signals = [], [], []
    for seed in c.seeds:
        generator = torch.Generator().manual_seed(seed)
        init_network(model, c.scheme, gain=c.gain, generator=generator)
        weights.append(torch.stack([layer.linear.weight.detach().clone() for layer in model.layers]))
        inputs.append(torch.randn(c.batch_size, c.width, generator=generator))
        signals.append(torch.randn(c.batch_size, c.width, generator=generator))
    w = torch.stack(weights).to(device, torch.float64)  # (S, L, n_out, n_in)
    x, g = (torch.stack(t).to(device, torch.float64) for t in (inputs, signals))  # (S, B, n)
    activation_var, grad_var = _measure(w, None, x, g, model.layers[0].activation)
    gaussian, linear = (
        predict_variances(c.scheme, c.activation, c.depth, c.width, gain=c.gain, method=method)
        for method in PREDICTION_METHODS
    )
    return VarianceProfile(c, activation_var, grad_var, gaussian, linear)


def _profiles(configs: list[VarianceConfig], **axes: tuple[Any, ...]) -> Grid:
    """A Grid of ``run_variance_profile`` results on ``axes``, ``configs`` in row-major order."""
    profiles = np.array([run_variance_profile(c) for c in configs], dtype=object)
    return Grid(profiles.reshape([len(c) for c in axes.values()]), name="profile", **axes)


class SchemeSweepConfig(_Network):
    """Every (activation, scheme) pair measured as in ``VarianceConfig``."""

    schemes: tuple[str, ...] = nonempty(
        one_of(*INIT_SCHEMES), default=("naive", "small", "xavier", "he"), unique=True
    )
    activations: tuple[str, ...] = nonempty(one_of(*ACTIVATIONS), default=("tanh", "relu"), unique=True)


@dataclass(frozen=True)
class SchemeSweep:
    config: SchemeSweepConfig
    profiles: Grid  # (activation, scheme): VarianceProfiles, e.g. .sel(scheme="he", activation="tanh")

    def to_frame(self) -> Any:
        """One row per (activation, scheme): the measured Var(δ_1)/Var(δ_L) (geometric mean, min and max
        over seeds) and the two predictions."""
        import pandas as pd

        profiles = list(self.profiles.values.flat)
        ratios = [p.grad_ratio for p in profiles]
        columns = {
            "activation": [p.config.activation for p in profiles],
            "scheme": [p.config.scheme for p in profiles],
            "Var(δ₁)/Var(δ_L) measured (geometric mean)": [geometric_mean(r) for r in ratios],
            "smallest seed": [float(r.min()) for r in ratios],
            "largest seed": [float(r.max()) for r in ratios],
            "predicted (Gaussian)": [p.predicted.grad_ratio for p in profiles],
            "predicted (linear regime)": [p.linear.grad_ratio for p in profiles],
        }
        return pd.DataFrame(columns)


def run_scheme_sweep(config: SchemeSweepConfig) -> SchemeSweep:
    """Run ``run_variance_profile`` for every activation and scheme of ``config``."""
    c = check_config(config, SchemeSweepConfig)
    configs = [derive(VarianceConfig, c, scheme=s, activation=a) for a in c.activations for s in c.schemes]
    return SchemeSweep(c, _profiles(configs, activation=c.activations, scheme=c.schemes))


class GainSweepConfig(_Network):
    """Weights of variance gain²/n (Xavier's scale at equal fans, times a gain), measured at several gains
    (e.g. 1, √2 (relu's) and 5/3 (tanh's)) as in ``VarianceConfig``; the predicted curve has ``grid``
    gains from min(gains)/1.25 to max(gains)·1.25."""

    activations: tuple[str, ...] = nonempty(one_of(*ACTIVATIONS), default=("tanh", "relu"), unique=True)
    gains: tuple[float, ...] = nonempty(positive(), default=(1.0, 1.2, math.sqrt(2), 5 / 3), unique=True)
    grid: int = integer(40, low=2)


@dataclass(frozen=True)
class GainSweep:
    """Var(δ_1)/Var(δ_L) and Var(a_L) against the gain: measured points and the predicted curve."""

    config: GainSweepConfig
    profiles: Grid  # (activation, gain): the VarianceProfile measured at each
    grid: np.ndarray  # (G,) gains of the predicted curve
    predicted_ratio: np.ndarray  # (A, G) predicted Var(δ_1)/Var(δ_L) along grid
    predicted_top_var: np.ndarray  # (A, G) predicted Var(a_L)


def run_gain_sweep(config: GainSweepConfig) -> GainSweep:
    """Measure every (activation, gain) of ``config`` and predict the ratio along a grid of gains."""
    c = check_config(config, GainSweepConfig)
    configs = [
        derive(VarianceConfig, c, scheme="xavier", activation=a, gain=g)
        for a in c.activations
        for g in c.gains
    ]
    profiles = _profiles(configs, activation=c.activations, gain=c.gains)
    grid = np.geomspace(min(c.gains) / 1.25, max(c.gains) * 1.25, c.grid)
    ratio, top = np.zeros((len(c.activations), c.grid)), np.zeros((len(c.activations), c.grid))
    for i, activation in enumerate(c.activations):
        for k, g in enumerate(grid):
            prediction = predict_variances("xavier", activation, c.depth, c.width, gain=float(g))
            ratio[i, k], top[i, k] = prediction.grad_ratio, prediction.activation_var[-1]
    return GainSweep(c, profiles, grid, ratio, top)


# ------------------------------------------------------------ Glorot & Bengio (2010), Figure 7 style
class BackpropHistogramConfig(Config):
    """Back-propagated gradients ∂Cost/∂a_l at initialization: digits (the first ``n_examples`` training
    examples), cross-entropy summed over examples. Glorot & Bengio compared "standard" with "xavier" (the
    normalized one) at 5 hidden layers; the histograms show the first seed."""

    schemes: tuple[str, ...] = nonempty(one_of(*INIT_SCHEMES), default=("standard", "xavier"))
    activation: str = one_of(*ACTIVATIONS, default="tanh")
    depth: int = integer(5, low=1, high=100)
    width: int = integer(256, low=1, high=4096)
    n_examples: int = integer(512, low=2, high=1438)
    seeds: tuple[int, ...] = nonempty(seed_field(), default=(0, 1, 2), unique=True)
    device: str = device_field()


@dataclass(frozen=True)
class BackpropHistograms:
    """Back-propagated gradients per scheme and layer."""

    config: BackpropHistogramConfig
    values: tuple[tuple[np.ndarray, ...], ...]  # values[k][l]: the entries of δ_{l+1}, scheme k, first seed
    grad_std: np.ndarray  # (K, S, L) standard deviation of δ_l per scheme, seed and layer
    input_var: float  # E[x²] of the digits batch (the prediction's input second moment)

    @property
    def std_ratio(self) -> np.ndarray:
        """(K, S) std(δ_1) / std(δ_L): how much narrower the first layer's histogram is than the last's."""
        return self.grad_std[..., 0] / self.grad_std[..., -1]

    def predicted_std_ratio(self, method: str = "gaussian") -> np.ndarray:
        """(K,) √(Var(δ_1)/Var(δ_L)) from ``predict_variances`` with the digits' input second moment."""
        c, kwargs = self.config, {"in_features": _DIGITS_FEATURES, "input_var": self.input_var}
        ratios = [
            predict_variances(s, c.activation, c.depth, c.width, **kwargs, method=method).grad_ratio
            for s in c.schemes
        ]
        return np.sqrt(np.array(ratios))


def run_backprop_histograms(config: BackpropHistogramConfig) -> BackpropHistograms:
    """One forward and backward pass of a digits batch through freshly initialized networks."""
    c = check_config(config, BackpropHistogramConfig)
    device = pick_device(c.device)
    data = digits()
    x, y = data.x_train[: c.n_examples].to(device), data.y_train[: c.n_examples].to(device)
    values, stds = [], np.zeros((len(c.schemes), len(c.seeds), c.depth))
    for k, scheme in enumerate(c.schemes):
        for j, seed in enumerate(c.seeds):
            model = MLP(data.in_features, 10, c.depth, c.width, c.activation, seed=seed)
            init_network(model, scheme, generator=torch.Generator().manual_seed(seed))
            with keep_outputs(layer.linear for layer in model.to(device).layers) as pre:
                F.cross_entropy(model(x), y, reduction="sum").backward()
            stds[k, j] = [float(a.grad.std()) for a in pre]
            if j == 0:
                values.append(tuple(a.grad.detach().cpu().numpy().reshape(-1) for a in pre))
    return BackpropHistograms(c, tuple(values), stds, float(x.pow(2).mean()))


# ----------------------------------------------------------------- He et al. (2015), Figure 3 style
class DeepTrainingConfig(Config):
    """A deep plain network trained on digits from each scheme, as He et al.'s 30-layer experiment; the
    seeds seed the network and the minibatches; the final loss is the mean over the last ``tail`` steps."""

    schemes: tuple[str, ...] = nonempty(one_of(*INIT_SCHEMES), default=("he", "xavier"))
    activation: str = one_of(*ACTIVATIONS, default="relu")
    depth: int = integer(30, low=1, high=200)
    width: int = integer(64, low=1, high=4096)
    steps: int = positive(400, integer=True)
    lr: float = positive(0.002)
    optimizer: str = one_of(*OPTIMIZERS, default="momentum")  # "momentum": 0.9
    batch_size: int = positive(64, integer=True)
    seeds: tuple[int, ...] = nonempty(seed_field(), default=(0, 1, 2), unique=True)
    tail: int = positive(50, integer=True)
    device: str = device_field("auto")

    def check(self) -> None:
        if self.tail > self.steps:
            raise ValueError(
                f"tail (the steps the final loss averages) must be <= steps; got {self.tail} > {self.steps}"
            )

    def train_config(self, seed: int) -> TrainConfig:
        return derive(TrainConfig, self, monitor_every=None, eval_every=self.steps, seed=seed)


@dataclass(frozen=True)
class DeepTraining:
    config: DeepTrainingConfig
    histories: tuple[tuple[History, ...], ...]  # histories[k][j] of scheme k and seed j
    final_loss: np.ndarray  # (K, S) mean training loss over the last config.tail steps (NaN: diverged)
    val_accuracy: np.ndarray  # (K, S) validation accuracy after the last step


def run_deep_training(config: DeepTrainingConfig) -> DeepTraining:
    """Train one ``MLP(64, 10, depth, width, activation)`` per scheme and seed on digits."""
    c = check_config(config, DeepTrainingConfig)
    data = digits()
    histories = []
    for scheme in c.schemes:
        row = []
        for seed in c.seeds:
            model = MLP(data.in_features, 10, c.depth, c.width, c.activation, seed=seed)
            init_network(model, scheme, generator=torch.Generator().manual_seed(seed))
            row.append(train(model, data, c.train_config(seed)))
        histories.append(tuple(row))
    loss = [[math.nan if h.diverged else float(np.mean(h.loss[-c.tail :])) for h in row] for row in histories]
    accuracy = [[h.final_val_accuracy for h in row] for row in histories]
    return DeepTraining(c, tuple(histories), np.array(loss), np.array(accuracy))


# ------------------------------------------------------- biases: the critical line (Poole, Schoenholz)
class CriticalConfig(Config):
    """Deep tanh networks with biases, on and off the critical line, measured at initialization.

    W_ij ~ N(0, σ_w²/n), b_i ~ N(0, σ_b²), inputs x ~ N(0, s² I) and a backward signal g ~ N(0, I) at the
    top, as in ``VarianceConfig``. With ``input_at_fixed_point`` s² = (q* - σ_b²)/σ_w², so the first
    layer's pre-activations already have the fixed point's variance q*; otherwise s = 1 (a transient in
    the first layers). ``weight_vars`` None measures (1, the critical σ_w², (5/3)²): Xavier's scale, the
    critical line and PyTorch's tanh gain.
    """

    bias_var: float = positive(0.05)
    weight_vars: tuple[float, ...] | None = nonempty(positive(), default=None, optional=True, unique=True)
    depth: int = integer(50, low=2, high=500)
    width: int = integer(128, low=1, high=2048)
    batch_size: int = integer(64, low=2)
    seeds: tuple[int, ...] = nonempty(seed_field(), default=tuple(range(6)), unique=True)
    input_at_fixed_point: bool = flag(True)
    device: str = device_field()

    def check(self) -> None:
        if self.weight_vars is None:
            object.__setattr__(
                self, "weight_vars", (1.0, critical_weight_var(self.bias_var), (5.0 / 3.0) ** 2)
            )
        _check_size(len(self.seeds) * self.depth * self.width**2)


@dataclass(frozen=True)
class CriticalProfile:
    """Measured and predicted variances at each point σ_w² of a ``CriticalConfig`` (P points)."""

    config: CriticalConfig
    activation_var: np.ndarray  # (P, S, L) measured E[a_l²] per point, seed and layer
    grad_var: np.ndarray  # (P, S, L) measured E[δ_l²]
    predicted_grad_var: np.ndarray  # (P, L) from predict_tanh_with_bias
    grad_ratio: Grid  # (weight_var, seed) measured Var(δ_1) / Var(δ_L)
    predicted_ratio: Grid  # (weight_var,) predicted Var(δ_1) / Var(δ_L)
    chi: Grid  # (weight_var,) χ at each point's fixed point


def run_critical_profile(config: CriticalConfig) -> CriticalProfile:
    """Measure E[a_l²] and E[δ_l²] at initialization for every σ_w² and seed of ``config``.

    Per seed, all points share the draw: W = √(σ_w²/n)·Z, b = σ_b·z with the same standard normal Z, z,
    so the points differ only in scale. One batched float64 forward and backward pass per point.
    """
    c = check_config(config, CriticalConfig)
    device = pick_device(c.device)
    z_w, z_b, inputs, signals = [], [], [], []
    for seed in c.seeds:
        generator = torch.Generator().manual_seed(seed)
        z_w.append(torch.randn(c.depth, c.width, c.width, generator=generator, dtype=torch.float64))
        z_b.append(torch.randn(c.depth, 1, c.width, generator=generator, dtype=torch.float64))
        inputs.append(torch.randn(c.batch_size, c.width, generator=generator, dtype=torch.float64))
        signals.append(torch.randn(c.batch_size, c.width, generator=generator, dtype=torch.float64))
    w0, b0 = torch.stack(z_w).to(device), torch.stack(z_b).to(device) * math.sqrt(c.bias_var)
    x, g = torch.stack(inputs).to(device), torch.stack(signals).to(device)
    weight_vars = c.weight_vars or ()
    act = np.zeros((len(weight_vars), len(c.seeds), c.depth))
    grad = np.zeros_like(act)
    pred_g = np.zeros((len(weight_vars), c.depth))
    for k, weight_var in enumerate(weight_vars):
        w = w0 * math.sqrt(weight_var / c.width)
        input_var = 1.0
        if c.input_at_fixed_point:
            input_var = (tanh_fixed_point(weight_var, c.bias_var) - c.bias_var) / weight_var
        act[k], grad[k] = _measure(w, b0, x * math.sqrt(input_var), g, torch.tanh)
        _, pred_g[k] = predict_tanh_with_bias(weight_var, c.bias_var, c.depth, input_var=input_var)
    points = {"weight_var": weight_vars}
    chi = Grid([tanh_chi(w, c.bias_var) for w in weight_vars], name="chi", **points)
    ratio = Grid(grad[:, :, 0] / grad[:, :, -1], name="grad ratio", **points, seed=c.seeds)
    predicted = Grid(pred_g[:, 0] / pred_g[:, -1], name="predicted ratio", **points)
    return CriticalProfile(c, act, grad, pred_g, ratio, predicted, chi)


# ------------------------------------------------------------------------------ symmetry breaking
SYMMETRY_INITS = ("zero", "constant", "xavier")


def init_symmetric(
    model: MLP, init: str, *, value: float = 0.1, generator: torch.Generator | None = None
) -> MLP:
    """Initialize ``model`` for the symmetry-breaking experiment: "zero" (every weight and bias 0),
    "constant" (every weight ``value``, biases 0) or "xavier" (Xavier-uniform weights from ``generator``,
    zero biases). With equal rows, every hidden unit of a layer computes the same output and receives the
    same gradient, so the rows stay equal under any gradient step: the layer acts as one unit."""
    if not isinstance(model, MLP):
        raise TypeError(f"model must be an MLP; got {type(model).__name__}")
    check_choice("init", init, SYMMETRY_INITS)
    value = check_float("value", value)
    if init == "xavier":
        return init_network(model, "xavier", generator=generator)  # type: ignore[return-value]
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.fill_(value if init == "constant" and name.endswith("weight") else 0.0)
    return model


def row_spread(weight: Tensor) -> float:
    """max_i ‖W_i - W_1‖ / max(max_i ‖W_i‖, tiny) of a (units, inputs) matrix: 0 when all rows are equal."""
    w = weight.detach().double()
    scale = float(w.norm(dim=1).max())
    return float((w - w[:1]).norm(dim=1).max()) / max(scale, 1e-300)


class SymmetryConfig(Config):
    """Zero, constant (every weight ``value``) and random initialization of one MLP, trained on digits;
    the seeds seed the minibatches (and, for "xavier", the network)."""

    inits: tuple[str, ...] = nonempty(one_of(*SYMMETRY_INITS), default=SYMMETRY_INITS)
    value: float = real(0.1)
    activation: str = one_of(*ACTIVATIONS, default="tanh")
    depth: int = integer(2, low=1, high=20)
    width: int = integer(32, low=2, high=1024)
    steps: int = positive(100, integer=True)
    lr: float = positive(0.05)
    optimizer: str = one_of(*OPTIMIZERS, default="momentum")
    batch_size: int = positive(64, integer=True)
    seeds: tuple[int, ...] = nonempty(seed_field(), default=(0, 1), unique=True)
    device: str = device_field()

    def train_config(self, seed: int) -> TrainConfig:
        return derive(TrainConfig, self, monitor_every=None, eval_every=self.steps, seed=seed)


@dataclass(frozen=True)
class Symmetry:
    """What training did to each initialization."""

    config: SymmetryConfig
    row_spread: np.ndarray  # (I, S, L) row_spread of each hidden layer's weights after training
    moved: np.ndarray  # (I, S, L) max |W_after - W_before| of each hidden layer's weights
    val_accuracy: np.ndarray  # (I, S) after training
    width_one_accuracy: np.ndarray  # (S,) the same network with one unit per hidden layer (Xavier init)

    def to_frame(self) -> Any:
        """One row per initialization: the seeds' worst row spread and weight change, the mean accuracy."""
        import pandas as pd

        accuracy = [*self.val_accuracy.mean(axis=1), self.width_one_accuracy.mean()]
        columns = {
            "initialization": [*self.config.inits, "xavier, width 1"],
            "largest row spread after training": [*self.row_spread.max(axis=(1, 2)), math.nan],
            "largest hidden-weight change": [*self.moved.max(axis=(1, 2)), math.nan],
            "validation accuracy (mean over seeds)": accuracy,
        }
        return pd.DataFrame(columns)


def run_symmetry(config: SymmetryConfig) -> Symmetry:
    """Train ``MLP(64, 10, depth, width, activation)`` from each initialization and seed on digits."""
    c = check_config(config, SymmetryConfig)
    data = digits()
    shape = (len(c.inits), len(c.seeds), c.depth)
    spread, moved, accuracy = np.zeros(shape), np.zeros(shape), np.zeros(shape[:2])
    for k, init in enumerate(c.inits):
        for j, seed in enumerate(c.seeds):
            model = MLP(data.in_features, 10, c.depth, c.width, c.activation, seed=seed)
            init_symmetric(model, init, value=c.value, generator=torch.Generator().manual_seed(seed))
            start = [layer.linear.weight.detach().clone() for layer in model.layers]
            history = train(model, data, c.train_config(seed))
            model.cpu()
            for i, layer in enumerate(model.layers):
                spread[k, j, i] = row_spread(layer.linear.weight)
                moved[k, j, i] = float((layer.linear.weight.detach() - start[i]).abs().max())
            accuracy[k, j] = history.final_val_accuracy
    width_one = []
    for seed in c.seeds:
        model = MLP(data.in_features, 10, c.depth, 1, c.activation, seed=seed)
        init_network(model, "xavier", generator=torch.Generator().manual_seed(seed))
        width_one.append(train(model, data, c.train_config(seed)).final_val_accuracy)
    return Symmetry(c, spread, moved, accuracy, np.array(width_one))
