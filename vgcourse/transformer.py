"""A small, readable transformer: Post-LN and Pre-LN blocks, residual scaling, causal attention.

In the spirit of nanoGPT's ``model.py``: token + position embeddings, a stack of blocks, a linear head.
Each block has two sublayers, multi-head self-attention and an MLP, each wrapped by a residual
connection and a layer norm LN placed one of two ways:

- ``ln="post"`` (the original layout, Vaswani et al. 2017): x <- LN(α·x + Sublayer(x));
- ``ln="pre"`` (GPT-2's layout, Xiong et al. 2020): x <- x + Sublayer(LN(x)), and a final LN before the
  head.

Residual scaling (``residual``):

- ``"none"``: α = 1, every linear map Xavier-normal (or N(0, init_std²)).
- ``"gpt2"``: GPT-2's initialization (Radford et al. 2019): the output projection of each residual
  branch (attention's ``out``, the MLP's ``proj``) has its std divided by √(2L), L blocks (2L residual
  branches).
- ``"inv_sqrt_depth"``: the residual chapter's α: each branch's output is multiplied by 1/√L in the
  forward pass, x <- x + Sublayer(LN(x))/√L (Pre-LN) or x <- LN(x + Sublayer(x)/√L) (Post-LN).
- ``"deepnorm"`` (Post-LN only; Wang et al. 2022, DeepNet): x <- LN(α·x + Sublayer(x)) with
  α = (2L)^{1/4}, and Xavier-normal initialization with gain β = (8L)^{-1/4} for the MLP's two maps and
  attention's value and output projections (gain 1 for query and key): the paper's encoder-only setting,
  L = number of blocks.

Nothing here touches the global random state: weights are drawn from a ``torch.Generator`` (pass
``seed`` or ``generator``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vgcourse._validation import check_choice, check_float, check_int, check_tensor

LN_PLACEMENTS = ("post", "pre")
RESIDUALS = ("none", "gpt2", "inv_sqrt_depth", "deepnorm")
ATTN_SCALES = ("inv_sqrt_d", "none")
WEIGHTS = ("q", "k", "v", "out", "fc", "proj")  # a block's: attention's query, key, value, output; the MLP's


def deepnorm_alpha(n_layers: int) -> float:
    """DeepNorm's residual weight α = (2N)^{1/4} for an encoder-only stack of N blocks (Wang et al. 2022)."""
    return (2.0 * check_int("n_layers", n_layers, minimum=1)) ** 0.25


def deepnorm_beta(n_layers: int) -> float:
    """DeepNorm's initialization gain β = (8N)^{-1/4} for an encoder-only stack of N blocks."""
    return (8.0 * check_int("n_layers", n_layers, minimum=1)) ** -0.25


class SelfAttention(nn.Module):
    """Multi-head self-attention: softmax(s·Q Kᵀ + mask) V per head, then an output projection.

    Q = x W_q, K = x W_k, V = x W_v split into ``n_heads`` heads of size d_head = d_model / n_heads;
    s = 1/√d_head (``scale="inv_sqrt_d"``, Vaswani et al. 2017) or 1 (``scale="none"``). With
    ``causal=True`` position t attends to positions ≤ t only. ``n_heads`` must divide ``d_model``.
    """

    def __init__(self, d_model: int, n_heads: int, causal: bool = True, scale: str = "inv_sqrt_d"):
        super().__init__()
        check_int("d_model", d_model, minimum=1)
        check_int("n_heads", n_heads, minimum=1)
        if d_model % n_heads:
            raise ValueError(f"n_heads must divide d_model; got d_model={d_model}, n_heads={n_heads}")
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.causal = _check_bool("causal", causal)
        self.scale = check_choice("scale", scale, ATTN_SCALES)
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def _heads(self, x: Tensor) -> Tensor:
        batch, time, _ = x.shape
        return x.view(batch, time, self.n_heads, self.d_head).transpose(1, 2)

    def logits(self, x: Tensor) -> Tensor:
        """The attention logits s·Q Kᵀ, shape (batch, heads, T, T), masked entries -inf when causal."""
        q, k = self._heads(self.q(x)), self._heads(self.k(x))
        s = 1.0 / math.sqrt(self.d_head) if self.scale == "inv_sqrt_d" else 1.0
        logits = (q @ k.transpose(-2, -1)) * s
        if self.causal:
            time = x.shape[1]
            mask = torch.ones(time, time, dtype=torch.bool, device=x.device).triu(1)
            logits = logits.masked_fill(mask, float("-inf"))
        return logits

    def probs(self, x: Tensor) -> Tensor:
        """The attention weights softmax(logits) (each row sums to 1), shape (batch, heads, T, T)."""
        return torch.softmax(self.logits(x), dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        batch, time, d_model = x.shape
        heads = self.probs(x) @ self._heads(self.v(x))
        return self.out(heads.transpose(1, 2).reshape(batch, time, d_model))


class MLP(nn.Module):
    """The position-wise MLP: proj(GELU(fc(x))), d_model -> d_ff -> d_model."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.fc = nn.Linear(check_int("d_model", d_model, minimum=1), check_int("d_ff", d_ff, minimum=1))
        self.proj = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """One transformer block: attention then MLP, each a residual sublayer with a layer norm.

    Post-LN: x <- LN₁(α·x + c·Attn(x)); x <- LN₂(α·x + c·MLP(x)).
    Pre-LN:  x <- x + c·Attn(LN₁(x));   x <- x + c·MLP(LN₂(x)).
    α is the residual weight ``alpha`` (1, or DeepNorm's (2L)^{1/4}); c the ``branch_scale`` (1, or 1/√L).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        ln: str = "pre",
        causal: bool = True,
        attn_scale: str = "inv_sqrt_d",
        alpha: float = 1.0,
        branch_scale: float = 1.0,
    ):
        super().__init__()
        self.ln = check_choice("ln", ln, LN_PLACEMENTS)
        self.alpha = check_float("alpha", alpha, minimum=0.0, strict_minimum=True)
        self.branch_scale = check_float("branch_scale", branch_scale, minimum=0.0, strict_minimum=True)
        if ln == "pre" and self.alpha != 1.0:
            raise ValueError(f"alpha != 1 needs ln='post' (DeepNorm is a Post-LN layout); got alpha={alpha}")
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, causal=causal, scale=attn_scale)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, d_ff)

    def forward(self, x: Tensor) -> Tensor:
        for norm, sublayer in ((self.ln1, self.attn), (self.ln2, self.mlp)):
            if self.ln == "post":
                x = norm(self.alpha * x + self.branch_scale * sublayer(x))
            else:
                x = x + self.branch_scale * sublayer(norm(x))
        return x


class Transformer(nn.Module):
    """Token + position embedding, ``n_layers`` blocks, a final LN (Pre-LN only), a linear head.

    Initialization: biases 0, LN weight 1 and bias 0; embeddings N(0, 1); every linear weight
    Xavier-normal (std = √(2/(fan_in + fan_out))) or, with ``init_std``, N(0, init_std²) (GPT-2 uses
    0.02); then the ``residual`` scheme (module docstring) rescales what it names.
    """

    def __init__(
        self,
        vocab_size: int,  # token ids (inputs and outputs)
        seq_len: int,  # the longest sequence (the position embedding's size)
        n_layers: int,  # blocks L
        d_model: int = 32,  # width of the residual stream
        n_heads: int = 4,
        d_ff: int | None = None,  # the MLP's hidden width (default 4·d_model)
        *,
        ln: str = "pre",  # "post" or "pre"
        residual: str = "none",  # "none", "gpt2", "inv_sqrt_depth" or "deepnorm" (post only)
        attn_scale: str = "inv_sqrt_d",  # or "none"
        causal: bool = True,
        init_std: float | None = None,  # None: Xavier normal; else the std of every linear weight
        seed: int = 0,  # of a fresh torch.Generator for the weights, unless ``generator`` is given
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        check_int("vocab_size", vocab_size, minimum=1)
        check_int("seq_len", seq_len, minimum=1)
        check_int("n_layers", n_layers, minimum=1)
        check_int("d_model", d_model, minimum=1)
        d_ff = 4 * d_model if d_ff is None else check_int("d_ff", d_ff, minimum=1)
        check_choice("ln", ln, LN_PLACEMENTS)
        check_choice("residual", residual, RESIDUALS)
        if residual == "deepnorm" and ln != "post":
            raise ValueError("residual='deepnorm' is a Post-LN scheme: it needs ln='post'; got ln='pre'")
        if init_std is not None:
            init_std = check_float("init_std", init_std, minimum=0.0, strict_minimum=True)
        if generator is None:
            generator = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
        elif not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        self.ln, self.residual, self.n_layers, self.seq_len = ln, residual, n_layers, seq_len
        self.alpha = deepnorm_alpha(n_layers) if residual == "deepnorm" else 1.0
        branch_scale = 1.0 / math.sqrt(n_layers) if residual == "inv_sqrt_depth" else 1.0
        # torch's default initialization draws from the global generator: keep its state untouched (every
        # weight is redrawn from ``generator`` below)
        with torch.random.fork_rng(devices=[]):
            self.tok = nn.Embedding(vocab_size, d_model)
            self.pos = nn.Embedding(seq_len, d_model)
            self.blocks = nn.ModuleList(
                Block(d_model, n_heads, d_ff, ln, causal, attn_scale, self.alpha, branch_scale)
                for _ in range(n_layers)
            )
            self.ln_f = nn.LayerNorm(d_model) if ln == "pre" else nn.Identity()
            self.head = nn.Linear(d_model, vocab_size)
        self._initialize(init_std, generator)

    @torch.no_grad()
    def _initialize(self, init_std: float | None, generator: torch.Generator) -> None:
        def draw(weight: Tensor, gain: float = 1.0) -> None:
            fan_out, fan_in = weight.shape
            std = gain * (math.sqrt(2.0 / (fan_in + fan_out)) if init_std is None else init_std)
            weight.normal_(0.0, std, generator=generator)

        for emb in (self.tok, self.pos):
            emb.weight.normal_(0.0, 1.0, generator=generator)
        beta = deepnorm_beta(self.n_layers) if self.residual == "deepnorm" else 1.0
        gpt2 = 1.0 / math.sqrt(2 * self.n_layers) if self.residual == "gpt2" else 1.0
        for block in self.blocks:
            attn, mlp = block.attn, block.mlp
            draw(attn.q.weight)
            draw(attn.k.weight)
            draw(attn.v.weight, beta)
            draw(attn.out.weight, beta * gpt2)
            draw(mlp.fc.weight, beta)
            draw(mlp.proj.weight, beta * gpt2)
        draw(self.head.weight)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()

    def embed(self, idx: Tensor) -> Tensor:
        """x₀ = token embedding + position embedding, shape (batch, T, d_model)."""
        check_tensor("idx", idx, ndim=2)
        if idx.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"idx must hold integer token ids; got dtype {idx.dtype}")
        time, vocab = idx.shape[1], self.tok.num_embeddings
        if time > self.seq_len:
            raise ValueError(f"sequence length {time} exceeds seq_len={self.seq_len}")
        if idx.numel():
            low, high = (int(v) for v in torch.aminmax(idx))  # one pass, one host sync
            if low < 0 or high >= vocab:
                raise ValueError(f"idx must hold token ids in [0, {vocab}); got ids from {low} to {high}")
        return self.tok(idx) + self.pos(torch.arange(time, device=idx.device))

    def stream(self, idx: Tensor) -> list[Tensor]:
        """The residual stream: [x₀, x₁, …, x_L], the input of the first block and each block's output."""
        xs = [self.embed(idx)]
        for block in self.blocks:
            xs.append(block(xs[-1]))
        return xs

    def forward(self, idx: Tensor) -> Tensor:
        """Logits, shape (batch, T, vocab_size)."""
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def layer_names(self) -> list[str]:
        """Names of `vgcourse.models.named_layers(self)`, input to output (embeddings, blocks, head)."""
        names = [f"block {i + 1} {n}" for i in range(self.n_layers) for n in WEIGHTS]
        return ["token embedding", "position embedding", *names, "head"]


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {type(value).__name__} {value!r}")
    return value
