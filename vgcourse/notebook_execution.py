"""Notebook execution whose waits for kernel messages cannot stall for a whole cell timeout.

nbclient's ``socket.poll(timeout)`` on edge-triggered ``zmq.asyncio`` sockets can miss a wake-up and see
the message only at the timeout (jupyter/nbclient#312; benchmarks/notebook_stall.py). Waiting in slices of
``SLICE_S`` under the same deadline bounds a missed wake-up to one slice. Standard library and nbclient
only: tests/colab/run_notebook.py loads it by path.
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
    """``get_msg(timeout)`` waiting at most ``slice_s`` s a call, ``queue.Empty`` at the same deadline."""
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
