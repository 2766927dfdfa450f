"""Time each chapter notebook's execution in a fresh kernel, in table-of-contents order.

Run from the repository root with the project's environment:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/chapter_times.py [--budget 60]
Prints one line per chapter and the total; exits 1 if a chapter errors or exceeds the budget.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat

from vgcourse.notebook_execution import SlicedWaitClient  # its waits on the kernel never stall

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from book_toc import chapter_notebooks  # noqa: E402  (_toc.yml as the tests read it)


def chapters() -> list[Path]:
    """The notebooks listed in _toc.yml, in order."""
    return chapter_notebooks()


def execute(path: Path, timeout: int) -> float:
    """Execute one notebook in its own folder; return the wall time in seconds."""
    notebook = nbformat.read(path, as_version=4)
    client = SlicedWaitClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds allowed per chapter")
    args = parser.parse_args()
    total, failed = 0.0, False
    for path in chapters():
        try:
            seconds = execute(path, timeout=int(args.budget * 5))
        except Exception as error:  # report and go on: one broken chapter must not hide the others
            print(f"{path.name:<32} ERROR {type(error).__name__}: {str(error).splitlines()[0][:80]}")
            failed = True
            continue
        total += seconds
        flag = "" if seconds <= args.budget else f"  over the {args.budget:.0f} s budget"
        failed |= seconds > args.budget
        print(f"{path.name:<32} {seconds:7.1f} s{flag}", flush=True)
    print(f"{'total':<32} {total:7.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
