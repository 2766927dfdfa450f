"""Tests for vgcourse.models: shapes, layer naming, residual options, recurrent models, the factory."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from vgcourse.models import (
    ARCHS,
    MLP,
    NORMS,
    Dense,
    NoisyBatchNorm,
    NormMLP,
    ResidualMLP,
    SequenceModel,
    build_model,
    check_norm_sizes,
    named_layers,
    norm_jacobian,
)


def test_dense_is_activation_of_linear() -> None:
    torch.manual_seed(0)
    layer = Dense(3, 5, activation="tanh")
    x = torch.randn(4, 3)
    torch.testing.assert_close(layer(x), torch.tanh(layer.linear(x)))
    assert isinstance(layer.activation, nn.Tanh)
    assert Dense(3, 5, bias=False).linear.bias is None


def test_mlp_shapes_and_layer_names() -> None:
    model = MLP(6, 3, depth=4, width=16, activation="sigmoid")
    assert model(torch.randn(5, 6)).shape == (5, 3)
    assert len(model.layers) == 4 and all(isinstance(layer, Dense) for layer in model.layers)
    assert model.layers[0].linear.in_features == 6 and model.head.in_features == 16
    assert model.layer_names() == ["layer 1", "layer 2", "layer 3", "layer 4", "output"]
    layers = named_layers(model)
    assert [name for name, _ in layers] == model.layer_names()
    assert [module for _, module in layers] == [layer.linear for layer in model.layers] + [model.head]


def test_mlp_gets_fresh_activation_modules() -> None:
    model = MLP(2, 2, depth=3, width=4, activation=nn.LeakyReLU(0.2))
    acts = [layer.activation for layer in model.layers]
    assert len({id(a) for a in acts}) == 3
    assert all(a.negative_slope == 0.2 for a in acts)


@pytest.mark.parametrize("norm", ["none", "batch", "layer", "rms"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_norm_mlp_normalizes_before_each_activation(norm: str, activation: str) -> None:
    model = NormMLP(6, 3, depth=4, width=32, norm=norm, activation=activation, seed=0)
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    h = x
    for linear, n in zip(model.linears, model.norms, strict=True):
        assert linear.bias is None
        h = model.activation(n(linear(h)))
    torch.testing.assert_close(model(x), model.head(h))
    assert all(isinstance(n, nn.Identity) for n in model.norms) == (norm == "none")
    assert isinstance(model.activation, nn.ReLU if activation == "relu" else nn.Tanh)
    assert torch.all(model.head.bias == 0)
    names = [f"layer {i}" for i in range(1, len(model.linears) + 1)] + ["output"]  # as MLP's; no norms
    assert named_layers(model) == list(zip(names, [*model.linears, model.head], strict=True))
    # W_l ~ N(0, g / n_in) with g = 2 for ReLU, 1 for tanh and for the first layer; the head N(0, 1/width)
    gain = 2.0 if activation == "relu" else 1.0
    big = NormMLP(200, 3, depth=2, width=400, norm=norm, activation=activation, seed=2)
    assert big.linears[0].weight.var().item() == pytest.approx(1 / 200, rel=0.02)
    assert big.linears[1].weight.var().item() == pytest.approx(gain / 400, rel=0.02)
    assert big.head.weight.var().item() == pytest.approx(1 / 400, rel=0.15)  # 1,200 draws


@pytest.mark.parametrize("norm", [None, *NORMS])
def test_resmlp_shapes_names_and_norms_excluded(norm: str | None) -> None:
    model = ResidualMLP(5, 2, depth=3, width=8, norm=norm)
    assert model(torch.randn(4, 5)).shape == (4, 2)
    names = model.layer_names()
    assert names[:3] == ["input", "block 1 fc1", "block 1 fc2"] and names[-1] == "output"
    layers = named_layers(model)
    assert [name for name, _ in layers] == names and len(layers) == 2 + 2 * 3
    assert all(isinstance(module, nn.Linear) for _, module in layers)
    assert layers[0][1] is model.stem and layers[-1][1] is model.head
    block = model.blocks[0]
    assert (block.norm1 is None) == (norm is None) and (block.norm2 is None) == (norm is None)
    if norm == "batch":
        assert isinstance(block.norm1, nn.BatchNorm1d)
    if norm == "layer":
        assert isinstance(block.norm2, nn.LayerNorm)


def test_resmlp_block_computes_x_plus_alpha_branch() -> None:
    torch.manual_seed(0)
    model = ResidualMLP(3, 2, depth=2, width=6, activation="tanh", branch_scale=0.5)
    block, x = model.blocks[0], torch.randn(4, 6)
    branch = block.fc2(torch.tanh(block.fc1(x)))
    torch.testing.assert_close(block(x), x + 0.5 * branch)
    torch.testing.assert_close(block.branch(x), branch)


def test_resmlp_skip_false_is_the_plain_twin() -> None:
    torch.manual_seed(0)
    residual = ResidualMLP(3, 2, depth=3, width=8, skip=True)
    torch.manual_seed(0)
    plain = ResidualMLP(3, 2, depth=3, width=8, skip=False)
    for p, q in zip(residual.parameters(), plain.parameters(), strict=True):
        assert torch.equal(p, q)
    x = torch.randn(4, 3)
    assert not torch.allclose(residual(x), plain(x))
    h = torch.randn(4, 8)
    torch.testing.assert_close(plain.blocks[0](h), plain.blocks[0].branch(h))


@pytest.mark.parametrize(("branch_scale", "alpha"), [(None, 1.0), (0.25, 0.25), ("inv_sqrt_depth", 0.5)])
def test_resmlp_branch_scale(branch_scale: float | str | None, alpha: float) -> None:
    model = ResidualMLP(3, 2, depth=4, width=4, branch_scale=branch_scale)
    assert model.alpha == pytest.approx(alpha)
    assert all(block.alpha == pytest.approx(alpha) for block in model.blocks)
    assert ResidualMLP(3, 2, depth=9, width=4, branch_scale="inv_sqrt_depth").alpha == pytest.approx(1 / 3)


@pytest.mark.parametrize("norm", [None, *NORMS])
def test_zero_init_last_makes_blocks_identity(norm: str | None) -> None:
    torch.manual_seed(0)
    model = ResidualMLP(3, 2, depth=3, width=8, norm=norm, zero_init_last=True)
    x = torch.randn(6, 8)
    for block in model.blocks:
        torch.testing.assert_close(block(x), x)
        last = block.fc2 if norm is None else block.norm2
        assert torch.count_nonzero(last.weight) == 0
    inputs = torch.randn(6, 3)
    torch.testing.assert_close(model(inputs), model.head(model.stem(inputs)))
    assert torch.count_nonzero(model.blocks[0].fc1.weight) > 0


@pytest.mark.parametrize("arch", ["rnn", "gru", "lstm"])
def test_sequence_model_shapes_and_last_step(arch: str) -> None:
    torch.manual_seed(0)
    model = SequenceModel(arch, input_size=3, hidden_size=7, out_features=4, num_layers=2)
    x = torch.randn(5, 9, 3)
    out = model(x)
    assert out.shape == (5, 4)
    assert model.rnn.batch_first and model.rnn.num_layers == 2
    assert isinstance(model.rnn, {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[arch])
    states, _ = model.rnn(x)
    torch.testing.assert_close(out, model.head(states[:, -1]))
    assert [name for name, _ in named_layers(model)] == [arch, "output"]


def test_vanilla_rnn_uses_tanh() -> None:
    assert SequenceModel("rnn", 2, 3, 1).rnn.nonlinearity == "tanh"


def test_set_forget_bias_sets_forget_slice_only() -> None:
    torch.manual_seed(0)
    model = SequenceModel("lstm", 3, 5, 2, num_layers=2)
    before = {name: p.detach().clone() for name, p in model.rnn.named_parameters()}
    model.set_forget_bias(1.0)
    forget = slice(5, 10)  # PyTorch gate order: input, forget, cell (g), output
    for layer in range(2):
        b_ih, b_hh = getattr(model.rnn, f"bias_ih_l{layer}"), getattr(model.rnn, f"bias_hh_l{layer}")
        assert torch.all(b_ih[forget] == 1.0) and torch.all(b_hh[forget] == 0.0)
        assert torch.all((b_ih + b_hh)[forget] == 1.0)
        for b, name in ((b_ih, f"bias_ih_l{layer}"), (b_hh, f"bias_hh_l{layer}")):
            torch.testing.assert_close(b[:5], before[name][:5])
            torch.testing.assert_close(b[10:], before[name][10:])
    torch.testing.assert_close(model.rnn.weight_hh_l0, before["weight_hh_l0"])


@pytest.mark.parametrize(("arch", "value", "error"), [("gru", 1.0, ValueError), ("rnn", 1.0, ValueError)])
def test_set_forget_bias_needs_lstm(arch: str, value: float, error: type[Exception]) -> None:
    with pytest.raises(error, match="lstm"):
        SequenceModel(arch, 2, 3, 1).set_forget_bias(value)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [("1", TypeError, "value must be a number; got str"), (float("nan"), ValueError, "value must be finite")],
)
def test_set_forget_bias_bad_value(value: object, error: type[Exception], message: str) -> None:
    # the message names the value: torch's own TypeError on assigning a str to a tensor is no check
    with pytest.raises(error, match=message):
        SequenceModel("lstm", 2, 3, 1).set_forget_bias(value)


def test_sequence_model_rejects_2d_input() -> None:
    with pytest.raises(ValueError, match="3-D"):
        SequenceModel("gru", 2, 3, 1)(torch.randn(4, 2))


def test_named_layers_on_plain_sequential() -> None:
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 4), nn.LayerNorm(4))
    assert [name for name, _ in named_layers(model)] == ["0", "3"]


class TinyConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        block = nn.Module()
        block.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        block.bn1 = nn.BatchNorm2d(4)
        self.layer1 = nn.Sequential(block)
        self.fc = nn.Linear(4, 3)


def test_named_layers_on_conv_net_uses_dotted_paths() -> None:
    layers = named_layers(TinyConvNet())
    assert [name for name, _ in layers] == ["conv1", "layer1.0.conv1", "fc"]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for _, m in layers)


def test_named_layers_includes_embeddings_and_rnns() -> None:
    model = nn.ModuleDict({"emb": nn.Embedding(10, 4), "lstm": nn.LSTM(4, 6), "out": nn.Linear(6, 2)})
    assert [name for name, _ in named_layers(model)] == ["emb", "lstm", "out"]
    assert named_layers(nn.ReLU()) == []


def test_named_layers_checks_layer_names_length() -> None:
    class Broken(nn.Sequential):
        def layer_names(self) -> list[str]:
            return ["only one"]

    with pytest.raises(ValueError, match="1 names for 2 layers"):
        named_layers(Broken(nn.Linear(2, 2), nn.Linear(2, 2)))
    with pytest.raises(TypeError, match=r"nn\.Module"):
        named_layers("model")


@pytest.mark.parametrize(
    ("arch", "kind", "x"),
    [
        ("mlp", MLP, torch.randn(4, 3)),
        ("resmlp", ResidualMLP, torch.randn(4, 3)),
        ("rnn", SequenceModel, torch.randn(4, 6, 3)),
        ("gru", SequenceModel, torch.randn(4, 6, 3)),
        ("lstm", SequenceModel, torch.randn(4, 6, 3)),
    ],
)
def test_build_model_every_arch(arch: str, kind: type[nn.Module], x: torch.Tensor) -> None:
    model = build_model(arch, in_features=3, out_features=2, depth=2, width=5)
    assert isinstance(model, kind)
    assert model(x).shape == (4, 2)


def test_constants() -> None:
    assert ARCHS == ("mlp", "resmlp", "rnn", "gru", "lstm")
    assert NORMS == ("batch", "layer")


def test_build_model_passes_options() -> None:
    model = build_model(
        "resmlp", in_features=3, out_features=2, depth=4, width=5, activation="tanh", norm="layer",
        skip=False, branch_scale="inv_sqrt_depth", bias=False,
    )  # fmt: skip
    assert not model.blocks[0].skip and model.alpha == pytest.approx(0.5)
    assert isinstance(model.blocks[0].act, nn.Tanh) and isinstance(model.blocks[0].norm1, nn.LayerNorm)
    assert model.head.bias is None
    assert build_model("lstm", in_features=3, out_features=2, depth=3, width=5).rnn.num_layers == 3


GOOD = {"in_features": 3, "out_features": 2, "depth": 2, "width": 4}


@pytest.mark.parametrize(
    ("arch", "overrides", "error", "match"),
    [
        ("cnn", {}, ValueError, "valid choices: mlp, resmlp, rnn, gru, lstm"),
        (None, {}, TypeError, "arch must be a string"),
        ("mlp", {"depth": 0}, ValueError, "depth must be >= 1"),
        ("resmlp", {"width": 0}, ValueError, "width must be >= 1"),
        ("lstm", {"depth": 0}, ValueError, "depth must be >= 1"),
        ("mlp", {"depth": 2.0}, TypeError, "depth must be an integer"),
        ("mlp", {"width": True}, TypeError, "width must be an integer"),
        ("mlp", {"in_features": "3"}, TypeError, "in_features"),
        ("mlp", {"out_features": -1}, ValueError, "out_features"),
        ("mlp", {"activation": "softmax"}, ValueError, "valid choices: identity"),
        ("rnn", {"activation": "swish"}, ValueError, "valid choices: identity"),
        ("mlp", {"activation": 3}, TypeError, "activation must be"),
        ("resmlp", {"norm": "group"}, ValueError, "valid choices: batch, layer"),
        ("mlp", {"norm": "batch"}, ValueError, "only to arch 'resmlp'; got arch"),
        ("mlp", {"skip": False}, ValueError, "only to arch 'resmlp'; got arch"),
        ("lstm", {"branch_scale": 0.5}, ValueError, "only to arch 'resmlp'; got arch"),
        ("rnn", {"zero_init_last": True}, ValueError, "only to arch 'resmlp'; got arch"),
        ("gru", {"bias": False}, ValueError, "bias=False"),
        ("resmlp", {"branch_scale": -1.0}, ValueError, "branch_scale must be > 0"),
        ("resmlp", {"branch_scale": 0}, ValueError, "branch_scale must be > 0"),
        ("resmlp", {"branch_scale": "sqrt"}, ValueError, "valid choices: inv_sqrt_depth"),
        ("resmlp", {"branch_scale": True}, TypeError, "branch_scale must be a number"),
        ("resmlp", {"skip": "yes"}, TypeError, "skip must be True or False"),
        ("resmlp", {"zero_init_last": 1}, TypeError, "zero_init_last must be True or False"),
        ("mlp", {"bias": None}, TypeError, "bias must be True or False"),
    ],
)
def test_build_model_validates(arch: object, overrides: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build_model(arch, **{**GOOD, **overrides})


@pytest.mark.parametrize(
    ("factory", "error", "message"),
    [
        (
            lambda: SequenceModel("transformer", 2, 3, 1),
            ValueError,
            "unknown arch 'transformer'; valid choices",
        ),
        (lambda: SequenceModel("lstm", 2, 0, 1), ValueError, "hidden_size must be >= 1"),
        (lambda: SequenceModel("lstm", 2, 3, 1, num_layers=0), ValueError, "num_layers must be >= 1"),
        (lambda: MLP(2, 2, depth=0, width=3), ValueError, "depth must be >= 1"),
        (lambda: MLP(2, 2, depth=1, width=3.5), TypeError, "width must be an integer"),
        (lambda: ResidualMLP(2, 2, depth=-1, width=3), ValueError, "depth must be >= 1"),
        (lambda: ResidualMLP(2, 2, depth=1, width=3, norm="instance"), ValueError, "unknown norm 'instance'"),
        (lambda: Dense(0, 2), ValueError, "in_features must be >= 1"),
        (lambda: NormMLP(2, 2, depth=1, width=3, activation="sigmoid"), ValueError, "unknown activation"),
        (lambda: NormMLP(2, 2, depth=1, width=3, norm="group"), ValueError, "unknown norm 'group'"),
        (lambda: NormMLP(2, 2, depth=0, width=3), ValueError, "depth must be >= 1"),
        (lambda: Dense(2, 2, activation="relu6"), ValueError, "unknown activation 'relu6'; valid choices"),
    ],
)
def test_constructors_validate(factory: object, error: type[Exception], message: str) -> None:
    # the message names the argument: torch's own errors (nn.LSTM's "hidden_size must be greater than
    # zero", nn.Linear's on a float size) would pass a test of the class alone with no check of ours
    with pytest.raises(error, match=re.escape(message)):
        factory()


def test_inv_sqrt_depth_keeps_residual_stream_bounded() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 32)
    stream = {}
    for scale in (None, "inv_sqrt_depth"):
        torch.manual_seed(1)
        model = ResidualMLP(32, 1, depth=64, width=32, branch_scale=scale)
        h = model.stem(x)
        for block in model.blocks:
            h = block(h)
        stream[scale] = h.std().item()
    assert stream["inv_sqrt_depth"] < stream[None]
    assert math.isfinite(stream[None])


def test_standard_model_is_repeatable_and_leaves_the_global_generator_alone() -> None:
    from vgcourse.profiling import standard_model

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = standard_model("mlp", depth=3, width=8, activation="tanh", init="default", seed=5)
    assert torch.equal(torch.random.get_rng_state(), before), "standard_model changed the global RNG"
    second = standard_model("mlp", depth=3, width=8, activation="tanh", init="default", seed=5)
    other = standard_model("mlp", depth=3, width=8, activation="tanh", init="default", seed=6)
    pairs = list(zip(first.parameters(), second.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not all(torch.equal(a, b) for a, b in zip(first.parameters(), other.parameters(), strict=True))
    with pytest.raises(TypeError, match="seed must be an integer"):
        standard_model("mlp", depth=3, width=8, seed=None)  # never the global generator


_SEEDED = [
    ("mlp", lambda **kw: MLP(3, 2, 2, 5, "tanh", **kw)),
    ("resmlp", lambda **kw: ResidualMLP(3, 2, 2, 5, norm="layer", **kw)),
    ("normmlp", lambda **kw: NormMLP(3, 2, 2, 5, "tanh", "batch", **kw)),
    ("gru", lambda **kw: SequenceModel("gru", 3, 5, 2, num_layers=2, **kw)),
    ("lstm", lambda **kw: build_model("lstm", in_features=3, out_features=2, depth=1, width=5, **kw)),
]


@pytest.mark.parametrize(("name", "make"), _SEEDED, ids=[name for name, _ in _SEEDED])
def test_a_seed_gives_the_weights_of_global_seeding_and_leaves_the_global_state_alone(
    name, make, monkeypatch
) -> None:
    torch.manual_seed(7)
    old_way = make()  # what callers did before models took a seed: seed the process, then build
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    reseeded: list[int] = []  # torch.manual_seed also reseeds every GPU, which fork_rng(devices=[]) keeps
    monkeypatch.setattr(torch.cuda, "manual_seed_all", reseeded.append)
    seeded = make(seed=7)
    assert torch.equal(torch.random.get_rng_state(), before), f"{name} changed the global RNG"
    assert not reseeded, f"{name} reseeded the GPUs' global generators"
    for a, b in zip(old_way.parameters(), seeded.parameters(), strict=True):
        assert torch.equal(a, b)
    other = make(seed=8)
    assert not all(torch.equal(a, b) for a, b in zip(seeded.parameters(), other.parameters(), strict=True))


def test_a_generator_draws_one_seed_per_model() -> None:
    g = torch.Generator().manual_seed(0)
    first, second = MLP(3, 2, 1, 4, generator=g), MLP(3, 2, 1, 4, generator=g)
    again = MLP(3, 2, 1, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(first.head.weight, again.head.weight)
    assert not torch.equal(first.head.weight, second.head.weight)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"seed": 1.5}, TypeError, "seed must be an integer"),
        ({"seed": 0, "generator": torch.Generator()}, ValueError, "give seed or generator, not both"),
        ({"generator": 0}, TypeError, "generator must be a torch.Generator or None"),
    ],
)
def test_bad_seed_or_generator(kwargs: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        SequenceModel("rnn", 2, 3, 1, **kwargs)


def test_norm_sizes_name_the_field_a_norm_cannot_work_with() -> None:
    check_norm_sizes(["batch", "layer", None], width=2, batch_size=2)
    check_norm_sizes(["rms", None], width=1, batch_size=1)  # RMSNorm of one unit is ±γ: not degenerate
    check_norm_sizes(["batch"], width=1)  # no batch size given: only the width is checked
    with pytest.raises(ValueError, match="batch_size must be >= 2 with batch norm"):
        check_norm_sizes(["batch"], width=8, batch_size=1)
    with pytest.raises(ValueError, match="width must be >= 2 with layer norm"):
        check_norm_sizes(["none", "layer"], width=1)


def test_norm_jacobian_matches_autograd() -> None:
    generator = torch.Generator().manual_seed(0)
    x, xb = (torch.randn(*shape, generator=generator, dtype=torch.float64) for shape in ((5,), (4, 5)))
    gamma, eps = torch.rand(5, generator=generator, dtype=torch.float64) + 0.5, 1e-5
    layer = lambda v: nn.functional.layer_norm(v, (5,), gamma, None, eps)  # noqa: E731
    rms = lambda v: gamma * v / torch.sqrt(v.pow(2).mean() + eps)  # noqa: E731
    batch = lambda v: nn.functional.batch_norm(v, None, None, gamma, None, training=True, eps=eps)  # noqa: E731
    for kind, f, at in (("layer", layer, x), ("rms", rms, x), ("batch", batch, xb)):
        expected = torch.autograd.functional.jacobian(f, at)
        torch.testing.assert_close(norm_jacobian(kind, at, gamma, eps), expected, rtol=0, atol=1e-12)


def test_norm_jacobian_is_built_on_the_inputs_device() -> None:
    # "meta" stands in for "cuda": the identity and the zeros were made on the CPU ("Tensor on device meta
    # is not on the expected device cpu!")
    x, gamma = torch.randn(4, device="meta"), torch.ones(4, device="meta")
    assert norm_jacobian("layer", x, gamma, 1e-5).device.type == "meta"
    assert norm_jacobian("rms", x, gamma, 1e-5).device.type == "meta"
    assert norm_jacobian("batch", torch.randn(3, 4, device="meta"), gamma, 1e-5).shape == (3, 4, 3, 4)


def test_noisy_batch_norm_draws_its_noise_from_its_generator_only() -> None:
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(NoisyBatchNorm(4, 0.0, torch.Generator())(x), nn.BatchNorm1d(4)(x))
    state = torch.get_rng_state()
    first, second = (NoisyBatchNorm(4, 0.5, torch.Generator().manual_seed(0))(x) for _ in range(2))
    assert torch.equal(first, second) and not torch.allclose(first, nn.BatchNorm1d(4)(x))
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(TypeError, match=r"torch\.Generator"):  # was: accepted, the noise from the global RNG
        NoisyBatchNorm(4, 0.5, None)  # type: ignore[arg-type]


def test_noisy_batch_norm_puts_its_noise_on_the_inputs_device() -> None:
    # "meta" stands in for "cuda": a CPU generator draws CPU noise ("Tensor on device cpu is not on the
    # expected device meta!")
    layer = NoisyBatchNorm(4, 0.5, torch.Generator().manual_seed(0)).to("meta")
    assert layer(torch.randn(3, 4, device="meta")).device.type == "meta"


@pytest.mark.parametrize("ids", [[0, 5], [-1, 2]])
def test_a_transformer_names_token_ids_outside_its_vocabulary(ids: list[int]) -> None:
    # was: IndexError 'index out of range in self' from the embedding (on CUDA a device-side assert)
    from vgcourse.transformer import Transformer

    model = Transformer(vocab_size=5, seq_len=4, n_layers=1, d_model=8, n_heads=2)
    with pytest.raises(ValueError, match=rf"token ids in \[0, 5\); got ids from {min(ids)} to {max(ids)}$"):
        model(torch.tensor([ids]))
    assert model(torch.tensor([[0, 4]])).shape == (1, 2, 5)
