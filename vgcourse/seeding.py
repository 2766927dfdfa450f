"""One call that makes a run repeatable."""

from __future__ import annotations

import random

import numpy as np
import torch

from vgcourse._validation import check_int


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA); return a CPU generator seeded the same.

    Args:
        seed: a non-negative integer.
    """
    check_int("seed", seed, minimum=0)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (seeds the legacy global state that libraries use)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
