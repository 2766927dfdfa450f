"""Small arguments for every run of the example chapter: tests/test_contracts.py runs each one, checks that it
returns the result its signature names, and draws that result with every plot that takes it."""

from vgcourse.experiments import example_chapter as ex

SMALL_RUNS = {
    "run_gain": ex.GainConfig(depth=3, width=4, batch_size=8),
}
