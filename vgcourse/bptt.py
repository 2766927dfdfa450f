"""Back propagation through time in a ``SequenceModel``'s first recurrent layer, by hand.

A vanilla RNN runs h_t = tanh(W_ih x_t + W_hh h_{t-1} + b); with D_k = diag(1 - h_k²) the chain rule gives
∂h_T/∂h_t = (D_T W_hh)⋯(D_{t+1} W_hh), of norm at most ‖W_hh‖₂^(T-t). An LSTM's cell c_t = f_t ⊙ c_{t-1} +
i_t ⊙ g_t has the path ∂c_T/∂c_t = diag(f_{t+1} ⊙ ⋯ ⊙ f_T) (gates held fixed), a GRU's h_t = (1 - z_t) ⊙ n_t
+ z_t ⊙ h_{t-1} the same kind of path through z. Here: W_hh's gate blocks and their spectral radius, the
float64 unroll with its gates, these Jacobians (closed forms and autograd's), and ‖∂L/∂x_{T-k}‖ by lag k.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vgcourse._validation import check_float, check_int
from vgcourse.models import SequenceModel
from vgcourse.monitor import snapshot

_GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # H×H blocks stacked in weight_hh: h; r, z, n; i, f, g, o
_F64 = torch.float64


def spectral_radius(matrix: Tensor) -> float:
    """ρ(W) = max |λ_i(W)|, the largest eigenvalue modulus of a square matrix."""
    if not isinstance(matrix, Tensor) or matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError("matrix must be a square 2-D tensor")
    return float(torch.linalg.eigvals(matrix.detach().double().cpu()).abs().max())


def recurrent_blocks(model: SequenceModel) -> list[Tensor]:
    """The H×H gate blocks of the first layer's W_hh, views in PyTorch's order: rnn [W_hh]; gru [W_hr, W_hz,
    W_hn]; lstm [W_hi, W_hf, W_hg, W_ho]."""
    _check_model(model)
    return list(model.rnn.weight_hh_l0.chunk(_GATES[model.arch]))


def scale_recurrent_weights(model: SequenceModel, radius: float) -> SequenceModel:
    """Rescale every H×H gate block of W_hh (all layers) in place to spectral radius ρ = ``radius``:
    W ← ρ·W/ρ(W), so "ρ" means the same for the three architectures; a block with ρ(W) = 0 is refused."""
    _check_model(model)
    radius = check_float("radius", radius, 0.0, strict_minimum=True)
    blocks = [
        (f"{name} gate block {i}", block, spectral_radius(block))
        for name, weight in model.rnn.named_parameters()
        if name.startswith("weight_hh")
        for i, block in enumerate(weight.chunk(_GATES[model.arch]))
    ]
    for label, _, rho in blocks:
        if rho == 0.0:
            raise ValueError(f"cannot rescale {label} to spectral radius {radius}: its own is 0 (all zeros?)")
    with torch.no_grad():
        for _, block, rho in blocks:
            block.mul_(radius / rho)
    return model


def _check_model(model: Any) -> None:
    if not isinstance(model, SequenceModel):
        raise TypeError(f"model must be a vgcourse.models.SequenceModel; got {type(model).__name__}")


def _layer_weights(model: SequenceModel) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(W_ih, W_hh, b_ih, b_hh) of the first recurrent layer, detached, in float64 on the CPU."""
    rnn = model.rnn
    weights = rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0
    return tuple(w.detach().double().cpu() for w in weights)  # type: ignore[return-value]


def _step(
    arch: str, weights: tuple[Tensor, ...], x: Tensor, h: Tensor, c: Tensor, detach: bool = False
) -> dict[str, Tensor]:
    """One step of the layer on row vectors x (..., F), h and c (..., H): the new states and the gates;
    ``detach``: h enters the gates detached (the gates are held fixed)."""
    w_ih, w_hh, b_ih, b_hh = weights
    size, h_in = w_hh.shape[1], h.detach() if detach else h
    if arch == "rnn":
        return {"h": torch.tanh(x @ w_ih.T + h_in @ w_hh.T + b_ih + b_hh)}
    if arch == "lstm":
        i, f, g, o = (x @ w_ih.T + b_ih + h_in @ w_hh.T + b_hh).split(size, dim=-1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        return {"h": o * torch.tanh(c), "c": c, "i": i, "f": f, "g": g, "o": o}
    xr, xz, xn = (x @ w_ih.T + b_ih).split(size, dim=-1)
    hr, hz, hn = (h_in @ w_hh.T + b_hh).split(size, dim=-1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return {"h": (1 - z) * n + z * h, "r": r, "z": z, "n": n}


def gate_trajectory(model: SequenceModel, x: Tensor) -> dict[str, Tensor]:
    """The first recurrent layer unrolled by hand (float64): states "h" (lstm also "c"), T + 1 rows with row 0
    zero; gates (lstm "i", "f", "g", "o"; gru "r", "z", "n"), T rows; x (N, T, F) adds a batch dimension."""
    _check_model(model)
    if not isinstance(x, Tensor) or x.ndim not in (2, 3):
        raise ValueError("x must be a (T, input_size) sequence or an (N, T, input_size) batch")
    single = x.ndim == 2
    xs = x.detach().double().cpu().reshape(-1, *x.shape[-2:])  # (N, T, F)
    weights = _layer_weights(model)
    h = c = torch.zeros(len(xs), model.rnn.hidden_size, dtype=_F64)
    out: dict[str, list[Tensor]] = {}
    for x_t in xs.unbind(1):
        step = _step(model.arch, weights, x_t, h, c)
        h, c = step["h"], step.get("c", c)
        for key, value in step.items():
            out.setdefault(key, [torch.zeros_like(value)] if key in "hc" else []).append(value)
    stacked = {key: torch.stack(values, dim=1) for key, values in out.items()}
    return {key: value[0] for key, value in stacked.items()} if single else stacked


def rnn_state_jacobians(model: SequenceModel, x: Tensor) -> Tensor:
    """∂h_T/∂h_t for t = 0..T by the closed form J_T = I, J_t = J_{t+1} D_{t+1} W_hh, D_k = diag(1 - h_k²):
    explicit H×H matrices (float64, no autograd), a (T + 1, H, H) tensor, for one sequence x (T, F)."""
    _check_model(model)
    if model.arch != "rnn":
        raise ValueError(f"rnn_state_jacobians needs arch 'rnn'; got {model.arch!r}")
    h = gate_trajectory(model, x)["h"]
    w_hh = _layer_weights(model)[1]
    jacobians = [torch.eye(len(w_hh), dtype=_F64)]
    for k in range(len(h) - 1, 0, -1):  # J_{k-1} = J_k D_k W_hh
        jacobians.append(jacobians[-1] @ torch.diag(1 - h[k] ** 2) @ w_hh)
    return torch.stack(jacobians[::-1])


def cell_path_jacobians(model: SequenceModel, x: Tensor) -> Tensor:
    """The gated path alone: ∂c_T/∂c_t = diag(f_{t+1} ⊙ ⋯ ⊙ f_T) (LSTM), ∂h_T/∂h_t = diag(∏ z_k) (GRU): the
    (T + 1, H) diagonals for t = 0..T (row T all ones), for one sequence x (T, F)."""
    _check_model(model)
    if model.arch == "rnn":
        raise ValueError("cell_path_jacobians needs arch 'lstm' or 'gru' (the vanilla RNN has no gates)")
    gates = gate_trajectory(model, x)["f" if model.arch == "lstm" else "z"]
    ones = torch.ones(1, gates.shape[1], dtype=_F64)
    suffix = torch.flip(torch.cumprod(torch.flip(gates, [0]), 0), [0])  # row t: ∏ of the gates t+1..T
    return torch.cat([suffix, ones])


def state_jacobians_autograd(model: SequenceModel, x: Tensor, *, gated_path_only: bool = False) -> Tensor:
    """Autograd's ∂s_T/∂s_t for t = 0..T-1, s = h (rnn, gru) or c (lstm): (T, H, H), float64.
    ``gated_path_only`` detaches h where it enters the gates: the reference for ``cell_path_jacobians``."""
    _check_model(model)
    if gated_path_only and model.arch == "rnn":
        raise ValueError("gated_path_only needs arch 'lstm' or 'gru'")
    traj, weights = gate_trajectory(model, x), _layer_weights(model)
    xs = x.detach().double().cpu()
    key = "c" if model.arch == "lstm" else "h"

    def run_from(t: int, state: Tensor) -> Tensor:
        h = c = state
        if model.arch == "rnn":  # written apart from _step: the closed form's h comes from _step
            w_ih, w_hh, b_ih, b_hh = weights
            for x_k in xs[t:]:
                h = torch.tanh(w_ih @ x_k + w_hh @ h + (b_ih + b_hh))
            return h
        if model.arch == "lstm":  # state is c_t; h_t = o_t ⊙ tanh(c_t), o_t from the recorded trajectory
            h = traj["o"][t - 1] * torch.tanh(c) if t > 0 else torch.zeros_like(c)
        for x_k in xs[t:]:
            step = _step(model.arch, weights, x_k, h, c, gated_path_only)
            h, c = step["h"], step.get("c", c)
        return step[key]

    jacobians = []
    for t in range(len(xs)):
        start = traj[key][t].clone()
        jacobians.append(torch.autograd.functional.jacobian(lambda s, t=t: run_from(t, s), start))
    return torch.stack(jacobians)


def input_gradient_profile(model: SequenceModel, x: Tensor, y: Tensor) -> np.ndarray:
    """‖∂L/∂x_{T-k}‖ for lags k = 0..T-1 (norm over the batch and the features), L the MSE on (x, y), from
    one pass of ``vgcourse.monitor.snapshot(..., track_inputs=True)``; the weights are not changed."""
    _check_model(model)
    device = next(model.parameters()).device
    record = snapshot(model, x.to(device), y.to(device), F.mse_loss, track_inputs=True)
    return record.input_grad_norm[0][::-1].copy()


def truncated_input_gradient_profile(
    model: SequenceModel, x: Tensor, y: Tensor, truncation: int
) -> np.ndarray:
    """``input_gradient_profile`` under truncated BPTT stopped k = ``truncation`` steps back (the first T - k
    steps run without a graph): the full ∂L/∂x_{T-j} for j < k, exactly 0 for j >= k. ``x``: (N, T, F)."""
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
    """The per-step factor r of g_k ≈ C·r^k: exp of the least-squares slope of ln g_k over lags first..last
    (from lag 1 by default: lag 0, the last input, reaches the output without passing through W_hh)."""
    values = np.asarray(profile, dtype=np.float64)
    last = len(values) - 1 if last is None else last
    check_int("first", first, minimum=0)
    check_int("last", last, minimum=first + 1, maximum=len(values) - 1)
    lags = np.arange(first, last + 1)
    logs = np.log(np.maximum(values[first : last + 1], np.finfo(np.float64).tiny))
    return float(np.exp(np.polyfit(lags, logs, 1)[0]))


def lag_terms(model: SequenceModel, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(T, H, H) the term of each lag k = 0..T-1 in ∂L/∂W_hh of a vanilla-RNN ``SequenceModel`` under the MSE
    loss (float64), and autograd's ∂L/∂W_hh: the RNN unrolled by hand, h_t = tanh(W_ih x_t + b + W_hh^(t)
    h_{t-1}), with its own copy W_hh^(t) per step; on the model's device (``x``, ``y`` are moved there)."""
    _check_model(model)
    if model.arch != "rnn" or model.rnn.num_layers != 1:
        raise ValueError(
            "lag_terms unrolls a vanilla RNN of one recurrent layer: it needs arch 'rnn' and num_layers=1; "
            f"got arch {model.arch!r}, num_layers={model.rnn.num_layers}"
        )
    rnn, head = model.rnn, model.head
    w_ih = rnn.weight_ih_l0.detach().double()
    w_hh = rnn.weight_hh_l0.detach().double()
    bias = (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach().double()
    x, y = x.to(w_hh.device), y.to(w_hh.device)
    xd = x.double()
    copies = [w_hh.clone().requires_grad_(True) for _ in range(x.shape[1])]
    h = torch.zeros(x.shape[0], w_hh.shape[0], dtype=torch.float64, device=w_hh.device)
    for t, w in enumerate(copies):
        h = torch.tanh(xd[:, t] @ w_ih.T + h @ w.T + bias)
    out = h @ head.weight.detach().double().T + head.bias.detach().double()
    terms = torch.autograd.grad(F.mse_loss(out, y.double()), copies)
    model.zero_grad(set_to_none=True)
    F.mse_loss(model(x), y).backward()
    return torch.stack(terms[::-1]), rnn.weight_hh_l0.grad.detach().double()
