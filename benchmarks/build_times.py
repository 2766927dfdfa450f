"""Time a cold build of the course: each chapter's execution, the book build and optionally `make test`.

Run from the repository root with the project's environment:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/build_times.py [--budget 60] [--test]

1. Each chapter notebook of the toc runs in a fresh kernel, one at a time (benchmarks/chapter_times.py).
2. `jupyter-book build --all -W -n --keep-going` builds the whole book into a temporary folder, so the
   build is cold (no doctrees, every notebook executed) and _build/ is left alone. Goal: 5 minutes.
3. With --test, `make test` runs as CI runs it (lint, book build, every test; output in
   _build/make-test.log): long.
Exits 1 if a chapter fails or exceeds the budget, the build fails or exceeds 5 minutes, or make test fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import chapter_times  # the sibling script: Python puts this script's folder on sys.path

ROOT = Path(__file__).resolve().parents[1]
BOOK_GOAL_S = 300.0


def timed(command: list[str], **kwargs: object) -> tuple[float, int]:
    """Run a command from the repository root; return (wall seconds, exit status)."""
    start = time.perf_counter()
    status = subprocess.run(command, cwd=ROOT, **kwargs).returncode
    return time.perf_counter() - start, status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds allowed per chapter")
    parser.add_argument("--test", action="store_true", help="also time the full `make test` (long)")
    args = parser.parse_args()
    failed = False

    print(
        f"machine: {os.cpu_count()} CPU cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print("chapter execution, fresh kernel each, one at a time:")
    total = 0.0
    for path in chapter_times.chapters():
        try:
            seconds = chapter_times.execute(path, timeout=int(args.budget * 5))
        except Exception as error:  # report and go on: one broken chapter must not hide the others
            print(f"  {path.name:<32} ERROR {type(error).__name__}: {str(error).splitlines()[0][:80]}")
            failed = True
            continue
        total += seconds
        over = seconds > args.budget
        failed |= over
        print(f"  {path.name:<32} {seconds:7.1f} s{f'  over the {args.budget:.0f} s budget' if over else ''}")
    print(f"  {'all chapters':<32} {total:7.1f} s", flush=True)

    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    with tempfile.TemporaryDirectory(prefix="vgcourse-build-") as output:
        command = [
            str(jupyter_book),
            "build",
            "--all",
            "-W",
            "-n",
            "--keep-going",
            "--path-output",
            output,
            ".",
        ]
        seconds, status = timed(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    over = seconds > BOOK_GOAL_S
    failed |= over or status != 0
    note = "FAILED" if status else ("over the 5 min goal" if over else f"goal {BOOK_GOAL_S:.0f} s")
    print(f"book build (jupyter-book build --all, cold) {seconds:7.1f} s  ({note})", flush=True)

    if args.test:
        log = ROOT / "_build" / "make-test.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("w") as handle:
            seconds, status = timed(["make", "test"], stdout=handle, stderr=subprocess.STDOUT)
        failed |= status != 0
        outcome = f"FAILED, see {log.relative_to(ROOT)}" if status else "passed"
        print(f"full test command (make test)              {seconds:7.1f} s  ({outcome})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
