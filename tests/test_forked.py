"""Work done in a forked child: the state at the fork, the bytes back, failures named."""

from __future__ import annotations

import asyncio

import pytest

from sidecar import forked


async def test_a_child_works_from_the_state_at_the_fork_and_is_counted_while_it_works() -> None:
    """The child sees the process as it was at the call (a change after it is not in the
    answer); alive() is True until its answer is in; a child that raises is ChildFailed."""
    state = {"n": 1}

    async def answer() -> bytes:
        return await forked.run(lambda: str(state["n"]).encode() * 100_000)

    work = asyncio.ensure_future(answer())
    await asyncio.sleep(0)  # the fork happens in the task's first step
    state["n"] = 2
    assert forked.alive()
    assert await work == b"1" * 100_000
    assert not forked.alive()

    def fail() -> bytes:
        raise RuntimeError("the child's own failure")

    with pytest.raises(forked.ChildFailed, match="failed"):
        await forked.run(fail)
    assert not forked.alive()
