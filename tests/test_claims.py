"""tests/claims.py: a claim holds only where every value it is given meets its threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest
from claims import expect, within


def test_expect_checks_every_value() -> None:
    expect("claims: scalar", 0.5, "<", 1)
    expect("claims: array", np.array([[0.1, 0.2], [0.3, 0.4]]), "<=", 0.4)
    with pytest.raises(AssertionError, match=r"\[0.5\] not < 0.5"):
        expect("claims: one value on the threshold", [0.1, 0.5], "<", 0.5)
    with pytest.raises(AssertionError):
        expect("claims: NaN", [0.1, math.nan], "<", 1)  # NaN meets no threshold
    with pytest.raises(ValueError, match="op must be one of"):
        expect("claims: op", 1.0, "==", 1.0)


@pytest.mark.parametrize("empty", [[], np.array([]), np.zeros((3, 0)), ()], ids=repr)
def test_expect_refuses_an_empty_value(empty: object) -> None:
    """np.all of nothing is True: a selection that came out empty would hold any claim, its opposite too."""
    with pytest.raises(AssertionError, match="no values to check"):
        expect("claims: empty", empty, ">", 0)
    with pytest.raises(AssertionError, match="no values to check"):
        within("claims: empty", empty, 0, 1)


def test_expect_refuses_an_empty_value_when_recording(tmp_path, monkeypatch) -> None:
    out = tmp_path / "claims.jsonl"
    monkeypatch.setenv("VGCOURSE_CLAIMS_OUT", str(out))
    monkeypatch.setenv("VGCOURSE_CLAIMS_RECORD_ONLY", "1")
    expect("claims: recorded", [2.0, 3.0], "<", 1)  # record-only: a failing value is recorded, not raised
    assert len(out.read_text().splitlines()) == 2
    with pytest.raises(AssertionError, match="no values to check"):
        expect("claims: empty", [], "<", 1)
