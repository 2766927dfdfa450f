"""The transformers chapter: the model (Post-LN / Pre-LN layouts, masking, residual scaling) and every number
the chapter states.

The chapter's experiments measure ``n_seeds`` = 3 networks per setting (seeds 0, 1, 2); here the same
configurations run with one network per seed of ``claims.SEEDS``, and each claim is checked on every one.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from claims import SEEDS, expect, within
from matplotlib.figure import Figure

from vgcourse import transformer as tf
from vgcourse.experiments import transformers as tx
from vgcourse.explorers import transformers as explorers
from vgcourse.models import named_layers
from vgcourse.plots import transformers as plots

F64 = torch.float64


N_NETWORKS = dict(n_seeds=len(SEEDS), seed=min(SEEDS))  # seeds min(SEEDS), min + 1, ...


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


# ----------------------------------------------------------------------------------------------------
# The chapter: Jacobians and the identity path


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_sublayer_jacobian_formulas_match_autograd(seed: int) -> None:
    result = tx.run_block_jacobian(tx.BlockJacobianConfig(seed=seed))
    expect("transformers: Post-LN sublayer Jacobian error", result.post_error, "<", 1e-12)
    expect("transformers: Pre-LN sublayer Jacobian error", result.pre_error, "<", 1e-12)
    expect("transformers: LN Jacobian error", result.ln_error, "<", 1e-12)


def test_softmax_jacobian_and_its_trace_bound() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = (
        torch.randn(50, 7, dtype=F64, generator=generator) * torch.linspace(0.1, 20, 50, dtype=F64)[:, None]
    )
    p = torch.softmax(logits, -1)
    jac = tx.softmax_jacobian(p)
    auto = torch.autograd.functional.jacobian(lambda z: torch.softmax(z, -1), logits[3])
    torch.testing.assert_close(jac[3], auto, rtol=0, atol=1e-15)
    assert bool((torch.linalg.eigvalsh(jac) > -1e-15).all())  # positive semi-definite
    frobenius = torch.linalg.matrix_norm(jac)
    trace = 1 - p.square().sum(-1)
    assert bool((frobenius <= trace + 1e-15).all())
    assert bool((trace <= 2 * (1 - p.max(-1).values) + 1e-15).all())


@pytest.fixture(scope="module")
def identity() -> tx.IdentityPathResult:
    return tx.run_identity_path(tx.IdentityPathConfig(**N_NETWORKS))


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_post_ln_identity_path_shrinks_geometrically(identity: tx.IdentityPathResult, seed: int) -> None:
    s = seed - min(SEEDS)
    post, pre = (
        identity.identity_gain.axes["layout"].index("post"),
        identity.identity_gain.axes["layout"].index("pre"),
    )
    assert np.array_equal(identity.identity_gain.values[pre, :, s], np.ones(len(identity.config.depths)))
    # the bound is exact: a projection divided by sigma, token by token
    assert bool(
        (
            identity.identity_gain.values[post, :, s]
            <= identity.inverse_sigma.values[post, :, s] * (1 + 1e-12)
        ).all()
    )
    within(
        "transformers: Post-LN identity path at the deepest stack",
        identity.identity_gain.values[post, -1, s],
        1e-5,
        1e-3,
    )
    within(
        "transformers: Post-LN identity factor per sublayer", identity.per_sublayer("post")[:, s], 0.75, 0.88
    )
    within("transformers: Post-LN every-path gradient ratio", identity.full_gain.values[post, :, s], 0.2, 4.0)
    expect(
        "transformers: Pre-LN every-path ratio at the deepest stack",
        identity.full_gain.values[pre, -1, s],
        ">",
        2.5,
    )
    full_pre = identity.full_gain.values[pre, :, s]
    expect(
        "transformers: Pre-LN every-path ratio, deepest / shallowest", full_pre[-1] / full_pre[0], ">", 2.0
    )


# ----------------------------------------------------------------------------------------------------
# The chapter: gradient profiles and residual scaling


@pytest.fixture(scope="module")
def profile() -> tx.GradientProfileResult:
    return tx.run_gradient_profile(tx.GradientProfileConfig(**N_NETWORKS))


GPT2, BRANCH, DEEP = "Pre-LN, GPT-2 init", "Pre-LN, branch 1/√L", "DeepNorm (Post-LN)"


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_post_ln_last_block_gradient_does_not_shrink_pre_ln_does(
    profile: tx.GradientProfileResult, seed: int
) -> None:
    s = seed - min(SEEDS)
    depths = profile.config.depths
    post, pre = profile.last_block("Post-LN")[:, s], profile.last_block("Pre-LN")[:, s]
    expect("transformers: Post-LN last block, deepest / shallowest", post[-1] / post[0], ">", 1.0)
    expect("transformers: Pre-LN last block, deepest / shallowest", pre[-1] / pre[0], "<", 0.7)
    expect("transformers: Post-LN / Pre-LN last block at the deepest stack", post[-1] / pre[-1], ">", 3.0)
    within(
        "transformers: Pre-LN depth slope from 6 blocks", profile.depth_slope("Pre-LN", low=6)[s], -0.5, -0.15
    )
    first_over_last = [profile.first_over_last("Post-LN", d)[s] for d in depths]
    within("transformers: Post-LN block 1 / block L", first_over_last, 0.3, 3.0)
    high = depths[-1]
    expect(
        "transformers: Pre-LN block 1 / block L, deepest",
        profile.first_over_last("Pre-LN", high)[s],
        ">",
        2.0,
    )
    ratio = profile.spread("Pre-LN", high)[s] / profile.spread("Pre-LN", high, stream_scaled=True)[s]
    expect("transformers: Pre-LN spread / stream-scaled spread", ratio, ">", 1.5)
    stream = profile.stream_rms.sel(variant="Pre-LN", depth=high).values[s]
    expect("transformers: Pre-LN stream growth", stream[-1] / stream[0], ">", 2.5)


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_residual_scaling_levels_the_profile(profile: tx.GradientProfileResult, seed: int) -> None:
    s = seed - min(SEEDS)
    high = profile.config.depths[-1]
    for label, bound in ((GPT2, 1.2), (BRANCH, 1.3)):
        stream = profile.stream_rms.sel(variant=label, depth=high).values[s]
        expect(f"transformers: {label} stream growth", stream[-1] / stream[0], "<", bound)
    for label in ("Post-LN", DEEP):  # a norm ends every sublayer: RMS 1 (up to LN's epsilon)
        assert np.allclose(profile.stream_rms.sel(variant=label, depth=high).values[s, 1:], 1.0, atol=1e-4)
    expect(
        "transformers: Post-LN last block update",
        profile.update_ratio.sel(variant="Post-LN", depth=high).values[s, -1],
        ">",
        0.6,
    )
    expect(
        "transformers: DeepNorm last block update",
        profile.update_ratio.sel(variant=DEEP, depth=high).values[s, -1],
        "<",
        0.05,
    )
    pre_updates = profile.update_ratio.sel(variant="Pre-LN", depth=high).values[s]
    expect("transformers: Pre-LN first / last block update", pre_updates[0] / pre_updates[-1], ">", 1.5)
    for label, bound in ((GPT2, 1.3), (BRANCH, 1.4), (DEEP, 1.2)):
        expect(f"transformers: {label} profile spread", profile.spread(label, high)[s], "<", bound)
    within("transformers: GPT-2 init depth slope", profile.depth_slope(GPT2)[s], -0.15, 0.15)
    gpt2 = profile.last_block(GPT2)[:, s]
    within("transformers: GPT-2 init last block, deepest / shallowest", gpt2[-1] / gpt2[0], 0.8, 1.2)
    within("transformers: branch 1/sqrt(L) depth slope", profile.depth_slope(BRANCH)[s], -0.65, -0.35)
    within("transformers: DeepNorm depth slope", profile.depth_slope(DEEP)[s], -0.65, -0.4)


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_post_ln_tokens_collapse_and_query_gradients_fade(
    profile: tx.GradientProfileResult, seed: int
) -> None:
    s = seed - min(SEEDS)
    high = profile.config.depths[-1]
    expect(
        "transformers: Post-LN token cosine at x_L",
        profile.token_cosine.sel(variant="Post-LN", depth=high).values[s, -1],
        ">",
        0.95,
    )
    within(
        "transformers: Pre-LN token cosine at x_L",
        profile.token_cosine.sel(variant="Pre-LN", depth=high).values[s, -1],
        0.4,
        0.9,
    )
    for label in (GPT2, BRANCH, DEEP):
        expect(
            f"transformers: {label} token cosine at x_L",
            profile.token_cosine.sel(variant=label, depth=high).values[s, -1],
            "<",
            0.2,
        )
        expect(
            f"transformers: {label} W_Q block 1 / block L",
            profile.first_over_last(label, high, "q")[s],
            "<",
            3.0,
        )
    # a heavy-tailed ratio (38-261 over seeds 0-4): claimed on a log scale, at least one decade
    post_q = profile.first_over_last("Post-LN", high, "q")[s]
    expect("transformers: Post-LN W_Q block 1 / block L (log10)", math.log10(post_q), ">", 1.0)
    expect(
        "transformers: Pre-LN W_Q block 1 / block L",
        profile.first_over_last("Pre-LN", high, "q")[s],
        ">",
        3.0,
    )


@pytest.mark.parametrize("causal", [True, False])
def test_identical_tokens_give_query_and_key_no_gradient(causal: bool) -> None:
    """Each softmax row's gradient sums to zero: with every key and query equal, ∂ℓ/∂W_Q = ∂ℓ/∂W_K = 0."""
    model = tf.Transformer(vocab_size=7, seq_len=6, n_layers=1, d_model=16, n_heads=2, causal=causal).double()
    attn = model.blocks[0].attn
    x = torch.randn(1, 1, 16, dtype=F64, generator=torch.Generator().manual_seed(1)).expand(3, 6, 16)
    upstream = torch.randn(3, 6, 16, dtype=F64, generator=torch.Generator().manual_seed(2))
    (attn(x) * upstream).sum().backward()
    assert attn.v.weight.grad.norm() > 0.1
    assert attn.q.weight.grad.norm() < 1e-12 and attn.k.weight.grad.norm() < 1e-12
    assert tx.token_cosine(x) == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------------
# The chapter: attention's saturation


@pytest.fixture(scope="module")
def attention() -> tx.AttentionEntropyResult:
    return tx.run_attention_entropy(tx.AttentionEntropyConfig(**N_NETWORKS))


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_unscaled_attention_saturates(attention: tx.AttentionEntropyResult, seed: int) -> None:
    s = seed - min(SEEDS)
    d_max = attention.config.d_heads[-1]
    within(
        "transformers: scaled logit std", attention.logit_std.sel(scale="inv_sqrt_d").values[:, s], 0.4, 2.0
    )
    raw_std = attention.logit_std.sel(scale="none").values[-1, s] / math.sqrt(d_max)
    within("transformers: unscaled logit std / sqrt(d_head)", raw_std, 0.7, 1.4)
    expect(
        "transformers: scaled row entropy", attention.entropy.sel(scale="inv_sqrt_d").values[:, s], ">", 2.0
    )
    expect(
        "transformers: unscaled row entropy at the largest head",
        attention.entropy.sel(scale="none").values[-1, s],
        "<",
        0.5,
    )
    expect(
        "transformers: unscaled largest weight", attention.max_prob.sel(scale="none").values[-1, s], ">", 0.8
    )
    jac = (
        attention.jacobian_norm.sel(scale="inv_sqrt_d").values[-1, s]
        / attention.jacobian_norm.sel(scale="none").values[-1, s]
    )
    expect("transformers: softmax Jacobian, scaled / unscaled", jac, ">", 2.0)
    grad = (
        attention.logit_grad.sel(scale="inv_sqrt_d").values[-1, s]
        / attention.logit_grad.sel(scale="none").values[-1, s]
    )
    expect("transformers: gradient to the logits, scaled / unscaled", grad, ">", 1.2)


# ----------------------------------------------------------------------------------------------------
# Plots and the explorer


@pytest.fixture(scope="module")
def small_profile() -> tx.GradientProfileResult:
    return tx.run_gradient_profile(tx.GradientProfileConfig(depths=(2, 4), n_seeds=2, d_model=16, seq_len=6))


def test_plots_within_the_books_figure_limits_and_their_own_arguments(
    small_profile: tx.GradientProfileResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every plot with its default options, alone and into given axes, under the book's figure check:
    # test_contracts' test_every_run_returns_its_result_on_small_arguments_and_its_plots_draw_it; here the
    # options it does not try, each figure passing the book's figure check
    monkeypatch.setenv("VGCOURSE_STRICT_FIGURES", "1")
    figures = [
        plots.layer_profile(small_profile, "Pre-LN", 4, "q"),
        plots.gradient_profiles(small_profile, None),  # every stack, not only Post-LN and Pre-LN
    ]
    assert all(isinstance(f, Figure) for f in figures)
    _, ax = plt.subplots()
    assert plots.last_block_gradient(small_profile, ("Pre-LN",), ax=ax) is ax.figure
    with pytest.raises(ValueError, match="valid choices"):
        plots.gradient_profiles(small_profile, ("Pre-LN", "ReZero"))
    with pytest.raises(ValueError, match="valid choices"):
        plots.layer_profile(small_profile, weight="w")


def test_result_accessors_check_their_arguments(small_profile: tx.GradientProfileResult) -> None:
    assert small_profile.profile("Post-LN", 4).shape == (2, 4)
    stream = small_profile.stream_rms.sel(variant="Pre-LN", depth=2).values  # x_0..x_2, NaN beyond
    assert stream.shape == (2, 5) and np.isfinite(stream[:, :3]).all() and np.isnan(stream[:, 3:]).all()
    assert small_profile.update_ratio.sel(variant="Pre-LN", depth=4).values.shape == (2, 4)
    frame = small_profile.to_frame()
    assert list(frame["blocks L"][:2]) == [2, 4] and len(frame) == 2 * len(tx.VARIANTS)
    with pytest.raises(KeyError, match="depth takes"):
        small_profile.profile("Pre-LN", 6)
    with pytest.raises(KeyError, match="variant takes"):
        small_profile.profile("Sandwich-LN", 2)
    with pytest.raises(ValueError, match="n_heads must divide d_model"):
        tx.GradientProfileConfig(d_model=30, n_heads=4)


def test_explorer_runs_at_defaults_and_extremes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VGCOURSE_STRICT_FIGURES", "1")  # every view must pass the book's figure check
    explorer = explorers.gradient_profile_explorer(n_seeds=1)
    explorer.show()
    assert isinstance(explorer.update(), Figure)
    for values in (
        {"depth": 1, "stack": "Post-LN"},
        {"depth": 48, "stack": "DeepNorm (Post-LN)"},
        {"weight": "q"},
        {"depth": 24, "stack": "Pre-LN, GPT-2 init"},
    ):
        assert isinstance(explorer.update(**values), Figure)
        assert "block 1 / block L" in explorer.text.value
    with pytest.raises(ValueError, match="valid choices"):
        explorers.gradient_profile_explorer(stack="Sandwich")
    with pytest.raises(ValueError):
        explorers.gradient_profile_explorer(depth=100)
