"""One forward and backward pass on a fixed batch: per-layer gradient statistics of a fresh model."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from vgcourse._validation import check_choice, check_int
from vgcourse.activations import ACTIVATIONS
from vgcourse.initializers import SCHEMES, initialize
from vgcourse.models import SEQUENCE_ARCHS, build_model
from vgcourse.monitor import snapshot

N_CLASSES = 10
MLP_FEATURES = 64
SEQ_FEATURES = 8


@dataclass(frozen=True)
class LayerProfile:
    """Gradient and activation statistics of one layer after one backward pass."""

    name: str
    grad_norm: float
    grad_mean: float
    grad_std: float
    grad_max: float
    act_mean: float
    act_std: float
    dead_frac: float
    saturated_frac: float


@dataclass(frozen=True)
class Profile:
    """What `profile` measured: layers input to output and, for sequence models, dL/dx_t per step."""

    arch: str
    depth: int
    width: int
    activation: str
    init: str
    norm: str | None
    seed: int
    layers: list[LayerProfile]
    steps: list[float] = field(default_factory=list)

    def to_json_dict(self) -> dict:
        """A JSON-ready dict: NaN becomes None; ``steps`` holds ``{"t", "grad_norm"}`` items, t = 0 first."""

        def clean(value: object) -> object:
            return None if isinstance(value, float) and not math.isfinite(value) else value

        data = asdict(self)
        data["layers"] = [{k: clean(v) for k, v in layer.items()} for layer in data["layers"]]
        data["steps"] = [{"t": t, "grad_norm": clean(g)} for t, g in enumerate(self.steps)]
        return data


def standard_batch(arch: str, seq_len: int, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed batch: x ~ N(0, 1) of shape (B, 64) for MLPs, (B, T, 8) for sequences; random labels."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, seq_len, SEQ_FEATURES) if arch in SEQUENCE_ARCHS else (batch_size, MLP_FEATURES)
    x = torch.randn(*shape, generator=generator)
    y = torch.randint(0, N_CLASSES, (batch_size,), generator=generator)
    return x, y


def standard_model(
    arch: str = "mlp",
    *,
    depth: int = 10,
    width: int = 64,
    activation: str = "relu",
    init: str = "default",
    norm: str | None = None,
    seed: int = 0,
) -> nn.Module:
    """The model ``vgcourse profile`` and ``diagnose`` study: `build_model` (which checks arch, sizes and
    norm), then ``init`` from ``seed``."""
    check_choice("activation", activation, ACTIVATIONS)  # a name: build_model would also take a module
    check_choice("init", init, PROFILE_INITS)
    check_int("seed", seed, minimum=0)  # build_model would take None: the global generator
    model = build_model(
        arch,
        in_features=SEQ_FEATURES if arch in SEQUENCE_ARCHS else MLP_FEATURES,
        out_features=N_CLASSES,
        depth=depth,
        width=width,
        activation=activation,
        norm=norm,
        seed=seed,
    )
    if init != "default":
        initialize(model, init, activation=activation, generator=torch.Generator().manual_seed(seed))
    return model


def profile(
    arch: str = "mlp",
    *,
    depth: int = 10,
    width: int = 64,
    activation: str = "relu",
    init: str = "default",
    norm: str | None = None,
    seq_len: int = 20,
    seed: int = 0,
    batch_size: int = 128,
) -> Profile:
    """Per-layer statistics of one cross-entropy backward pass of `standard_model` on `standard_batch`."""
    check_int("seq_len", seq_len, minimum=1)
    check_int("batch_size", batch_size, minimum=2)
    options = {"depth": depth, "width": width, "activation": activation, "init": init, "norm": norm}
    model = standard_model(arch, **options, seed=seed)
    x, y = standard_batch(arch, seq_len, batch_size, seed)
    record = snapshot(model, x, y, nn.CrossEntropyLoss(), track_inputs=arch in SEQUENCE_ARCHS)
    columns = [f.name for f in LayerProfile.__dataclass_fields__.values() if f.name != "name"]
    layers = [
        LayerProfile(name, **{c: float(getattr(record, c)[-1, i]) for c in columns})
        for i, name in enumerate(record.layer_names)
    ]
    steps = [] if record.input_grad_norm is None else [float(g) for g in record.input_grad_norm[-1]]
    return Profile(arch=arch, **options, seed=seed, layers=layers, steps=steps)


PROFILE_INITS = tuple(s for s in SCHEMES if s not in ("normal", "uniform", "constant"))
