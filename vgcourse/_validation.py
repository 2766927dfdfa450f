"""Argument checks shared by every public function: one clear message per mistake."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; else raise naming the valid ones."""
    options = list(choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of: {', '.join(options)}; got {type(value).__name__}")
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(options)}")
    return value


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int (not a bool) within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}; got {value}")
    return value


def check_float(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    strict_minimum: bool = False,
    strict_maximum: bool = False,
) -> float:
    """Return ``float(value)`` if it is a finite real number within the bounds (``strict_minimum`` /
    ``strict_maximum``: that bound is exclusive)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number; got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite; got {value!r}")
    if minimum is not None and (number <= minimum if strict_minimum else number < minimum):
        raise ValueError(f"{name} must be {'>' if strict_minimum else '>='} {minimum}; got {value!r}")
    if maximum is not None and (number >= maximum if strict_maximum else number > maximum):
        raise ValueError(f"{name} must be {'<' if strict_maximum else '<='} {maximum}; got {value!r}")
    return number


def check_tensor(name: str, value: Any, ndim: int | Iterable[int] | None = None) -> torch.Tensor:
    """Return ``value`` if it is a tensor with one of the allowed numbers of dimensions."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in allowed:
            shapes = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be {shapes}; got shape {tuple(value.shape)}")
    return value
