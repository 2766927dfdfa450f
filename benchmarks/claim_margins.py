"""How far is each chapter claim from its threshold, across seeds and CPU kernel families?

Run: ``.venv/bin/python benchmarks/claim_margins.py`` (about 10 minutes on 2 cores), or with
``--tests tests/test_relu_dying_units.py`` for one chapter. For each CPU capability (PyTorch's kernel
family: ``default``, plus ``avx2``/``avx512`` where this CPU has them) it runs the claim tests
(``pytest -m claim``) at seeds 0-4 in record-only mode (tests/claims.py), then prints one row per claim:

    margin = (mean - threshold) / spread, signed so that positive is the side the claim needs,

with spread the standard deviation of all its values (every seed, every capability). Rows are sorted
most fragile first. A claim is fragile when a value fails or its margin is under 2 spreads; the script
exits 1 if any claim is. A claim whose values do not vary has an infinite margin.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOAL = 2.0  # spreads
SIGN = {">": 1.0, ">=": 1.0, "<": -1.0, "<=": -1.0}
PASSES = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}


def capabilities() -> list[str]:
    """``default`` and every vector kernel family this CPU supports."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    found = ["default"]
    if " avx2" in flags:
        found.append("avx2")
    if " avx512f" in flags and " avx512bw" in flags and " avx512vl" in flags and " avx512dq" in flags:
        found.append("avx512")
    return found


def native_capability() -> str:
    """The kernel family PyTorch picks on this CPU when ATEN_CPU_CAPABILITY is unset."""
    import torch

    return torch.backends.cpu.get_cpu_capability().lower()


def measure(capability: str, seeds: str, tests: list[str], workers: int, out: Path) -> list[str]:
    """Run the claim tests under one kernel family, recording into `out`; the tests that still failed.

    In record-only mode a recorded claim never fails, so a failure here is a plain assert of a claim test
    (an exact or structural check) that does not hold at some seed or kernel family.
    """
    env = dict(
        os.environ,
        ATEN_CPU_CAPABILITY=capability,
        VGCOURSE_CLAIM_SEEDS=seeds,
        VGCOURSE_CLAIMS_OUT=str(out),
        VGCOURSE_CLAIMS_RECORD_ONLY="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        PYTHONHASHSEED="0",
    )
    command = [sys.executable, "-m", "pytest", "-q", "-rf", "-m", "claim", "-p", "no:cacheprovider", *tests]
    if workers > 1:
        command += ["-n", str(workers)]
    print(f"[{capability}] {' '.join(command[2:])}", file=sys.stderr, flush=True)
    result = subprocess.run(command, cwd=ROOT, env=env, check=False, capture_output=True, text=True)
    failed = [line.split(" ")[1] for line in result.stdout.splitlines() if line.startswith("FAILED ")]
    if result.returncode not in (0, 1) or (result.returncode == 1 and not failed):
        raise SystemExit(
            f"pytest could not run the claim tests:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return [f"{test} [{capability}]" for test in failed]


def summarize(records: list[dict]) -> list[dict]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        groups[record["name"]].append(record)
    rows = []
    for name, group in groups.items():
        op, threshold = group[0]["op"], group[0]["threshold"]
        values = np.array([r["value"] for r in group])
        finite = values[np.isfinite(values)]
        spread = float(np.std(finite, ddof=1)) if finite.size > 1 else 0.0
        failures = int(np.sum(~PASSES[op](values, threshold)))
        mean = float(np.mean(finite)) if finite.size else float("nan")
        distance = SIGN[op] * (mean - threshold)
        margin = distance / spread if spread > 0 else (np.inf if distance > 0 else -np.inf)
        if failures:
            margin = min(margin, 0.0)
        by_cap = defaultdict(list)
        for r in group:
            by_cap[r["capability"]].append(r["value"])
        rows.append(
            dict(
                name=name,
                op=op,
                threshold=threshold,
                n=len(values),
                mean=mean,
                spread=spread,
                min=float(np.min(values)),
                max=float(np.max(values)),
                failures=failures,
                margin=float(margin),
                by_capability={k: [min(v), max(v)] for k, v in by_cap.items()},
            )
        )
    return sorted(rows, key=lambda row: (row["margin"], row["name"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tests", nargs="*", default=["tests"], help="test files or folders (default: tests)"
    )
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds (default 0-4)")
    parser.add_argument(
        "--capabilities",
        default=",".join(capabilities()),
        help="comma-separated ATEN_CPU_CAPABILITY values (default: all this CPU has)",
    )
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers per run (default 2)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument(
        "--other-capabilities",
        action="store_true",
        help="only print the capabilities this CPU has besides its native one, and exit",
    )
    args = parser.parse_args()
    if args.other_capabilities:
        print(" ".join(cap for cap in capabilities() if cap != native_capability()))
        return 0
    with tempfile.TemporaryDirectory() as folder:
        records: list[dict] = []
        failed: list[str] = []
        for capability in args.capabilities.split(","):
            out = Path(folder) / f"{capability}.jsonl"
            out.touch()
            failed += measure(capability, args.seeds, args.tests, args.workers, out)
            records += [json.loads(line) for line in out.read_text().splitlines() if line]
    if not records:
        print("no claim was recorded: are the tests marked @pytest.mark.claim and using tests/claims.py?")
        return 1
    rows = summarize(records)
    print(
        f"{'margin':>8}  {'fails':>5}  {'claim':<64} {'op':>2} {'thresh':>9} {'min':>9} {'mean':>9} "
        f"{'max':>9} {'spread':>8}  n"
    )
    for row in rows:
        print(
            f"{row['margin']:8.2f}  {row['failures']:5d}  {row['name'][:64]:<64} {row['op']:>2} "
            f"{row['threshold']:9.4g} {row['min']:9.4g} {row['mean']:9.4g} {row['max']:9.4g} "
            f"{row['spread']:8.3g}  {row['n']}"
        )
    fragile = [row for row in rows if row["failures"] or row["margin"] < GOAL]
    print(
        f"\n{len(rows)} claims, seeds {args.seeds}, capabilities {args.capabilities}: "
        f"{len(fragile)} fragile (a failing value or a margin under {GOAL:g} spreads); "
        f"smallest margin {rows[0]['margin']:.2f} ({rows[0]['name']})"
    )
    if failed:
        print(f"{len(failed)} claim tests failed on a plain assert (not a recorded claim):")
        print("\n".join(f"  {test}" for test in failed))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 1 if fragile or failed else 0


if __name__ == "__main__":
    sys.exit(main())
