"""Notebook execution whose waits for kernel messages cannot stall for a whole cell timeout.

nbclient (0.11, with jupyter_client 8's asyncio client and pyzmq 27) waits for a cell's reply with one
``await shell_channel.get_msg(timeout=cell_timeout)`` and for its output with
``await iopub_channel.get_msg(timeout=None)``. Each is ``await socket.poll(timeout)`` on a
``zmq.asyncio`` socket, which the event loop watches through the socket's ``zmq.FD``. That descriptor is
edge-triggered: anything that touches the socket (reading ``zmq.EVENTS``, ``zmq_poll``, a send) after
a message arrived and before the loop looked clears it, and the poll then sees the message only when its
timeout fires (tests/test_notebook_execution.py makes this happen on purpose). In CI, with two notebook
runs at once (pytest-xdist), a chapter paused so for its whole cell timeout (600 s) after its first
widget cell, the kernel idle and its reply already in the client's socket; which operation cleared the
descriptor there is not known. Upstream: jupyter/nbclient#312 (open: "when cell contains ipywidget,
execute cell will sometimes blocks"). benchmarks/notebook_stall.py is the reproducer.

The fix bounds every wait on the shell and IOPub channels to slices of ``slice_s`` seconds (1 s) under
the same overall deadline: a poll that times out ends with ``zmq_poll(0)``, which does see a waiting
message, so a missed wake-up costs at most one slice, and the cell timeout still means what it says.
`SlicedWaitClient` is an ``nbclient.NotebookClient`` that does this; `patch_nbclient` makes every
``NotebookClient`` do it (for myst-nb, which creates its own clients: see `setup`, a Sphinx extension
listed in ``_config.yml``). nbval is not affected: it uses jupyter_client's blocking client, whose waits
are a plain ``zmq_poll`` that checks the socket itself.

This module uses only the standard library and nbclient, so the Colab-path runner
(tests/colab/run_notebook.py) loads it by path, before the chapter's install cell installs vgcourse.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from queue import Empty
from typing import Any

from nbclient import NotebookClient

SLICE_S = 1.0
"""Longest single wait on a kernel channel, seconds: the most a missed wake-up can delay a message."""

GetMsg = Callable[..., Awaitable[dict]]


def sliced_get_msg(get_msg: GetMsg, slice_s: float = SLICE_S) -> GetMsg:
    """Wrap an async ``get_msg(timeout=None)`` so that it waits in slices of at most ``slice_s`` seconds.

    With ``timeout = T`` the wrapper gives up (raises ``queue.Empty``) at the same deadline ``now + T``;
    with ``timeout=None`` it waits for ever, one slice at a time. Each slice is one call of ``get_msg``.
    """
    if not slice_s > 0:
        raise ValueError(f"slice_s must be > 0 seconds, got {slice_s!r}")

    async def get_msg_in_slices(timeout: float | None = None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = slice_s if deadline is None else max(0.0, min(slice_s, deadline - time.monotonic()))
            try:
                return await get_msg(timeout=left)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    get_msg_in_slices.sliced = True  # type: ignore[attr-defined]
    return get_msg_in_slices


def bound_waits(kernel_client: Any, slice_s: float = SLICE_S) -> Any:
    """Make the shell and IOPub waits of an async kernel client sliced (see `sliced_get_msg`); idempotent."""
    for channel in (kernel_client.shell_channel, kernel_client.iopub_channel):
        if not getattr(channel.get_msg, "sliced", False):
            channel.get_msg = sliced_get_msg(channel.get_msg, slice_s)
    return kernel_client


def _original_start() -> Callable[..., Awaitable[Any]]:
    start = NotebookClient.async_start_new_kernel_client
    return getattr(start, "original", start)


async def _start_with_bounded_waits(self: NotebookClient) -> Any:
    """``NotebookClient.async_start_new_kernel_client``, then `bound_waits` on the new kernel client."""
    return bound_waits(await _original_start()(self), getattr(self, "wait_slice_s", SLICE_S))


class SlicedWaitClient(NotebookClient):
    """An ``nbclient.NotebookClient`` whose shell and IOPub waits last at most ``wait_slice_s`` seconds
    each (a cell's deadline is unchanged); takes the same arguments as ``NotebookClient``."""

    wait_slice_s: float = SLICE_S
    async_start_new_kernel_client = _start_with_bounded_waits  # type: ignore[assignment]


def patch_nbclient() -> None:
    """Make every ``nbclient.NotebookClient`` (myst-nb's, jupyter-cache's) wait in slices; idempotent."""
    if getattr(NotebookClient.async_start_new_kernel_client, "original", None) is None:
        _start_with_bounded_waits.original = NotebookClient.async_start_new_kernel_client  # type: ignore[attr-defined]
        NotebookClient.async_start_new_kernel_client = _start_with_bounded_waits  # type: ignore[method-assign]


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension (``sphinx: extra_extensions`` in _config.yml): patch nbclient before execution."""
    patch_nbclient()
    return {"parallel_read_safe": True, "parallel_write_safe": True}
