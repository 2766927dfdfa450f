"""Chapter 6, recurrent networks: back propagation through time, gates, and gradient clipping, measured.

A vanilla RNN runs h_t = tanh(a_t), a_t = W_ih x_t + W_hh h_{t-1} + b over t = 1..T. Unrolled in time it
is a deep network whose layers share W_hh, and the chain rule gives, with D_k = diag(1 - h_k²),

    ∂h_T/∂h_t = (D_T W_hh)(D_{T-1} W_hh)⋯(D_{t+1} W_hh),    ∂L/∂x_t = W_ih^T D_t (∂h_T/∂h_t)^T ∂L/∂h_T,

a product of T - t Jacobians. Since |tanh'| <= 1 its norm is at most ‖W_hh‖₂^(T-t); when the states stay
small (D ≈ I) it behaves like W_hh^(T-t), which grows or shrinks like ρ(W_hh)^(T-t), ρ the spectral radius.

An LSTM adds a cell state c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t. Along that path alone (gates held fixed)
∂c_T/∂c_t = diag(f_{t+1} ⊙ ⋯ ⊙ f_T): no weight matrix and no tanh', only the forget gates, which the
network can learn to hold near 1. A GRU's state h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1} has the same kind of
path, with the update gate z_t in place of f_t.

Experiments (a frozen ``...Config`` and a ``run_...`` function each):

- ``run_bptt_check``: the Jacobian products above, built explicitly, against autograd (float64).
- ``run_lag_profile``: ‖∂L/∂x_t‖ against the lag T - t for RNN, GRU and LSTM at initialization, with
  W_hh optionally rescaled to a spectral radius ρ (the explorer's run).
- ``run_spectral_sweep``: ``run_lag_profile`` over ρ; the measured per-step factor against ρ.
- ``run_forget_gate``: the LSTM's forget gates and cell path at initialization, for several forget-gate
  biases.
- ``run_long_range``: train RNN, GRU and LSTM on the adding problem; losses, and the gradient against
  the lag before and after training.
- ``run_clipping``: an RNN in the exploding regime trained without clipping, with norm clipping and
  with value clipping; and the cosine between each clipped gradient and the raw one.
- ``run_cliff``: the loss and gradient norm along the line from the initial weights to where a few
  unclipped steps took them: the cliff of Pascanu et al. (2013).
- ``truncated_input_gradient_profile``: the lag profile under truncated BPTT (exactly 0 beyond k).

All models are built by ``build_adding_model``: a ``vgcourse.models.SequenceModel`` for the adding problem
(2 input channels, 1 output) whose parameters are all drawn from PyTorch's default distribution
U(-1/√H, 1/√H) with a seeded generator, so every run is repeatable without touching the global seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vgcourse._validation import check_choice, check_float, check_int
from vgcourse.config import (
    Config,
    check_config,
    derive,
    device_field,
    flag,
    integer,
    nonempty,
    one_of,
    positive,
    real,
    seed_field,
)
from vgcourse.data import DataSplit, adding_problem
from vgcourse.device import pick_device
from vgcourse.models import SEQUENCE_ARCHS, SequenceModel
from vgcourse.monitor import snapshot
from vgcourse.training import History, TrainConfig, train

__all__ = [
    "ARCHS",
    "CLIP_METHODS",
    "INPUT_SIZE",
    "BPTTCheckConfig",
    "BPTTCheckResult",
    "ClippingConfig",
    "ClippingResult",
    "CliffResult",
    "ForgetGateConfig",
    "ForgetGateResult",
    "LagProfileConfig",
    "LagProfileResult",
    "LongRangeConfig",
    "LongRangeResult",
    "LongRangeRun",
    "SpectralSweepConfig",
    "SpectralSweepResult",
    "adding_baseline",
    "average_grad_norm",
    "build_adding_model",
    "cell_path_jacobians",
    "fit_rate",
    "gate_trajectory",
    "input_gradient_profile",
    "truncated_input_gradient_profile",
    "recurrent_blocks",
    "rnn_state_jacobians",
    "run_bptt_check",
    "run_cliff",
    "run_clipping",
    "run_forget_gate",
    "run_lag_profile",
    "run_long_range",
    "run_spectral_sweep",
    "scale_recurrent_weights",
    "spectral_radius",
    "state_jacobians_autograd",
]

ARCHS = SEQUENCE_ARCHS
"""The recurrent architectures: "rnn" (vanilla, tanh), "gru", "lstm"."""
INPUT_SIZE = 2
"""Input channels of the adding problem: a value and a marker."""
CLIP_METHODS = ("none", "norm", "value")
"""Gradient clipping in ``run_clipping``: none, ``clip_grad_norm_``, ``clip_grad_value_``."""
_GATES = {
    "rnn": 1,
    "gru": 3,
    "lstm": 4,
}  # H×H blocks stacked in weight_hh: rnn (h), gru (r, z, n), lstm (i, f, g, o)
_F64 = torch.float64


# ----------------------------------------------------------------------------------------------------
# Building blocks: models, spectral radius, manual unrolls, input-gradient profiles


def spectral_radius(matrix: Tensor) -> float:
    """ρ(W) = max |λ_i(W)|, the largest eigenvalue modulus of a square matrix.

    Args:
        matrix: a square 2-D tensor.
    """
    if not isinstance(matrix, Tensor) or matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError("matrix must be a square 2-D tensor")
    return float(torch.linalg.eigvals(matrix.detach().double().cpu()).abs().max())


def recurrent_blocks(model: SequenceModel) -> list[Tensor]:
    """The H×H blocks of the first layer's W_hh, one per gate (views, so editing them edits the model).

    rnn: [W_hh]; gru: [W_hr, W_hz, W_hn]; lstm: [W_hi, W_hf, W_hg, W_ho] (PyTorch's gate order).

    Args:
        model: a ``SequenceModel``.
    """
    _check_model(model)
    size = model.rnn.hidden_size
    weight = model.rnn.weight_hh_l0
    return [weight[k * size : (k + 1) * size] for k in range(_GATES[model.arch])]


def scale_recurrent_weights(model: SequenceModel, radius: float) -> SequenceModel:
    """Rescale every H×H gate block of W_hh (all layers) so that its spectral radius is ``radius``.

    For the vanilla RNN this is W_hh ← ρ·W_hh/ρ(W_hh). GRU and LSTM get the same treatment block by block
    (each gate's recurrent matrix, and the candidate's, scaled to spectral radius ρ), so "ρ" means the same
    thing for the three architectures. Returns the model (changed in place).

    Args:
        model: a ``SequenceModel``.
        radius: the target spectral radius ρ > 0.
    """
    _check_model(model)
    radius = check_float("radius", radius, 0.0, strict_minimum=True)
    size = model.rnn.hidden_size
    with torch.no_grad():
        for name, weight in model.rnn.named_parameters():
            if name.startswith("weight_hh"):
                for k in range(_GATES[model.arch]):
                    block = weight[k * size : (k + 1) * size]
                    block.mul_(radius / spectral_radius(block))
    return model


def build_adding_model(
    arch: str,
    hidden_size: int = 32,
    seed: int = 0,
    *,
    spectral_radius: float | None = None,
    forget_bias: float | None = None,
) -> SequenceModel:
    """A ``SequenceModel`` for the adding problem (2 inputs, 1 output), repeatably initialized.

    Every parameter (W_ih, W_hh, both biases, the head) is drawn from U(-1/√H, 1/√H), the distribution
    PyTorch's own initialization uses for these sizes, from a generator seeded with ``seed``.

    Args:
        arch: "rnn", "gru" or "lstm".
        hidden_size: H, the size of the hidden state.
        seed: seed of the weights.
        spectral_radius: if given, rescale W_hh (every gate block) to this spectral radius ρ.
        forget_bias: LSTM only: the forget-gate bias b_f (``SequenceModel.set_forget_bias``); None keeps
            the random default (b_f ≈ 0).
    """
    check_choice("arch", arch, ARCHS)
    check_int("hidden_size", hidden_size, minimum=1)
    check_int("seed", seed, minimum=0)
    model = SequenceModel(arch, INPUT_SIZE, hidden_size, 1, seed=seed)  # every parameter is redrawn below
    generator = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(hidden_size)
    with torch.no_grad():
        for param in model.parameters():
            param.uniform_(-bound, bound, generator=generator)
    if spectral_radius is not None:
        scale_recurrent_weights(model, spectral_radius)
    if forget_bias is not None:
        model.set_forget_bias(forget_bias)  # ValueError for rnn/gru
    return model


def _check_model(model: Any) -> None:
    if not isinstance(model, SequenceModel):
        raise TypeError(f"model must be a vgcourse.models.SequenceModel; got {type(model).__name__}")


def _layer_weights(model: SequenceModel) -> tuple[Tensor, Tensor, Tensor]:
    """(W_ih, W_hh, b_ih + b_hh) of the first recurrent layer, detached, in float64."""
    rnn = model.rnn
    weights = rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0 + rnn.bias_hh_l0
    return tuple(w.detach().to(_F64).cpu() for w in weights)  # type: ignore[return-value]


def _rnn_step(h: Tensor, x: Tensor, w_ih: Tensor, w_hh: Tensor, b: Tensor) -> Tensor:
    return torch.tanh(w_ih @ x + w_hh @ h + b)


def _rnn_unroll(h: Tensor, xs: Tensor, w_ih: Tensor, w_hh: Tensor, b: Tensor) -> Tensor:
    for x in xs:
        h = _rnn_step(h, x, w_ih, w_hh, b)
    return h


def gate_trajectory(model: SequenceModel, x: Tensor) -> dict[str, Tensor]:
    """Unroll the first recurrent layer by hand (float64) and return its states and gates.

    Keys: rnn: "h"; lstm: "h", "c", "i", "f", "g", "o"; gru: "h", "r", "z", "n". States have T + 1 rows
    (row 0 the initial zero state, row k after step k), gates T rows (row k - 1 for step k); each row is H
    wide. With a batch x (N, T, F) every value gets a leading batch dimension. Matches ``model.rnn``.

    Args:
        model: a ``SequenceModel``.
        x: one sequence (T, input_size) or a batch (N, T, input_size).
    """
    _check_model(model)
    if not isinstance(x, Tensor) or x.ndim not in (2, 3):
        raise ValueError("x must be a (T, input_size) sequence or an (N, T, input_size) batch")
    single = x.ndim == 2
    xs = x.detach().double().cpu()
    xs = xs[None] if single else xs
    rnn = model.rnn
    w_ih, w_hh = rnn.weight_ih_l0.detach().double().cpu(), rnn.weight_hh_l0.detach().double().cpu()
    b_ih, b_hh = rnn.bias_ih_l0.detach().double().cpu(), rnn.bias_hh_l0.detach().double().cpu()
    size = rnn.hidden_size
    h = torch.zeros(len(xs), size, dtype=_F64)
    c = torch.zeros(len(xs), size, dtype=_F64)
    out: dict[str, list[Tensor]] = {"h": [h]}
    if model.arch == "lstm":
        out.update(c=[c], i=[], f=[], g=[], o=[])
    elif model.arch == "gru":
        out.update(r=[], z=[], n=[])
    for step in range(xs.shape[1]):
        x_t = xs[:, step]
        if model.arch == "rnn":
            h = torch.tanh(x_t @ w_ih.T + h @ w_hh.T + b_ih + b_hh)
        elif model.arch == "lstm":
            i, f, g, o = (x_t @ w_ih.T + b_ih + h @ w_hh.T + b_hh).split(size, dim=-1)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c = f * c + i * g
            h = o * torch.tanh(c)
            for key, value in (("c", c), ("i", i), ("f", f), ("g", g), ("o", o)):
                out[key].append(value)
        else:
            xr, xz, xn = (x_t @ w_ih.T + b_ih).split(size, dim=-1)
            hr, hz, hn = (h @ w_hh.T + b_hh).split(size, dim=-1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h = (1 - z) * n + z * h
            for key, value in (("r", r), ("z", z), ("n", n)):
                out[key].append(value)
        out["h"].append(h)
    stacked = {key: torch.stack(values, dim=1) for key, values in out.items()}
    return {key: value[0] for key, value in stacked.items()} if single else stacked


def rnn_state_jacobians(model: SequenceModel, x: Tensor) -> Tensor:
    """∂h_T/∂h_t for t = 0..T by the closed form: J_T = I, J_t = J_{t+1} D_{t+1} W_hh, D_k = diag(1 - h_k²).

    No autograd: each Jacobian is built as an explicit H×H matrix (float64), from the last step down.
    Returns a (T + 1, H, H) tensor whose row t is ∂h_T/∂h_t (row 0: the initial state).

    Args:
        model: a vanilla-RNN ``SequenceModel`` (arch "rnn").
        x: one input sequence, (T, input_size).
    """
    _check_model(model)
    if model.arch != "rnn":
        raise ValueError(f"rnn_state_jacobians needs arch 'rnn'; got {model.arch!r}")
    h = gate_trajectory(model, x)["h"]
    _, w_hh, _ = _layer_weights(model)
    steps = len(h) - 1
    jacobians = [torch.eye(len(w_hh), dtype=_F64)]
    for k in range(steps, 0, -1):  # J_{k-1} = J_k D_k W_hh
        jacobians.append(jacobians[-1] @ torch.diag(1 - h[k] ** 2) @ w_hh)
    return torch.stack(jacobians[::-1])


def cell_path_jacobians(model: SequenceModel, x: Tensor) -> Tensor:
    """The gated path alone: ∂c_T/∂c_t = diag(f_{t+1} ⊙ ⋯ ⊙ f_T) (LSTM), ∂h_T/∂h_t = diag(∏ z_k) (GRU).

    Returns the (T + 1, H) diagonals, row t for t = 0..T (row T is all ones).

    Args:
        model: an LSTM or GRU ``SequenceModel``.
        x: one input sequence, (T, input_size).
    """
    _check_model(model)
    if model.arch == "rnn":
        raise ValueError("cell_path_jacobians needs arch 'lstm' or 'gru' (the vanilla RNN has no gates)")
    gates = gate_trajectory(model, x)["f" if model.arch == "lstm" else "z"]
    ones = torch.ones(1, gates.shape[1], dtype=_F64)
    # row t: product of the gates of steps t+1..T = reversed cumulative product
    suffix = torch.flip(torch.cumprod(torch.flip(gates, [0]), 0), [0])
    return torch.cat([suffix, ones])


def state_jacobians_autograd(model: SequenceModel, x: Tensor, *, gated_path_only: bool = False) -> Tensor:
    """Autograd's ∂s_T/∂s_t for t = 0..T-1, s = h (rnn, gru) or c (lstm); (T, H, H), float64.

    With ``gated_path_only`` (lstm, gru) the hidden state is detached where it enters the gates, so the
    gates (and the GRU's candidate n_k) are constants for autograd and only the path
    c_k = f_k ⊙ c_{k-1} + i_k ⊙ g_k (gru: h_k = (1 - z_k) ⊙ n_k + z_k ⊙ h_{k-1}) carries the derivative:
    the reference for ``cell_path_jacobians``. Without it, every path counts (for the LSTM also the
    paths through h_k = o_k ⊙ tanh(c_k) and the gates).

    Args:
        model: a ``SequenceModel``.
        x: one input sequence, (T, input_size).
        gated_path_only: hold the gates fixed (lstm/gru only).
    """
    _check_model(model)
    if gated_path_only and model.arch == "rnn":
        raise ValueError("gated_path_only needs arch 'lstm' or 'gru'")
    traj = gate_trajectory(model, x)
    rnn = model.rnn
    w_ih, w_hh = rnn.weight_ih_l0.detach().double().cpu(), rnn.weight_hh_l0.detach().double().cpu()
    b_ih, b_hh = rnn.bias_ih_l0.detach().double().cpu(), rnn.bias_hh_l0.detach().double().cpu()
    xs = x.detach().double().cpu()
    size = rnn.hidden_size
    steps = len(xs)

    def run_from(t: int, state: Tensor) -> Tensor:
        if model.arch == "rnn":
            return _rnn_unroll(state, xs[t:], w_ih, w_hh, b_ih + b_hh)
        cut = (lambda v: v.detach()) if gated_path_only else (lambda v: v)
        if model.arch == "lstm":  # state is c_t; h_t = o_t ⊙ tanh(c_t), o_t from the recorded trajectory
            c = state
            h = traj["o"][t - 1] * torch.tanh(c) if t > 0 else torch.zeros(size, dtype=_F64)
            for k in range(t, steps):
                i, f, g, o = (w_ih @ xs[k] + b_ih + w_hh @ cut(h) + b_hh).split(size)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            return c
        h = state
        for k in range(t, steps):
            xr, xz, xn = (w_ih @ xs[k] + b_ih).split(size)
            hr, hz, hn = (w_hh @ cut(h) + b_hh).split(size)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            h = (1 - z) * torch.tanh(xn + r * hn) + z * h
        return h

    key = "c" if model.arch == "lstm" else "h"
    jacobians = []
    for t in range(steps):
        start = traj[key][t].clone()
        jacobians.append(torch.autograd.functional.jacobian(lambda s, t=t: run_from(t, s), start))
    return torch.stack(jacobians)


def adding_baseline(data: DataSplit) -> float:
    """Validation MSE of always predicting the training mean of y: the loss of a model that ignores x.

    For the adding problem y = u_1 + u_2 with u ~ U(0, 1), so this is about Var(y) = 2/12 ≈ 0.167.

    Args:
        data: a regression split (e.g. ``adding_problem``).
    """
    if not isinstance(data, DataSplit):
        raise TypeError(f"data must be a DataSplit; got {type(data).__name__}")
    return float(((data.y_val - data.y_train.mean()) ** 2).mean())


def input_gradient_profile(model: SequenceModel, x: Tensor, y: Tensor) -> np.ndarray:
    """‖∂L/∂x_{T-k}‖ for lags k = 0..T-1 (norm over the batch and the features), L the MSE on (x, y).

    One forward and backward pass through ``vgcourse.monitor.snapshot(..., track_inputs=True)``; the
    model's weights are not changed (its .grad are left set). Entry k is the gradient reaching the input
    k steps before the last one.

    Args:
        model: a ``SequenceModel``.
        x: a batch of sequences, (N, T, input_size); moved to the model's device.
        y: targets, (N, 1).
    """
    _check_model(model)
    device = next(model.parameters()).device
    record = snapshot(model, x.to(device), y.to(device), F.mse_loss, track_inputs=True)
    return record.input_grad_norm[0][::-1].copy()


def truncated_input_gradient_profile(
    model: SequenceModel, x: Tensor, y: Tensor, truncation: int
) -> np.ndarray:
    """``input_gradient_profile`` under truncated BPTT: back propagation stops ``truncation`` steps back.

    The first T - k steps run without a graph (their final state enters as a constant), the last k with
    one, so ∂L/∂x_{T-j} is the full-BPTT value for lags j < k and exactly 0 for j >= k: no gradient, and
    so no learning signal, from a dependency longer than k steps (Williams and Peng, 1990).

    Args:
        model: a one-layer ``SequenceModel``.
        x: a batch of sequences, (N, T, input_size); moved to the model's device.
        y: targets, (N, 1).
        truncation: k, the number of steps back propagation runs through, 1..T.
    """
    _check_model(model)
    if not isinstance(x, Tensor) or x.ndim != 3:
        raise ValueError("x must be an (N, T, input_size) batch")
    steps = x.shape[1]
    check_int("truncation", truncation, 1, steps)
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    cut = steps - truncation
    state = None
    if cut > 0:
        with torch.no_grad():
            _, state = model.rnn(x[:, :cut])
    tail = x[:, cut:].clone().requires_grad_(True)
    out, _ = model.rnn(tail, state)
    loss = F.mse_loss(model.head(out[:, -1]), y)
    (grad,) = torch.autograd.grad(loss, tail)
    norms = np.zeros(steps)
    norms[:truncation] = grad.detach().double().cpu().pow(2).sum(dim=(0, 2)).sqrt().numpy()[::-1]
    return norms


def fit_rate(profile: np.ndarray, first: int = 1, last: int | None = None) -> float:
    """The per-step factor r of g_k ≈ C·r^k: exp of the least-squares slope of ln g_k over lags first..last.

    Starts at lag 1 by default: lag 0 (the last input) reaches the output without passing through W_hh.

    Args:
        profile: g_k for k = 0, 1, ... (positive).
        first: first lag of the fit.
        last: last lag of the fit (default: the last one).
    """
    values = np.asarray(profile, dtype=np.float64)
    last = len(values) - 1 if last is None else last
    check_int("first", first, minimum=0)
    check_int("last", last, minimum=first + 1, maximum=len(values) - 1)
    lags = np.arange(first, last + 1)
    logs = np.log(np.maximum(values[first : last + 1], np.finfo(np.float64).tiny))
    return float(np.exp(np.polyfit(lags, logs, 1)[0]))


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as error:  # pragma: no cover - pandas is a dependency of the course
        raise ImportError("tables need pandas: pip install pandas") from error
    return pd


def _archs() -> Any:
    return nonempty(one_of(*ARCHS), default=ARCHS, unique=True)


# ----------------------------------------------------------------------------------------------------
# The closed forms against autograd


class BPTTCheckConfig(Config):
    """Random small networks on which to compare the Jacobian products with autograd (float64): model m
    of each architecture (seed ``seed + m``) gets W_hh rescaled to ``radii[m % len(radii)]``; sequences of
    T = ``seq_len`` steps, H = ``hidden_size``."""

    n_models: int = positive(6, integer=True)
    seq_len: int = integer(12, low=2)
    hidden_size: int = positive(6, integer=True)
    radii: tuple[float, ...] = nonempty(positive(), default=(0.5, 1.0, 2.0))
    seed: int = seed_field()


@dataclass(frozen=True)
class BPTTCheckResult:
    """Relative errors ‖J_formula − J_autograd‖_F / ‖J_autograd‖_F of the three Jacobian formulas.

    Args:
        rnn_errors: (n_models, T) errors of ∂h_T/∂h_t = ∏ D_k W_hh, one per t = 0..T-1.
        lstm_errors: (n_models, T) errors of ∂c_T/∂c_t = diag(∏ f_k) against autograd with gates fixed.
        gru_errors: (n_models, T) errors of ∂h_T/∂h_t = diag(∏ z_k) against autograd with gates fixed.
        rnn_bound_holds: (n_models, T) whether ‖∂h_T/∂h_t‖₂ <= ‖W_hh‖₂^(T-t).
    """

    config: BPTTCheckConfig
    rnn_errors: np.ndarray
    lstm_errors: np.ndarray
    gru_errors: np.ndarray
    rnn_bound_holds: np.ndarray

    @property
    def max_relative_error(self) -> float:
        """The largest relative error over every Jacobian compared."""
        return float(max(self.rnn_errors.max(), self.lstm_errors.max(), self.gru_errors.max()))

    @property
    def n_jacobians(self) -> int:
        """How many Jacobians were compared."""
        return int(self.rnn_errors.size + self.lstm_errors.size + self.gru_errors.size)

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per formula: Jacobians compared and the largest relative error."""
        pd = _pandas()
        rows = [
            ("RNN: ∂h_T/∂h_t = ∏ D_k W_hh", self.rnn_errors),
            ("LSTM cell path: ∂c_T/∂c_t = diag(∏ f_k)", self.lstm_errors),
            ("GRU direct path: ∂h_T/∂h_t = diag(∏ z_k)", self.gru_errors),
        ]
        return pd.DataFrame(
            {
                "Jacobians": [errors.size for _, errors in rows],
                "max relative error": [float(errors.max()) for _, errors in rows],
            },
            index=pd.Index([name for name, _ in rows], name="formula"),
        )


def _relative_error(value: Tensor, reference: Tensor) -> float:
    diff, ref = float(torch.linalg.norm(value - reference)), float(torch.linalg.norm(reference))
    return 0.0 if diff == 0.0 else (diff / ref if ref > 0 else math.inf)


def run_bptt_check(config: BPTTCheckConfig) -> BPTTCheckResult:
    """Compare ``rnn_state_jacobians`` and ``cell_path_jacobians`` with autograd on random networks."""
    c = config
    steps = c.seq_len
    rnn_err, lstm_err, gru_err, bound = (np.zeros((c.n_models, steps)) for _ in range(4))
    for m in range(c.n_models):
        radius = c.radii[m % len(c.radii)]
        seed = c.seed + m
        x = torch.randn(steps, INPUT_SIZE, generator=torch.Generator().manual_seed(seed + 10_000))
        rnn = build_adding_model("rnn", c.hidden_size, seed, spectral_radius=radius)
        closed, auto = rnn_state_jacobians(rnn, x), state_jacobians_autograd(rnn, x)
        w_norm = float(torch.linalg.matrix_norm(_layer_weights(rnn)[1], ord=2))
        for t in range(steps):
            rnn_err[m, t] = _relative_error(closed[t], auto[t])
            norm = float(torch.linalg.matrix_norm(closed[t], ord=2))
            bound[m, t] = norm <= w_norm ** (steps - t) * (1 + 1e-12)
        for arch, errors in (("lstm", lstm_err), ("gru", gru_err)):
            model = build_adding_model(arch, c.hidden_size, seed, spectral_radius=radius)
            diag = cell_path_jacobians(model, x)
            fixed = state_jacobians_autograd(model, x, gated_path_only=True)
            for t in range(steps):
                errors[m, t] = _relative_error(torch.diag(diag[t]), fixed[t])
    return BPTTCheckResult(c, rnn_err, lstm_err, gru_err, bound.astype(bool))


# ----------------------------------------------------------------------------------------------------
# The gradient against the lag, at initialization


def _adding_batch(seq_len: int, batch_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """``batch_size`` sequences of the adding problem (the training half of a 2·batch_size split)."""
    data = adding_problem(n_samples=2 * batch_size, seq_len=seq_len, val_fraction=0.5, seed=seed)
    return data.x_train, data.y_train


class LagProfileConfig(Config):
    """One forward and backward pass per architecture at initialization, on a batch of the adding problem
    of length T = ``seq_len`` (lags 0..T-1 are measured); ``seed`` seeds the weights and the batch.

    ``spectral_radius`` rescales W_hh (every gate block) to this ρ (None keeps PyTorch's default scale);
    ``forget_bias`` is the LSTM's forget-gate bias b_f (None keeps the default ≈ 0; ignored by rnn/gru).
    """

    archs: tuple[str, ...] = _archs()
    seq_len: int = integer(60, low=3)
    spectral_radius: float | None = positive(None, optional=True)
    forget_bias: float | None = real(None, optional=True)
    hidden_size: int = positive(32, integer=True)
    batch_size: int = positive(64, integer=True)
    seed: int = seed_field()


@dataclass(frozen=True)
class LagProfileResult:
    """‖∂L/∂x_{T-k}‖ against the lag k for each architecture.

    Args:
        lags: (T,) the lags 0..T-1.
        grad_norm: (n_archs, T) the gradient norm at each lag, one row per ``config.archs``.
        radii: (n_archs,) the spectral radius of W_hh (largest over the gate blocks) of each model.
    """

    config: LagProfileConfig
    lags: np.ndarray
    grad_norm: np.ndarray
    radii: np.ndarray

    def _row(self, arch: str) -> int:
        return self.config.archs.index(check_choice("arch", arch, self.config.archs))

    @property
    def relative(self) -> np.ndarray:
        """(n_archs, T) g_k / g_0: the gradient at lag k relative to the last step's."""
        return self.grad_norm / self.grad_norm[:, :1]

    def ratio(self, arch: str, lag: int | None = None) -> float:
        """g_k / g_0 of one architecture at lag k (default: the longest lag, T - 1).

        Args:
            arch: one of ``config.archs``.
            lag: the lag k, 0..T-1.
        """
        lag = len(self.lags) - 1 if lag is None else check_int("lag", lag, 0, len(self.lags) - 1)
        return float(self.relative[self._row(arch), lag])

    def rate(self, arch: str) -> float:
        """The per-step factor of one architecture's profile (``fit_rate`` over lags 1..T-1).

        Args:
            arch: one of ``config.archs``.
        """
        return fit_rate(self.grad_norm[self._row(arch)])

    def radius(self, arch: str) -> float:
        """The spectral radius of the architecture's W_hh (largest over its gate blocks).

        Args:
            arch: one of ``config.archs``.
        """
        return float(self.radii[self._row(arch)])


def run_lag_profile(config: LagProfileConfig) -> LagProfileResult:
    """Measure ‖∂L/∂x_{T-k}‖ for every lag k at initialization, for each architecture (one pass each)."""
    c = config
    x, y = _adding_batch(c.seq_len, c.batch_size, c.seed)
    rows, radii = [], []
    for arch in c.archs:
        forget_bias = c.forget_bias if arch == "lstm" else None
        model = build_adding_model(
            arch, c.hidden_size, c.seed, spectral_radius=c.spectral_radius, forget_bias=forget_bias
        )
        radii.append(max(spectral_radius(block) for block in recurrent_blocks(model)))
        rows.append(input_gradient_profile(model, x, y))
    return LagProfileResult(c, np.arange(c.seq_len), np.array(rows), np.array(radii))


class SpectralSweepConfig(Config):
    """``run_lag_profile`` for each spectral radius ρ of W_hh, and once at PyTorch's default scale; the
    seed of the weights and the batch is the same for every ρ: only the scale of W_hh changes."""

    archs: tuple[str, ...] = _archs()
    radii: tuple[float, ...] = nonempty(positive(), default=(0.5, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0))
    seq_len: int = integer(60, low=3)
    hidden_size: int = positive(32, integer=True)
    batch_size: int = positive(64, integer=True)
    seed: int = seed_field()

    def profile_config(self, radius: float | None) -> LagProfileConfig:
        """The ``LagProfileConfig`` of one ρ (None: the default scale)."""
        return derive(LagProfileConfig, self, spectral_radius=radius)


@dataclass(frozen=True)
class SpectralSweepResult:
    """Lag profiles over ρ, and the fitted per-step factor of each.

    Args:
        profiles: one ``LagProfileResult`` per ρ in ``config.radii``.
        default: the profile at PyTorch's default scale (W_hh ~ U(-1/√H, 1/√H)).
    """

    config: SpectralSweepConfig
    profiles: tuple[LagProfileResult, ...]
    default: LagProfileResult

    @property
    def rates(self) -> np.ndarray:
        """(n_archs, n_radii) the per-step factor of each architecture at each ρ."""
        return np.array([[p.rate(arch) for p in self.profiles] for arch in self.config.archs])

    def profile(self, radius: float) -> LagProfileResult:
        """The profile measured at one of the configured ρ."""
        check_float("radius", radius)
        for r, profile in zip(self.config.radii, self.profiles, strict=True):
            if math.isclose(r, radius):
                return profile
        raise ValueError(f"radius {radius} was not measured; measured: {self.config.radii}")

    def rate(self, arch: str, radius: float) -> float:
        """The per-step factor of one architecture at one of the configured ρ."""
        return self.profile(radius).rate(arch)

    def to_frame(self) -> Any:
        """A pandas DataFrame: one row per ρ (and one for the default scale), one column per architecture."""
        pd = _pandas()
        rows = {f"{r:g}": self.rates[:, j] for j, r in enumerate(self.config.radii)}
        default = [self.default.rate(arch) for arch in self.config.archs]
        frame = pd.DataFrame({**rows, "default": default}, index=list(self.config.archs)).T
        frame.index.name = "ρ(W_hh)"
        return frame


def run_spectral_sweep(config: SpectralSweepConfig) -> SpectralSweepResult:
    """``run_lag_profile`` at each ρ of ``config.radii`` and at the default scale."""
    profiles = tuple(run_lag_profile(config.profile_config(r)) for r in config.radii)
    return SpectralSweepResult(config, profiles, run_lag_profile(config.profile_config(None)))


# ----------------------------------------------------------------------------------------------------
# The LSTM's forget gate at initialization


class ForgetGateConfig(Config):
    """LSTMs that differ only in the forget-gate bias b_f, at initialization. A bias None is PyTorch's
    default (b_ih + b_hh, each U(-1/√H, 1/√H), so ≈ 0); ``seed`` seeds the weights (the same for every
    bias) and the batch."""

    biases: tuple[float | None, ...] = nonempty(real(optional=True), default=(None, 1.0), unique=True)
    seq_len: int = integer(60, low=3)
    hidden_size: int = positive(32, integer=True)
    batch_size: int = positive(64, integer=True)
    seed: int = seed_field()


@dataclass(frozen=True)
class ForgetGateResult:
    """Forget gates, the cell path and ‖∂L/∂x_t‖ of LSTMs with different forget-gate biases.

    Args:
        forget_mean: (n_biases,) the mean forget gate f over the batch, the steps and the units.
        cell_path: (n_biases, T) geometric mean over the batch and the units of the cell path's
            diagonal ∏_{j=T-k+1}^{T} f_j = ∂c_T/∂c_{T-k} (gates held fixed), for lags k = 0..T-1.
        profiles: one ``LagProfileResult`` (arch "lstm") per bias: ‖∂L/∂x_{T-k}‖ through every path.
    """

    config: ForgetGateConfig
    forget_mean: np.ndarray
    cell_path: np.ndarray
    profiles: tuple[LagProfileResult, ...]

    def _index(self, bias: float | None) -> int:
        for k, b in enumerate(self.config.biases):
            if (b is None and bias is None) or (b is not None and bias is not None and math.isclose(b, bias)):
                return k
        raise ValueError(f"forget bias {bias} was not measured; measured: {self.config.biases}")

    def mean_gate(self, bias: float | None) -> float:
        """The mean forget gate at one of the configured biases (None: the default)."""
        return float(self.forget_mean[self._index(bias)])

    def cell_path_at(self, bias: float | None, lag: int) -> float:
        """The cell path's typical ∏ f over ``lag`` steps at one of the configured biases."""
        check_int("lag", lag, 0, self.config.seq_len - 1)
        return float(self.cell_path[self._index(bias), lag])

    def profile(self, bias: float | None) -> LagProfileResult:
        """The ‖∂L/∂x_t‖ profile at one of the configured biases."""
        return self.profiles[self._index(bias)]

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per bias: mean f, σ(b_f), ∏ f and g_k/g_0 at the longest lag, and
        the per-step factors of the cell path and of ‖∂L/∂x_t‖."""
        pd = _pandas()
        last = self.config.seq_len - 1
        rows = []
        for k, bias in enumerate(self.config.biases):
            rows.append(
                {
                    "forget-gate bias b_f": "default" if bias is None else f"{bias:g}",
                    "σ(b_f)": 1 / (1 + math.exp(-bias)) if bias is not None else 0.5,
                    "mean forget gate": float(self.forget_mean[k]),
                    f"∏ f over {last} steps": float(self.cell_path[k, last]),
                    f"g_{last}/g_0": self.profiles[k].ratio("lstm"),
                    "cell-path factor": fit_rate(self.cell_path[k]),
                    "‖∂L/∂x‖ factor": self.profiles[k].rate("lstm"),
                }
            )
        return pd.DataFrame(rows).set_index("forget-gate bias b_f")


def run_forget_gate(config: ForgetGateConfig) -> ForgetGateResult:
    """Measure the forget gates, the cell path and the input-gradient profile for each forget-gate bias."""
    c = config
    x, _ = _adding_batch(c.seq_len, c.batch_size, c.seed)
    means, paths, profiles = [], [], []
    for bias in c.biases:
        model = build_adding_model("lstm", c.hidden_size, c.seed, forget_bias=bias)
        f = gate_trajectory(model, x)["f"]  # (N, T, H)
        means.append(float(f.mean()))
        # lag k: sum of ln f over the last k steps, averaged over the batch and the units, then exp
        log_suffix = torch.cumsum(torch.flip(torch.log(f), [1]), dim=1).mean(dim=(0, 2))
        paths.append(np.exp(np.concatenate([[0.0], log_suffix[:-1].numpy()])))
        profiles.append(run_lag_profile(derive(LagProfileConfig, c, archs=("lstm",), forget_bias=bias)))
    return ForgetGateResult(c, np.array(means), np.array(paths), tuple(profiles))


# ----------------------------------------------------------------------------------------------------
# A long-range task: the adding problem


class LongRangeConfig(Config):
    """Train each architecture on the same adding problem with the same optimizer (Adam) and budget.

    The first marked value sits T/2 to T - 1 steps before the last step (T = ``seq_len``). ``forget_bias``
    is the LSTM's b_f (None: the default ≈ 0); ``clip_norm`` clips the total gradient norm (None: no
    clipping); ``n_samples`` sequences are split 80% train, 20% validation, evaluated every ``eval_every``
    steps; ‖∂L/∂x_t‖ is measured on ``n_profile`` validation sequences before and after training; ``seed``
    seeds the data, the weights and the minibatch order.
    """

    archs: tuple[str, ...] = _archs()
    seq_len: int = integer(30, low=4)
    steps: int = positive(800, integer=True)
    hidden_size: int = positive(32, integer=True)
    batch_size: int = positive(32, integer=True)
    lr: float = positive(0.02)
    forget_bias: float | None = real(1.0, optional=True)
    clip_norm: float | None = positive(None, optional=True)
    n_samples: int = integer(2000, low=10)
    eval_every: int = positive(100, integer=True)
    n_profile: int = positive(256, integer=True)
    seed: int = seed_field()
    device: str = device_field("auto")


@dataclass(frozen=True)
class LongRangeRun:
    """One architecture's training run.

    Args:
        arch: the architecture.
        history: the training history (``vgcourse.training.History``).
        profile_init: (T,) ‖∂L/∂x_{T-k}‖ on validation sequences before training, by lag k.
        profile_trained: (T,) the same after training.
        model: the trained network (None where it was not kept).
    """

    arch: str
    history: History
    profile_init: np.ndarray
    profile_trained: np.ndarray
    model: SequenceModel | None = None

    @property
    def val_loss(self) -> float:
        """The validation MSE at the end of training."""
        return float(self.history.val_loss[-1])

    def far_ratio(self, trained: bool = True) -> float:
        """Geometric mean of g_k / g_0 over the lags T/2..T-1, where the first marked value sits.

        Args:
            trained: after training (True) or at initialization (False).
        """
        profile = self.profile_trained if trained else self.profile_init
        half = len(profile) // 2
        with np.errstate(divide="ignore"):  # a gradient that underflowed to 0 gives a ratio of 0
            return float(np.exp(np.mean(np.log(profile[half:] / profile[0]))))

    def clipped_fraction(self, clip_norm: float) -> float:
        """Fraction of the steps whose gradient norm exceeded ``clip_norm`` (the steps clipping changed)."""
        return float(np.mean(self.history.grad_norm_total > clip_norm))


@dataclass(frozen=True)
class LongRangeResult:
    """Training runs of several architectures on one adding problem.

    Args:
        baseline: validation MSE of predicting the mean (``adding_baseline``), ≈ 0.167.
        runs: one ``LongRangeRun`` per architecture, in ``config.archs`` order.
    """

    config: LongRangeConfig
    baseline: float
    runs: tuple[LongRangeRun, ...]

    def run(self, arch: str) -> LongRangeRun:
        """The run of one architecture."""
        return self.runs[self.config.archs.index(check_choice("arch", arch, self.config.archs))]

    def truncated_profile(self, arch: str, truncation: int) -> np.ndarray:
        """The trained network's ‖∂L/∂x_{T-k}‖ on the profile sequences under truncated BPTT.

        Same sequences as ``LongRangeRun.profile_trained`` (the first ``n_profile`` validation
        sequences), with back propagation stopped ``truncation`` steps back
        (``truncated_input_gradient_profile``): equal to ``profile_trained`` below that lag, 0 from it on.

        Args:
            arch: one of ``config.archs``.
            truncation: k, 1..T.
        """
        run = self.run(arch)
        if run.model is None:
            raise ValueError(f"the {arch} run did not keep its trained model")
        c = self.config
        data = adding_problem(n_samples=c.n_samples, seq_len=c.seq_len, seed=c.seed)
        x, y = data.x_val[: c.n_profile], data.y_val[: c.n_profile]
        return truncated_input_gradient_profile(run.model, x, y, truncation)

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per architecture: validation MSE (and relative to the baseline),
        and the gradient reaching lags T/2..T-1 relative to the last step, before and after training."""
        pd = _pandas()
        rows = []
        for run in self.runs:
            rows.append(
                {
                    "architecture": run.arch,
                    "validation MSE": run.val_loss,
                    "validation MSE / baseline": run.val_loss / self.baseline,
                    "far-lag gradient at initialization": run.far_ratio(trained=False),
                    "far-lag gradient after training": run.far_ratio(trained=True),
                }
            )
        return pd.DataFrame(rows).set_index("architecture")


def run_long_range(config: LongRangeConfig) -> LongRangeResult:
    """Train every architecture of ``config.archs`` on the adding problem; measure before and after."""
    c = config
    data = adding_problem(n_samples=c.n_samples, seq_len=c.seq_len, seed=c.seed)
    x_prof, y_prof = data.x_val[: c.n_profile], data.y_val[: c.n_profile]
    device = pick_device(c.device)
    train_config = derive(TrainConfig, c, optimizer="adam", monitor_every=None)
    runs = []
    for arch in c.archs:
        forget_bias = c.forget_bias if arch == "lstm" else None
        model = build_adding_model(arch, c.hidden_size, c.seed, forget_bias=forget_bias).to(device)
        profile_init = input_gradient_profile(model, x_prof, y_prof)
        history = train(model, data, train_config)
        profile_trained = input_gradient_profile(model, x_prof, y_prof)
        runs.append(LongRangeRun(arch, history, profile_init, profile_trained, model))
    return LongRangeResult(c, adding_baseline(data), tuple(runs))


# ----------------------------------------------------------------------------------------------------
# Exploding gradients and clipping


class ClippingConfig(Config):
    """A vanilla RNN with W_hh scaled into the exploding regime, trained by SGD with and without clipping.

    ``methods`` names the runs ("none", "norm": ``clip_grad_norm_`` at ``clip_norm``, "value":
    ``clip_grad_value_`` at ``clip_value``); a diverging run stops early. The optional ``control`` run
    trains the same network at PyTorch's default scale of W_hh (ρ ≈ 0.6), without clipping and with the
    same learning rate and optimizer ("momentum": ``TrainConfig``'s 0.9). ``n_samples`` sequences are split
    80% train, 20% validation; the clipped gradients are compared with the raw one on ``n_batches``
    training batches; ``seed`` seeds the data, the weights and the minibatch order.
    """

    methods: tuple[str, ...] = nonempty(one_of(*CLIP_METHODS), default=CLIP_METHODS, unique=True)
    seq_len: int = integer(10, low=2)
    spectral_radius: float = positive(2.0)
    steps: int = positive(800, integer=True)
    lr: float = positive(0.3)
    optimizer: str = one_of("sgd", "momentum", default="momentum")
    batch_size: int = positive(64, integer=True)
    hidden_size: int = positive(32, integer=True)
    clip_norm: float = positive(0.1)
    clip_value: float = positive(0.01)
    n_samples: int = integer(1000, low=10)
    n_batches: int = positive(8, integer=True)
    eval_every: int = positive(200, integer=True)
    control: bool = flag(True)
    seed: int = seed_field()
    device: str = device_field("auto")


@dataclass(frozen=True)
class ClippingResult:
    """Training runs with each clipping method, and the clipped gradients' directions.

    Args:
        baseline: validation MSE of predicting the mean.
        histories: one ``History`` per method, in ``config.methods`` order.
        grad_norm: (n_batches,) ‖g‖ of the raw gradient at initialization, ρ(W_hh) = ``spectral_radius``.
        grad_norm_default: (n_batches,) ‖g‖ on the same batches at PyTorch's default scale of W_hh.
        cosine_norm: (n_batches,) cos(g, clip_norm(g)).
        cosine_value: (n_batches,) cos(g, clip_value(g)).
        value_clipped: (n_batches,) fraction of the gradient's entries with |g_i| > clip_value.
        default_radius: ρ(W_hh) at the default scale.
        control: the control run's ``History`` (default scale, no clipping), or None.
    """

    config: ClippingConfig
    baseline: float
    histories: tuple[History, ...]
    grad_norm: np.ndarray
    grad_norm_default: np.ndarray
    cosine_norm: np.ndarray
    cosine_value: np.ndarray
    value_clipped: np.ndarray
    default_radius: float
    control: History | None

    def history(self, method: str) -> History:
        """The training history of one method."""
        return self.histories[self.config.methods.index(check_choice("method", method, self.config.methods))]

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per run (the methods, then the control): diverged, steps run (a
        diverged run stops at the step whose loss or gradient was inf/NaN), first loss, mean training loss
        of the last 50 steps run, and the final validation MSE, alone and over the baseline (NaN after
        divergence)."""
        pd = _pandas()
        rows = []
        runs = [
            (f"{m}, ρ = {self.config.spectral_radius:g}", h)
            for m, h in zip(self.config.methods, self.histories, strict=True)
        ]
        if self.control is not None:
            runs.append((f"none, default ρ = {self.default_radius:.2f}", self.control))
        for name, history in runs:
            val = float("nan") if history.diverged else float(history.val_loss[-1])
            rows.append(
                {
                    "clipping": name,
                    "diverged": history.diverged,
                    "steps run": history.steps_run,
                    "first loss": float(history.loss[0]),
                    "loss, last 50 steps": float(np.mean(history.loss[-50:])),
                    "validation MSE": val,
                    "validation MSE / baseline": val / self.baseline,
                }
            )
        return pd.DataFrame(rows).set_index("clipping")


def _flat_grad(model: torch.nn.Module) -> Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])


def run_clipping(config: ClippingConfig) -> ClippingResult:
    """Train the exploding RNN with each method; compare clipped and raw gradients at initialization."""
    c = config
    data = adding_problem(n_samples=c.n_samples, seq_len=c.seq_len, seed=c.seed)
    device = pick_device(c.device)

    def model_at(radius: float | None) -> SequenceModel:
        return build_adding_model("rnn", c.hidden_size, c.seed, spectral_radius=radius).to(device)

    # directions: raw gradient vs its clipped versions, on the first n_batches training batches
    model, default = model_at(c.spectral_radius), model_at(None)
    norms, norms_default, cos_norm, cos_value, clipped = ([] for _ in range(5))
    n_batches = min(c.n_batches, max(1, data.n_train // c.batch_size))
    for b in range(n_batches):
        xb = data.x_train[b * c.batch_size : (b + 1) * c.batch_size].to(device)
        yb = data.y_train[b * c.batch_size : (b + 1) * c.batch_size].to(device)
        for net, out in ((model, norms), (default, norms_default)):
            net.zero_grad(set_to_none=True)
            F.mse_loss(net(xb), yb).backward()
            out.append(float(_flat_grad(net).norm()))
        grads = [p.grad.clone() for p in model.parameters()]
        raw = _flat_grad(model).clone()
        torch.nn.utils.clip_grad_norm_(model.parameters(), c.clip_norm)
        cos_norm.append(float(F.cosine_similarity(raw, _flat_grad(model), dim=0)))
        for param, grad in zip(model.parameters(), grads, strict=True):
            param.grad = grad  # the raw gradient again
        torch.nn.utils.clip_grad_value_(model.parameters(), c.clip_value)
        cos_value.append(float(F.cosine_similarity(raw, _flat_grad(model), dim=0)))
        clipped.append(float((raw.abs() > c.clip_value).double().mean()))

    def train_config(method: str) -> TrainConfig:
        clip_norm, clip_value = (
            (c.clip_norm if method == "norm" else None),
            (c.clip_value if method == "value" else None),
        )
        return derive(TrainConfig, c, clip_norm=clip_norm, clip_value=clip_value, monitor_every=None)

    histories = [train(model_at(c.spectral_radius), data, train_config(m)) for m in c.methods]
    control = train(model_at(None), data, train_config("none")) if c.control else None
    return ClippingResult(
        c,
        adding_baseline(data),
        tuple(histories),
        np.array(norms),
        np.array(norms_default),
        np.array(cos_norm),
        np.array(cos_value),
        np.array(clipped),
        spectral_radius(default.rnn.weight_hh_l0),
        control,
    )


def average_grad_norm(history: History, start: int = 0, stop: int | None = None) -> float:
    """The mean raw gradient norm (before clipping) over steps start..stop-1 of a run.

    Pascanu et al. (2013) suggest a clipping threshold around this average, taken over a stretch of
    training long enough to smooth out single batches.

    Args:
        history: a training run's ``History``.
        start: first step of the stretch (0-based).
        stop: one past the last step (default: the last step run).
    """
    if not isinstance(history, History):
        raise TypeError(f"history must be a vgcourse.training.History; got {type(history).__name__}")
    stop = history.steps_run if stop is None else stop
    check_int("start", start, 0, history.steps_run - 1)
    check_int("stop", stop, start + 1, history.steps_run)
    return float(np.mean(history.grad_norm_total[start:stop]))


@dataclass(frozen=True)
class CliffResult:
    """The loss and the gradient norm along the straight line from the initial weights θ₀ to θ_k, where k
    unclipped SGD steps took them (Pascanu et al., 2013's cliff).

    Args:
        config: the ``ClippingConfig`` whose network, data and optimizer were used.
        unclipped_steps: k.
        distance: (n,) ‖θ − θ₀‖ at each point of the line, from 0 to ‖θ_k − θ₀‖, increasing.
        loss: (n,) the MSE on a fixed batch of validation sequences at each point.
        grad_norm: (n,) ‖∇L‖ on the same batch at each point.
        clipped_distance: ‖θ'_k − θ₀‖ after k steps of the norm-clipped run from the same start.
    """

    config: ClippingConfig
    unclipped_steps: int
    distance: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    clipped_distance: float

    @property
    def loss_rise(self) -> float:
        """L(θ_k) / L(θ₀): how much higher the unclipped steps left the loss."""
        return float(self.loss[-1] / self.loss[0])

    @property
    def grad_rise(self) -> float:
        """max ‖∇L‖ along the line / ‖∇L(θ₀)‖: the gradient norm's spike at the wall."""
        return float(self.grad_norm.max() / self.grad_norm[0])

    @property
    def dip(self) -> float:
        """min L along the line / L(θ₀): the loss first falls (< 1) before the wall."""
        return float(self.loss.min() / self.loss[0])


def run_cliff(
    config: ClippingConfig, *, unclipped_steps: int = 2, n_points: int = 31, n_eval: int = 256
) -> CliffResult:
    """Walk the straight line θ₀ → θ_k of the unclipped run and measure the loss and gradient norm on it.

    θ_k comes from ``train`` with ``config``'s settings and no clipping, stopped after k steps (the same
    first steps as ``run_clipping``'s unclipped run); the clipped run's position after k steps from the
    same start gives the distance a norm-clipped optimizer travels meanwhile.

    Args:
        config: the clipping experiment's settings (its ρ, T, learning rate, optimizer and seed).
        unclipped_steps: k, steps of unclipped training that define the line.
        n_points: evenly spaced points on the line, both ends included (10 more points refine its first
            tenth).
        n_eval: validation sequences on which the loss and gradient are measured.
    """
    c = check_config(config, ClippingConfig)
    check_int("unclipped_steps", unclipped_steps, minimum=1)
    check_int("n_points", n_points, minimum=2)
    check_int("n_eval", n_eval, minimum=1)
    data = adding_problem(n_samples=c.n_samples, seq_len=c.seq_len, seed=c.seed)
    x, y = data.x_val[:n_eval], data.y_val[:n_eval]

    def weights_after(clip_norm: float | None) -> Tensor:
        model = build_adding_model("rnn", c.hidden_size, c.seed, spectral_radius=c.spectral_radius)
        settings = derive(
            TrainConfig,
            c,
            steps=unclipped_steps,
            clip_norm=clip_norm,
            clip_value=None,
            monitor_every=None,
            eval_every=unclipped_steps,
            device="cpu",
        )
        train(model, data, settings)
        return torch.nn.utils.parameters_to_vector(model.parameters()).detach()

    model = build_adding_model("rnn", c.hidden_size, c.seed, spectral_radius=c.spectral_radius)
    params = list(model.parameters())
    start = torch.nn.utils.parameters_to_vector(params).detach().clone()
    end, clipped = weights_after(None), weights_after(c.clip_norm)
    losses, norms = [], []
    # evenly spaced points, and a finer grid over the first tenth of the line, where the loss dips
    fractions = np.unique(np.concatenate([np.linspace(0.0, 1.0, n_points), np.linspace(0.0, 0.1, 11)]))
    for s in fractions:
        torch.nn.utils.vector_to_parameters(start + float(s) * (end - start), params)
        model.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x), y)
        loss.backward()
        losses.append(float(loss.detach()))
        norms.append(float(_flat_grad(model).norm()))
    length = float((end - start).norm())
    return CliffResult(
        c,
        unclipped_steps,
        fractions * length,
        np.array(losses),
        np.array(norms),
        float((clipped - start).norm()),
    )
