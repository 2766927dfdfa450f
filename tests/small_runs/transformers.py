"""Small arguments for every run of this chapter: tests/test_contracts.py runs each one, checks that
it returns the result its signature names, and draws every plot of the chapter with the results."""

from vgcourse.experiments import transformers as ex

SMALL_RUNS = {
    "run_block_jacobian": ex.BlockJacobianConfig(d_model=2),
    "run_identity_path": ex.IdentityPathConfig(
        depths=(1, 2), d_model=4, n_heads=1, seq_len=2, batch=1, vocab_size=2, n_seeds=1
    ),
    "run_gradient_profile": ex.GradientProfileConfig(
        depths=(1, 2), d_model=4, n_heads=1, seq_len=2, batch=1, vocab_size=2, n_seeds=1
    ),
    "run_attention_entropy": ex.AttentionEntropyConfig(
        d_heads=(1, 4), seq_len=2, batch=1, vocab_size=2, n_seeds=1
    ),
    "run_warmup": ex.WarmupConfig(
        lrs=(0.01,),
        seeds=(0,),
        n_layers=1,
        d_model=4,
        n_heads=1,
        warmup_steps=1,
        steps=2,
        batch_size=1,
        n_train=2,
        n_val=1,
        eval_every=1,
    ),
}
