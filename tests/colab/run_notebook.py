"""Execute one chapter the way Colab would; run by the Colab-like environment's own Python.

    python run_notebook.py CHAPTER.ipynb EXECUTED.ipynb WORKDIR

Before the chapter's first cell, a hidden cell puts a `google.colab` module in sys.modules (what
the chapters' install cells test for), so the install cell runs `%pip install "vgcourse==X"`; pip
takes its settings (PIP_FIND_LINKS pointing at the built wheel, PIP_CONSTRAINT) from the
environment. After the last cell, a hidden cell prints the facts the test checks. The kernel works
in WORKDIR, an empty folder like Colab's /content: nothing of the repository is importable there.
Only the standard library and what Colab preinstalls (nbclient, nbformat) are used here, and the
repository's vgcourse/notebook_execution.py, loaded by path (vgcourse is not installed in this
environment until the chapter's install cell runs): the client waits for the kernel in 1 s slices, so a
reply that did not wake its poll cannot pause a chapter for the whole cell timeout.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import nbformat

_SPEC = importlib.util.spec_from_file_location(
    "_notebook_execution", Path(__file__).resolve().parents[2] / "vgcourse" / "notebook_execution.py"
)
notebook_execution = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(notebook_execution)

FAKE_COLAB = """import sys, types
sys.modules["google.colab"] = types.ModuleType("google.colab")"""

FACTS = """import importlib.metadata as _md, json as _json, sys as _sys
_facts = {"executable": _sys.executable, "prefix": _sys.prefix}
for _name in ("vgcourse", "torch", "torchvision", "ipywidgets"):
    _facts[_name] = _md.version(_name)
    _facts[_name + "_file"] = str(__import__(_name).__file__)
print("COLAB-PATH-FACTS " + _json.dumps(_facts))"""


def main(source: str, target: str, workdir: str) -> int:
    notebook = nbformat.read(source, as_version=4)
    notebook.cells = [
        nbformat.v4.new_code_cell(FAKE_COLAB),
        *notebook.cells,
        nbformat.v4.new_code_cell(FACTS),
    ]
    client = notebook_execution.SlicedWaitClient(
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
