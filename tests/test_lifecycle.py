"""Process lifecycle in the store, on a fake clock: successors, departures, the state file.

The rules are in docs/protocol.md ("Process lifecycle"): a process that started after a silent
one's last push succeeds it at once (one newcomer for one departed process); a process that
leaves with no successor is reported by how and when it left; the state file brings back all a
restarted sidecar cannot learn again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from bisect import bisect_left
from pathlib import Path
from typing import Any

import pytest

from sidecar import fine, persist, slices
from sidecar.protocol import DEFAULT_BUCKETS, encode
from sidecar.stats import Totals
from sidecar.store import SETTLE_MAX, Store

SERVICE = "nps.oracle.OracleService"
KEY = (SERVICE, "GetReading", "unary")


class Clocks:
    """A monotonic and a wall clock that move together."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.offset = 1.8e9

    def mono(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t + self.offset

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Proc:
    """A reporting process as the store sees it: cumulative counts, one push at a time."""

    def __init__(self, clocks: Clocks, source: str, pid: int, service: str = SERVICE) -> None:
        self.clocks, self.source, self.pid, self.service = clocks, source, pid, service
        self.started = clocks.wall()
        self.seq = 0
        self.ok = 0

    def push(self, s: Store, calls: int = 0, final: bool = False,
             health: str = "healthy") -> None:
        self.ok += calls
        self.seq += 1
        hist = [0] * (len(DEFAULT_BUCKETS) + 1)
        hist[2] = self.ok
        rows = [{"service": KEY[0], "method": KEY[1], "type": "unary", "started": self.ok,
                 "codes": {"OK": self.ok}, "hist": hist, "sum": 0.02 * self.ok, "max": 0.02}]
        (datagram,) = encode(
            source={"id": self.source, "pid": self.pid, "started": self.started,
                    "service": self.service, "version": "1"},
            seq=self.seq, time=self.clocks.wall(), buckets=DEFAULT_BUCKETS, rows=rows,
            health=health, checks={}, reporter={}, final=final)
        assert s.ingest(datagram) is None


def make(**kwargs: Any) -> tuple[Store, Clocks]:
    clocks = Clocks()
    return Store(clock=clocks.mono, wall=clocks.wall, **kwargs), clocks


def ok_total(s: Store) -> int:
    return s.totals()[KEY].codes.get("OK", 0)


def run(s: Store, clocks: Clocks, procs: list[Proc], seconds: int, calls: int = 10) -> None:
    """Each process pushes once a second for ``seconds`` seconds, the store ticking."""
    for _ in range(seconds):
        clocks.advance(1.0)
        for p in procs:
            p.push(s, calls)
        s.tick()


def test_crash_restart_the_new_process_succeeds_the_killed_one_at_its_first_push() -> None:
    """kill -9, new process 2 s later: the old one is retired at once, counted exactly once."""
    s, clocks = make()
    old = Proc(clocks, "a", pid=7)
    run(s, clocks, [old], 5)
    clocks.advance(2.5)  # killed right after its last push; the container restarts
    s.tick()
    new = Proc(clocks, "b", pid=7)
    new.push(s, 3)
    assert list(s.sources) == ["b"]
    assert s.status() == ("healthy", "every reporting process is fresh and healthy")
    assert ok_total(s) == 50 + 3
    run(s, clocks, [new], 70)  # past stale and expiry of the old one: nothing changes
    assert s.status()[0] == "healthy"
    assert ok_total(s) == 50 + 3 + 700


def test_fast_restart_is_matched_once_the_old_process_has_missed_its_push() -> None:
    """A restart quicker than one missed push: matched by tick() a moment later, never stale."""
    s, clocks = make()
    old = Proc(clocks, "a", pid=7)
    run(s, clocks, [old], 3)
    clocks.advance(0.5)
    new = Proc(clocks, "b", pid=8)
    new.push(s, 1)
    assert set(s.sources) == {"a", "b"}  # the old one is not late yet
    run(s, clocks, [new], 2)
    assert list(s.sources) == ["b"]
    assert s.status()[0] == "healthy"
    assert ok_total(s) == 30 + 1 + 20


def test_running_workers_are_never_taken_for_a_newcomer_predecessor() -> None:
    """A new worker beside live ones that push on time replaces none of them."""
    s, clocks = make()
    workers = [Proc(clocks, f"w{i}", pid=10 + i) for i in range(4)]
    run(s, clocks, workers, 3)
    clocks.advance(0.4)
    extra = Proc(clocks, "w4", pid=20)
    extra.push(s, 1)
    run(s, clocks, [*workers, extra], 10)
    assert len(s.sources) == 5
    assert ok_total(s) == 4 * 130 + 1 + 100


def test_two_workers_die_one_is_replaced_the_other_still_shows_down() -> None:
    """One newcomer succeeds one dead worker (the longest silent); the other is down."""
    s, clocks = make(stale_after=5, expire_after=60)
    a, b, c = (Proc(clocks, x, pid=i) for i, x in enumerate("abc", start=1))
    run(s, clocks, [a, b, c], 3)
    run(s, clocks, [b, c], 1)  # a dies first
    run(s, clocks, [c], 1)  # then b
    clocks.advance(1.5)
    d = Proc(clocks, "d", pid=4)
    d.push(s, 2)
    assert set(s.sources) == {"b", "c", "d"}  # d succeeded a, the longest silent
    run(s, clocks, [c, d], 5)
    status, reason = s.status()
    assert status == "down" and f"process {b.pid} has not pushed" in reason
    assert ok_total(s) == 30 + 40 + 100 + 52  # a, b, c, d: each exactly once
    run(s, clocks, [c, d], 60)  # b expires: its counts stay, the pod is judged by the living
    assert set(s.sources) == {"c", "d"} and s.status()[0] == "healthy"


def test_a_live_process_taken_as_succeeded_comes_back_and_is_counted_once() -> None:
    """A slow push makes a live worker look gone; when it pushes again it is taken back."""
    s, clocks = make()
    slow, other = Proc(clocks, "slow", pid=1), Proc(clocks, "other", pid=2)
    run(s, clocks, [slow, other], 3)
    run(s, clocks, [other], 3)  # slow misses three pushes (a loaded machine)
    new = Proc(clocks, "new", pid=3)
    new.push(s, 5)
    assert "slow" not in s.sources
    slow.push(s, 7)
    assert set(s.sources) == {"slow", "other", "new"}
    assert s.sources["new"].may_succeed  # it may still succeed a process that really dies
    assert ok_total(s) == 37 + 60 + 5
    run(s, clocks, [slow, other, new], 5)
    assert ok_total(s) == 37 + 60 + 5 + 150


def test_another_service_is_no_successor() -> None:
    """A process of another service on the same socket does not replace a dead one."""
    s, clocks = make()
    old = Proc(clocks, "a", pid=1)
    run(s, clocks, [old], 3)
    clocks.advance(3)
    Proc(clocks, "b", pid=2, service="other.Service").push(s, 1)
    assert "a" in s.sources


def test_clean_exit_says_the_process_exited_and_when() -> None:
    """A final push with no successor: down, "exited N s ago and has not come back"."""
    s, clocks = make()
    p = Proc(clocks, "a", pid=42)
    run(s, clocks, [p], 3)
    p.push(s, 1, final=True)
    clocks.advance(12)
    s.tick()
    assert s.status() == ("down", f"the Oracle process 42 ({SERVICE}) exited 12 s ago and has "
                                  f"not come back")
    assert ok_total(s) == 31
    back = Proc(clocks, "b", pid=43)
    back.push(s, 1)
    assert s.status()[0] == "healthy"


def test_expired_process_says_it_stopped_pushing() -> None:
    """The last process expires with no successor: down, "stopped pushing ... not come back"."""
    s, clocks = make(stale_after=2, expire_after=5)
    p = Proc(clocks, "a", pid=42)
    run(s, clocks, [p], 3)
    for _ in range(7):
        clocks.advance(1)
        s.tick()
    status, reason = s.status()
    assert status == "down"
    assert reason.startswith("the Oracle process 42") and "stopped pushing" in reason
    assert "has not come back" in reason


def test_never_heard_is_the_only_unknown() -> None:
    """A sidecar that has heard from no process is "unknown"; after one, never again."""
    s, clocks = make()
    assert s.status()[0] == "unknown"
    p = Proc(clocks, "a", pid=1)
    p.push(s, 0, final=True)
    assert s.status()[0] == "down"


# -- the state file ---------------------------------------------------------------------------

def restarted(s: Store, clocks: Clocks, tmp_path: Path, down_for: float = 0.5
              ) -> tuple[Store, persist.StateFile]:
    """Save ``s``, let ``down_for`` seconds pass, start a new store from the file."""
    sock = str(tmp_path / "metrics.sock")
    assert persist.StateFile(sock, s).save()
    clocks.advance(down_for)
    fresh = Store(clock=clocks.mono, wall=clocks.wall, stale_after=s.stale_after,
                  expire_after=s.expire_after)
    state = persist.StateFile(sock, fresh)
    assert state.load()
    return fresh, state


def test_restart_continues_every_counter_exactly_and_settles_when_known_sources_push(
        tmp_path: Path) -> None:
    """Retired totals, live sources, seqs: back after a restart; held back until all pushed."""
    s, clocks = make()
    gone, a, b = Proc(clocks, "gone", 1), Proc(clocks, "a", 2), Proc(clocks, "b", 3)
    run(s, clocks, [gone, a, b], 3)
    gone.push(s, 4, final=True)
    before = s.totals()[KEY]
    fresh, _ = restarted(s, clocks, tmp_path)
    assert fresh.totals()[KEY] == before
    assert fresh.settling()
    a.push(fresh, 5)
    assert fresh.settling()  # b not heard yet
    b.push(fresh, 6)
    assert not fresh.settling()
    assert ok_total(fresh) == ok_total(s) + 11
    # the windows count what was pushed after the first push since the restart
    assert fresh.observed()[KEY].codes.get("OK", 0) == 0
    a.push(fresh, 2)
    b.push(fresh, 3)
    assert fresh.observed()[KEY].codes.get("OK", 0) == 5
    # a replayed push is still refused: the seqs came back too
    a.seq -= 1
    with pytest.raises(AssertionError):
        a.push(fresh, 0)


def test_settling_is_bounded_when_a_known_process_died_meanwhile(tmp_path: Path) -> None:
    """A known process that never pushes again holds the series back SETTLE_MAX at most."""
    s, clocks = make()
    a, b = Proc(clocks, "a", 1), Proc(clocks, "b", 2)
    run(s, clocks, [a, b], 3)
    fresh, _ = restarted(s, clocks, tmp_path)
    a.push(fresh, 1)
    clocks.advance(SETTLE_MAX - 0.5)
    assert fresh.settling()
    clocks.advance(1.0)
    assert not fresh.settling()


def test_a_departure_survives_the_restart(tmp_path: Path) -> None:
    """An Oracle that exited before the sidecar restarted is still reported as exited."""
    s, clocks = make()
    p = Proc(clocks, "a", 9)
    run(s, clocks, [p], 2)
    p.push(s, 0, final=True)
    fresh, _ = restarted(s, clocks, tmp_path, down_for=5)
    status, reason = fresh.status()
    assert status == "down" and "exited 5 s ago" in reason


def test_a_retired_source_that_speaks_after_the_restart_is_not_doubled(tmp_path: Path) -> None:
    """An expired source comes back after a restart: taken out of the retired totals again."""
    s, clocks = make(stale_after=1, expire_after=3)
    p, q = Proc(clocks, "p", 1), Proc(clocks, "q", 2)
    run(s, clocks, [p, q], 2)
    run(s, clocks, [q], 5)  # p expires
    assert "p" not in s.sources
    fresh, _ = restarted(s, clocks, tmp_path)
    q.push(fresh, 0)
    p.push(fresh, 1)
    assert set(fresh.sources) == {"p", "q"}
    assert ok_total(fresh) == p.ok + q.ok


@pytest.mark.parametrize("body", [
    b"{not json", b"[]", b'{"kind": "something else"}',
    b'{"kind": "oracle-sidecar state", "format": 99}',
])
def test_corrupt_or_foreign_state_file_is_ignored_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, body: bytes) -> None:
    """An unreadable state file: one WARNING naming it, and the store starts empty."""
    sock = str(tmp_path / "metrics.sock")
    Path(persist.state_path(sock)).write_bytes(body)
    s, _ = make()
    with caplog.at_level(logging.WARNING, logger="sidecar.persist"):
        assert not persist.StateFile(sock, s).load()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and persist.state_path(sock) in warnings[0].getMessage()
    assert s.sources == {} and s.retired == {} and not s.restored


def test_state_file_of_another_socket_or_with_bad_counts_changes_nothing(tmp_path: Path) -> None:
    """A file written for another socket, or one count edited to garbage, is refused whole."""
    s, clocks = make()
    p = Proc(clocks, "a", 1)
    run(s, clocks, [p], 2)
    doc = persist.dump(s, str(tmp_path / "other.sock"))
    fresh, _ = make()
    with pytest.raises(ValueError, match="written for the socket"):
        persist.restore(fresh, doc, str(tmp_path / "metrics.sock"))
    doc = json.loads(json.dumps(persist.dump(s, str(tmp_path / "metrics.sock"))))
    doc["sources"][0]["rows"][0][3]["hist"][0] = -1
    with pytest.raises(ValueError, match="not a count"):
        persist.restore(fresh, doc, str(tmp_path / "metrics.sock"))
    assert fresh.sources == {} and not fresh.restored


def test_saves_when_a_source_comes_or_goes_and_rarely_otherwise(tmp_path: Path) -> None:
    """A new or retired source is saved at once; changed counts at most every SAVE_EVERY s."""
    s, clocks = make()
    state = persist.StateFile(str(tmp_path / "metrics.sock"), s)
    p = Proc(clocks, "a", 1)
    p.push(s)
    assert state.due()
    state.maybe_save()
    assert state.saves == 1
    for _ in range(int(persist.SAVE_EVERY) - 1):
        clocks.advance(1)
        p.push(s, 1)
        state.maybe_save()
    assert state.saves == 1
    clocks.advance(1)
    p.push(s, 1)
    state.maybe_save()
    assert state.saves == 2
    clocks.advance(0.5)
    p.push(s, 0, final=True)
    state.maybe_save()
    assert state.saves == 3
    saved = json.loads(Path(state.path).read_text())
    assert saved["sources"] == [] and saved["departed"]["how"] == "exited"
    assert not Path(state.path + ".tmp").exists()


def test_save_does_not_follow_a_symlink_planted_at_its_temporary_file(tmp_path: Path) -> None:
    """A symlink at the temporary file's path: the save fails (one WARNING), the target stays."""
    s, clocks = make()
    Proc(clocks, "a", 1).push(s)
    state = persist.StateFile(str(tmp_path / "metrics.sock"), s)
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    Path(state.path + ".tmp").symlink_to(victim)
    assert not state.save()
    assert victim.read_text() == "untouched"
    assert state.problem is not None and state.path in state.problem


async def test_on_the_loop_a_save_writes_the_state_as_it_was_when_it_started(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save on the loop takes the state at once, encodes it in slices (the loop turns between
    them; pushes applied meanwhile wait for the next save) and writes it from another thread;
    one save at a time; close() waits for it, then writes the final state."""
    monkeypatch.setattr(slices, "SLICE_SECONDS", 0.0)  # a slice per row
    s, clocks = make()
    procs = [Proc(clocks, name, pid) for pid, name in enumerate("abc", start=1)]
    for p in procs:
        p.push(s, 5)
    procs[2].push(s, 0, final=True)  # a retired process: its rows and the retired totals
    state = persist.StateFile(str(tmp_path / "metrics.sock"), s)
    writers: list[int] = []
    write = state._write
    monkeypatch.setattr(state, "_write", lambda text: writers.append(threading.get_ident())
                        or write(text))
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.ensure_future(count_turns())
    saving = state.start_if_due()
    assert saving is not None and state.start_if_due() is None  # one save at a time
    marks = (s.changes, s.generation)
    procs[0].push(s, 2)  # after the save started: not in it
    assert await saving
    assert turns >= 4 and writers and writers[0] != threading.get_ident()
    on_disk = json.loads(Path(state.path).read_text())
    assert [src["rows"][0][3]["codes"] for src in on_disk["sources"]] == [{"OK": 5}] * 2
    assert on_disk == persist.dump(s, state.socket_path) | {"saved": on_disk["saved"],
                                                           "sources": on_disk["sources"]}
    assert (state.saved_changes, state.saved_generation) == marks != (s.changes, s.generation)
    clocks.advance(persist.SAVE_EVERY)
    saving = state.start_if_due()
    procs[1].push(s, 4)
    await state.close()  # waits for the save, then saves the final state here
    counter.cancel()
    assert saving is not None and saving.done() and state.saves == 3
    assert not Path(state.path + ".tmp").exists()
    restored, _ = restarted(s, clocks, tmp_path)
    assert ok_total(restored) == 5 * 3 + 2 + 4


async def test_a_state_save_failing_on_the_loop_is_one_warning_in_the_sidecar(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The writing thread's problem (a planted symlink): one WARNING, retried, nothing else
    touched."""
    s, clocks = make()
    Proc(clocks, "a", 1).push(s)
    state = persist.StateFile(str(tmp_path / "metrics.sock"), s)
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    for _ in range(2):
        Path(state.path + ".tmp").symlink_to(victim)
        assert not await state.save_on_loop()
        assert not Path(state.path + ".tmp").is_symlink()  # removed what it found
    assert victim.read_text() == "untouched"
    assert state.problem is not None and state.path in state.problem
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "restart would start counting afresh" in warnings[0].message
    assert await state.save_on_loop() and state.problem is None


def test_fine_counts_survive_the_restart_exactly(tmp_path: Path) -> None:
    """The fine histogram (live and retired) is saved in its wire form and read back equal."""
    s, clocks = make()
    index = bisect_left(fine.bounds(DEFAULT_BUCKETS) or (), 0.02)
    for source, final in (("gone", True), ("live", False)):
        hist = [0] * (len(DEFAULT_BUCKETS) + 1)
        hist[2] = 7
        rows = [{"service": KEY[0], "method": KEY[1], "type": "unary", "started": 7,
                 "codes": {"OK": 7}, "hist": hist, "sum": 0.14, "max": 0.02,
                 "fine": fine.to_json(fine.pack([index, 7]))}]
        (datagram,) = encode(
            source={"id": source, "pid": 1, "started": clocks.wall(), "service": SERVICE,
                    "version": "1"},
            seq=1, time=clocks.wall(), buckets=DEFAULT_BUCKETS, rows=rows, health="healthy",
            checks={}, reporter={}, final=final)
        assert s.ingest(datagram) is None
    before = s.totals()[KEY]
    assert before.fine is not None and list(before.fine) == [index, 14]
    fresh, _ = restarted(s, clocks, tmp_path)
    assert fresh.totals()[KEY] == before
    assert list(Totals.unpack(fresh.retired[KEY]).fine or ()) == [index, 7]
