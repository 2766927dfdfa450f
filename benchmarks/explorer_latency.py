"""Median time of one explorer update (recompute, redraw, render to PNG) per chapter explorer, depth <= 50.

Run from the repository root with the project's environment:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/explorer_latency.py [--repeats 7]
Each explorer is updated at its defaults and then at the extremes of its depth-like control (capped at
50), cycling through settings it has not cached; prints the median and the worst update per explorer
and whether the median meets the 150 ms goal.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import matplotlib

matplotlib.use("Agg")

from vgcourse.explorers import explorer_functions
from vgcourse.widgets import Explorer

GOAL_S = 0.150
DEPTH_CONTROLS = ("depth", "blocks", "seq_len", "lag")


def explorers() -> list[tuple[str, Explorer]]:
    """Every chapter explorer at its defaults (``vgcourse.explorers.explorer_functions``)."""
    return [(label, make()) for label, make in explorer_functions().items()]


def settings(explorer: Explorer, repeats: int) -> list[dict]:
    """Defaults, then spread values of the depth-like control (<= 50), or other choices; each new."""
    for name in DEPTH_CONTROLS:
        control = explorer.controls.get(name)
        if control is not None and hasattr(control, "min"):
            low, high = int(control.min), min(int(control.max), 50)
            count = max(1, repeats - 1)
            values = sorted({round(low + (high - low) * k / max(1, count - 1)) for k in range(count)})
            return [{}, *({name: v} for v in values)]
    # no depth-like control: step through the options of the choice controls (uncached settings)
    choices = [
        {name: value}
        for name, control in explorer.controls.items()
        for value in getattr(control, "_options_values", ())
        if value != control.value
    ]
    return [{}, *choices[: max(1, repeats - 1)]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    slow = False
    for label, explorer in explorers():
        explorer.show()  # warm-up: first figure, imports, caches of fixed data
        times = []
        for values in settings(explorer, args.repeats):
            start = time.perf_counter()
            explorer.update(**values)  # recompute, draw and render the PNG the notebook shows
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        slow |= median > GOAL_S
        verdict = "ok" if median <= GOAL_S else f"over the {GOAL_S * 1000:.0f} ms goal"
        print(f"{label:<58} median {median * 1000:6.0f} ms  worst {max(times) * 1000:6.0f} ms  {verdict}")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
