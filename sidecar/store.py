"""The sidecar's aggregate state: one record per reporting process, retired totals, history.

Every exported counter is ``retired + sum(live sources)``. A source that says it is exiting
(``final``) or that has not pushed for ``expire_after`` seconds is folded into the retired totals,
so counters stay monotonic across gRPC process restarts; if an expired source speaks again it is
taken back out, so nothing is counted twice.

Windows (1m, 5m, 1h) subtract a ring of earlier aggregate points from the current one. Totals a
process had accumulated before this sidecar first heard of it ("prehistory") are exported as
counters but kept out of the windows, so a restarted sidecar does not report an hour of traffic
as the last minute's.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sidecar import protocol
from sidecar.protocol import Message, ProtocolError, Row
from sidecar.stats import Totals

__all__ = ["Source", "Store"]

Key = tuple[str, str, str]  # (service, method, type)
log = logging.getLogger("sidecar.store")

RING_STEP = 5.0  # seconds between history points
RING_FINE = 300.0  # points younger than this are all kept; older ones one per minute
RING_SPAN = 3600.0
RETIRED_IDS = 256  # expired sources remembered, so that one that comes back is not doubled
MAX_SOURCES = 1024  # live reporting processes; a new one past this is refused until one retires


def _totals(row: Row) -> Totals:
    return Totals(row.started, dict(row.codes), row.hist, row.sum, row.max,
                  dict(row.exceptions), row.last_error, row.msg_received, row.msg_sent)


@dataclass
class Source:
    """What the sidecar knows of one reporting process."""

    id: str
    pid: int
    started: float
    service: str
    version: str
    seq: int
    parts_seen: set[int]
    first_seq: int
    preexisting: bool  # it was running before this sidecar heard of it
    last_push: float  # monotonic
    last_push_wall: float
    health: str
    checks: dict[str, str]
    rows: dict[Key, Totals] = field(default_factory=dict)
    dropped: int = 0
    send_errors: int = 0
    overflow: int = 0


class Store:
    """Applies decoded messages and answers questions about the totals."""

    def __init__(
        self,
        stale_after: float = 5.0,
        expire_after: float = 60.0,
        max_series: int = 2000,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.stale_after = stale_after
        self.expire_after = max(expire_after, stale_after)
        self.max_series = max_series
        self.clock = clock
        self.wall = wall
        self.started = clock()
        self.started_wall = wall()
        self.sources: dict[str, Source] = {}
        self.retired: dict[Key, Totals] = {}
        self.retired_reporter = [0, 0, 0]  # dropped, send_errors, overflow
        self._retired_ids: OrderedDict[str, Source] = OrderedDict()
        self.prehistory: dict[Key, Totals] = {}
        self.buckets: tuple[float, ...] | None = None
        self.received = 0
        self.rejected = dict.fromkeys(protocol.REJECT_REASONS, 0)
        self.overflow_keys: set[Key] = set()
        self._keys: set[Key] = set()  # every series ever applied: keys are never un-known
        self._sources_full_logged = False
        self.version = 0  # bumped on every change; caches key on it
        self._totals_cache: tuple[int, dict[Key, Totals]] | None = None
        self.ring: deque[tuple[float, float, dict[Key, Totals]]] = deque()
        self.ring.append((self.started, self.started_wall, {}))

    # -- ingest -------------------------------------------------------------------------------

    def ingest(self, data: bytes) -> str | None:
        """Decode and apply one datagram; returns the rejection reason, or None when applied."""
        self.received += 1
        try:
            self.apply(protocol.decode(data))
        except ProtocolError as err:
            self.rejected[err.reason] += 1
            self.version += 1
            log.debug("rejected a datagram: %s", err)
            return err.reason
        return None

    def apply(self, msg: Message) -> None:
        """Apply a decoded message (raises ProtocolError when it must be rejected)."""
        if self.buckets is None:
            self.buckets = msg.buckets
        elif msg.buckets != self.buckets:
            raise ProtocolError("bucket_mismatch", f"bounds {list(msg.buckets)} differ from "
                                                   f"{list(self.buckets)} already exported")
        now = self.clock()
        src = self.sources.get(msg.source)
        if src is None and msg.source in self._retired_ids:
            src = self._unretire(msg.source)
        if src is None and len(self.sources) >= MAX_SOURCES:
            if not self._sources_full_logged:
                self._sources_full_logged = True
                log.warning("%d reporting processes are live; messages from new ones are "
                            "refused until some exit or expire", MAX_SOURCES)
            raise ProtocolError("too_many_series", f"{MAX_SOURCES} reporting processes are "
                                                   f"live; source {msg.source} is refused")
        if src is not None:
            if msg.seq < src.seq or (msg.seq == src.seq and msg.part in src.parts_seen):
                raise ProtocolError("not_newer", f"seq {msg.seq} part {msg.part} of source "
                                                 f"{msg.source} was already applied")
            for row in msg.rows:
                old = src.rows.get(row.key)
                if old is not None:
                    _check_monotonic(old, row)
        new_keys = [r.key for r in msg.rows if not self._known(r.key)]
        room = self.max_series - self._series_count()
        refused = set(new_keys[max(room, 0):])
        if refused:
            fresh = refused - self.overflow_keys
            if fresh and not self.overflow_keys:
                log.warning("series limit %d reached: new RPC methods are counted in "
                            "oracle_sidecar_series_overflow_total, not exported",
                            self.max_series)
            if len(self.overflow_keys) < 100 * self.max_series:
                self.overflow_keys |= fresh

        if src is None:
            # Seen for the first time. If it began before this sidecar did (with slack for a
            # process that starts together with us), what it already counted is prehistory.
            src = Source(msg.source, msg.pid, msg.started, msg.service, msg.version, msg.seq,
                         set(), msg.seq, msg.started < self.started_wall - 2.0, now, msg.time,
                         msg.health, msg.checks)
            self.sources[msg.source] = src
            log.info("new reporting process", extra={"source": msg.source, "pid": msg.pid,
                                                     "reporting_service": msg.service})
        if msg.seq > src.seq:
            src.seq, src.parts_seen = msg.seq, set()
        src.parts_seen.add(msg.part)
        src.last_push, src.last_push_wall = now, msg.time
        src.health, src.checks = msg.health, msg.checks
        src.dropped, src.send_errors, src.overflow = msg.dropped, msg.send_errors, msg.overflow
        for row in msg.rows:
            if row.key in refused:
                continue
            totals = _totals(row)
            if src.preexisting and msg.seq == src.first_seq and row.key not in src.rows:
                self.prehistory[row.key] = self.prehistory.get(row.key, Totals()) + totals
            src.rows[row.key] = totals
            self._keys.add(row.key)
        if msg.final:
            self._retire(src)
        self.version += 1

    def _known(self, key: Key) -> bool:
        return key in self._keys

    def _series_count(self) -> int:
        return len(self._keys)

    def _retire(self, src: Source) -> None:
        for key, totals in src.rows.items():
            self.retired[key] = self.retired.get(key, Totals()) + totals
        self.retired_reporter = [self.retired_reporter[0] + src.dropped,
                                 self.retired_reporter[1] + src.send_errors,
                                 self.retired_reporter[2] + src.overflow]
        del self.sources[src.id]
        self._retired_ids[src.id] = src
        while len(self._retired_ids) > RETIRED_IDS:
            self._retired_ids.popitem(last=False)
        self.version += 1

    def _unretire(self, source_id: str) -> Source:
        src = self._retired_ids.pop(source_id)
        for key, totals in src.rows.items():
            self.retired[key] = self.retired[key] - totals
        self.retired_reporter = [self.retired_reporter[0] - src.dropped,
                                 self.retired_reporter[1] - src.send_errors,
                                 self.retired_reporter[2] - src.overflow]
        self.sources[source_id] = src
        log.info("a retired reporting process is back", extra={"source": source_id})
        return src

    # -- time ---------------------------------------------------------------------------------

    def tick(self) -> None:
        """Expire silent sources and add a history point when one is due (call every second)."""
        now = self.clock()
        for src in list(self.sources.values()):
            if now - src.last_push > self.expire_after:
                log.warning("reporting process expired after %.0f s without a push",
                            now - src.last_push, extra={"source": src.id, "pid": src.pid})
                self._retire(src)
        if now - self.ring[-1][0] >= RING_STEP:
            self.ring.append((now, self.wall(), self.observed()))
            self._prune_ring(now)

    def _prune_ring(self, now: float) -> None:
        kept: deque[tuple[float, float, dict[Key, Totals]]] = deque()
        last_minute = None
        for point in self.ring:
            age = now - point[0]
            if age > RING_SPAN + 60:
                continue
            if age > RING_FINE:
                minute = int(point[0] // 60)
                if minute == last_minute:
                    continue
                last_minute = minute
            kept.append(point)
        self.ring = kept

    # -- answers ------------------------------------------------------------------------------

    def totals(self) -> dict[Key, Totals]:
        """Cumulative totals per RPC since the reporting processes started (what /metrics says)."""
        if self._totals_cache is not None and self._totals_cache[0] == self.version:
            return self._totals_cache[1]
        out = dict(self.retired)
        for src in self.sources.values():
            for key, totals in src.rows.items():
                have = out.get(key)
                out[key] = totals if have is None else have + totals
        self._totals_cache = (self.version, out)
        return out

    def observed(self) -> dict[Key, Totals]:
        """Totals without prehistory: what happened while this sidecar was listening."""
        totals = self.totals()
        if not self.prehistory:
            return totals
        return {k: (t - self.prehistory[k]) if k in self.prehistory else t
                for k, t in totals.items()}

    def window(self, seconds: float) -> tuple[float, dict[Key, Totals], dict[Key, Totals]]:
        """(covered seconds, totals at the window's start, totals now) for the last ``seconds``."""
        now = self.clock()
        start = self.ring[0]
        for point in self.ring:
            if point[0] <= now - seconds:
                start = point
            else:
                break
        return now - start[0], start[2], self.observed()

    def reporter_counts(self) -> tuple[int, int, int]:
        """Reporters' own (dropped, send_errors, overflow), summed, retired ones included."""
        d, e, o = self.retired_reporter
        for s in self.sources.values():
            d, e, o = d + s.dropped, e + s.send_errors, o + s.overflow
        return d, e, o

    def is_fresh(self, src: Source) -> bool:
        return self.clock() - src.last_push <= self.stale_after

    def status(self) -> tuple[str, str]:
        """(healthy | degraded | down | unknown, the reason in words)."""
        if not self.sources:
            return "unknown", "no gRPC process has reported to this sidecar yet"
        worst, reason = "healthy", "every reporting process is fresh and healthy"
        rank = {"healthy": 0, "degraded": 1, "down": 2}
        for src in self.sources.values():
            if not self.is_fresh(src):
                state = "down"
                why = (f"process {src.pid} has not pushed for "
                       f"{self.clock() - src.last_push:.1f} s (limit {self.stale_after:g} s)")
            else:
                state = src.health
                failing = [f"{k}: {v}" for k, v in src.checks.items()]
                why = f"process {src.pid} reports {state}" + (
                    f" ({'; '.join(failing)})" if failing and state != "healthy" else "")
            if rank[state] > rank[worst]:
                worst, reason = state, why
        return worst, reason

    def settling(self) -> bool:
        """True while a restarted sidecar may not yet have heard from every running process.

        A sidecar that starts beside processes that were already running hears from them one
        by one, within a flush interval each. Until ``stale_after`` has passed (every live
        process pushes within it), a per-RPC sum would miss the processes not yet heard from,
        and Prometheus would take the dip for a counter reset. The RPC series are held back
        meanwhile; a sidecar that starts before its processes never settles.
        """
        return (self.clock() - self.started < self.stale_after
                and any(s.preexisting for s in self.sources.values()))

    def last_push_age(self) -> float | None:
        """Seconds since the most recent push from any live source."""
        if not self.sources:
            return None
        return self.clock() - max(s.last_push for s in self.sources.values())


def _check_monotonic(old: Totals, row: Row) -> None:
    def fail(what: str, before: float, after: float) -> None:
        raise ProtocolError("counter_decreased", f"{row.service}/{row.method} {what} went from "
                                                 f"{before} to {after} within one source")

    if row.started < old.started:
        fail("started", old.started, row.started)
    for code, n in old.codes.items():
        if row.codes.get(code, 0) < n:
            fail(f"code {code}", n, row.codes.get(code, 0))
    for i, (a, b) in enumerate(zip(old.hist, row.hist, strict=False)):
        if b < a:
            fail(f"bucket {i}", a, b)
    if row.sum < old.sum - 1e-9:
        fail("sum", old.sum, row.sum)
    for name, n in old.exceptions.items():
        if row.exceptions.get(name, 0) < n:
            fail(f"exception {name}", n, row.exceptions.get(name, 0))
