"""Reproducer for the notebook-execution stall: several notebook runs at once, each message's delay timed.

Run from the repository root with the project's environment:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/notebook_stall.py [--client plain|sliced|both]
        [--runs 2] [--rounds 4] [--timeout 30] [--notebook PATH ...]

Each round starts ``--runs`` processes at once (as pytest-xdist workers do); each executes the notebook
(default: a small one that creates ipywidgets, with an Output widget showing a PNG, as the chapters'
explorers do) with nbclient and a cell timeout of ``--timeout`` seconds, with the plain
``NotebookClient`` or with `vgcourse.notebook_execution.SlicedWaitClient`. For every message the client
gets on the shell and IOPub channels it records the delay between the kernel sending it (the message's
header date) and the client's ``get_msg`` returning it. A delay over ``--pause`` seconds (default 2) is a
pause: a message that sat in the client's socket without waking its poll. Prints one line per run and,
per client, the number of pauses and the longest delay; exits 1 if a sliced run paused.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

WIDGET_CELLS = [
    "import io\nimport ipywidgets as widgets\nimport matplotlib\nmatplotlib.use('agg')\n"
    "import matplotlib.pyplot as plt\nfrom IPython.display import Image, display",
    "figure, axes = plt.subplots()\naxes.plot([1, 3, 2])\nbuffer = io.BytesIO()\n"
    "figure.savefig(buffer, format='png')\noutput = widgets.Output()\nwith output:\n"
    "    output.clear_output(wait=True)\n    display(Image(data=buffer.getvalue(), format='png'))\n"
    "widgets.VBox([widgets.FloatSlider(description='s'), widgets.Label('readout'), output])",
    "print('after the widget cell')",
]


def widget_notebook() -> nbformat.NotebookNode:
    """The default notebook: imports, one cell that creates and displays widgets, one print."""
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in WIDGET_CELLS])


def run_one(path: str, client_kind: str, timeout: int) -> dict:
    """Execute one notebook; return its wall time and the longest message delay per channel."""
    from nbclient import NotebookClient

    from vgcourse.notebook_execution import SlicedWaitClient

    base = SlicedWaitClient if client_kind == "sliced" else NotebookClient
    delays: dict[str, list[float]] = {"shell": [], "iopub": []}

    class TimedClient(base):  # type: ignore[misc, valid-type]
        async def async_start_new_kernel_client(self):  # type: ignore[override]
            kernel_client = await super().async_start_new_kernel_client()
            for name in delays:
                channel = getattr(kernel_client, f"{name}_channel")
                channel.get_msg = _timed(channel.get_msg, delays[name])
            return kernel_client

    notebook = nbformat.read(path, as_version=4)
    folder = str(Path(path).resolve().parent)  # a chapter runs in its own folder, as in the book build
    client = TimedClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": folder}}
    )
    start = time.perf_counter()
    client.execute()
    return {
        "seconds": time.perf_counter() - start,
        **{f"max_{name}_delay": max(values, default=0.0) for name, values in delays.items()},
    }


def _timed(get_msg, delays: list[float]):
    async def timed(timeout: float | None = None) -> dict:
        message = await get_msg(timeout=timeout)
        sent = message["header"]["date"]
        if isinstance(sent, datetime):
            delays.append((datetime.now(UTC) - sent).total_seconds())
        return message

    timed.sliced = getattr(get_msg, "sliced", False)  # type: ignore[attr-defined]
    return timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", choices=("plain", "sliced", "both"), default="both")
    parser.add_argument("--runs", type=int, default=2, help="notebook runs at once")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--timeout", type=int, default=30, help="cell timeout, seconds")
    parser.add_argument("--pause", type=float, default=2.0, help="a message delay over this is a pause")
    parser.add_argument("--notebook", nargs="*", help="notebooks to run (cycled over the runs)")
    parser.add_argument("--worker", nargs=3, metavar=("PATH", "CLIENT", "TIMEOUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        path, kind, timeout = args.worker
        print("RESULT " + json.dumps(run_one(path, kind, int(timeout))), flush=True)
        return 0

    with tempfile.TemporaryDirectory() as folder:
        paths = args.notebook or [str(Path(folder) / "widgets.ipynb")]
        if not args.notebook:
            nbformat.write(widget_notebook(), paths[0])
        kinds = ("plain", "sliced") if args.client == "both" else (args.client,)
        summary = {kind: {"pauses": 0, "runs": 0, "longest": 0.0} for kind in kinds}
        for round_ in range(args.rounds):
            for kind in kinds:
                workers = [
                    subprocess.Popen(
                        [
                            sys.executable,
                            __file__,
                            "--worker",
                            paths[i % len(paths)],
                            kind,
                            str(args.timeout),
                        ],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL,
                        text=True,
                        cwd=folder,
                    )
                    for i in range(args.runs)
                ]
                for i, worker in enumerate(workers):
                    out, _ = worker.communicate()
                    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
                    if line is None:
                        print(f"round {round_} {kind:<6} run {i}: FAILED (exit {worker.returncode})")
                        continue
                    result = json.loads(line.removeprefix("RESULT "))
                    longest = max(result["max_shell_delay"], result["max_iopub_delay"])
                    paused = longest > args.pause
                    entry = summary[kind]
                    entry["runs"] += 1
                    entry["pauses"] += paused
                    entry["longest"] = max(entry["longest"], longest)
                    print(
                        f"round {round_} {kind:<6} run {i}: {result['seconds']:6.1f} s, longest delay shell "
                        f"{result['max_shell_delay']:6.2f} s, iopub {result['max_iopub_delay']:6.2f} s"
                        + ("  PAUSE" if paused else ""),
                        flush=True,
                    )
    for kind, entry in summary.items():
        pauses, runs, longest = entry["pauses"], entry["runs"], entry["longest"]
        print(f"{kind:<6}: {pauses} pauses in {runs} runs, longest delay {longest:.2f} s")
    return 1 if summary.get("sliced", {}).get("pauses") else 0


if __name__ == "__main__":
    sys.exit(main())
