"""Execute one chapter the way Colab would; run by the Colab-like environment's own Python.

    python run_notebook.py CHAPTER.ipynb EXECUTED.ipynb WORKDIR

Before the chapter's first cell, a hidden cell puts a `google.colab` module in sys.modules (what
the chapters' install cells test for), so the install cell runs `%pip install "vgcourse==X"`; pip
takes its settings (PIP_FIND_LINKS pointing at the built wheel, PIP_CONSTRAINT) from the
environment. After the last cell, a hidden cell prints the facts the test checks. The kernel works
in WORKDIR, an empty folder like Colab's /content: nothing of the repository is importable there.
Only the standard library and what Colab preinstalls (nbclient, nbformat) are used here.
"""

from __future__ import annotations

import sys
import time
from queue import Empty

import nbformat
from nbclient import NotebookClient

FAKE_COLAB = """import sys, types
sys.modules["google.colab"] = types.ModuleType("google.colab")"""

FACTS = """import importlib.metadata as _md, json as _json, sys as _sys
_facts = {"executable": _sys.executable, "prefix": _sys.prefix}
for _name in ("vgcourse", "torch", "torchvision", "ipywidgets"):
    _facts[_name] = _md.version(_name)
    _facts[_name + "_file"] = str(__import__(_name).__file__)
print("COLAB-PATH-FACTS " + _json.dumps(_facts))"""


class SlicedPollClient(NotebookClient):
    """Waits for each cell's reply in 1 s slices instead of one wait as long as the cell timeout.

    With two notebook runs at once (as under xdist), a reply sometimes reaches the client without
    waking its ZMQ poll; the poll then finds it only when it times out, so the run paused for the whole
    cell timeout (600 s, once). A 1 s slice bounds that pause to 1 s; the cell's deadline is unchanged.
    """

    async def async_start_new_kernel_client(self):  # type: ignore[override]
        client = await super().async_start_new_kernel_client()
        wait = client.shell_channel.get_msg

        async def get_msg(timeout: float | None = None) -> dict:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                left = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
                try:
                    return await wait(timeout=left)
                except Empty:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise

        client.shell_channel.get_msg = get_msg
        return client


def main(source: str, target: str, workdir: str) -> int:
    notebook = nbformat.read(source, as_version=4)
    notebook.cells = [
        nbformat.v4.new_code_cell(FAKE_COLAB),
        *notebook.cells,
        nbformat.v4.new_code_cell(FACTS),
    ]
    client = SlicedPollClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": workdir}}
    )
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        notebook.metadata["colab_path_seconds"] = time.perf_counter() - start
        nbformat.write(notebook, target)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
