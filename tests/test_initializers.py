"""Tests for vgcourse.initializers: same draws as torch.nn.init, closed-form variances, validation."""

from __future__ import annotations

import math
import re
from typing import ClassVar

import pytest
import torch
from torch import nn

from vgcourse.activations import ACTIVATIONS
from vgcourse.initializers import ALIASES, SCHEMES, expected_weight_variance, gain, initialize
from vgcourse.models import ResidualMLP, SequenceModel


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_schemes_and_aliases() -> None:
    assert SCHEMES[0] == "default" and len(SCHEMES) == 9
    assert set(ALIASES.values()) <= set(SCHEMES)


@pytest.mark.parametrize(
    ("activation", "param", "torch_name"),
    [
        ("identity", None, "linear"),
        ("sigmoid", None, "sigmoid"),
        ("tanh", None, "tanh"),
        ("relu", None, "relu"),
        ("leaky_relu", None, "leaky_relu"),
        ("leaky_relu", 0.2, "leaky_relu"),
        ("leaky_relu", 0.0, "leaky_relu"),
    ],
)
def test_gain_matches_torch(activation: str, param: float | None, torch_name: str) -> None:
    assert gain(activation, param) == pytest.approx(nn.init.calculate_gain(torch_name, param), rel=1e-12)


@pytest.mark.parametrize("activation", ["elu", "gelu", "silu"])
def test_gain_of_smooth_relus_is_relus(activation: str) -> None:
    assert gain(activation) == math.sqrt(2)


@pytest.mark.parametrize(
    ("activation", "param", "error", "message"),
    [
        ("selu", None, ValueError, "unknown activation 'selu'; valid choices: identity"),
        ("relu", 0.1, ValueError, "param is the leaky_relu slope; activation 'relu' takes none"),
        ("leaky_relu", "0.1", TypeError, "param must be a number; got str"),
        (2, None, TypeError, "activation must be a string, one of: identity"),
    ],
)
def test_gain_bad_input(activation: object, param: object, error: type[Exception], message: str) -> None:
    # the message names the argument: arithmetic on a str slope raises a TypeError of its own
    with pytest.raises(error, match=re.escape(message)):
        gain(activation, param)


# scheme, options for initialize, the torch.nn.init call that must draw the same numbers
SAME_AS_TORCH = [
    ("normal", {"std": 0.05}, lambda w, g: nn.init.normal_(w, 0.0, 0.05, generator=g)),
    ("uniform", {"a": 0.1}, lambda w, g: nn.init.uniform_(w, -0.1, 0.1, generator=g)),
    ("xavier_uniform", {}, lambda w, g: nn.init.xavier_uniform_(w, generator=g)),
    ("glorot_normal", {}, lambda w, g: nn.init.xavier_normal_(w, generator=g)),
    ("kaiming_uniform", {}, lambda w, g: nn.init.kaiming_uniform_(w, nonlinearity="relu", generator=g)),
    ("he_normal", {}, lambda w, g: nn.init.kaiming_normal_(w, nonlinearity="relu", generator=g)),
    (
        "kaiming_normal",
        {"mode": "fan_out"},
        lambda w, g: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu", generator=g),
    ),
    (
        "kaiming_normal",
        {"activation": "tanh"},
        lambda w, g: nn.init.kaiming_normal_(w, nonlinearity="tanh", generator=g),
    ),
    (
        "kaiming_uniform",
        {"activation": "leaky_relu"},
        lambda w, g: nn.init.kaiming_uniform_(w, a=0.01, nonlinearity="leaky_relu", generator=g),
    ),
    ("orthogonal", {}, lambda w, g: nn.init.orthogonal_(w, generator=g)),
    ("constant", {"value": 0.3}, lambda w, g: nn.init.constant_(w, 0.3)),
]


@pytest.mark.parametrize(("scheme", "options", "reference"), SAME_AS_TORCH)
@pytest.mark.parametrize("shape", [(32, 64), (8, 3, 3, 3)])
def test_same_seed_same_tensor_as_torch(scheme: str, options: dict, reference: object, shape: tuple) -> None:
    layer = nn.Linear(shape[1], shape[0]) if len(shape) == 2 else nn.Conv2d(shape[1], shape[0], shape[2])
    assert initialize(layer, scheme, generator=seeded(0), **options) is layer
    expected = reference(torch.empty(shape), seeded(0))
    torch.testing.assert_close(layer.weight.detach(), expected)
    assert torch.all(layer.bias == 0)


# scheme, options, fan_in, fan_out: sampled variance of a big layer vs the closed form
VARIANCES = [
    ("default", {}, 512, 512),
    ("normal", {"std": 0.02}, 512, 512),
    ("uniform", {"a": 0.5}, 512, 512),
    ("xavier_uniform", {}, 512, 256),
    ("xavier_normal", {}, 256, 512),
    ("kaiming_uniform", {}, 512, 512),
    ("kaiming_normal", {"activation": "tanh"}, 512, 256),
    ("kaiming_normal", {"mode": "fan_out"}, 512, 256),
    ("kaiming_normal", {"activation": "gelu", "mode": "fan_out"}, 256, 512),
    ("orthogonal", {}, 512, 512),
    ("orthogonal", {}, 256, 512),
    ("orthogonal", {}, 512, 256),
]


@pytest.mark.parametrize(("scheme", "options", "fan_in", "fan_out"), VARIANCES)
def test_sampled_variance_matches_closed_form(scheme: str, options: dict, fan_in: int, fan_out: int) -> None:
    layer = nn.Linear(fan_in, fan_out)
    initialize(layer, scheme, generator=seeded(1), **options)
    expected = expected_weight_variance(scheme, fan_in, fan_out, **options)
    assert layer.weight.var().item() == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize(
    ("scheme", "options", "expected"),
    [
        ("default", {}, 1 / (3 * 100)),
        ("normal", {"std": 0.1}, 0.01),
        ("uniform", {"a": 0.3}, 0.03),
        ("xavier_normal", {}, 2 / 300),
        ("glorot_uniform", {}, 2 / 300),
        ("kaiming_normal", {}, 2 / 100),
        ("he_uniform", {"mode": "fan_out"}, 2 / 200),
        ("kaiming_normal", {"activation": "tanh"}, (5 / 3) ** 2 / 100),
        ("kaiming_normal", {"activation": "sigmoid"}, 1 / 100),
        ("orthogonal", {}, 1 / 200),
    ],
)
def test_expected_weight_variance_closed_forms(scheme: str, options: dict, expected: float) -> None:
    assert expected_weight_variance(scheme, 100, 200, **options) == pytest.approx(expected, rel=1e-12)


def test_constant_and_its_zero_variance() -> None:
    layer = initialize(nn.Linear(4, 3), "constant", value=-0.5, bias=0.25)
    assert torch.all(layer.weight == -0.5) and torch.all(layer.bias == 0.25)
    assert expected_weight_variance("constant", 4, 3) == 0.0


def test_orthogonal_rows_are_orthonormal() -> None:
    layer = initialize(nn.Linear(64, 16), "orthogonal", generator=seeded(2))
    torch.testing.assert_close(layer.weight @ layer.weight.T, torch.eye(16), atol=1e-5, rtol=0)


def test_default_reruns_reset_parameters_reproducibly() -> None:
    first = initialize(nn.Linear(50, 20), "default", generator=seeded(3), bias=0.1)
    second = initialize(nn.Linear(50, 20), "default", generator=seeded(3), bias=0.1)
    other = initialize(nn.Linear(50, 20), "default", generator=seeded(4))
    assert torch.equal(first.weight, second.weight) and not torch.equal(first.weight, other.weight)
    assert first.weight.abs().max() <= 1 / math.sqrt(50)
    assert torch.all(first.bias == 0.1)
    layer = nn.Linear(5, 5)
    state = torch.random.get_rng_state()
    initialize(layer, "default", generator=seeded(5))
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is left alone


def test_default_without_generator_uses_global_seed() -> None:
    torch.manual_seed(7)
    first = initialize(nn.Linear(6, 6), "default").weight.detach().clone()
    torch.manual_seed(7)
    assert torch.equal(first, initialize(nn.Linear(6, 6), "default").weight)


def test_whole_model_norms_untouched_and_biases_set() -> None:
    model = ResidualMLP(4, 2, depth=2, width=8, norm="layer")
    with torch.no_grad():
        model.blocks[0].norm1.weight.fill_(3.0)
    initialize(model, "kaiming_normal", bias=0.5, generator=seeded(0))
    assert torch.all(model.blocks[0].norm1.weight == 3.0) and torch.all(model.blocks[0].norm1.bias == 0)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 6 and all(torch.all(m.bias == 0.5) for m in linears)


def test_lstm_initialized_one_gate_block_at_a_time() -> None:
    model = SequenceModel("lstm", input_size=8, hidden_size=16, out_features=2)
    initialize(model, "orthogonal", bias=0.0, generator=seeded(0))
    for block in model.rnn.weight_hh_l0.detach().chunk(4, dim=0):
        torch.testing.assert_close(block @ block.T, torch.eye(16), atol=1e-5, rtol=0)
    assert all(torch.all(p == 0) for name, p in model.rnn.named_parameters() if name.startswith("bias"))
    big = SequenceModel("gru", input_size=256, hidden_size=256, out_features=1)
    initialize(big, "xavier_normal", generator=seeded(1))
    for block in big.rnn.weight_ih_l0.detach().chunk(3, dim=0):  # fans of one gate: 256 -> 256
        assert block.var().item() == pytest.approx(2 / (256 + 256), rel=0.03)


def test_same_generator_seed_same_model() -> None:
    a = initialize(
        nn.Sequential(nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 2)), "xavier_normal", generator=seeded(9)
    )
    b = initialize(
        nn.Sequential(nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 2)), "xavier_normal", generator=seeded(9)
    )
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_all_activations_accepted_for_kaiming() -> None:
    for activation in ACTIVATIONS:
        layer = initialize(nn.Linear(4, 4), "kaiming_uniform", activation=activation, generator=seeded(0))
        assert layer.weight.abs().max() <= math.sqrt(3 * gain(activation) ** 2 / 4) + 1e-6


@pytest.mark.parametrize(
    ("model", "scheme", "options", "error", "match"),
    [
        (nn.Linear(3, 3), "xavier", {}, ValueError, "valid choices: default, normal"),
        (nn.Linear(3, 3), "He_normal", {}, ValueError, "glorot_uniform"),
        (nn.Linear(3, 3), 3, {}, TypeError, "scheme must be a string"),
        (nn.Linear(3, 3), "normal", {}, ValueError, "scheme 'normal' needs std"),
        (nn.Linear(3, 3), "normal", {"std": 0.0}, ValueError, "std must be > 0"),
        (nn.Linear(3, 3), "normal", {"std": -1.0}, ValueError, "std must be > 0"),
        (nn.Linear(3, 3), "normal", {"std": "0.1"}, TypeError, "std must be a number"),
        (nn.Linear(3, 3), "normal", {"std": math.inf}, ValueError, "finite"),
        (nn.Linear(3, 3), "uniform", {}, ValueError, "needs a"),
        (nn.Linear(3, 3), "uniform", {"a": 0}, ValueError, "a must be > 0"),
        (nn.Linear(3, 3), "constant", {}, ValueError, "needs value"),
        (nn.Linear(3, 3), "constant", {"value": None}, ValueError, "needs value"),
        (nn.Linear(3, 3), "xavier_normal", {"std": 0.1}, ValueError, "std is only used by scheme 'normal'"),
        (nn.Linear(3, 3), "normal", {"std": 0.1, "a": 0.2}, ValueError, "a is only used by scheme 'uniform'"),
        (nn.Linear(3, 3), "kaiming_normal", {"value": 1.0}, ValueError, "only used by scheme 'constant'"),
        (
            nn.Linear(3, 3),
            "kaiming_normal",
            {"mode": "fan_avg"},
            ValueError,
            "valid choices: fan_in, fan_out",
        ),
        (nn.Linear(3, 3), "kaiming_normal", {"activation": "softmax"}, ValueError, "valid choices: identity"),
        (nn.Linear(3, 3), "kaiming_normal", {"activation": nn.ReLU()}, TypeError, "activation must be"),
        (nn.Linear(3, 3), "default", {"bias": "0"}, TypeError, "bias must be a number"),
        (nn.Linear(3, 3), "default", {"bias": math.nan}, ValueError, "bias must be finite"),
        (nn.Linear(3, 3), "default", {"generator": 0}, TypeError, "generator must be a torch.Generator"),
        ("model", "default", {}, TypeError, "model must be an nn.Module"),
        (nn.ReLU(), "default", {}, ValueError, "no layers"),
    ],
)
def test_initialize_validates(model: object, scheme: object, options: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        initialize(model, scheme, **options)


@pytest.mark.parametrize(
    ("args", "options", "error", "match"),
    [
        (("kaiming_normal", 0, 10), {}, ValueError, "fan_in must be >= 1"),
        (("kaiming_normal", 10, 1.5), {}, TypeError, "fan_out must be an integer"),
        (("normal", 10, 10), {}, ValueError, "needs std"),
        (("uniform", 10, 10), {"a": -1.0}, ValueError, "a must be > 0"),
        (("orthogonal", 10, 10), {"std": 1.0}, ValueError, "only used by scheme 'normal'"),
        (("lecun", 10, 10), {}, ValueError, "valid choices"),
        (("kaiming_normal", 10, 10), {"mode": "avg"}, ValueError, "valid choices: fan_in, fan_out"),
        (("kaiming_normal", 10, 10), {"activation": "prelu"}, ValueError, "valid choices: identity"),
    ],
)
def test_expected_weight_variance_validates(args: tuple, options: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        expected_weight_variance(*args, **options)


@pytest.mark.parametrize("arch", [nn.RNN, nn.LSTM])
def test_default_variance_of_an_rnn_takes_the_hidden_size_as_fan_in(arch: type) -> None:
    rnn = initialize(arch(16, 256), "default", generator=seeded(0))  # PyTorch's U(±1/√H) for every weight
    expected = expected_weight_variance("default", fan_in=256, fan_out=256)  # the docstring's recipe
    for name in ("weight_ih_l0", "weight_hh_l0"):
        assert getattr(rnn, name).var().item() == pytest.approx(expected, rel=0.05)
    gate_block = expected_weight_variance("default", fan_in=16, fan_out=256)  # 1/48: the old recipe, 16x off
    assert rnn.weight_ih_l0.var().item() < gate_block / 10


class _Drawn(nn.Linear):
    """A linear layer that keeps a copy of the weights each reset_parameters() draws."""

    draws: ClassVar[list[torch.Tensor]] = []

    def reset_parameters(self) -> None:
        super().reset_parameters()
        _Drawn.draws.append(self.weight.detach().clone())


@pytest.mark.parametrize(("scheme", "options"), [*[(s, o) for s, o, _ in SAME_AS_TORCH], ("default", {})])
def test_a_cpu_generator_draws_the_same_numbers_on_another_device(scheme: str, options: dict) -> None:
    # "meta" stands in for a GPU: nn.init with a CPU generator fails on CUDA weights, and "default" seeded
    # only the CPU's RNG. The weights are drawn on the CPU and copied: the generator moves as for the CPU.
    on_cpu, elsewhere = seeded(0), seeded(0)
    layers = _Drawn(6, 4), _Drawn(6, 4, device="meta")
    _Drawn.draws.clear()
    initialize(layers[0], scheme, generator=on_cpu, **options)
    initialize(layers[1], scheme, generator=elsewhere, **options)
    assert torch.equal(on_cpu.get_state(), elsewhere.get_state())
    if scheme == "default":
        assert [w.device.type for w in _Drawn.draws] == ["cpu", "cpu"]
        assert torch.equal(_Drawn.draws[0], _Drawn.draws[1])
