"""The worker process of `vgcourse.instructor.grade`: executes one submission, streams what it finds.

Run by path (``python -I grade_worker.py``, the job as JSON on stdin) so that it imports neither vgcourse
nor torch (only the student's kernel does); every stdout line starts with the job's channel nonce.
"""

from __future__ import annotations

import json
import math
import runpy
import sys
import tempfile
from pathlib import Path

import nbformat


def run(job: dict) -> None:
    """Execute one submission in a fresh temporary folder and stream, on stdout after the channel nonce,
    every answer collection (``ANSWERS``) and the end (``DONE``)."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    execution = Path(__file__).with_name("notebook_execution.py")  # by path too: no vgcourse, no torch
    SlicedWaitClient = runpy.run_path(str(execution))["SlicedWaitClient"]

    channel, marker = job["channel"], job["marker"]

    def send(kind: str, payload: object) -> None:
        sys.stdout.write(f"{channel} {kind} {json.dumps(payload)}\n")
        sys.stdout.flush()

    class Client(SlicedWaitClient):
        written = 0
        capped = False

        def output(self, outs, msg, display_id, cell_index):  # type: ignore[no-untyped-def]
            content = msg.get("content", {})
            text = content.get("text", "") if msg["msg_type"] == "stream" else ""
            for line in text.splitlines():
                if line.startswith(marker):
                    try:
                        send("ANSWERS", json.loads(line[len(marker) :]))
                    except ValueError:
                        pass
            size = len(json.dumps(content, default=str))
            self.written += size
            if self.written > job["output_cap"]:
                self.capped = True
                return None
            return super().output(outs, msg, display_id, cell_index)

    notebook = nbformat.reads(job["notebook"], as_version=4)
    with tempfile.TemporaryDirectory(prefix="vgcourse-grade-") as work:
        client = Client(
            notebook,
            # nbclient's cell limit counts whole seconds and 0 means none: round up (0.5 s -> 1 s, not 0)
            timeout=math.ceil(job["timeout"]),
            kernel_name=job["kernel"],
            allow_errors=True,
            interrupt_on_timeout=True,
            resources={"metadata": {"path": work}},
        )
        status, note = "ok", ""
        try:
            client.execute(cwd=work)
        except CellTimeoutError as error:
            status, note = "timeout", str(error).splitlines()[0][:200]
        except DeadKernelError:
            status, note = "errors", "the kernel died"
        except Exception as error:  # any failure of one run is that submission's result
            status, note = "errors", f"{type(error).__name__}: {error}"[:200]
        outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        errors = [o for o in outputs if o.output_type == "error"]
        if status == "ok" and errors:
            interrupted = any(o.get("ename") == "KeyboardInterrupt" for o in errors)
            status = "timeout" if interrupted else "errors"
            note = "; ".join(f"{o['ename']}: {o['evalue']}"[:120] for o in errors[:3])
        if client.capped:
            note = (note + "; " if note else "") + f"output over {job['output_cap']} bytes was dropped"
        send("DONE", {"status": status, "note": note})


if __name__ == "__main__":
    run(json.loads(sys.stdin.read()))
