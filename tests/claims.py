"""The chapters' claims: each threshold the book's prose relies on, asserted and recorded.

A claim test calls ``expect(name, value, op, threshold)`` instead of a bare ``assert``. It asserts the
same thing, and it can also record the measured value, so ``benchmarks/claim_margins.py`` can report
how far each claim sits from its threshold across seeds and CPU kernel families (ATEN_CPU_CAPABILITY).

Environment (set by the margin report; tests need none of it):
    VGCOURSE_CLAIM_SEEDS: comma-separated seeds the seed-parametrized claims run at (default "0,1,2").
    VGCOURSE_CLAIMS_OUT: a file; every ``expect`` appends one JSON line per value to it.
    VGCOURSE_CLAIMS_RECORD_ONLY: "1" records without asserting, so a failing value does not hide the
        values after it.

Mark each test that calls ``expect`` with ``@pytest.mark.claim``: ``make test`` runs the claim tests a
second time under another CPU kernel family, and a claim that holds on one kernel only fails CI.
"""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Callable

import numpy as np

_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _seeds() -> tuple[int, ...]:
    text = os.environ.get("VGCOURSE_CLAIM_SEEDS", "0,1,2")
    return tuple(int(part) for part in text.split(",") if part.strip())


SEEDS: tuple[int, ...] = _seeds()


def expect(name: str, value: object, op: str, threshold: float) -> None:
    """Assert ``value op threshold`` for every element of ``value`` (at least one) and record each element.

    ``name`` identifies the claim across seeds (the same name in every seed's test): write it as
    "chapter: what is claimed", e.g. "relu: large step, last-layer dead fraction".
    """
    if op not in _OPS:
        raise ValueError(f"op must be one of {sorted(_OPS)}; got {op!r}")
    values = np.atleast_1d(np.asarray(value, dtype=float)).ravel()
    # an empty selection holds every claim (np.all of nothing is True): a test error, even when recording
    assert values.size > 0, f"claim {name!r}: no values to check (an empty selection holds any claim)"
    out = os.environ.get("VGCOURSE_CLAIMS_OUT")
    if out:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        capability = os.environ.get("ATEN_CPU_CAPABILITY", "native")
        with open(out, "a") as handle:
            for v in values:
                record = dict(
                    name=name,
                    value=float(v),
                    op=op,
                    threshold=float(threshold),
                    test=test,
                    capability=capability,
                )
                handle.write(json.dumps(record) + "\n")
        if os.environ.get("VGCOURSE_CLAIMS_RECORD_ONLY") == "1":
            return
    held = _OPS[op](values, threshold)
    assert np.all(held), f"claim {name!r}: {values[~held]} not {op} {threshold} (all values: {values})"


def within(name: str, value: object, low: float, high: float) -> None:
    """The claim low < value < high, recorded as two one-sided claims."""
    expect(f"{name} (lower bound)", value, ">", low)
    expect(f"{name} (upper bound)", value, "<", high)
