"""The networks of the course, and `named_layers`: the "layer 1 … layer L" list every report uses.

Every model takes ``seed`` or ``generator`` (`initial_weights`): PyTorch's default initialization as after
``torch.manual_seed(seed)``, the caller's random state untouched; with neither, the global generator.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from vgcourse._validation import check_choice, check_float, check_int, check_tensor
from vgcourse.activations import make_activation

ARCHS = ("mlp", "resmlp", "rnn", "gru", "lstm")
NORMS = ("batch", "layer")
SEQUENCE_ARCHS = ("rnn", "gru", "lstm")

Activation = str | nn.Module | type[nn.Module]


@contextmanager
def initial_weights(seed: int | None = None, generator: torch.Generator | None = None) -> Iterator[None]:
    """Modules built inside initialize from ``seed`` (or one seed drawn from ``generator``, uniform in
    [0, 2^62)) in a forked global random state, restored on exit; with neither, a no-op."""
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
        if seed is not None:
            raise ValueError("give seed or generator, not both")
        seed = int(torch.randint(2**62, (1,), generator=generator))
    if seed is None:
        yield
        return
    check_int("seed", seed, minimum=0)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # torch.manual_seed would reseed every GPU too
        yield


class Dense(nn.Module):
    """One hidden layer: y = f(W x + b); f is a name from ``ACTIVATIONS``, a module or a module class."""

    def __init__(
        self, in_features: int, out_features: int, activation: Activation = "relu", bias: bool = True
    ):
        super().__init__()
        check_int("in_features", in_features, minimum=1)
        check_int("out_features", out_features, minimum=1)
        self.linear = nn.Linear(in_features, out_features, bias=_check_bool("bias", bias))
        self.activation = make_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.linear(x))


class MLP(nn.Module):
    """A plain deep network: h_l = f(W_l h_{l-1} + b_l) for l = 1..depth, then a linear head."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        depth: int,
        width: int,
        activation: Activation = "relu",
        bias: bool = True,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        _check_sizes(in_features, out_features, depth, width)
        sizes = [in_features] + [width] * depth
        with initial_weights(seed, generator):
            self.layers = nn.ModuleList(Dense(sizes[i], width, activation, bias) for i in range(depth))
            self.head = nn.Linear(width, out_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x)

    def layer_names(self) -> list[str]:
        """Names of `named_layers(self)`, input to output: ["layer 1", ..., "layer L", "output"]."""
        return [f"layer {i + 1}" for i in range(len(self.layers))] + ["output"]


class NormMLP(nn.Module):
    """A plain network normalized before each activation: x_l = φ(N(W_l x_{l−1})) for l = 1..depth, then a
    linear head. N: a `make_norm` kind ("none": the identity), φ: "relu" or "tanh". W_l ~ N(0, g/n_in)
    without bias (g = 2 for ReLU, 1 for tanh and for the first layer); the head N(0, 1/width), bias 0."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        depth: int,
        width: int,
        activation: str = "relu",
        norm: str = "batch",
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        _check_sizes(in_features, out_features, depth, width)
        check_choice("activation", activation, ("relu", "tanh"))
        sizes = [in_features] + [width] * depth
        gain = 2.0 if activation == "relu" else 1.0
        with initial_weights(seed, generator):
            self.linears = nn.ModuleList(nn.Linear(sizes[i], width, bias=False) for i in range(depth))
            self.norms = nn.ModuleList(make_norm(norm, width) or nn.Identity() for _ in range(depth))
            self.activation = nn.ReLU() if activation == "relu" else nn.Tanh()
            self.head = nn.Linear(width, out_features)
            with torch.no_grad():
                for i, linear in enumerate(self.linears):
                    linear.weight.normal_(0.0, math.sqrt((1.0 if i == 0 else gain) / sizes[i]))
                self.head.weight.normal_(0.0, math.sqrt(1.0 / width))
                self.head.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        for linear, norm in zip(self.linears, self.norms, strict=True):
            x = self.activation(norm(linear(x)))
        return self.head(x)

    def layer_names(self) -> list[str]:
        """Names of `named_layers(self)`, as `MLP`'s: ["layer 1", ..., "layer L", "output"]."""
        return [f"layer {i + 1}" for i in range(len(self.linears))] + ["output"]


class ResidualBlock(nn.Module):
    """x -> x + α·F(x) (skip) or F(x), F = Linear -> [Norm] -> f -> Linear -> [Norm]; ``post_activation``:
    f(x + α·F(x)), the original ResNet block (He et al., 2016a)."""

    def __init__(
        self,
        width: int,
        activation: Activation = "relu",
        norm: str | None = None,
        skip: bool = True,
        alpha: float = 1.0,
        bias: bool = True,
        post_activation: bool = False,
    ):
        super().__init__()
        check_int("width", width, minimum=1)
        if norm is not None:
            check_choice("norm", norm, NORMS)
        self.skip = _check_bool("skip", skip)
        self.alpha = check_float("alpha", alpha)
        self.fc1 = nn.Linear(width, width, bias=_check_bool("bias", bias))
        self.norm1 = make_norm(norm, width)
        self.act = make_activation(activation)
        self.fc2 = nn.Linear(width, width, bias=bias)
        self.norm2 = make_norm(norm, width)
        self.post_activation = _check_bool("post_activation", post_activation)

    def branch(self, x: Tensor) -> Tensor:
        """F(x), the residual branch."""
        h = self.fc1(x)
        if self.norm1 is not None:
            h = self.norm1(h)
        h = self.fc2(self.act(h))
        if self.norm2 is not None:
            h = self.norm2(h)
        return h

    def forward(self, x: Tensor) -> Tensor:
        out = x + self.alpha * self.branch(x) if self.skip else self.branch(x)
        return self.act(out) if self.post_activation else out


class ResidualMLP(nn.Module):
    """Stem Linear, x_{l+1} = x_l + α·F(x_l) for l = 1..depth (skip=False: F(x_l)), a linear head.

    α = ``branch_scale``: None (1), a float > 0 or "inv_sqrt_depth" (1/√depth). ``zero_init_last`` zeroes
    F's last Linear (or norm weight): every block starts as the identity.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        depth: int,
        width: int,
        activation: Activation = "relu",
        norm: str | None = None,
        skip: bool = True,
        branch_scale: float | str | None = None,
        zero_init_last: bool = False,
        bias: bool = True,
        post_activation: bool = False,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        _check_sizes(in_features, out_features, depth, width)
        if isinstance(branch_scale, str):
            check_choice("branch_scale", branch_scale, ("inv_sqrt_depth",))
            self.alpha = 1.0 / math.sqrt(depth)
        elif branch_scale is None:
            self.alpha = 1.0
        else:
            self.alpha = check_float("branch_scale", branch_scale, minimum=0.0, strict_minimum=True)
        _check_bool("zero_init_last", zero_init_last)
        with initial_weights(seed, generator):
            self.stem = nn.Linear(in_features, width, bias=_check_bool("bias", bias))
            self.blocks = nn.ModuleList(
                ResidualBlock(width, activation, norm, skip, self.alpha, bias, post_activation)
                for _ in range(depth)
            )
            self.head = nn.Linear(width, out_features, bias=bias)
        if zero_init_last:
            with torch.no_grad():
                for block in self.blocks:
                    last = block.fc2 if block.norm2 is None else block.norm2
                    last.weight.zero_()
                    if last.bias is not None:
                        last.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def layer_names(self) -> list[str]:
        """Names of `named_layers(self)`: ["input", "block 1 fc1", "block 1 fc2", ..., "output"]."""
        names = [f"block {i + 1} {fc}" for i in range(len(self.blocks)) for fc in ("fc1", "fc2")]
        return ["input", *names, "output"]


class SequenceModel(nn.Module):
    """An RNN over x (N, T, F), then a linear head on h_T; ``arch``: "rnn" (h_t = tanh(W x_t + U h_{t-1} +
    b)), "gru" or "lstm"."""

    def __init__(
        self,
        arch: str,
        input_size: int,
        hidden_size: int,
        out_features: int,
        num_layers: int = 1,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.arch = check_choice("arch", arch, SEQUENCE_ARCHS)
        check_int("input_size", input_size, minimum=1)
        check_int("hidden_size", hidden_size, minimum=1)
        check_int("out_features", out_features, minimum=1)
        check_int("num_layers", num_layers, minimum=1)
        kind = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[arch]
        extra = {"nonlinearity": "tanh"} if arch == "rnn" else {}
        with initial_weights(seed, generator):
            self.rnn = kind(input_size, hidden_size, num_layers=num_layers, batch_first=True, **extra)
            self.head = nn.Linear(hidden_size, out_features)

    def forward(self, x: Tensor) -> Tensor:
        check_tensor("x", x, ndim=3)
        out, _ = self.rnn(x)
        return self.head(out[:, -1])

    def layer_names(self) -> list[str]:
        """Names of `named_layers(self)`: [arch, "output"] (all stacked recurrent layers are one layer)."""
        return [self.arch, "output"]

    def set_forget_bias(self, value: float) -> None:
        """Make every LSTM forget gate start with total bias b_f = value (e.g. 1: f_t ≈ σ(1) ≈ 0.73):
        the forget slice [H:2H] (gate order i, f, g, o) of bias_ih is set to ``value``, of bias_hh to 0."""
        if self.arch != "lstm":
            raise ValueError(f"set_forget_bias needs arch 'lstm' (it has a forget gate); got {self.arch!r}")
        value = check_float("value", value)
        size = self.rnn.hidden_size
        with torch.no_grad():
            for name, param in self.rnn.named_parameters():
                if name.startswith("bias_"):
                    param[size : 2 * size] = value if name.startswith("bias_ih") else 0.0


def named_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every module with a weight of ndim >= 2 or an ``nn.RNNBase`` (not norms), in
    registration order; named by ``model.layer_names()`` when it has one, else by module path."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
    layers = [(name, m) for name, m in model.named_modules() if _is_layer(m)]
    if callable(getattr(model, "layer_names", None)):
        names = list(model.layer_names())
        if len(names) != len(layers):
            raise ValueError(f"model.layer_names() gives {len(names)} names for {len(layers)} layers")
        layers = [(name, m) for name, (_, m) in zip(names, layers, strict=True)]
    return layers


def build_model(
    arch: str,
    *,
    in_features: int,
    out_features: int,
    depth: int,
    width: int,
    activation: Activation = "relu",
    norm: str | None = None,
    skip: bool = True,
    branch_scale: float | str | None = None,
    zero_init_last: bool = False,
    bias: bool = True,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """`MLP`, `ResidualMLP` or `SequenceModel` by ``arch`` (for recurrent ones width is the hidden size,
    depth the stacked layers; activation ignored); options a model lacks must keep their defaults."""
    check_choice("arch", arch, ARCHS)
    _check_sizes(in_features, out_features, depth, width)
    make_activation(activation)  # validate even where unused
    if norm is not None:
        check_choice("norm", norm, NORMS)
    _check_bool("skip", skip)
    _check_bool("zero_init_last", zero_init_last)
    _check_bool("bias", bias)
    if arch != "resmlp":
        changed = {
            "norm": norm is not None,
            "skip": not skip,
            "branch_scale": branch_scale is not None,
            "zero_init_last": zero_init_last,
        }
        used = [name for name, is_changed in changed.items() if is_changed]
        if used:
            verb = "applies" if len(used) == 1 else "apply"
            raise ValueError(f"{', '.join(used)} {verb} only to arch 'resmlp'; got arch {arch!r}")
    init = {"seed": seed, "generator": generator}
    if arch == "mlp":
        return MLP(in_features, out_features, depth, width, activation, bias, **init)
    if arch == "resmlp":
        options = (norm, skip, branch_scale, zero_init_last, bias)
        return ResidualMLP(in_features, out_features, depth, width, activation, *options, **init)
    if not bias:
        raise ValueError(f"bias=False is only supported by arch 'mlp' and 'resmlp'; got arch {arch!r}")
    return SequenceModel(arch, in_features, width, out_features, num_layers=depth, **init)


def _is_layer(module: nn.Module) -> bool:
    if isinstance(module, nn.RNNBase):
        return True
    weight = getattr(module, "weight", None)
    return isinstance(weight, Tensor) and weight.ndim >= 2


class RMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich 2019): y = γ ⊙ x / sqrt(mean(x²) + ε) over the last dimension (what
    ``torch.nn.RMSNorm`` computes from torch 2.4)."""

    def __init__(self, width: int, eps: float = 1e-5):
        super().__init__()
        check_int("width", width, minimum=1)
        self.eps = check_float("eps", eps, minimum=0.0)
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


def make_norm(kind: str | None, width: int) -> nn.Module | None:
    """y = γ (x − μ) / sqrt(σ² + ε) + β with μ, σ² per feature over the batch ("batch") or per example
    ("layer"), or RMSNorm ("rms"); None for None or "none"."""
    check_choice("norm", "none" if kind is None else kind, ("none", "batch", "layer", "rms"))
    check_int("width", width, minimum=1)
    modules = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm, "rms": RMSNorm}
    return modules[kind](width) if kind not in (None, "none") else None


def check_norm_sizes(norms: Iterable[str | None], width: int, batch_size: int | None = None) -> None:
    """Batch norm needs batch_size >= 2 (it averages each unit over the examples), layer norm width >= 2 (one
    unit normalizes to x − μ = 0: the input is lost); a ValueError names the field otherwise."""
    norms = set(norms)
    if "batch" in norms and batch_size is not None and batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 with batch norm (a unit's batch std); got {batch_size}")
    if "layer" in norms and width < 2:
        raise ValueError(f"width must be >= 2 with layer norm (one unit normalizes to 0); got {width}")


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {type(value).__name__} {value!r}")
    return value


def _check_sizes(in_features: int, out_features: int, depth: int, width: int) -> None:
    check_int("in_features", in_features, minimum=1)
    check_int("out_features", out_features, minimum=1)
    check_int("depth", depth, minimum=1)
    check_int("width", width, minimum=1)


@contextmanager
def keep_outputs(modules: Iterable[nn.Module]) -> Iterator[list[Tensor]]:
    """While open, every call of one of ``modules`` appends its output to the yielded list (call order) and
    retains its gradient: after ``loss.backward()``, ``out.grad`` is ∂L/∂out, the backward signal there."""

    def keep(_module: nn.Module, _args: object, out: Tensor) -> None:
        if out.requires_grad:
            out.retain_grad()
        kept.append(out)

    kept: list[Tensor] = []
    handles = [module.register_forward_hook(keep) for module in modules]
    try:
        yield kept
    finally:
        for handle in handles:
            handle.remove()


def norm_jacobian(kind: str, x: Tensor, gamma: Tensor, eps: float) -> Tensor:
    """A normalization's Jacobian by formula. One example x of n features: layer J = diag(γ)/σ (I − 11ᵀ/n −
    x̂x̂ᵀ/n), rms J = diag(γ)/rms (I − x̂x̂ᵀ/n) with x̂ = x / rms. Batch (x: (B, n), J: (B, n, B, n)): the
    layer formula per feature over the batch, ∂y[b, j] / ∂x[c, k] = δ_jk γ_j/σ_j (δ_bc − 1/B − x̂[b, j] x̂[c, k]
    / B)."""
    if check_choice("kind", kind, ("batch", "layer", "rms")) == "batch":
        batch, n = x.shape
        jac = torch.zeros(batch, n, batch, n, dtype=x.dtype, device=x.device)
        for j in range(n):
            jac[:, j, :, j] = norm_jacobian("layer", x[:, j], gamma[j].expand(batch), eps)
        return jac
    n = x.numel()
    eye = torch.eye(n, dtype=x.dtype, device=x.device)
    if kind == "layer":
        sigma = torch.sqrt(x.var(unbiased=False) + eps)
        xhat, centering = (x - x.mean()) / sigma, eye - torch.ones_like(eye) / n
    else:
        sigma = torch.sqrt((x**2).mean() + eps)
        xhat, centering = x / sigma, eye
    return gamma[:, None] / sigma * (centering - torch.outer(xhat, xhat) / n)


class NoisyBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d whose training-mode output is y ← a ⊙ y + b with a_j ~ U(1 − amp, 1 + amp) and b_j ~
    N(0, amp²) per unit, fresh at every call from ``generator`` (amp = 0: plain BatchNorm1d); the injected
    "internal covariate shift" of Santurkar et al. (2018)."""

    def __init__(self, width: int, amplitude: float, generator: torch.Generator):
        super().__init__(width)
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        self.amplitude, self.generator = check_float("amplitude", amplitude, 0.0), generator

    def forward(self, x: Tensor) -> Tensor:
        y = super().forward(x)
        if self.training and self.amplitude > 0:  # drawn on the generator's device, applied on y's
            a = 1 + self.amplitude * (2 * torch.rand(1, y.shape[1], generator=self.generator) - 1)
            b = self.amplitude * torch.randn(1, y.shape[1], generator=self.generator)
            y = y * a.to(y.device) + b.to(y.device)
        return y
