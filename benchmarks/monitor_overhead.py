"""How much does GradientMonitor slow training down? Median time per step of interleaved loops.

Run: ``OMP_NUM_THREADS=1 python benchmarks/monitor_overhead.py --rounds 40`` (CPU; 20 steps per round by
default, so an every=10 round holds two recorded steps, not one). A 20-layer width-256 ReLU MLP trained with
SGD on random batches of 128; in alternating rounds of one run: the plain loop; the
loop inside ``GradientMonitor(model, optimizer, every=...)`` (the optimizer's step hooks, no calls in the
loop) with the default statistics (``DEFAULT_STATS``: weight-gradient norm, backward-signal norm, forward
rms), with the update ratio added, and with every statistic (``stats="all"``), at every=1 and every=10; and a
naive recorder that copies every gradient to NumPy each step. Time is the process's CPU time; the overhead is
the median over rounds of (variant / plain - 1) within a round, with its interquartile range.
Goal (issue 14): default statistics <= +10 % at every=1 and <= +2 % at every=10.

Measured (session 6, 2-core VM shared with other jobs, 40 rounds, load average 1.8): default +17.1 % [IQR
+15.3, +19.6] at every=1 and +2.7 % [+0.0, +6.2] at every=10 (load 3.5: +17.9 % and +3.3 %; before this
session's changes +48 % and +9 %); the update ratio adds ~18 points at every=1, so it is opt-in; "all" +56 %
and +8 %; naive +39 %. The goals are not met. A recorded step costs ~1.7 ms: 21 forward hooks and 21
backward tensor hooks (a norm each), 21 gradient norms read from memory, one host copy; timed alone these
parts add up to ~0.7 ms, in the training loop they cost more than twice that. The update ratio needs an
exact copy of the weights before the step and their difference after it: 4 passes over 5 MB, ~+12 % alone.
Later the same day (load 4-8, --rounds 40 --steps 20): default +18.1 % [+15.5, +20.3] and +4.3 % [+1.5, +6.5].
Tried and dropped, each timed against the committed monitor in one process, interleaved: hooks that only keep
the output and gradient tensors, reduced at the step with one torch._foreach_norm per list (+28 % against
+15 %: on the CPU _foreach_norm is a loop of the same kernels, the kept tensors are read again from beyond the
cache and stay alive until the step); a pre-hook on the node that made h instead of Tensor.register_hook
(+19 % against +18 %, within noise). Bare hooks, one kind at a time (load 4-6): register_hook with a no-op
+3 to +4 %, with the norm +9 to +11 %; 21 weight-gradient norms in a step pre-hook +7 to +9 %; a forward hook
with a norm +3 %. Summed, these bare parts (+19 to +23 %) are no less than the monitor's own overhead: what
is left is the reductions and hook calls themselves, not the monitor's bookkeeping.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from vgcourse.models import MLP
from vgcourse.monitor import DEFAULT_STATS, GradientMonitor

DEPTH, WIDTH, BATCH, IN_FEATURES, CLASSES = 20, 256, 128, 256, 10
WITH_UPDATES = (*DEFAULT_STATS, "update_ratio")
VARIANTS = {  # name: (every, stats, goal), or None for the loops without a monitor
    "plain": None,
    "default every=1": (1, "default", 0.10),
    "default every=10": (10, "default", 0.02),
    "+update_ratio every=1": (1, WITH_UPDATES, None),
    "+update_ratio every=10": (10, WITH_UPDATES, None),
    "all every=1": (1, "all", None),
    "all every=10": (10, "all", None),
    "naive (numpy copy)": None,
}


def naive_stats(model: nn.Module) -> list[tuple[float, float, float, float]]:
    """Copy every parameter gradient to NumPy; return (norm, mean, std, max |g|) of each."""
    grads = [p.grad.detach().cpu().numpy().copy() for p in model.parameters()]
    return [
        (float(np.linalg.norm(g)), float(g.mean()), float(g.std()), float(np.abs(g).max())) for g in grads
    ]


def make_loop(variant: str) -> Callable[[int], float]:
    """Build a model, optimizer and batch; return ``run(n_steps) -> CPU seconds per step`` for ``variant``."""
    torch.manual_seed(0)
    model = MLP(IN_FEATURES, CLASSES, depth=DEPTH, width=WIDTH, activation="relu")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(BATCH, IN_FEATURES), torch.randint(0, CLASSES, (BATCH,))
    settings = VARIANTS[variant]
    if settings is not None:  # opened for the whole run (closing it would only remove the hooks)
        every, stats, _ = settings
        GradientMonitor(model, optimizer, every=every, stats=stats).__enter__()
    naive = variant.startswith("naive")

    def run(n_steps: int) -> float:
        start = time.process_time()
        for _ in range(n_steps):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            if naive:
                naive_stats(model)
            optimizer.step()
        return (time.process_time() - start) / n_steps

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="alternating rounds (median over them)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per round and variant")
    args = parser.parse_args()
    torch.set_num_threads(1)
    loops = {variant: make_loop(variant) for variant in VARIANTS}
    for run in loops.values():  # warm-up
        run(args.steps)
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for r in range(args.rounds):
        for variant in list(VARIANTS)[:: 1 if r % 2 == 0 else -1]:
            times[variant].append(loops[variant](args.steps))
    plain = np.array(times["plain"])
    threads = torch.get_num_threads()
    print(f"{DEPTH}-layer width-{WIDTH} ReLU MLP, batch {BATCH}, SGD, CPU, {threads} thread(s)")
    print(f"{args.rounds} alternating rounds x {args.steps} steps per variant; CPU time per step:")
    print(f"  {'variant':22s} {'median':>10s} {'overhead':>9s} {'(IQR over rounds)':>22s}  goal")
    for variant, values in times.items():
        ratios = np.array(values) / plain - 1
        low, high = np.percentile(ratios, [25, 75])
        spread = f"[{low:+.1%}, {high:+.1%}]"
        overhead = "" if variant == "plain" else f"{np.median(ratios):+9.1%} {spread:>22s}"
        goal = VARIANTS[variant][2] if VARIANTS[variant] else None
        if goal is not None:
            overhead += f"  <= +{goal:.0%}: {'met' if np.median(ratios) <= goal else 'NOT met'}"
        print(f"  {variant:22s} {np.median(values) * 1e3:7.2f} ms {overhead}")


if __name__ == "__main__":
    main()
