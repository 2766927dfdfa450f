"""`diagnose` on a zoo of models nobody in this repository wrote, and on constructed pathologies.

Healthy models (torchvision classifiers of several families, a vision transformer, PyTorch's own
Transformer encoders, LSTM/GRU, a segmentation model returning a dict, a network with functional and
in-place ReLUs) must run without a crash, cover every trainable parameter and show no problem. Each
pathology must get the finding that names its cause and a suggestion that points at the right fix.
Inputs are small (a few images of 32×32 or 64×64, sequences of 6 steps) so each model takes seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.segmentation import lraspp_mobilenet_v3_large

from vgcourse.diagnose import CHAPTERS, FINDING_KINDS, DiagnosisReport, Finding, diagnose, diagnosis_layers
from vgcourse.monitor import layer_weights

CE = nn.CrossEntropyLoss()
LR_WORDS = ("learning rate",)


def images(n: int, size: int, classes: int = 10, seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=generator)
    return x, torch.randint(0, classes, (n,), generator=generator)


def tokens(n: int = 16, length: int = 6, vocab: int = 50, seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, length), generator=generator), torch.randint(
        0, 5, (n,), generator=generator
    )


def features(n: int = 128, seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 64, generator=generator), torch.randint(0, 10, (n,), generator=generator)


# ----------------------------------------------------------------------------------------------------
# Thin wrappers: a PyTorch module that is not a classifier by itself gets an input and an output map


class EncoderClassifier(nn.Module):
    """Token embedding -> ``nn.TransformerEncoder`` (post-LN or pre-LN) -> mean over tokens -> Linear."""

    def __init__(self, norm_first: bool, vocab: int = 50, dim: int = 32, classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(dim, 4, 64, dropout=0.0, batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


class RecurrentClassifier(nn.Module):
    """``nn.LSTM`` or ``nn.GRU`` (sequence-first, as PyTorch's default) -> last output -> Linear."""

    def __init__(self, cell: type[nn.RNNBase], vocab: int = 50, dim: int = 16, classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.rnn = cell(dim, 32, num_layers=2)
        self.head = nn.Linear(32, classes)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(self.embed(x).transpose(0, 1))  # (T, B, H)
        return self.head(out[-1])


def dict_loss(output: dict[str, Tensor], target: Tensor) -> Tensor:
    """Cross-entropy on the 'out' entry of a segmentation model's dict, per pixel."""
    return nn.functional.cross_entropy(output["out"], target)


def segmentation_batch() -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(16, 3, 32, 32, generator=generator), torch.randint(
        0, 3, (16, 32, 32), generator=generator
    )


@dataclass(frozen=True)
class Case:
    """A model, its loss and batch, and what diagnose should say."""

    build: Callable[[], nn.Module]
    loss: Callable[..., Tensor] | str
    batch: Callable[[], tuple[Tensor, Tensor]]
    kwargs: tuple[tuple[str, object], ...] = ()


def _seeded(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        torch.manual_seed(0)
        return build()

    return make


HEALTHY = {
    "resnet18": Case(
        _seeded(lambda: torchvision.models.resnet18(num_classes=10)), CE, lambda: images(16, 32)
    ),
    "mobilenet_v3_small": Case(
        _seeded(lambda: torchvision.models.mobilenet_v3_small(num_classes=10)), CE, lambda: images(16, 32)
    ),
    "squeezenet1_1": Case(
        _seeded(lambda: torchvision.models.squeezenet1_1(num_classes=10)), CE, lambda: images(16, 64)
    ),
    "efficientnet_b0": Case(
        _seeded(lambda: torchvision.models.efficientnet_b0(num_classes=10)), CE, lambda: images(16, 32)
    ),
    "regnet_x_400mf": Case(
        _seeded(lambda: torchvision.models.regnet_x_400mf(num_classes=10)), CE, lambda: images(16, 32)
    ),
    "shufflenet_v2_x0_5": Case(
        _seeded(lambda: torchvision.models.shufflenet_v2_x0_5(num_classes=10)), CE, lambda: images(16, 32)
    ),
    "googlenet (functional, in-place ReLU)": Case(
        _seeded(lambda: torchvision.models.googlenet(num_classes=10, aux_logits=False, init_weights=True)),
        CE,
        lambda: images(16, 64),
    ),
    "vit (tiny VisionTransformer, zero head)": Case(
        _seeded(
            lambda: torchvision.models.VisionTransformer(
                image_size=32,
                patch_size=8,
                num_layers=2,
                num_heads=2,
                hidden_dim=32,
                mlp_dim=64,
                num_classes=10,
            )
        ),
        CE,
        lambda: images(16, 32),
    ),
    "transformer encoder, post-LN": Case(_seeded(lambda: EncoderClassifier(False)), CE, tokens),
    "transformer encoder, pre-LN": Case(_seeded(lambda: EncoderClassifier(True)), CE, tokens),
    "lstm": Case(_seeded(lambda: RecurrentClassifier(nn.LSTM)), CE, tokens),
    "gru": Case(_seeded(lambda: RecurrentClassifier(nn.GRU)), CE, tokens),
    "lraspp (returns a dict)": Case(
        _seeded(lambda: lraspp_mobilenet_v3_large(num_classes=3, weights=None, weights_backbone=None)),
        dict_loss,
        segmentation_batch,
    ),
}

DISEASES = (
    "non_finite",
    "forward_blowup",
    "forward_collapse",
    "exploding",
    "vanishing",
    "dead",
    "saturated",
    "initial_loss",
)


def run(case: Case) -> DiagnosisReport:
    return diagnose(case.build(), case.loss, case.batch(), **dict(case.kwargs))


def assert_every_parameter_is_covered(model: nn.Module, report: DiagnosisReport) -> None:
    """Every parameter is a layer weight or one row of ``report.parameters``, exactly once."""
    layer_ids = [id(p) for _, m in diagnosis_layers(model) for p in layer_weights(m)]
    names = {id(p): name for name, p in model.named_parameters()}
    assert len(set(layer_ids)) == len(layer_ids)
    others = [p.name for p in report.parameters]
    assert sorted(others + [names[i] for i in layer_ids]) == sorted(names.values())
    assert sum(layer.n_weights for layer in report.layers) + sum(p.numel for p in report.parameters) == sum(
        p.numel() for p in model.parameters()
    )


@pytest.mark.parametrize("name", list(HEALTHY))
def test_healthy_models_run_and_show_no_disease(name: str) -> None:
    case = HEALTHY[name]
    model = case.build()
    report = diagnose(model, case.loss, case.batch(), **dict(case.kwargs))
    assert report.steps_run >= 1 and not report.non_finite
    assert_every_parameter_is_covered(model, report)
    kinds = [f.kind for f in report.problems]
    assert not set(kinds) & set(DISEASES), report.to_text()
    # update flags on a healthy model concern a minority of its layers, and never ask for a larger step
    moving = [d for d in report.layers if d.status == "ok" and math.isfinite(d.update_ratio)]
    for finding in report.problems:
        assert 2 * len(finding.layers) < len(moving), finding
        assert not suggests_learning_rate(finding)
    # the forward and backward signals were measured at every layer whose module ran
    measured = [d for d in report.layers if math.isfinite(d.forward_ms)]
    assert len(measured) >= len(report.layers) - sum(
        isinstance(m, nn.MultiheadAttention) for m in model.modules()
    )
    assert all(math.isfinite(d.backward_norm) for d in measured if d.status == "ok" and not d.zero_start)


def test_attention_projections_norm_parameters_and_tokens_are_covered() -> None:
    model = HEALTHY["vit (tiny VisionTransformer, zero head)"].build()
    report = run(HEALTHY["vit (tiny VisionTransformer, zero head)"])
    kinds = {d.name: d.kind for d in report.layers}
    assert sum(k == "MultiheadAttention" for k in kinds.values()) == 2  # in_proj_weight, per encoder layer
    roles = {p.name: p.role for p in report.parameters}
    assert roles["class_token"] == "matrix" and roles["encoder.pos_embedding"] == "matrix"
    assert roles["encoder.ln.weight"] == "norm weight" and roles["encoder.ln.bias"] == "norm bias"
    assert all(math.isfinite(p.grad_rms) for p in report.parameters if p.status == "ok")
    # the head starts at 0 (torchvision's choice): reported as a design, diagnosed over several steps
    assert report.layer["heads.head"].zero_start and report.steps_run == 3 and report.steps_asked == 1
    assert [f.kind for f in report.findings] == ["zero_start"] and report.healthy
    assert_every_parameter_is_covered(model, report)


def test_weights_feeding_normalization_report_an_effective_step() -> None:
    report = run(HEALTHY["resnet18"])
    conv1 = report.layer["conv1"]
    assert conv1.feeds_norm and not report.layer["fc"].feeds_norm
    assert conv1.update_ratio > 0.1 and "update_too_large" not in conv1.flags  # scale-invariant: not flagged
    (note,) = [f for f in report.findings if f.kind == "normalized"]
    assert "conv1" in note.layers and "effective learning rate lr/‖W‖²" in note.message
    assert report.healthy
    post, pre = run(HEALTHY["transformer encoder, post-LN"]), run(HEALTHY["transformer encoder, pre-LN"])
    # post-LN: LayerNorm(x + sublayer(x)) is not scale-invariant in any one weight; pre-LN: the embedding
    # feeds the first LayerNorm directly
    assert not any(d.feeds_norm for d in post.layers)
    assert [d.name for d in pre.layers if d.feeds_norm] == ["embed"]


# ----------------------------------------------------------------------------------------------------
# Constructed pathologies, each from PyTorch's own modules


def mlp(depth: int, width: int, activation: type[nn.Module], *, inplace: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(depth):
        layers += [
            nn.Linear(64 if k == 0 else width, width),
            activation(inplace=True) if inplace else activation(),
        ]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def init_linear(model: nn.Module, weight: Callable[[Tensor], object], bias: float = 0.0) -> nn.Module:
    generator = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            with torch.no_grad():
                weight(m.weight) if weight.__code__.co_argcount == 1 else weight(m.weight, generator)
                m.bias.fill_(bias)
    return model


def he_2015() -> nn.Module:
    """He et al. 2015's failure case: 30 ReLU layers of width 64, Xavier-normal weights, zero biases."""
    torch.manual_seed(0)
    return init_linear(mlp(30, 64, nn.ReLU), lambda w, g: nn.init.xavier_normal_(w, generator=g))


def he_relu(scale: float = 1.0, depth: int = 8) -> nn.Module:
    torch.manual_seed(0)
    model = init_linear(
        mlp(depth, 64, nn.ReLU, inplace=True), lambda w, g: nn.init.kaiming_normal_(w, generator=g)
    )
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(scale)
    return model


def default_sigmoid() -> nn.Module:
    torch.manual_seed(0)
    return mlp(10, 64, nn.Sigmoid)  # PyTorch's default initialization


def chaotic_tanh() -> nn.Module:
    torch.manual_seed(0)
    return init_linear(mlp(12, 256, nn.Tanh), lambda w, g: nn.init.orthogonal_(w, gain=24.0, generator=g))


def negative_bias() -> nn.Module:
    model = he_relu()
    with torch.no_grad():
        model[2].bias[:48] = -50.0  # layer 2: 48 of 64 units never fire
    return model


def large_tanh() -> nn.Module:
    torch.manual_seed(0)
    return init_linear(mlp(8, 64, nn.Tanh), lambda w, g: nn.init.normal_(w, 0.0, 1.0, generator=g))


def zero_head() -> nn.Module:
    model = he_relu()
    nn.init.zeros_(model[-1].weight)
    return model


def inf_weight() -> nn.Module:
    model = he_relu()
    with torch.no_grad():
        model[4].weight[0, 0] = math.inf
    return model


def suggests_learning_rate(item: DiagnosisReport | Finding) -> bool:
    """Does a finding (any finding of a report) tell to raise or lower the learning rate?"""
    findings = item.findings if isinstance(item, DiagnosisReport) else (item,)
    return any(
        p in f.suggestion for f in findings for p in ("raise the learning rate", "lower the learning rate")
    )


@pytest.mark.parametrize("lr", [0.05, 0.5])
def test_he_2015_case_points_at_initialization_not_the_learning_rate(lr: float) -> None:
    report = diagnose(he_2015(), CE, features(), lr=lr)
    kinds = [f.kind for f in report.problems]
    assert kinds[0] == "forward_collapse" and "vanishing" not in kinds and "exploding" not in kinds
    collapse = report.problems[0]
    assert (
        collapse.chapters == (CHAPTERS["initialization"],) and "He (Kaiming) for ReLU" in collapse.suggestion
    )
    assert "the learning rate is not the cause" in collapse.suggestion
    assert not suggests_learning_rate(report)
    # the weight gradients look balanced: forward and backward signals collapse together
    ratios = report.columns["ratio"]
    assert ratios.min() > report.thresholds.vanishing
    assert report.layers[-1].forward_gain < 1e-8 and report.layers[0].backward_ratio < 1e-3
    # He initialization of the same network: no collapse
    torch.manual_seed(0)
    fixed = init_linear(mlp(30, 64, nn.ReLU), lambda w, g: nn.init.kaiming_normal_(w, generator=g))
    assert "forward_collapse" not in {f.kind for f in diagnose(fixed, CE, features(), lr=lr).findings}


PATHOLOGIES = {
    # name: (model, expected finding kind, a phrase of its suggestion, chapter key)
    "vanishing (default-init sigmoid)": (
        default_sigmoid,
        "vanishing",
        "replace sigmoid/tanh",
        "sigmoid_bound",
    ),
    "exploding (chaotic tanh)": (chaotic_tanh, "exploding", "clip the gradient norm", "initialization"),
    "forward blow-up (He × 2)": (
        lambda: he_relu(2.0),
        "forward_blowup",
        "variance-preserving scale",
        "initialization",
    ),
    "forward collapse (He et al. 2015)": (
        he_2015,
        "forward_collapse",
        "He (Kaiming) for ReLU",
        "initialization",
    ),
    "dead (negative bias)": (negative_bias, "dead", "start biases at 0", "relu_dying_units"),
    "saturated (tanh, N(0, 1) weights)": (large_tanh, "saturated", "shrink the weights", "sigmoid_bound"),
    "non-finite (an inf weight)": (inf_weight, "non_finite", "clip the gradient norm", "initialization"),
    "initial loss (He × 2)": (
        lambda: he_relu(2.0),
        "initial_loss",
        "output layer's initial weights down",
        "initialization",
    ),
}


@pytest.mark.parametrize("name", list(PATHOLOGIES))
def test_each_pathology_gets_its_finding_and_suggestion(name: str) -> None:
    build, kind, phrase, chapter = PATHOLOGIES[name]
    model = build()
    report = diagnose(model, CE, features())
    assert_every_parameter_is_covered(model, report)
    (finding,) = [f for f in report.findings if f.kind == kind]
    assert finding.is_problem and not report.healthy
    assert phrase in finding.suggestion and CHAPTERS[chapter] in finding.chapters
    assert set(FINDING_KINDS) >= {f.kind for f in report.findings}
    if kind == "non_finite":
        assert report.non_finite_at == "4" and report.layer["4"].status == "non-finite"
    if kind in ("forward_collapse", "forward_blowup", "initial_loss"):
        assert "raise the learning rate" not in " ".join(f.suggestion for f in report.findings)


def test_zero_initialized_head_is_a_design_not_a_vanishing_gradient() -> None:
    report = diagnose(zero_head(), CE, features())
    assert report.steps_asked == 1 and report.steps_run == 3  # the first step cannot reach the hidden layers
    assert report.healthy and [f.kind for f in report.findings] == ["zero_start"]
    (note,) = report.findings
    head = report.layer_names[-1]
    assert note.layers == (head,) and "got exactly 0" in note.message
    assert report.layer[head].zero_start and not report.layer[head].flags
    assert report.record.grad_norm[0, :-1].max() == 0.0 and report.record.grad_norm[-1, :-1].min() > 0
    zero_resnet = _seeded(lambda: torchvision.models.resnet18(num_classes=10, zero_init_residual=True))
    report = diagnose(zero_resnet(), CE, images(16, 32))
    assert report.healthy and {f.kind for f in report.findings} == {"zero_start", "normalized"}
    assert sum(p.zero_start for p in report.parameters) == 8  # the last BatchNorm scale of each block


def test_adam_explains_what_a_small_gradient_means() -> None:
    report = diagnose(he_relu(), CE, features(), optimizer="adam", lr=1e-3)
    (note,) = [f for f in report.findings if f.kind == "adaptive"]
    assert not note.is_problem and "a small gradient does not by itself slow a layer down" in note.message
    custom = diagnose(he_relu(), CE, features(), optimizer=lambda p: torch.optim.RMSprop(p, lr=1e-3))
    assert "adaptive" in {f.kind for f in custom.findings}
    assert "adaptive" not in {f.kind for f in diagnose(he_relu(), CE, features()).findings}
