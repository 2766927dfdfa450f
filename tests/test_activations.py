"""Tests for vgcourse.activations: names <-> modules, closed-form derivatives vs autograd, their maxima."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vgcourse.activations import (
    ACTIVATIONS,
    LEAKY_RELU_SLOPE,
    RELU_FAMILY,
    derivative,
    make_activation,
    max_derivative,
)

EXPECTED_TYPES = {
    "identity": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def autograd_derivative(name: str, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    make_activation(name)(x).sum().backward()
    return x.grad


def test_families_are_subsets_of_activations() -> None:
    assert set(RELU_FAMILY) <= set(ACTIVATIONS)
    assert not set(RELU_FAMILY) & {"sigmoid", "tanh"}
    assert set(EXPECTED_TYPES) == set(ACTIVATIONS)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_make_activation_by_name_is_fresh(name: str) -> None:
    first, second = make_activation(name), make_activation(name)
    assert type(first) is EXPECTED_TYPES[name]
    assert first is not second


def test_leaky_relu_slope() -> None:
    assert make_activation("leaky_relu").negative_slope == LEAKY_RELU_SLOPE == 0.01


def test_make_activation_copies_instances_and_builds_classes() -> None:
    module = nn.LeakyReLU(0.2)
    copy = make_activation(module)
    assert copy is not module and copy.negative_slope == 0.2
    assert isinstance(make_activation(nn.Tanh), nn.Tanh)


@pytest.mark.parametrize("bad", ["softmax", "ReLU", "", "relu6"])
def test_make_activation_unknown_name_lists_choices(bad: str) -> None:
    with pytest.raises(ValueError, match="valid choices: identity, sigmoid, tanh"):
        make_activation(bad)


@pytest.mark.parametrize("bad", [3, None, torch.relu, int, ["relu"]])
def test_make_activation_wrong_type(bad: object) -> None:
    with pytest.raises(TypeError, match="activation must be"):
        make_activation(bad)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_derivative_matches_autograd_on_a_grid(name: str) -> None:
    x = torch.cat([torch.linspace(-6, 6, 1201, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    got = derivative(name, x)
    assert got.shape == x.shape and got.dtype == x.dtype
    torch.testing.assert_close(got, autograd_derivative(name, x), rtol=1e-10, atol=1e-12)


def test_derivative_keeps_shape_and_converts_integers() -> None:
    x = torch.randn(3, 4, 5)
    assert derivative("tanh", x).shape == (3, 4, 5)
    out = derivative("relu", torch.tensor([-2, 0, 3]))
    assert out.is_floating_point()
    assert out.tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    ("activation", "x", "error"),
    [
        ("softmax", torch.zeros(3), ValueError),
        (nn.ReLU(), torch.zeros(3), TypeError),
        ("relu", [0.0, 1.0], TypeError),
        ("relu", 1.0, TypeError),
    ],
)
def test_derivative_bad_input(activation: object, x: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        derivative(activation, x)


def test_max_derivative_sigmoid_and_tanh_attained_at_zero() -> None:
    zero = torch.zeros(1, dtype=torch.float64)
    assert max_derivative("sigmoid") == 0.25 == derivative("sigmoid", zero).item()
    assert max_derivative("tanh") == 1.0 == derivative("tanh", zero).item()
    assert max_derivative("relu") == max_derivative("identity") == 1.0


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_max_derivative_is_the_sup_on_a_fine_grid(name: str) -> None:
    x = torch.linspace(-20, 20, 400_001, dtype=torch.float64)
    grid_max = derivative(name, x).max().item()
    assert max_derivative(name) >= grid_max - 1e-12
    assert max_derivative(name) == pytest.approx(grid_max, abs=1e-8)


@pytest.mark.parametrize(
    ("bad", "error"), [("swish", ValueError), (nn.Sigmoid(), TypeError), (None, TypeError)]
)
def test_max_derivative_bad_input(bad: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        max_derivative(bad)
