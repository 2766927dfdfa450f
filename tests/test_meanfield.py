"""Tests for vgcourse.meanfield's argument checks (its numbers are checked in the chapters' test files)."""

from __future__ import annotations

import math

import pytest

from vgcourse.meanfield import gaussian_moments


@pytest.mark.parametrize(
    ("n_points", "error", "match"),
    [
        (True, TypeError, "n_points must be an integer; got bool True"),  # was: (1.0, 0.0, 0.0) for tanh
        (1, ValueError, "n_points must be >= 2; got 1"),  # one node, z = 0: the same (1.0, 0.0, 0.0)
        (0, ValueError, "n_points must be >= 2; got 0"),
        (80.0, TypeError, "n_points must be an integer; got float"),
    ],
)
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_gaussian_moments_checks_n_points(activation: str, n_points: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        gaussian_moments(activation, n_points)


def test_gaussian_moments_default_and_explicit_n_points_agree() -> None:
    assert gaussian_moments("tanh") == gaussian_moments("tanh", 80)
    d2, var, second = gaussian_moments("tanh", 2)  # the smallest rule: nodes ±1, weights 1/2
    assert d2 == pytest.approx((1 - math.tanh(1) ** 2) ** 2)
    assert var == second == pytest.approx(math.tanh(1) ** 2)
