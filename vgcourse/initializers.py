"""Weight initialization schemes by name, and the weight variance each one promises."""

from __future__ import annotations

import math
from copy import deepcopy

import torch
from torch import Tensor, nn

from vgcourse._validation import check_choice, check_float, check_int
from vgcourse.activations import ACTIVATIONS, LEAKY_RELU_SLOPE
from vgcourse.models import named_layers

SCHEMES = ("default", "normal", "uniform", "xavier_uniform", "xavier_normal")
SCHEMES += ("kaiming_uniform", "kaiming_normal", "orthogonal", "constant")
ALIASES = {
    "glorot_uniform": "xavier_uniform",
    "glorot_normal": "xavier_normal",
    "he_uniform": "kaiming_uniform",
    "he_normal": "kaiming_normal",
}
MODES = ("fan_in", "fan_out")

_OPTION_OF = {"normal": "std", "uniform": "a", "constant": "value"}  # the scheme-specific arguments
_GATES = {"LSTM": 4, "GRU": 3}  # gate blocks stacked in an RNN's weight_ih / weight_hh


def gain(activation: str, param: float | None = None) -> float:
    """The gain g of torch.nn.init.calculate_gain: identity and sigmoid 1, tanh 5/3, relu √2, leaky_relu
    √(2/(1+a²)) (``param`` = a, default 0.01); the ReLU-like elu, gelu, silu get √2 by convention."""
    check_choice("activation", activation, ACTIVATIONS)
    if param is not None and activation != "leaky_relu":
        raise ValueError(f"param is the leaky_relu slope; activation {activation!r} takes none")
    if activation in ("identity", "sigmoid"):
        return 1.0
    if activation == "tanh":
        return 5.0 / 3.0
    if activation == "leaky_relu":
        slope = LEAKY_RELU_SLOPE if param is None else check_float("param", param)
        return math.sqrt(2.0 / (1.0 + slope**2))
    return math.sqrt(2.0)


def expected_weight_variance(
    scheme: str,
    fan_in: int,
    fan_out: int,
    *,
    activation: str = "relu",
    std: float | None = None,
    a: float | None = None,
    mode: str = "fan_in",
) -> float:
    """Var(W_ij) under ``scheme``: default 1/(3·fan_in); normal std²; uniform U(±a) a²/3; xavier
    2/(fan_in + fan_out); kaiming gain(activation)²/fan (fan by ``mode``); orthogonal 1/max(fan_in, fan_out);
    constant 0. For an RNN's weight_ih or weight_hh pass one gate block's fans (fan_out = hidden_size H),
    except for "default": PyTorch draws every RNN weight U(±1/√H), so there pass fan_in = H."""
    scheme = _canonical(scheme)
    check_int("fan_in", fan_in, minimum=1)
    check_int("fan_out", fan_out, minimum=1)
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("mode", mode, MODES)
    std = _check_option(scheme, "std", std)
    a = _check_option(scheme, "a", a)
    if scheme == "default":
        return 1.0 / (3.0 * fan_in)
    if scheme == "normal":
        return std**2
    if scheme == "uniform":
        return a**2 / 3.0
    if scheme.startswith("xavier"):
        return 2.0 / (fan_in + fan_out)
    if scheme.startswith("kaiming"):
        return gain(activation) ** 2 / (fan_in if mode == "fan_in" else fan_out)
    if scheme == "orthogonal":
        return 1.0 / max(fan_in, fan_out)
    return 0.0  # constant


def initialize(
    model: nn.Module,
    scheme: str,
    *,
    activation: str = "relu",
    std: float | None = None,
    a: float | None = None,
    mode: str = "fan_in",
    value: float | None = None,
    bias: float = 0.0,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Initialize every layer of ``named_layers(model)`` in place, biases to ``bias``: N(0, σ²) or U(±√3·σ)
    with σ² = ``expected_weight_variance`` (an RNN's weights one gate block at a time); "default" re-runs
    ``reset_parameters()``. ``std``, ``a``, ``value``: for "normal", "uniform", "constant" only. With a
    CPU ``generator`` the weights are drawn on the CPU and copied: the same numbers on every device."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
    scheme = _canonical(scheme)
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("mode", mode, MODES)
    std = _check_option(scheme, "std", std)
    a = _check_option(scheme, "a", a)
    value = _check_option(scheme, "value", value)
    bias = check_float("bias", bias)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
    layers = named_layers(model)
    if not layers:
        raise ValueError("model has no layers to initialize (modules with a >= 2-D weight, or RNNs)")
    with torch.no_grad():
        for _, layer in layers:
            if scheme == "default":
                _reset(layer, generator)
            for name, param in layer.named_parameters(recurse=False):
                if name.startswith("bias"):
                    param.fill_(bias)
                elif name.startswith("weight") and param.ndim >= 2 and scheme != "default":
                    for block in param.chunk(_gates(layer, name), dim=0):
                        _fill(block, scheme, activation, std, a, mode, value, generator)
    return model


def _fill(
    weight: Tensor,
    scheme: str,
    activation: str,
    std: float | None,
    a: float | None,
    mode: str,
    value: float | None,
    generator: torch.Generator | None,
) -> None:
    if generator is not None and weight.device != generator.device:  # draw where the generator is, copy
        drawn = torch.empty(weight.shape, dtype=weight.dtype, device=generator.device)
        _fill(drawn, scheme, activation, std, a, mode, value, generator)
        weight.copy_(drawn)
        return
    if scheme == "constant":
        nn.init.constant_(weight, value)
        return
    if scheme == "orthogonal":
        nn.init.orthogonal_(weight, generator=generator)
        return
    receptive = weight[0][0].numel()  # kernel size for convolutions, 1 for matrices
    fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
    var = expected_weight_variance(scheme, fan_in, fan_out, activation=activation, std=std, a=a, mode=mode)
    if scheme.endswith("uniform"):
        bound = math.sqrt(3.0 * var)
        nn.init.uniform_(weight, -bound, bound, generator=generator)
    else:
        nn.init.normal_(weight, 0.0, math.sqrt(var), generator=generator)


def _gates(layer: nn.Module, name: str) -> int:
    """Number of gate blocks stacked in parameter ``name`` of ``layer`` (4 for an LSTM's weight_ih/hh)."""
    if isinstance(layer, nn.RNNBase) and name.startswith(("weight_ih", "weight_hh")):
        return _GATES.get(layer.mode, 1)
    return 1


def _reset(layer: nn.Module, generator: torch.Generator | None) -> None:
    """Run ``layer.reset_parameters()``, drawing from ``generator`` when given (on a CPU copy of the layer,
    copied back, when its parameters are on another device)."""
    if not callable(getattr(layer, "reset_parameters", None)):
        raise TypeError(f"scheme 'default' needs reset_parameters(); {type(layer).__name__} has none")
    if generator is None:
        layer.reset_parameters()
        return
    seed = int(torch.randint(2**62, (1,), generator=generator))
    params, copy = list(layer.parameters()), layer
    if any(p.device.type != "cpu" for p in params):  # reset a CPU copy; "meta" tensors hold no numbers
        copy = deepcopy(layer)
        copy = copy.to_empty(device="cpu") if any(p.is_meta for p in params) else copy.to("cpu")
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        copy.reset_parameters()
    if copy is not layer:
        for param, drawn in zip(params, copy.parameters(), strict=True):
            param.copy_(drawn)


def _canonical(scheme: str) -> str:
    check_choice("scheme", scheme, SCHEMES + tuple(ALIASES))
    return ALIASES.get(scheme, scheme)


def _check_option(scheme: str, name: str, value: float | None) -> float | None:
    """Check std / a / value: required (and > 0 for std, a) by its scheme, must be None for the others."""
    owner = {option: owner for owner, option in _OPTION_OF.items()}[name]
    if scheme != owner:
        if value is not None:
            raise ValueError(f"{name} is only used by scheme {owner!r}; got scheme {scheme!r}")
        return None
    if value is None:
        raise ValueError(f"scheme {owner!r} needs {name}")
    if name == "value":
        return check_float(name, value)
    return check_float(name, value, minimum=0.0, strict_minimum=True)
