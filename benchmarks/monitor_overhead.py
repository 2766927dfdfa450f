"""How much does GradientMonitor slow training down? Median time per step of interleaved loops.

Run: ``OMP_NUM_THREADS=1 python benchmarks/monitor_overhead.py --rounds 40`` (CPU; 20 steps per round by
default, so an every=10 round holds two recorded steps). A 20-layer width-256 ReLU MLP trained with SGD on
random batches of 128, in alternating rounds of one process: the plain loop; the same loop inside
``GradientMonitor(model, optimizer, every=...)`` (the optimizer's step hooks, no calls in the loop) with the
default statistics (``DEFAULT_STATS``: weight-gradient norm, backward-signal norm, forward rms), with the
update ratio added, and with every statistic (``stats="all"``), at every=1 and every=10; and a naive recorder
that copies every gradient to NumPy each step. Time is the process's CPU time; the overhead is the median over
rounds of (variant / plain - 1) within a round, with its interquartile range. Other jobs on the machine move
the ratios by a few points, so the load average is printed with them.
Goal (issue 14): default statistics <= +10 % at every=1 and <= +2 % at every=10.

Measured (session 7, 60 rounds, 2-core VM shared with other jobs, load average 7.0-7.1): default +16.7 %
[IQR +14.0, +19.6] at every=1, goal not met, and +1.7 % [-2.2, +3.6] at every=10; with the update ratio
+37.5 % and +2.7 %; "all" +60.2 % and +4.3 %; naive +35.9 %. Interleaved in one process with the session-6
monitor (load 6.9, 60 rounds of 10 steps): every=1 +18.2 % against +18.9 %, every=10 -0.1 % against +1.7 %;
five earlier interleaved runs at load 5-10 put every=1 1 to 3 points below it. Session 6, quiet machine
(load 0.1-0.7): +14.5 % and +2.2 %.

Where a recorded step's time goes (session 7, each part alone in the training loop, load 6-11): a norm per
weight gradient (21 reads of 256 KB) about +5 %, a backward pre-hook per layer with its norm about +6 %, a
forward hook per layer with its norm about +3 %. Small operations cost several times more inside the loop
than alone (reading 63 scalar tensors: 71 us there, 13 us when repeated at once): between the large matrix
products their objects and code have left the cache. So on the CPU the monitor reads each number as it is
computed instead of stacking 0-d tensors at the step's end; it hooks the autograd node that made a layer's
output instead of calling Tensor.register_hook; it takes the weight-gradient norms last layer first, so the
optimizer, which starts with the first layers, finds their gradients still in the cache. Tried and dropped:
one torch._foreach_norm over outputs and gradients kept until the step (session 6: +28 % against +15 %);
weight-gradient norms taken in the backward pass while the gradient is fresh, kept when its version is
unchanged at the step (no gain measured); module full backward pre-hooks (+22 % against +6 % for the node
pre-hooks). The rest is the norms themselves: records stay bit-identical, so each is the same
torch.linalg.vector_norm as before.
"""

from __future__ import annotations

import argparse
import os
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
    load_before = os.getloadavg()[0]  # other jobs on the machine disturb the ratios: report the load
    loops = {variant: make_loop(variant) for variant in VARIANTS}
    for run in loops.values():  # warm-up
        run(args.steps)
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for r in range(args.rounds):
        for variant in list(VARIANTS)[:: 1 if r % 2 == 0 else -1]:
            times[variant].append(loops[variant](args.steps))
    plain = np.array(times["plain"])
    threads = torch.get_num_threads()
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (1 min)"
    print(f"{DEPTH}-layer width-{WIDTH} ReLU MLP, batch {BATCH}, SGD, CPU, {threads} thread(s); {load}")
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
