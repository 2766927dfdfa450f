"""The book's table style: significant figures, "never", no index."""

import math

import numpy as np
import pandas as pd
import pytest

from vgcourse.tables import format_value, styled


@pytest.mark.parametrize(
    ("value", "kwargs", "text"),
    [
        (0.0625, {}, "0.0625"),
        (0.123456, {}, "0.123"),
        (123456.0, {}, "1.23e+05"),
        (-0.0012345, {}, "−0.00123"),
        (12.0, {}, "12"),
        (np.int64(7), {}, "7"),
        (math.inf, {"never": True}, "never"),
        (math.inf, {}, "∞"),
        (-math.inf, {"never": True}, "−∞"),
        (math.nan, {}, "–"),
        (True, {}, "yes"),
        ("relu", {}, "relu"),
        (0.123456, {"digits": 2}, "0.12"),
    ],
)
def test_format_value(value, kwargs, text):
    assert format_value(value, **kwargs) == text


def test_styled_hides_the_index_keeps_named_levels_and_writes_never():
    frame = pd.DataFrame(
        {"steps to target": [12.0, math.inf], "loss": [0.123456, math.nan]},
        index=pd.Index(["he", "xavier"], name="init"),
    )
    html = styled(frame, never=["steps to target"], caption="Steps").to_html()
    assert "never" in html and "0.123" in html and "0.123456" not in html and "–" in html
    assert "init" in html and "xavier" in html and "Steps" in html
    assert 'class="row_heading' not in html  # no index column


def test_styled_rejects_bad_input():
    with pytest.raises(TypeError, match="DataFrame"):
        styled([1, 2])
    with pytest.raises(ValueError, match="not in the table"):
        styled(pd.DataFrame({"a": [1.0]}), never=["b"])
    with pytest.raises(ValueError, match="at least 1"):
        styled(pd.DataFrame({"a": [1.0]}), digits=0)
