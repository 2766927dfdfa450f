"""vgcourse.models.keep_outputs: the per-layer outputs of a forward pass and their backward signals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vgcourse.models import MLP, keep_outputs


def _mlp() -> tuple[MLP, torch.Tensor, torch.Tensor]:
    model = MLP(5, 3, 4, 8, "tanh", seed=0).double()
    generator = torch.Generator().manual_seed(1)
    return model, torch.randn(6, 5, generator=generator, dtype=torch.float64), torch.tensor([0, 1, 2] * 2)


def test_outputs_and_gradients_equal_a_hand_written_pass_bit_for_bit() -> None:
    model, x, y = _mlp()
    with keep_outputs([*(layer.linear for layer in model.layers), model.head]) as kept:
        F.cross_entropy(model(x), y).backward()
    h, expected = x, []
    for layer in model.layers:
        z = layer.linear(h)
        z.retain_grad()
        expected.append(z)
        h = layer.activation(z)
    expected.append(model.head(h))
    expected[-1].retain_grad()
    F.cross_entropy(expected[-1], y).backward()
    assert len(kept) == len(expected) == 5
    for got, want in zip(kept, expected, strict=True):
        assert torch.equal(got.detach(), want.detach())
        assert torch.equal(got.grad, want.grad)


def test_hooks_are_removed_on_exit_even_after_an_error() -> None:
    model, x, _ = _mlp()
    with pytest.raises(RuntimeError, match="inside"):
        with keep_outputs(model.layers) as kept:
            model(x)
            raise RuntimeError("inside")
    assert len(kept) == 4
    model(x)
    assert len(kept) == 4
    assert all(not layer._forward_hooks for layer in model.layers)


def test_outputs_without_gradient_are_kept_without_error() -> None:
    model, x, _ = _mlp()
    with torch.no_grad(), keep_outputs([model.head]) as kept:
        model(x)
        model(x)
    assert len(kept) == 2 and kept[0].grad is None and not kept[0].requires_grad
