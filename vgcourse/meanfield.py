"""Mean-field moments at initialization, a pre-activation a ~ N(0, q) in a wide layer: E[f(a)²] and E[f'(a)²]
(forward Var(a_l) = n σ² E[h_{l-1}²], backward Var(δ_l) = E[f'(a_l)²] Var(∂L/∂h_l)); for tanh with biases,
q ↦ σ_w² E[tanh(a)²] + σ_b², its fixed point q*, χ there and the critical line χ = 1 (Poole et al., 2016;
Schoenholz et al., 2017).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vgcourse._cache import copied_cache
from vgcourse._validation import check_choice, check_float, check_int
from vgcourse.activations import ACTIVATIONS, LEAKY_RELU_SLOPE, derivative, make_activation

PREDICTION_METHODS = ("gaussian", "linear")
_HOMOGENEOUS = {"identity": 1.0, "relu": 0.0, "leaky_relu": LEAKY_RELU_SLOPE}  # f(a) = a·(1 or slope)
_TAIL_WINDOW = 20.0  # |a| beyond which every activation here is linear or constant to machine precision


def layer_moments(activation: str, variance: float, method: str = "gaussian") -> tuple[float, float]:
    """(E[f(a)²], E[f'(a)²]) for a ~ N(0, q) ("gaussian", numerically; q·(1+s²)/2 and (1+s²)/2 for slope s
    piecewise-linear f), or in the linear regime f(a) ≈ f(0) + f'(0)·a ("linear": f(0)² + f'(0)²q, f'(0)²)."""
    check_choice("activation", activation, ACTIVATIONS)
    q = check_float("variance", variance, 0.0)
    check_choice("method", method, PREDICTION_METHODS)
    if activation in _HOMOGENEOUS:  # f(a) = a on a > 0 and s·a on a < 0: each side carries half of q
        slope = _HOMOGENEOUS[activation]
        factor = 1.0 if activation == "identity" else (1.0 + slope**2) / 2.0
        return factor * q, factor
    f = make_activation(activation)
    if method == "linear":
        zero = torch.zeros(1, dtype=torch.float64)
        f0, d0 = float(f(zero)), float(derivative(activation, zero))
        return f0**2 + d0**2 * q, d0**2
    s = math.sqrt(q)
    z = np.linspace(-10.0, 10.0, 2001)  # z = a / s, the Gaussian's bulk
    if s > 1.0:  # also resolve f's structure near a = 0 (|a| < 20), narrow in z when q is large
        fine = np.linspace(-_TAIL_WINDOW, _TAIL_WINDOW, 4001) / s
        z = np.sort(np.concatenate([z, fine[np.abs(fine) <= 10.0]]))
    density = torch.from_numpy(np.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi))
    z_t = torch.from_numpy(z)
    a = s * z_t
    with torch.no_grad():
        second = torch.trapezoid(f(a) ** 2 * density, z_t)
        slope = torch.trapezoid(derivative(activation, a) ** 2 * density, z_t)
    return float(second), float(slope)


# ------------------------------------------------------- tanh with biases: the critical line
_QUADRATURE_NODES = 4001  # trapezoid nodes on z in [-10, 10]: spacing 0.005
_FIXED_POINT_TOL = 1e-13
_FIXED_POINT_ITERATIONS = 200


@copied_cache(maxsize=1)
def _quadrature() -> tuple[np.ndarray, np.ndarray]:
    """Nodes z_k and weights w_k with Σ_k w_k g(z_k) ≈ E[g(z)], z ~ N(0, 1): the trapezoid rule on
    [-10, 10] with the density folded into the weights (the tails beyond |z| = 10 carry < 1e-22)."""
    nodes = np.linspace(-10.0, 10.0, _QUADRATURE_NODES)
    weights = np.full(nodes.shape, nodes[1] - nodes[0])
    weights[[0, -1]] /= 2.0
    return nodes, weights * np.exp(-0.5 * nodes**2) / math.sqrt(2.0 * math.pi)


def tanh_moments(variance: float) -> tuple[float, float]:
    """(E[tanh(a)²], E[tanh'(a)²]) for a ~ N(0, q): ∫ g(√q z) φ(z) dz by quadrature (1e-7 at q = 30)."""
    q = check_float("variance", variance, 0.0)
    nodes, weights = _quadrature()
    t = np.tanh(math.sqrt(q) * nodes)
    return float(weights @ (t * t)), float(weights @ (1.0 - t * t) ** 2)


def tanh_fixed_point(weight_var: float, bias_var: float) -> float:
    """The stable fixed point q* of q ↦ σ_w² E[tanh(a)²] + σ_b² (Poole et al., 2016): Newton on the concave
    F(q) = σ_w² m(q) + σ_b² - q from σ_w² + σ_b², m'(q) = E[(1 - t²)(1 - 3t²)], t = tanh(a); 0 when σ_b² = 0
    and σ_w² <= 1."""
    weight_var = check_float("weight_var", weight_var, 0.0, strict_minimum=True)
    bias_var = check_float("bias_var", bias_var, 0.0)
    if bias_var == 0.0 and weight_var <= 1.0:
        return 0.0
    nodes, weights = _quadrature()
    q = weight_var + bias_var
    for _ in range(_FIXED_POINT_ITERATIONS):
        t = np.tanh(math.sqrt(q) * nodes)
        value = weight_var * float(weights @ (t * t)) + bias_var - q
        slope = weight_var * float(weights @ ((1.0 - t * t) * (1.0 - 3.0 * t * t))) - 1.0
        step = value / slope
        q = max(q - step, 0.5 * q)  # a step never more than halves q (q stays > 0)
        if abs(step) <= _FIXED_POINT_TOL * max(1.0, q):
            return q
    raise RuntimeError(f"no fixed point within {_FIXED_POINT_ITERATIONS} iterations at σ_w²={weight_var}")


def tanh_chi(weight_var: float, bias_var: float) -> float:
    """χ = σ_w² E[tanh'(a)²], a ~ N(0, q*): Var(δ_{l-1}) = χ Var(δ_l) at the fixed point; χ < 1 ordered
    (vanishing), χ > 1 chaotic (exploding), χ = 1 critical (Schoenholz et al., 2017)."""
    weight_var = check_float("weight_var", weight_var, 0.0, strict_minimum=True)
    return weight_var * tanh_moments(tanh_fixed_point(weight_var, bias_var))[1]


def critical_weight_var(bias_var: float, *, tol: float = 1e-10) -> float:
    """The σ_w² with χ(σ_w², σ_b²) = 1 (1 for σ_b² = 0; else above 1), by bisection of a doubled bracket."""
    bias_var = check_float("bias_var", bias_var, 0.0)
    tol = check_float("tol", tol, 0.0, strict_minimum=True)
    if bias_var == 0.0:
        return 1.0
    low, high = 1.0, 2.0
    while tanh_chi(high, bias_var) < 1.0:
        low, high = high, 2.0 * high
    while high - low > tol:
        middle = (low + high) / 2.0
        low, high = (middle, high) if tanh_chi(middle, bias_var) < 1.0 else (low, middle)
    return (low + high) / 2.0


@dataclass(frozen=True)
class CriticalLine:
    """The critical line of tanh networks: for each σ_b², the σ_w² with χ = 1 and its fixed point q*."""

    bias_var: np.ndarray  # (B,) σ_b²
    weight_var: np.ndarray  # (B,) critical σ_w²
    fixed_point: np.ndarray  # (B,) q* on the line


def critical_line(bias_vars: Sequence[float]) -> CriticalLine:
    """``critical_weight_var`` and ``tanh_fixed_point`` for every σ_b² >= 0 in ``bias_vars``."""
    if isinstance(bias_vars, str) or not isinstance(bias_vars, Sequence | np.ndarray) or len(bias_vars) == 0:
        raise TypeError("bias_vars must be a non-empty sequence of non-negative numbers")
    bias = np.array([check_float("bias_var", b, 0.0) for b in bias_vars])
    weight = np.array([critical_weight_var(float(b)) for b in bias])
    fixed = np.array([tanh_fixed_point(float(w), float(b)) for w, b in zip(weight, bias, strict=True)])
    return CriticalLine(bias, weight, fixed)


def predict_tanh_with_bias(
    weight_var: float, bias_var: float, depth: int, *, input_var: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted (Var(a_l), Var(δ_l)), l = 1..L, of a wide tanh network with biases: q_l = σ_w² E[h²] + σ_b²;
    from Var(∂L/∂h_L) = 1, Var(δ_l) = E[tanh'(a_l)²] Var(∂L/∂h_l), Var(∂L/∂h_{l-1}) = σ_w² Var(δ_l)."""
    weight_var = check_float("weight_var", weight_var, 0.0, strict_minimum=True)
    bias_var = check_float("bias_var", bias_var, 0.0)
    check_int("depth", depth, minimum=1)
    second = check_float("input_var", input_var, 0.0)
    q, slope = np.zeros(depth), np.zeros(depth)
    for i in range(depth):
        q[i] = weight_var * second + bias_var
        second, slope[i] = tanh_moments(float(q[i]))
    grad, upstream = np.zeros(depth), 1.0
    for i in reversed(range(depth)):
        grad[i] = slope[i] * upstream
        upstream = weight_var * grad[i]
    return q, grad


def gaussian_moments(activation: str, n_points: int = 80) -> tuple[float, float, float]:
    """(E[φ'(z)²], Var φ(z), E[φ(z)²]) for z ~ N(0, 1), φ = ReLU (1/2, 1/2 − 1/(2π), 1/2) or tanh (by
    Gauss–Hermite quadrature on ``n_points`` >= 2 nodes: one node, z = 0, would give (1, 0, 0))."""
    check_int("n_points", n_points, minimum=2)
    if check_choice("activation", activation, ("relu", "tanh")) == "relu":
        return 0.5, 0.5 - 1.0 / (2.0 * math.pi), 0.5
    z, w = np.polynomial.hermite_e.hermegauss(n_points)
    w, phi = w / w.sum(), np.tanh(z)
    mean, second = float(w @ phi), float(w @ phi**2)
    return float(w @ (1.0 - phi**2) ** 2), second - mean**2, second


def predicted_growth(norm: str, activation: str) -> float:
    """Mean-field growth per layer of the backward signal, ``norm`` before each activation: sqrt(E[φ'(z)²] /
    V), V = Var φ(z) for batch norm (it removes the batch mean), E[φ(z)²] for layer and RMS norm. NaN for
    "none"."""
    check_choice("norm", norm, ("none", "batch", "layer", "rms"))
    d2, var, second = gaussian_moments(activation)
    if norm == "none":
        return float("nan")
    return math.sqrt(d2 / (var if norm == "batch" else second))
