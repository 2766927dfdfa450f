"""Experiments of the example chapter (a template: copy it to start a chapter, see CONTRIBUTING.md).

One run: a plain MLP at initialization, one backward pass of the loss J = mean(f(x)²) on Gaussian inputs,
and the norm of the weight gradient ‖∂J/∂W_l‖ of every hidden layer l = 1..L. Through L layers of a
saturating activation the backward signal is multiplied by W_lᵀ diag(f'(z_l)) at every layer, so the
first layer's gradient is a product of L factors smaller than 1: ``GainResult.ratio`` = ‖∂J/∂W_1‖ /
‖∂J/∂W_L‖ shrinks geometrically with the depth.

The shape every chapter follows: a frozen, keyword-only ``Config`` whose fields declare their constraints
(``vgcourse.config``), a frozen ``Result`` whose derived values are fields filled by the run (a sweep's
values go in a ``vgcourse.config.Grid``), and ``run_x(config) -> Result`` that draws every random number
from the config's seed (no global random state).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vgcourse.config import Config, check_config, integer, one_of, seed_field
from vgcourse.models import MLP

__all__ = ["ACTIVATIONS", "GainConfig", "GainResult", "run_gain"]

ACTIVATIONS = ("sigmoid", "tanh", "relu")


class GainConfig(Config):
    """One gradient profile at initialization."""

    depth: int = integer(10, low=2, high=100)  # hidden layers L
    width: int = integer(32, low=1, high=512)  # units per hidden layer (and input size)
    activation: str = one_of(*ACTIVATIONS, default="sigmoid")
    batch_size: int = integer(64, low=1, high=4096)  # Gaussian inputs x ~ N(0, I)
    seed: int = seed_field()  # the weights (MLP(seed=...)) and the inputs


@dataclass(frozen=True)
class GainResult:
    """One gradient profile: ‖∂J/∂W_l‖ for l = 1..L and the first-to-last ratio."""

    config: GainConfig
    grad_norms: np.ndarray  # [l - 1] = ‖∂J/∂W_l‖ of hidden layer l = 1..L (input to output)
    ratio: float  # ‖∂J/∂W_1‖ / ‖∂J/∂W_L‖: how much smaller the first layer's gradient is than the last's

    @property
    def layers(self) -> np.ndarray:
        """The layer numbers 1..L."""
        return np.arange(1, len(self.grad_norms) + 1)


def run_gain(config: GainConfig) -> GainResult:
    """Build ``MLP(width, 1, depth, width, activation)`` from the seed, backpropagate J = mean(f(x)²) once
    and return every hidden layer's weight-gradient norm."""
    c = check_config(config, GainConfig)
    model = MLP(c.width, 1, c.depth, c.width, c.activation, seed=c.seed)
    x = torch.randn(c.batch_size, c.width, generator=torch.Generator().manual_seed(c.seed))
    model(x).pow(2).mean().backward()
    norms = [float(layer.linear.weight.grad.norm()) for layer in model.layers]
    return GainResult(config=c, grad_norms=np.array(norms), ratio=norms[0] / norms[-1])
