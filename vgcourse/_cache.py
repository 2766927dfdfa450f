"""Process-wide caches that hand every caller its own copy of what they keep."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def copied_cache(maxsize: int | None = 128) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """``functools.lru_cache(maxsize)`` whose every call returns ``copy.deepcopy`` of the kept value: a caller
    who changes what it got (trains a model further, writes into a tensor or an array) changes nothing that
    a later call returns. Copies are bit for bit; ``cache_clear`` and ``cache_info`` are the kept cache's."""

    def decorate(function: Callable[P, T]) -> Callable[P, T]:
        kept = functools.lru_cache(maxsize=maxsize)(function)

        @functools.wraps(function)
        def copy_of_kept(*args: P.args, **kwargs: P.kwargs) -> T:
            return copy.deepcopy(kept(*args, **kwargs))

        wrapper: Any = copy_of_kept
        wrapper.cache_clear, wrapper.cache_info = kept.cache_clear, kept.cache_info
        return copy_of_kept

    return decorate
