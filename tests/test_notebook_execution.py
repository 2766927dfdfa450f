"""Waits on a kernel's channels are sliced, so a message whose wake-up was lost costs a slice, not a timeout.

The lost wake-up is made for real: a `zmq.asyncio` socket's event-loop watcher is its edge-triggered
``zmq.FD``; reading ``zmq.EVENTS`` after a message arrived and before the loop looked drains it, and
jupyter_client's ``AsyncZMQSocketChannel.get_msg`` then sees the waiting message only when its poll times
out. The last test runs two widget notebooks at once through `SlicedWaitClient` (the reproducer
benchmarks/notebook_stall.py) and fails if any message reached the client more than 2 s late.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from queue import Empty

import pytest
import zmq
import zmq.asyncio
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.session import Session
from nbclient import NotebookClient

from vgcourse import notebook_execution as ne

ROOT = Path(__file__).resolve().parents[1]


async def _wait_after_lost_wakeup(sliced: bool, timeout: float) -> tuple[dict, float]:
    """Send a message into a shell-like channel while its get_msg waits, drain the socket's FD before the
    event loop sees it, and return the message and how long get_msg took to return it."""
    context = zmq.asyncio.Context()
    ours, kernel = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    try:
        port = ours.bind_to_random_port("tcp://127.0.0.1")
        kernel.connect(f"tcp://127.0.0.1:{port}")
        session = Session(key=b"")
        channel = AsyncZMQSocketChannel(ours, session)
        get_msg = ne.sliced_get_msg(channel.get_msg, slice_s=0.2) if sliced else channel.get_msg
        await asyncio.sleep(0.1)  # connected
        start = time.monotonic()
        waiting = asyncio.ensure_future(get_msg(timeout=timeout))
        await asyncio.sleep(0.1)  # get_msg is polling

        def reply_and_drain() -> None:  # runs between two turns of the loop: the loop cannot see the FD
            session.send(kernel, "execute_reply", content={"status": "ok"})
            time.sleep(0.05)  # the message reaches our socket
            assert zmq.Socket.shadow(ours.underlying).get(zmq.EVENTS) & zmq.POLLIN  # drains the FD

        asyncio.get_running_loop().call_soon(reply_and_drain)
        message = await waiting
        return message, time.monotonic() - start
    finally:
        ours.close(linger=0)
        kernel.close(linger=0)
        context.term()


def test_plain_wait_misses_a_drained_wakeup_until_its_timeout() -> None:
    """The failure mode itself: without slices the reply waits for the whole timeout."""
    message, seconds = asyncio.run(_wait_after_lost_wakeup(sliced=False, timeout=2.0))
    assert message["msg_type"] == "execute_reply"
    assert seconds >= 1.9


def test_sliced_wait_gets_the_message_within_a_slice() -> None:
    message, seconds = asyncio.run(_wait_after_lost_wakeup(sliced=True, timeout=30.0))
    assert message["msg_type"] == "execute_reply"
    assert seconds < 0.2 + 0.2 + 0.5  # two setup sleeps, one slice, scheduling slack


def test_sliced_wait_keeps_the_deadline_and_the_slice() -> None:
    asked: list[float | None] = []

    async def never(timeout: float | None = None) -> dict:
        asked.append(timeout)
        await asyncio.sleep(timeout)
        raise Empty

    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(ne.sliced_get_msg(never, slice_s=0.2)(timeout=0.7))
    seconds = time.monotonic() - start
    assert 0.7 <= seconds < 1.0
    assert len(asked) >= 4 and all(t is not None and t <= 0.2 + 1e-9 for t in asked)


def test_sliced_wait_without_timeout_waits_in_slices() -> None:
    asked: list[float | None] = []

    async def third_time(timeout: float | None = None) -> dict:
        asked.append(timeout)
        if len(asked) < 3:
            raise Empty
        return {"msg_type": "status"}

    assert asyncio.run(ne.sliced_get_msg(third_time, slice_s=0.5)(timeout=None)) == {"msg_type": "status"}
    assert asked == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("slice_s", [0.0, -1.0])
def test_slice_must_be_positive(slice_s: float) -> None:
    with pytest.raises(ValueError, match="slice_s must be > 0"):
        ne.sliced_get_msg(lambda timeout=None: None, slice_s=slice_s)


def test_bound_waits_wraps_shell_and_iopub_once() -> None:
    class Channel:
        async def get_msg(self, timeout: float | None = None) -> dict:
            return {}

    class Client:
        shell_channel, iopub_channel, stdin_channel = Channel(), Channel(), Channel()

    client = ne.bound_waits(Client())
    first = client.shell_channel.get_msg
    assert first.sliced and client.iopub_channel.get_msg.sliced
    assert not getattr(client.stdin_channel.get_msg, "sliced", False)
    assert ne.bound_waits(client).shell_channel.get_msg is first


def test_patch_nbclient_is_idempotent_and_used_by_every_client(monkeypatch: pytest.MonkeyPatch) -> None:
    original = NotebookClient.async_start_new_kernel_client
    monkeypatch.setattr(NotebookClient, "async_start_new_kernel_client", original)
    ne.patch_nbclient()
    ne.patch_nbclient()
    patched = NotebookClient.async_start_new_kernel_client
    assert patched is ne._start_with_bounded_waits and patched.original is original
    assert ne.SlicedWaitClient.async_start_new_kernel_client is patched
    assert ne.setup(app=None)["parallel_read_safe"]


def test_config_loads_the_extension_for_the_book_build() -> None:
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert "vgcourse.notebook_execution" in config["sphinx"]["extra_extensions"]


def test_two_widget_notebooks_at_once_never_pause() -> None:
    """The reproducer, sliced client only: two runs at once, cell timeout 20 s; any message more than 2 s
    late is a pause and fails it (exit 1)."""
    reproducer = str(ROOT / "benchmarks" / "notebook_stall.py")
    options = ["--client", "sliced", "--rounds", "1", "--runs", "2", "--timeout", "20", "--pause", "2"]
    run = subprocess.run(
        [sys.executable, reproducer, *options],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sliced: 0 pauses in 2 runs" in run.stdout, run.stdout
