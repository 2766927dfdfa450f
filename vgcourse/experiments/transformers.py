"""The transformers chapter: the residual stream, layer norm's place, residual scaling, attention's softmax.

A block has two residual sublayers G (attention, then the MLP); x the sublayer's input, J_G = ∂G/∂x:

- Post-LN (Vaswani et al. 2017), x <- LN(x + G(x)):   J = J_LN(x + G(x))·(I + J_G);
- Pre-LN (Xiong et al. 2020),     x <- x + G(LN(x)):   J = I + J_G(LN x)·J_LN(x).

Pre-LN keeps an identity term in every factor; Post-LN sends every path through
J_LN(z) = diag(γ)/σ(z)·(I − 11ᵀ/d − ẑẑᵀ/d), which at initialization divides by σ(z) > 1. All the
measurements at initialization use random tokens and next-token targets from ``vocab_size`` ids and the
mean cross-entropy over every position; the training half sorts short sequences with Adam.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vgcourse._cache import copied_cache
from vgcourse._validation import check_int
from vgcourse.config import Config, Grid, check_config, integer, nonempty, one_of, positive, seed_field
from vgcourse.data import DataSplit
from vgcourse.models import named_layers
from vgcourse.monitor import snapshot
from vgcourse.training import History, TrainConfig, loss_value, train
from vgcourse.transformer import WEIGHTS, Transformer

if TYPE_CHECKING:
    from vgcourse.diagnose import DiagnosisReport


VARIANTS = {  # the stacks the chapter compares: label -> (LN placement, residual scaling; see Transformer)
    "Post-LN": ("post", "none"),
    "Pre-LN": ("pre", "none"),
    "Pre-LN, GPT-2 init": ("pre", "gpt2"),
    "Pre-LN, branch 1/√L": ("pre", "inv_sqrt_depth"),
    "DeepNorm (Post-LN)": ("post", "deepnorm"),
}


def _random_batch(config: Any, seed: int) -> tuple[Tensor, Tensor]:
    """Token ids and next-token targets, each (batch, seq_len), uniform over ``vocab_size`` ids (drawn from
    seed + 10⁴, a stream apart from the weights')."""
    generator = torch.Generator().manual_seed(seed + 10_000)
    idx = torch.randint(config.vocab_size, (config.batch, config.seq_len), generator=generator)
    return idx, torch.randint(config.vocab_size, (config.batch, config.seq_len), generator=generator)


_CE = functools.partial(loss_value, loss="cross_entropy")  # mean over every position: logits (B, T, V)


def _stack(config: Any, n_layers: int, seed: int, ln: str, residual: str = "none") -> Transformer:
    """A Transformer with ``n_layers`` blocks and the sizes of ``config``."""
    sizes = (config.vocab_size, config.seq_len, n_layers, config.d_model, config.n_heads)
    return Transformer(*sizes, ln=ln, residual=residual, seed=seed)


def _n_heads_divide(config: Any) -> None:
    if config.d_model % config.n_heads:
        raise ValueError(
            f"n_heads must divide d_model; got d_model={config.d_model}, n_heads={config.n_heads}"
        )


# ----------------------------------------------------------------------------------------------------
# The two Jacobians, checked against autograd


class BlockJacobianConfig(Config):
    """One MLP sublayer at one position (float64): its Jacobian by autograd against the formula."""

    d_model: int = integer(16, low=2, high=256)
    seed: int = seed_field()


@dataclass(frozen=True)
class BlockJacobianResult:
    """Max |autograd − formula| of each Jacobian."""

    config: BlockJacobianConfig
    post_error: float  # J_LN(x + G(x))(I + J_G(x)), for x <- LN(x + G(x))
    pre_error: float  # I + J_G(LN x) J_LN(x), for x <- x + G(LN(x))
    ln_error: float  # J_LN(z) = diag(γ)/σ (I − 11ᵀ/d − ẑẑᵀ/d)


def _ln_jacobian(norm: torch.nn.LayerNorm, z: Tensor) -> Tensor:
    """diag(γ)/σ (I − 11ᵀ/d − ẑẑᵀ/d), σ = √(Var z + ε), ẑ = (z − mean z)/σ."""
    d = z.numel()
    sigma = torch.sqrt(z.var(unbiased=False) + norm.eps)
    zhat = (z - z.mean()) / sigma
    centering = torch.eye(d, dtype=z.dtype) - 1.0 / d - torch.outer(zhat, zhat) / d
    return torch.diag(norm.weight) / sigma @ centering


def run_block_jacobian(config: BlockJacobianConfig) -> BlockJacobianResult:
    """Build one block's MLP sublayer and LN, evaluate both layouts' Jacobians at a random x."""
    check_config(config, BlockJacobianConfig)
    d = config.d_model
    model = Transformer(7, 2, 1, d, 1, seed=config.seed).double()
    block = model.blocks[0]
    mlp, norm = block.mlp, block.ln2
    x = torch.randn(d, dtype=torch.float64, generator=torch.Generator().manual_seed(config.seed + 1))
    jac = torch.autograd.functional.jacobian
    eye = torch.eye(d, dtype=torch.float64)
    post_auto = jac(lambda v: norm(v + mlp(v)), x)
    post_formula = _ln_jacobian(norm, x + mlp(x)) @ (eye + jac(mlp, x))
    pre_auto = jac(lambda v: v + mlp(norm(v)), x)
    pre_formula = eye + jac(mlp, norm(x)) @ _ln_jacobian(norm, x)
    ln_error = (jac(norm, x) - _ln_jacobian(norm, x)).abs().max()
    return BlockJacobianResult(
        config,
        float((post_auto - post_formula).abs().max().detach()),
        float((pre_auto - pre_formula).abs().max().detach()),
        float(ln_error.detach()),
    )


# ----------------------------------------------------------------------------------------------------
# The identity path: Pre-LN keeps it, Post-LN sends it through an LN Jacobian per sublayer


class _StackShape(Config):
    """The sizes of a stack measured at initialization, shared by the identity-path and profile runs."""

    d_model: int = integer(64, low=4, high=256)
    n_heads: int = integer(4, low=1, high=16)
    seq_len: int = integer(16, low=2, high=256)
    batch: int = integer(8, low=1, high=256)
    vocab_size: int = integer(32, low=2, high=1024)
    n_seeds: int = integer(3, low=1, high=20)
    seed: int = seed_field()

    def check(self) -> None:
        _n_heads_divide(self)


class IdentityPathConfig(_StackShape):
    """Post-LN and Pre-LN stacks of each depth (float64), one batch of random tokens per seed."""

    depths: tuple[int, ...] = nonempty(integer(low=1, high=200), default=(2, 6, 12, 24), unique=True)


@dataclass(frozen=True)
class IdentityPathResult:
    """Grids over (layout, depth, seed) of gradient norms at the stream's input x₀ / at its top x_L."""

    config: IdentityPathConfig
    identity_gain: Grid  # the identity path alone: Post-LN through its 2L LN Jacobians, Pre-LN exactly 1
    inverse_sigma: Grid  # Post-LN's bound ‖(∏_k 1/σ(z_k,t))·∂ℓ/∂x_L,t‖ position by position (Pre-LN: 1)
    full_gain: Grid  # every path, by autograd

    def per_sublayer(self, layout: str = "post") -> np.ndarray:
        """(depth, seed): the identity gain's geometric mean per sublayer, gain^(1/(2L))."""
        depths = np.asarray(self.config.depths, dtype=float)[:, None]
        return self.identity_gain.sel(layout=layout).values ** (1.0 / (2.0 * depths))


def _path_gains(model: Transformer, idx: Tensor, targets: Tensor) -> tuple[float, float, float]:
    """‖∂ℓ/∂x₀‖ / ‖∂ℓ/∂x_L‖ of one stack: along the identity path (∂ℓ/∂x_L sent back through the LN
    Jacobians alone, vector-Jacobian products at the recorded LN inputs), Post-LN's bound ∏ 1/σ (both 1
    for Pre-LN), and along every path (autograd)."""
    inputs: list[tuple[torch.nn.LayerNorm, Tensor]] = []
    handles = [
        norm.register_forward_pre_hook(lambda module, args: inputs.append((module, args[0])))
        for block in model.blocks
        for norm in (block.ln1, block.ln2)
    ]
    with torch.enable_grad():
        try:
            xs = model.stream(idx)
        finally:  # the VJPs below call the norms again: record only the forward pass
            for handle in handles:
                handle.remove()
        loss = _CE(model.head(model.ln_f(xs[-1])), targets)
        g_top, g0 = torch.autograd.grad(loss, [xs[-1], xs[0]], retain_graph=True)
        top_norm = float(torch.linalg.norm(g_top))
        full = float(torch.linalg.norm(g0)) / top_norm
        if model.ln == "pre":
            return 1.0, 1.0, full
        v = g_top
        for norm, z in reversed(inputs):
            (v,) = torch.autograd.grad(norm(z), z, v, retain_graph=True)
    sigma = [torch.sqrt(z.detach().var(-1, unbiased=False) + norm.eps) for norm, z in inputs]
    # each position's LN Jacobians shrink its gradient by at most ∏ 1/σ (γ = 1 at init)
    bound = torch.linalg.norm(torch.stack(sigma).reciprocal().prod(0).unsqueeze(-1) * g_top)
    return float(torch.linalg.norm(v)) / top_norm, float(bound) / top_norm, full


def run_identity_path(config: IdentityPathConfig) -> IdentityPathResult:
    """For each layout, depth and seed: ``_path_gains`` of a float64 stack on a batch of random tokens."""
    check_config(config, IdentityPathConfig)
    layouts = ("post", "pre")
    identity, inv_sigma, full = (np.ones((2, len(config.depths), config.n_seeds)) for _ in range(3))
    for i, ln in enumerate(layouts):
        for j, depth in enumerate(config.depths):
            for s in range(config.n_seeds):
                model = _stack(config, depth, config.seed + s, ln).double()
                batch = _random_batch(config, config.seed + s)
                identity[i, j, s], inv_sigma[i, j, s], full[i, j, s] = _path_gains(model, *batch)
    axes = {"layout": layouts, "depth": config.depths, "seed": range(config.n_seeds)}
    return IdentityPathResult(
        config,
        Grid(identity, name="identity gain", **axes),
        Grid(inv_sigma, name="inverse sigma", **axes),
        Grid(full, name="full gain", **axes),
    )


# ----------------------------------------------------------------------------------------------------
# Per-block gradient norms and the stream's size, across depth and residual scaling


class GradientProfileConfig(_StackShape):
    """The stacks ``variants`` (labels of ``VARIANTS``) at each depth, ``n_seeds`` networks each, one
    forward and backward pass per network on a batch of random tokens with random targets."""

    variants: tuple[str, ...] = nonempty(one_of(*VARIANTS), default=tuple(VARIANTS), unique=True)
    depths: tuple[int, ...] = nonempty(integer(low=1, high=200), default=(2, 6, 12, 24), unique=True)


@dataclass(frozen=True)
class GradientProfileResult:
    """Grids over (variant, depth, seed); a trailing block axis is NaN beyond each depth."""

    config: GradientProfileConfig
    grad_norm: Grid  # (block, weight): ‖∂ℓ/∂W‖_F of each block's six ``WEIGHTS``
    stream_rms: Grid  # (block + 1): RMS of the stream x_0, x_1, …, x_L over every coordinate
    update_ratio: Grid  # (block): ‖x_l − x_{l−1}‖ / ‖x_{l−1}‖, how much block l changes the stream
    loss: Grid  # the loss at initialization
    token_cosine: Grid  # (block + 1): mean cosine between two positions' vectors in x_l (1: all alike)

    def profile(self, variant: str, depth: int, weight: str = "proj") -> np.ndarray:
        """(seed, block): ‖∂ℓ/∂W‖_F of ``weight`` in blocks 1..depth."""
        return self.grad_norm.sel(variant=variant, depth=depth).values[:, :depth, WEIGHTS.index(weight)]

    def stream(self, variant: str, depth: int) -> np.ndarray:
        """(seed, block + 1): RMS of the stream x_0, x_1, …, x_depth."""
        return self.stream_rms.sel(variant=variant, depth=depth).values[:, : depth + 1]

    def last_block(self, variant: str, weight: str = "proj") -> np.ndarray:
        """(depth, seed): the gradient norm of ``weight`` in the last block, at each depth."""
        return np.stack([self.profile(variant, d, weight)[:, -1] for d in self.config.depths])

    def spread(
        self, variant: str, depth: int, weight: str = "proj", stream_scaled: bool = False
    ) -> np.ndarray:
        """(seed,): max / min over blocks of the gradient norm (1 = level); ``stream_scaled``: of
        ‖∂ℓ/∂W_l‖·RMS(x_{l−1}), what is left once each block's LN (which divides by that size) is undone."""
        p = self.profile(variant, depth, weight)
        if stream_scaled:
            p = p * self.stream(variant, depth)[:, :depth]
        return p.max(axis=1) / p.min(axis=1)

    def first_over_last(self, variant: str, depth: int, weight: str = "proj") -> np.ndarray:
        """(seed,): gradient norm in block 1 / in block L."""
        p = self.profile(variant, depth, weight)
        return p[:, 0] / p[:, -1]

    def depth_slope(self, variant: str, weight: str = "proj", low: int | None = None) -> np.ndarray:
        """(seed,): slope of log(last-block gradient) against log L over the depths ≥ ``low`` (all when
        None): −1/2 is the 1/√L law."""
        depths = np.asarray(self.config.depths, dtype=float)
        keep = depths >= (low if low is not None else depths.min())
        values = np.log(self.last_block(variant, weight)[keep])
        x = np.log(depths[keep])
        return np.array([np.polyfit(x, values[:, s], 1)[0] for s in range(values.shape[1])])

    def to_frame(self, weight: str = "proj") -> Any:
        """One row per variant and depth: seed means of the gradient in block 1 and block L, their ratio,
        and the stream's growth RMS(x_L)/RMS(x_0)."""
        import pandas as pd

        rows = []
        for variant, depth in itertools.product(self.config.variants, self.config.depths):
            p = self.profile(variant, depth, weight)
            s = self.stream(variant, depth)
            rows.append(
                {
                    "stack": variant,
                    "blocks L": depth,
                    f"‖∂ℓ/∂W‖ block 1 ({weight})": p[:, 0].mean(),
                    f"‖∂ℓ/∂W‖ block L ({weight})": p[:, -1].mean(),
                    "block 1 / block L": (p[:, 0] / p[:, -1]).mean(),
                    "RMS(x_L) / RMS(x_0)": (s[:, depth] / s[:, 0]).mean(),
                }
            )
        return pd.DataFrame(rows)


def run_gradient_profile(config: GradientProfileConfig) -> GradientProfileResult:
    """Build each stack, run one batch through it, record per-block gradient norms (``monitor.snapshot``
    on the blocks' six weights) and the stream x_0..x_L."""
    check_config(config, GradientProfileConfig)
    n_v, n_d, n_s, top = len(config.variants), len(config.depths), config.n_seeds, max(config.depths)
    grads = np.full((n_v, n_d, n_s, top, len(WEIGHTS)), np.nan)
    rms = np.full((n_v, n_d, n_s, top + 1), np.nan)
    updates = np.full((n_v, n_d, n_s, top), np.nan)
    losses = np.full((n_v, n_d, n_s), np.nan)
    cosines = np.full((n_v, n_d, n_s, top + 1), np.nan)
    for i, label in enumerate(config.variants):
        for j, depth in enumerate(config.depths):
            for s in range(n_s):
                seed = config.seed + s
                model = _stack(config, depth, seed, *VARIANTS[label])
                idx, targets = _random_batch(config, seed)
                blocks = named_layers(model)[2:-1]  # "block l w" for the six WEIGHTS of every block
                record = snapshot(model, idx, targets, _CE, layers=blocks)
                grads[i, j, s, :depth] = record.grad_norm[0].reshape(depth, len(WEIGHTS))
                with torch.no_grad():
                    xs = model.stream(idx)
                    losses[i, j, s] = float(_CE(model.head(model.ln_f(xs[-1])), targets))
                rms[i, j, s, : depth + 1] = [float(x.square().mean().sqrt()) for x in xs]
                updates[i, j, s, :depth] = [
                    float(torch.linalg.norm(b - a) / torch.linalg.norm(a)) for a, b in itertools.pairwise(xs)
                ]
                cosines[i, j, s, : depth + 1] = [token_cosine(x) for x in xs]
    axes = {"variant": config.variants, "depth": config.depths, "seed": range(n_s)}
    return GradientProfileResult(
        config,
        Grid(grads, name="gradient norm", **axes),
        Grid(rms, name="stream RMS", **axes),
        Grid(updates, name="update ratio", **axes),
        Grid(losses, name="loss", **axes),
        Grid(cosines, name="token cosine", **axes),
    )


def token_cosine(x: Tensor) -> float:
    """Mean cosine similarity between the vectors of two different positions of a sequence, x (B, T, d),
    averaged over the T(T − 1) ordered pairs and the batch."""
    unit = F.normalize(x, dim=-1)
    gram = unit @ unit.transpose(-1, -2)
    time = x.shape[1]
    if time < 2:
        raise ValueError("token_cosine needs at least two positions")
    return float(
        ((gram.sum((-1, -2)) - gram.diagonal(dim1=-2, dim2=-1).sum(-1)) / (time * (time - 1))).mean()
    )


# ----------------------------------------------------------------------------------------------------
# Attention's own saturation: the softmax of large logits


def softmax_jacobian(p: Tensor) -> Tensor:
    """∂softmax/∂logits = diag(p) − ppᵀ for each row p (last dim), shape (..., T, T)."""
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)


class AttentionEntropyConfig(Config):
    """One attention layer (one head of size d_head, no mask) at initialization, for each d_head, with
    and without the 1/√d_head scale; its input is LN of random token + position embeddings."""

    d_heads: tuple[int, ...] = nonempty(integer(low=1, high=1024), default=(4, 16, 64, 256), unique=True)
    seq_len: int = integer(16, low=2, high=256)
    batch: int = integer(16, low=1, high=256)
    vocab_size: int = integer(32, low=2, high=1024)
    n_seeds: int = integer(3, low=1, high=20)
    seed: int = seed_field()


@dataclass(frozen=True)
class AttentionEntropyResult:
    """Grids over (scale: "inv_sqrt_d" or "none", d_head, seed) of the attention rows' statistics."""

    config: AttentionEntropyConfig
    entropy: Grid  # mean row entropy −Σ p log p (nats); ln(seq_len) is uniform attention
    max_prob: Grid  # mean over rows of the largest weight max_j p_j
    logit_std: Grid  # std of the logits
    jacobian_norm: Grid  # mean over rows of ‖diag(p) − ppᵀ‖_F
    logit_grad: Grid  # ‖∂ℓ/∂logits‖ / ‖∂ℓ/∂p‖ for a random upstream gradient ∂ℓ/∂p
    uniform_entropy: float  # ln(seq_len): the entropy of uniform attention (the most a row can have)


def run_attention_entropy(config: AttentionEntropyConfig) -> AttentionEntropyResult:
    """Attention weights of a one-block, one-head Pre-LN model's attention on LN(x₀), x₀ = embeddings."""
    check_config(config, AttentionEntropyConfig)
    scales = ("inv_sqrt_d", "none")
    shape = (2, len(config.d_heads), config.n_seeds)
    out = {
        name: np.zeros(shape) for name in ("entropy", "max_prob", "logit_std", "jacobian_norm", "logit_grad")
    }
    for i, scale in enumerate(scales):
        for j, d_head in enumerate(config.d_heads):
            for s in range(config.n_seeds):
                seed = config.seed + s
                model = Transformer(
                    config.vocab_size, config.seq_len, 1, d_head, 1, causal=False, attn_scale=scale, seed=seed
                ).double()
                idx, _ = _random_batch(config, seed)
                block = model.blocks[0]
                with torch.no_grad():
                    h = block.ln1(model.embed(idx))
                    logits = block.attn.logits(h)
                    p = torch.softmax(logits, dim=-1)
                    jac = softmax_jacobian(p)
                    upstream = torch.randn(
                        p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(seed)
                    )
                    down = (jac @ upstream.unsqueeze(-1)).squeeze(-1)  # J symmetric: Jᵀg = Jg
                entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)
                out["entropy"][i, j, s] = float(entropy.mean())
                out["max_prob"][i, j, s] = float(p.max(-1).values.mean())
                out["logit_std"][i, j, s] = float(logits.std())
                out["jacobian_norm"][i, j, s] = float(torch.linalg.matrix_norm(jac).mean())
                out["logit_grad"][i, j, s] = float(torch.linalg.norm(down) / torch.linalg.norm(upstream))
    axes = {"scale": scales, "d_head": config.d_heads, "seed": range(config.n_seeds)}
    grids = {k: Grid(v, name=k, **axes) for k, v in out.items()}
    return AttentionEntropyResult(config, **grids, uniform_entropy=math.log(config.seq_len))


# ----------------------------------------------------------------------------------------------------
# Training with Adam on a task that runs on a CPU in seconds: sort SORT_LEN tokens of SORT_VOCAB (an
# encoder, ``causal=False``: every output position needs the whole input). Every run goes through
# ``vgcourse.training.train``; warmup is ``TrainConfig.warmup_steps`` (linear, then constant).

SORT_VOCAB = 16  # the sorting task's vocabulary: chance accuracy 1/16, chance loss ln 16 ≈ 2.77
SORT_LEN = 8  # tokens per sequence
TRAINED_ACCURACY = 0.5  # a run "trains" when its final validation accuracy (per position) reaches this


def sorting_task(
    n_train: int = 4096,
    n_val: int = 512,
    seq_len: int = SORT_LEN,
    vocab_size: int = SORT_VOCAB,
    seed: int = 0,
) -> DataSplit:
    """x (N, T): ids drawn uniformly from ``vocab_size``; y = x sorted ascending, one class per position."""
    for name, value, low in (("n_train", n_train, 1), ("n_val", n_val, 1), ("seq_len", seq_len, 2)):
        check_int(name, value, minimum=low)
    check_int("vocab_size", vocab_size, minimum=2)
    generator = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    x = torch.randint(vocab_size, (n_train + n_val, seq_len), generator=generator)
    y = x.sort(dim=1).values
    return DataSplit("sorting", x[:n_train], y[:n_train], x[n_train:], y[n_train:], vocab_size)


TRAINING_VARIANTS = {  # the runs of the warmup experiment: label -> (layout, Adam with the config's warmup)
    "Post-LN": ("post", False),
    "Post-LN + warmup": ("post", True),
    "Pre-LN": ("pre", False),
    "Pre-LN + warmup": ("pre", True),
}


class WarmupConfig(Config):
    """Transformers trained with Adam on ``sorting_task`` at each variant, learning rate and seed (the
    seed draws the weights and the minibatch order; ``data_seed`` the data, drawn once)."""

    variants: tuple[str, ...] = nonempty(
        one_of(*TRAINING_VARIANTS), default=("Post-LN", "Post-LN + warmup", "Pre-LN"), unique=True
    )
    lrs: tuple[float, ...] = nonempty(positive(), default=(0.01,), unique=True)  # Adam's peak rates
    seeds: tuple[int, ...] = nonempty(integer(low=0), default=(0,), unique=True)
    n_layers: int = integer(6, low=1, high=48)
    d_model: int = integer(32, low=4, high=256)  # d_ff = 4·d_model
    n_heads: int = integer(4, low=1, high=16)
    warmup_steps: int = integer(50, low=1)  # of the "+ warmup" variants
    steps: int = integer(200, low=1)
    batch_size: int = integer(32, low=1)
    n_train: int = integer(4096, low=1)
    n_val: int = integer(512, low=1)
    data_seed: int = seed_field()
    eval_every: int = integer(25, low=1)  # the last step is always evaluated

    def check(self) -> None:
        _n_heads_divide(self)


@dataclass(frozen=True)
class WarmupResult:
    """Grids over (variant, lr, seed); NaN after a run diverged."""

    config: WarmupConfig
    loss: Grid  # (step): the training loss of every step
    eval_steps: np.ndarray  # steps after which the validation split was evaluated
    val_loss: Grid  # (eval): validation loss at ``eval_steps``
    val_accuracy: Grid  # (eval): validation accuracy per position at ``eval_steps``
    final_accuracy: Grid  # validation accuracy after the last step
    final_val_loss: Grid  # validation loss after the last step
    trained: Grid  # the final accuracy reached ``TRAINED_ACCURACY`` (a diverged run did not)
    diverged: Grid  # the run stopped on a NaN or infinite loss or gradient
    models: dict[tuple[str, float, int], Transformer]  # the trained networks by (variant, lr, seed)

    def distinct_predictions(self, variant: str, lr: float, seed: int) -> int:
        """How many different tokens the trained network predicts over every position of the validation
        split (1: the same token everywhere, whatever the input; no dropout, so the mode does not matter)."""
        data = sorting_task(self.config.n_train, self.config.n_val, seed=self.config.data_seed)
        with torch.no_grad():
            predictions = self.models[variant, lr, seed](data.x_val).argmax(dim=-1)
        return int(torch.unique(predictions).numel())

    def to_frame(self) -> Any:
        """One row per variant and learning rate: mean final validation accuracy and loss over the seeds,
        and how many seeds trained."""
        import pandas as pd

        rows = []
        for variant, lr in itertools.product(self.config.variants, self.config.lrs):
            cell = {"variant": variant, "lr": lr}
            trained = self.trained.sel(**cell).values
            rows.append(
                {
                    "variant": variant,
                    "learning rate": lr,
                    "final validation accuracy": float(np.nanmean(self.final_accuracy.sel(**cell).values)),
                    "final validation loss": float(np.nanmean(self.final_val_loss.sel(**cell).values)),
                    "seeds that trained": f"{int(trained.sum())} of {len(trained)}",
                }
            )
        return pd.DataFrame(rows)


def build_training_model(label: str, config: WarmupConfig, seed: int) -> Transformer:
    """The encoder of the warmup experiment: ``label``'s layout, Xavier-normal weights, ``causal=False``."""
    sizes = (SORT_VOCAB, SORT_LEN, config.n_layers, config.d_model, config.n_heads)
    return Transformer(*sizes, ln=TRAINING_VARIANTS[label][0], causal=False, seed=seed)


def run_warmup(config: WarmupConfig) -> WarmupResult:
    """Train every (variant, lr, seed) with ``train`` and Adam: ``steps`` steps of ``batch_size`` sorted
    sequences, the "+ warmup" variants with lr·min(1, (s + 1)/warmup_steps) at step s. Each run is kept
    for the process (``_training_run``): a run another config (or the exercise ``rescue_post_ln``) made is
    not trained again; each result holds its own copies of the trained models."""
    check_config(config, WarmupConfig)
    shape = (len(config.variants), len(config.lrs), len(config.seeds))
    eval_steps = np.array(
        sorted(set(range(config.eval_every - 1, config.steps, config.eval_every)) | {config.steps - 1})
    )
    loss = np.full((*shape, config.steps), np.nan)
    val_loss = np.full((*shape, len(eval_steps)), np.nan)
    val_accuracy = np.full((*shape, len(eval_steps)), np.nan)
    diverged = np.zeros(shape, dtype=bool)
    models = {}
    for (i, label), (j, lr), (k, seed) in itertools.product(
        enumerate(config.variants), enumerate(config.lrs), enumerate(config.seeds)
    ):
        ln, warmup = TRAINING_VARIANTS[label]
        train_config = TrainConfig(
            steps=config.steps,
            batch_size=config.batch_size,
            eval_every=config.eval_every,
            lr=lr,
            seed=seed,
            warmup_steps=config.warmup_steps if warmup else 0,
            optimizer="adam",
            fused=True,  # the same update in one kernel: about a third less time per step on a CPU
            monitor_every=None,
            device="cpu",
        )
        sizes = (config.n_layers, config.d_model, config.n_heads)
        split = (config.n_train, config.n_val, config.data_seed)
        history, models[label, lr, seed] = _training_run(ln, sizes, split, train_config)
        loss[i, j, k, : history.steps_run] = history.loss
        n = len(history.val_loss)
        val_loss[i, j, k, :n] = history.val_loss
        val_accuracy[i, j, k, :n] = history.val_accuracy
        diverged[i, j, k] = history.diverged
        if history.diverged:
            loss[i, j, k, history.diverged_step :] = np.nan
    axes = {"variant": config.variants, "lr": config.lrs, "seed": config.seeds}
    final = val_accuracy[..., -1]
    return WarmupResult(
        config,
        Grid(loss, name="training loss", **axes),
        eval_steps,
        Grid(val_loss, name="validation loss", **axes),
        Grid(val_accuracy, name="validation accuracy", **axes),
        Grid(final, name="final validation accuracy", **axes),
        Grid(val_loss[..., -1], name="final validation loss", **axes),
        Grid(np.nan_to_num(final, nan=0.0) >= TRAINED_ACCURACY, name="trained", **axes),
        Grid(diverged, name="diverged", **axes),
        models,
    )


@copied_cache(maxsize=64)
def _training_run(
    ln: str, sizes: tuple[int, int, int], split: tuple[int, int, int], train_config: TrainConfig
) -> tuple[History, Transformer]:
    """One run of ``run_warmup``, kept for the process: each call gets its own copy of the trained model."""
    model = Transformer(SORT_VOCAB, SORT_LEN, *sizes, ln=ln, causal=False, seed=train_config.seed)
    n_train, n_val, data_seed = split
    return train(model, sorting_task(n_train, n_val, seed=data_seed), train_config), model


DIAGNOSIS_BATCH = 64  # validation sequences ``diagnose_warmup`` diagnoses on


@dataclass(frozen=True)
class WarmupDiagnosis:
    """``vgcourse.diagnose`` reports of the warmup experiment's networks by variant label, at
    initialization (the weights each run started from) and after training."""

    lr: float  # the networks' learning rate, and that of the one Adam step ``diagnose`` takes
    seed: int
    at_init: dict[str, DiagnosisReport]
    trained: dict[str, DiagnosisReport]


def diagnose_warmup(
    result: WarmupResult, lr: float, seed: int | None = None, variants: tuple[str, ...] | None = None
) -> WarmupDiagnosis:
    """``diagnose`` the networks of ``result`` at ``lr`` (default: the first seed, every variant) at
    initialization and after training: one Adam step at ``lr`` on the first ``DIAGNOSIS_BATCH``
    validation sequences, cross-entropy over every position."""
    from vgcourse.diagnose import diagnose

    config = check_config(result, WarmupResult, "result").config
    seed = config.seeds[0] if seed is None else seed
    data = sorting_task(config.n_train, config.n_val, seed=config.data_seed)
    batch = (data.x_val[:DIAGNOSIS_BATCH], data.y_val[:DIAGNOSIS_BATCH])
    at_init, trained = {}, {}
    for label in config.variants if variants is None else variants:
        fresh = build_training_model(label, config, seed)
        at_init[label] = diagnose(fresh, "cross_entropy", batch, optimizer="adam", lr=lr)
        trained[label] = diagnose(
            result.models[label, lr, seed], "cross_entropy", batch, optimizer="adam", lr=lr
        )
    return WarmupDiagnosis(float(lr), seed, at_init, trained)
