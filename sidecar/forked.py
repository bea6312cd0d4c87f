"""Work done in a forked child, so that the sidecar's event loop never waits for it.

Building a JSON document for thousands of series is pure Python, hundreds of milliseconds: on
the loop it would hold up every probe and push, and in a thread it would take the GIL from the
loop just as well. A child shares no GIL with the loop, runs at a lower priority than the loop
(``CHILD_NICE``), and the fork itself is a consistent copy of the process at one instant (copy
on write), so the work needs no lock on the store.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import traceback
from collections.abc import Callable

__all__ = ["CHILD_NICE", "ChildFailed", "alive", "run"]

log = logging.getLogger("sidecar.forked")
CHILD_NICE = 10  # the child yields the CPU to the loop
_alive = 0  # children working now


def alive() -> bool:
    """Whether a child is working: every page the process writes meanwhile is copied first."""
    return _alive > 0


class ChildFailed(RuntimeError):
    """The child died or raised; its traceback went to the sidecar's stderr."""


async def run(work: Callable[[], bytes]) -> bytes:
    """``work()``'s bytes, computed in a forked child from the process as it is now.

    The fork happens before the first ``await``: the child sees the state at the call. When no
    process can be forked, the work is done here, on the loop, with one WARNING. If the caller
    is cancelled, the child is killed.
    """
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError as err:  # no process to spare: do the work all the same, here
        os.close(read_fd)
        os.close(write_fd)
        log.warning("cannot fork a child (%s); doing its work on the event loop", err)
        return work()
    if pid == 0:  # the child: do the work, write it, and leave, running nothing else
        status = 1
        try:
            gc.disable()  # a collection would touch (and so copy) every page shared with the loop
            signal.set_wakeup_fd(-1)  # the loop's signal pipe is the parent's
            os.close(read_fd)
            os.nice(CHILD_NICE)
            view = memoryview(work())
            while view:
                view = view[os.write(write_fd, view):]
            status = 0
        except BaseException:
            traceback.print_exc()  # to the sidecar's stderr
        finally:
            os._exit(status)
    global _alive
    _alive += 1
    os.close(write_fd)
    reader = asyncio.StreamReader(limit=2**31)
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0))
        try:
            data = await reader.read()
        finally:
            transport.close()
    except BaseException:  # cancelled (the client went away), or the pipe failed
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        _, status = os.waitpid(pid, 0)  # the pipe is closed: it has written and is exiting
        _alive -= 1
    if status != 0:
        raise ChildFailed(f"the child that did the work failed (wait status {status})")
    return data
