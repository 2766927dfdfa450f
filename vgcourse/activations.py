"""Activation functions by name, and their derivatives: the factor each layer multiplies gradients by."""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from vgcourse._validation import check_choice, check_tensor

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "silu")
RELU_FAMILY = ("relu", "leaky_relu", "elu", "gelu", "silu")
LEAKY_RELU_SLOPE = 0.01

_MODULES: dict[str, type[nn.Module]] = {
    "identity": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,  # default negative_slope is 0.01 = LEAKY_RELU_SLOPE
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}

# sup_x f'(x). gelu: f' = Φ(x) + x·φ(x) peaks at x = √2 with Φ(√2) + e^{-1}/√π.
# silu: f' = σ(x)(1 + x(1 - σ(x))) peaks where 2 + x(1 - 2σ(x)) = 0, x ≈ 2.39936 (solved numerically).
_MAX_DERIVATIVE = dict.fromkeys(ACTIVATIONS, 1.0) | {
    "sigmoid": 0.25,
    "gelu": 0.5 * (1.0 + math.erf(1.0)) + math.exp(-1.0) / math.sqrt(math.pi),
    "silu": 1.0998393201288668,
}


def make_activation(activation: str | nn.Module | type[nn.Module]) -> nn.Module:
    """A fresh activation module from a name in ``ACTIVATIONS`` (leaky_relu: slope 0.01), an ``nn.Module``
    (deep-copied, so layers never share one) or an ``nn.Module`` subclass (called with no arguments)."""
    if isinstance(activation, str):
        return _MODULES[check_choice("activation", activation, ACTIVATIONS)]()
    if isinstance(activation, nn.Module):
        return copy.deepcopy(activation)
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        return activation()
    raise TypeError(
        "activation must be a name (one of: " + ", ".join(ACTIVATIONS) + "), an nn.Module or an "
        f"nn.Module subclass; got {type(activation).__name__}"
    )


def derivative(activation: str, x: Tensor) -> Tensor:
    """Closed-form f'(x): sigmoid σ(1-σ), tanh 1-tanh², relu 1[x>0], gelu Φ(x)+xφ(x), ...; at x = 0 as
    autograd (relu 0, leaky_relu 0.01, elu 1)."""
    check_choice("activation", activation, ACTIVATIONS)
    check_tensor("x", x)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    one = torch.ones_like(x)
    if activation == "identity":
        return one
    if activation == "sigmoid":
        s = torch.sigmoid(x)
        return s * (1 - s)
    if activation == "tanh":
        return 1 - torch.tanh(x) ** 2
    if activation == "relu":
        return (x > 0).to(x.dtype)
    if activation == "leaky_relu":
        return torch.where(x > 0, one, LEAKY_RELU_SLOPE * one)
    if activation == "elu":
        return torch.where(x > 0, one, torch.exp(x))
    if activation == "gelu":
        cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
        pdf = torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
        return cdf + x * pdf
    s = torch.sigmoid(x)  # silu(x) = x·σ(x)
    return s * (1 + x * (1 - s))


def max_derivative(activation: str) -> float:
    """sup_x f'(x), the most one activation amplifies a gradient: sigmoid 0.25, tanh 1, gelu ≈1.129."""
    return _MAX_DERIVATIVE[check_choice("activation", activation, ACTIVATIONS)]
