"""Tests for vgcourse.bptt's argument checks (its numbers are checked in test_recurrent_networks)."""

from __future__ import annotations

import pytest
import torch

from vgcourse.bptt import lag_terms, scale_recurrent_weights
from vgcourse.models import SequenceModel


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(5, 6, 2, generator=generator), torch.randn(5, 1, generator=generator)


def test_lag_terms_sum_to_autograds_gradient() -> None:
    terms, grad = lag_terms(SequenceModel("rnn", 2, 4, 1, seed=0), *_batch())
    assert terms.shape == (6, 4, 4)
    assert torch.allclose(terms.sum(0), grad, atol=1e-6)


@pytest.mark.parametrize(
    ("arch", "num_layers", "match"),
    [
        ("lstm", 1, "arch 'rnn'"),  # was: RuntimeError, mat1 and mat2 shapes cannot be multiplied
        ("gru", 1, "arch 'rnn'"),
        ("rnn", 2, "one recurrent layer"),  # was: terms that did not sum to the gradient returned beside them
    ],
)
def test_lag_terms_refuses_a_model_it_does_not_unroll(arch: str, num_layers: int, match: str) -> None:
    model = SequenceModel(arch, 2, 4, 1, num_layers=num_layers, seed=0)
    with pytest.raises(ValueError, match=match):
        lag_terms(model, *_batch())


def test_lag_terms_run_on_the_models_device() -> None:
    # "meta" stands in for a GPU: the hand unroll's h_0 was made on the CPU ("Tensor on device cpu is not on
    # the expected device meta"); it starts on the model's device, where the batch is moved.
    model = SequenceModel("rnn", 2, 4, 1, seed=0).to("meta")
    terms, grad = lag_terms(model, *_batch())
    assert terms.device.type == grad.device.type == "meta"
    assert terms.shape == (6, 4, 4) and grad.shape == (4, 4)


def test_scale_recurrent_weights_refuses_a_block_of_spectral_radius_zero() -> None:
    model = SequenceModel("gru", 2, 4, 1, seed=0)
    with torch.no_grad():
        model.rnn.weight_hh_l0[4:8].zero_()  # W_hz; was: ZeroDivisionError: float division by zero
    before = model.rnn.weight_hh_l0.detach().clone()
    with pytest.raises(ValueError, match=r"weight_hh_l0 gate block 1 to spectral radius 0\.9: its own is 0"):
        scale_recurrent_weights(model, 0.9)
    assert torch.equal(model.rnn.weight_hh_l0, before)  # no block rescaled
