"""Chapter 8, transformers: the model (Post-LN / Pre-LN layouts, masking, residual scaling) and every number
the chapter states."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pytest
import torch

from vgcourse import transformer as tf
from vgcourse.models import named_layers

F64 = torch.float64


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _tokens(batch: int, time: int, vocab: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(vocab, (batch, time), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------------
# The model


@pytest.mark.parametrize("ln", tf.LN_PLACEMENTS)
def test_shapes_and_layer_names(ln: str) -> None:
    model = tf.Transformer(vocab_size=11, seq_len=8, n_layers=3, d_model=16, n_heads=4, ln=ln)
    idx = _tokens(2, 5, 11)
    assert model(idx).shape == (2, 5, 11)
    stream = model.stream(idx)
    assert len(stream) == 4 and all(x.shape == (2, 5, 16) for x in stream)
    names = [name for name, _ in named_layers(model)]
    assert names[:2] == ["token embedding", "position embedding"] and names[-1] == "head"
    assert names[2:8] == [f"block 1 {n}" for n in ("q", "k", "v", "out", "fc", "proj")]
    assert len(names) == 2 + 6 * 3 + 1
    assert isinstance(model.ln_f, torch.nn.LayerNorm) == (ln == "pre")


@pytest.mark.parametrize("causal", [True, False])
def test_causal_mask_hides_the_future(causal: bool) -> None:
    model = tf.Transformer(vocab_size=13, seq_len=6, n_layers=2, d_model=16, n_heads=2, causal=causal)
    idx = _tokens(1, 6, 13)
    changed = idx.clone()
    changed[0, 4] = (idx[0, 4] + 1) % 13
    with torch.no_grad():
        a, b = model(idx), model(changed)
    # positions before the change see the same tokens, so with the mask their logits are identical
    same_past = torch.equal(a[0, :4], b[0, :4])
    assert same_past == causal
    assert not torch.allclose(a[0, 4:], b[0, 4:])
    probs = model.blocks[0].attn.probs(model.embed(idx))
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))
    upper = torch.ones(6, 6, dtype=torch.bool).triu(1)
    assert bool((probs[..., upper] == 0).all()) == causal


@pytest.mark.parametrize("seed", [0, 1])
def test_post_and_pre_layouts(seed: int) -> None:
    """Post-LN: x <- LN(x + G(x)); Pre-LN: x <- x + G(LN(x)), written out by hand for one block."""
    kwargs = dict(vocab_size=7, seq_len=5, n_layers=2, d_model=8, n_heads=2, seed=seed)
    post = tf.Transformer(ln="post", **kwargs).double()
    pre = tf.Transformer(ln="pre", **kwargs).double()
    x = torch.randn(3, 5, 8, dtype=F64, generator=torch.Generator().manual_seed(seed))
    for model in (post, pre):
        block = model.blocks[1]
        ln1, ln2, attn, mlp = block.ln1, block.ln2, block.attn, block.mlp
        if model.ln == "post":
            h = ln1(x + attn(x))
            expected = ln2(h + mlp(h))
        else:
            h = x + attn(ln1(x))
            expected = h + mlp(ln2(h))
        torch.testing.assert_close(block(x), expected, rtol=0, atol=0)
    # the post block's output is normalized (zero mean, unit variance per position); the pre block's is not
    out_post, out_pre = post.blocks[1](x), pre.blocks[1](x)
    torch.testing.assert_close(out_post.mean(-1), torch.zeros(3, 5, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(
        out_post.var(-1, unbiased=False), torch.ones(3, 5, dtype=F64), rtol=1e-4, atol=0
    )
    assert out_pre.var(-1, unbiased=False).sub(1).abs().max() > 0.1


def test_deepnorm_alpha_beta_and_initialization() -> None:
    n = 6
    assert tf.deepnorm_alpha(n) == pytest.approx((2 * n) ** 0.25)
    assert tf.deepnorm_beta(n) == pytest.approx((8 * n) ** -0.25)
    model = tf.Transformer(
        vocab_size=7, seq_len=4, n_layers=n, d_model=64, n_heads=4, ln="post", residual="deepnorm"
    ).double()
    block = model.blocks[2]
    assert block.alpha == pytest.approx((2 * n) ** 0.25)
    x = torch.randn(2, 4, 64, dtype=F64)
    h = block.ln1(block.alpha * x + block.attn(x))
    torch.testing.assert_close(block(x), block.ln2(block.alpha * h + block.mlp(h)), rtol=0, atol=0)
    # Xavier-normal std √(2/(fan_in+fan_out)) times β for v, out, fc, proj; gain 1 for q, k
    beta = tf.deepnorm_beta(n)
    weights = {
        name: (getattr(block.attn, name) if hasattr(block.attn, name) else getattr(block.mlp, name)).weight
        for name in ("q", "k", "v", "out", "fc", "proj")
    }
    for name, w in weights.items():
        gain = 1.0 if name in ("q", "k") else beta
        xavier = math.sqrt(2.0 / sum(w.shape))
        assert w.std().item() == pytest.approx(gain * xavier, rel=0.15), name
    with pytest.raises(ValueError, match="ln='post'"):
        tf.Transformer(vocab_size=7, seq_len=4, n_layers=2, ln="pre", residual="deepnorm")


def test_gpt2_and_inv_sqrt_depth_scaling() -> None:
    n = 8
    base = tf.Transformer(vocab_size=7, seq_len=4, n_layers=n, d_model=64, n_heads=4, seed=3)
    gpt2 = tf.Transformer(vocab_size=7, seq_len=4, n_layers=n, d_model=64, n_heads=4, seed=3, residual="gpt2")
    for b0, b1 in zip(base.blocks, gpt2.blocks, strict=True):
        torch.testing.assert_close(b1.attn.out.weight, b0.attn.out.weight / math.sqrt(2 * n))
        torch.testing.assert_close(b1.mlp.proj.weight, b0.mlp.proj.weight / math.sqrt(2 * n))
        torch.testing.assert_close(b1.mlp.fc.weight, b0.mlp.fc.weight)
    scaled = tf.Transformer(
        vocab_size=7, seq_len=4, n_layers=n, d_model=64, n_heads=4, seed=3, residual="inv_sqrt_depth"
    )
    assert scaled.blocks[0].branch_scale == pytest.approx(1 / math.sqrt(n))
    x = torch.randn(2, 4, 64)
    b = scaled.blocks[0]
    h = x + b.attn(b.ln1(x)) / math.sqrt(n)
    torch.testing.assert_close(b(x), h + b.mlp(b.ln2(h)) / math.sqrt(n))


def test_seeded_without_global_rng() -> None:
    kwargs = dict(vocab_size=7, seq_len=4, n_layers=2, d_model=16, n_heads=2)
    state = torch.random.get_rng_state()
    a = tf.Transformer(seed=5, **kwargs)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = tf.Transformer(generator=torch.Generator().manual_seed(5), **kwargs)
    c = tf.Transformer(seed=6, **kwargs)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.blocks[0].attn.q.weight, c.blocks[0].attn.q.weight)


def test_attention_scale() -> None:
    kwargs = dict(vocab_size=7, seq_len=4, n_layers=1, d_model=16, n_heads=2, seed=1)
    scaled = tf.Transformer(attn_scale="inv_sqrt_d", **kwargs)
    raw = tf.Transformer(attn_scale="none", **kwargs)
    x = scaled.embed(_tokens(1, 4, 7))
    torch.testing.assert_close(
        raw.blocks[0].attn.logits(x), scaled.blocks[0].attn.logits(x) * math.sqrt(8), equal_nan=True
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(ln="middle"), ValueError, "valid choices: post, pre"),
        (dict(residual="fixup"), ValueError, "valid choices: none, gpt2, inv_sqrt_depth, deepnorm"),
        (dict(attn_scale="sqrt"), ValueError, "valid choices: inv_sqrt_d, none"),
        (dict(n_heads=3), ValueError, "n_heads must divide d_model"),
        (dict(n_layers=0), ValueError, "n_layers must be >= 1"),
        (dict(generator=3), TypeError, "torch.Generator"),
        (dict(init_std=-1.0), ValueError, "init_std"),
        (dict(causal=1), TypeError, "causal must be True or False"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    base = dict(vocab_size=7, seq_len=4, n_layers=2, d_model=16, n_heads=2)
    with pytest.raises(error, match=match):
        tf.Transformer(**{**base, **kwargs})


def test_bad_inputs() -> None:
    model = tf.Transformer(vocab_size=7, seq_len=4, n_layers=1, d_model=16, n_heads=2)
    with pytest.raises(ValueError, match="exceeds seq_len=4"):
        model(_tokens(1, 5, 7))
    with pytest.raises(TypeError, match="integer token ids"):
        model(torch.zeros(1, 3))
