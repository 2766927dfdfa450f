"""Claims of the example chapter (a template, see CONTRIBUTING.md).

Every number the chapter's prose relies on is asserted here with ``expect(name, value, op, threshold)``
over the seeds of tests/claims.py, in a test marked ``@pytest.mark.claim`` (``make test`` reruns those
under another CPU kernel family). What every chapter must do anyway (configs check their fields, plots
take ``ax``, explorers update at their extremes) is checked by tests/test_contracts.py: do not repeat it.
"""

from __future__ import annotations

import pytest
from claims import SEEDS, expect

from vgcourse.experiments import example_chapter as ex


@pytest.mark.claim
@pytest.mark.parametrize("seed", SEEDS)
def test_sigmoid_gradient_ratio_is_below_a_millionth_at_depth_10(seed: int) -> None:
    # the prose: "with 10 sigmoid layers of width 32, the first layer's gradient is less than a
    # millionth of the last layer's" (seeds 0-9 give 3e-9 to 1e-8)
    result = ex.run_gain(ex.GainConfig(depth=10, width=32, activation="sigmoid", seed=seed))
    expect("example: sigmoid depth 10, first/last gradient ratio", result.ratio, "<", 1e-6)
