"""Small arguments for every run of the example chapter: tests/test_contracts.py runs each one, checks that it
returns the result its signature names, and draws every plot of the chapter with the results, alone and
into given axes."""

from vgcourse.experiments import example_chapter as ex

SMALL_RUNS = {
    "run_gain": ex.GainConfig(depth=3, width=4, batch_size=8),
}

# A plot is drawn with the result its first argument names (two of them for a sequence of results). A plot
# that needs more, such as a second result, gets its positional arguments here: plot name -> a function of
# the small results by type, e.g. "compare": lambda results: (results[ex.GainResult], results[ex.XResult]).
PLOT_ARGUMENTS = {}
