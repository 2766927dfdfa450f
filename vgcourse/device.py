"""Where tensors live: CUDA when present, else the CPU; and the CPU's subnormal mode."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from vgcourse._validation import check_choice

DEVICES = ("auto", "cpu", "cuda")


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``device`` (one of ``DEVICES`` or a ``torch.device``) as a ``torch.device``; "auto" picks CUDA when
    available, else CPU."""
    if isinstance(device, torch.device):
        return device
    check_choice("device", device, DEVICES)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available; use 'auto' or 'cpu'")
    return torch.device(device)


@contextlib.contextmanager
def flush_denormal() -> Iterator[None]:
    """Inside the block, the CPU flushes subnormal float results to zero (``torch.set_flush_denormal``);
    after it, the mode found before is put back. RuntimeError where the CPU cannot flush."""
    was_on = (torch.tensor(2e-38, dtype=torch.float32) * 0.25).item() == 0.0  # 5e-39 is float32-subnormal
    if not torch.set_flush_denormal(True):
        raise RuntimeError("this CPU cannot flush subnormal numbers to zero (torch.set_flush_denormal)")
    try:
        yield
    finally:
        torch.set_flush_denormal(was_on)
