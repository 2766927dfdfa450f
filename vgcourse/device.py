"""Where tensors live: CUDA when present, else the CPU."""

from __future__ import annotations

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
