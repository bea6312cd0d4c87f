"""The sidecar's aggregate state: one record per reporting process, retired totals, history.

Every exported counter is ``retired + sum(live sources)``. A source that says it is exiting
(``final``), that a newer process of the same service succeeds (docs/protocol.md, "Process
lifecycle"), or that has not pushed for ``expire_after`` seconds is folded into the retired
totals, so counters stay monotonic across gRPC process restarts; if a retired source speaks
again it is taken back out, so nothing is counted twice.

Windows (1m, 5m, 1h) subtract a ring of earlier aggregate points from the current one. Totals a
process had accumulated before this sidecar first heard of it ("prehistory") are exported as
counters but kept out of the windows, so a restarted sidecar does not report an hour of traffic
as the last minute's.
"""

from __future__ import annotations

import functools
import logging
import operator
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sidecar import fine as fine_histogram
from sidecar import protocol
from sidecar.protocol import Message, ProtocolError, Row
from sidecar.slices import Deadline, Slices, drive
from sidecar.stats import Packed, Totals

__all__ = ["Departure", "Source", "Store"]

Key = tuple[str, str, str]  # (service, method, type)
log = logging.getLogger("sidecar.store")

RING_STEP = 5.0  # seconds between history points
RING_FINE = 300.0  # points younger than this are all kept; older ones one per minute
RING_SPAN = 3600.0
RETIRED_IDS = 256  # expired sources remembered, so that one that comes back is not doubled
MAX_SOURCES = 1024  # live reporting processes; a new one past this is refused until one retires
MISSED_SLACK = 1.0  # seconds past a source's own push interval before it counts as gone
SETTLE_MAX = 10.0  # longest a restarted sidecar holds the RPC series back for known sources


class _Made:
    """Results of ``make(inputs)`` by method, with the inputs each was made from: position by
    position in dicts of their own (a tuple per method holding totals would stay in the
    garbage collector's sight, a full collection's work for every method)."""

    def __init__(self) -> None:
        self.results: dict[Key, Totals] = {}
        self.inputs: list[dict[Key, Totals | Packed]] = []

    def get(self, key: Key, these: Sequence[Totals | Packed]) -> Totals | None:
        """The result kept for ``key`` if it was made from the very objects ``these``."""
        made = self.results.get(key)
        inputs = self.inputs
        if made is None or len(inputs) < len(these):
            return None
        for kept, this in zip(inputs, these, strict=False):  # inputs may hold more
            if kept.get(key) is not this:
                return None
        if len(inputs) > len(these) and key in inputs[len(these)]:
            return None  # made from more inputs than there are now
        return made

    def put(self, key: Key, these: Sequence[Totals | Packed], result: Totals) -> None:
        self.results[key] = result
        inputs = self.inputs
        while len(inputs) < len(these):
            inputs.append({})
        for kept, this in zip(inputs, these, strict=False):
            kept[key] = this
        for kept in inputs[len(these):]:
            kept.pop(key, None)

    def forget(self, key: Key) -> None:
        if self.results.pop(key, None) is not None:
            for kept in self.inputs:
                kept.pop(key, None)


def _remade(inputs: Mapping[Key, Sequence[Totals | Packed]], kept: _Made,
            make: Callable[[Sequence[Totals | Packed]], Totals]) -> Slices[dict[Key, Totals]]:
    """``make(its inputs)`` for each key (a single input that is Totals is its own result),
    reusing the result ``kept`` made from the very same objects and keeping the new ones
    there; yields when a slice's time is over."""
    out: dict[Key, Totals] = {}
    deadline = Deadline()
    for i, (key, these) in enumerate(inputs.items()):
        if not i % 64 and deadline.passed():
            yield
            deadline.reset()
        if len(these) == 1 and isinstance(these[0], Totals):
            out[key] = these[0]
            kept.forget(key)
            continue
        made = kept.get(key, these)
        if made is None:
            made = make(these)
            kept.put(key, these, made)
            if deadline.passed():
                yield
                deadline.reset()
        out[key] = made
    for key in kept.results.keys() - out.keys():  # gone from every process (a type change)
        kept.forget(key)
    return out


def _summed(these: Sequence[Totals | Packed]) -> Totals:
    """The sum of a method's totals (the retired ones packed)."""
    return functools.reduce(operator.add, (t if isinstance(t, Totals) else Totals.unpack(t)
                                           for t in these))


def _difference(pair: Sequence[Totals | Packed]) -> Totals:
    """Totals less their prehistory."""
    now, before = pair
    assert isinstance(now, Totals) and isinstance(before, Totals)
    return now - before


def _totals(row: Row) -> Totals:
    # The row's dicts are the decoder's own, made for this datagram: no copy needed. An idle
    # method's row is never made into new totals (see _unchanged), so the history ring's points
    # share one object for it instead of holding a copy each.
    return Totals(row.started, row.codes, row.hist, row.sum, row.max, row.exceptions,
                  row.last_error, row.msg_received, row.msg_sent, row.fine)


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
    types: dict[tuple[str, str], str] = field(default_factory=dict)  # (service, method) -> type
    final_seq: int | None = None  # the seq of its final snapshot, once one part said so
    gap: float | None = None  # shortest time seen between two of its pushes, per seq step
    may_succeed: bool = False  # new to this sidecar and not yet matched with a predecessor
    replaced_by: str | None = None  # once retired as succeeded: the successor's id
    heard: bool = True  # pushed since this sidecar started (False: known from the state file)
    prehistory_seq: int | None = None  # the push whose counts predate this sidecar
    prehistory_keys: set[Key] = field(default_factory=set)
    packed: dict[Key, Packed] = field(default_factory=dict)  # its rows while retired

    def __post_init__(self) -> None:
        if not self.types:  # e.g. a source read back from the state file
            self.types = {key[:2]: key[2] for key in self.rows}

    def put_away(self) -> None:
        """Keep a retired source's rows packed (:meth:`Totals.pack`), out of the garbage
        collector's sight, until it comes back (:meth:`take_back`), if ever."""
        self.packed = {key: totals.pack() for key, totals in self.rows.items()}
        self.rows = {}

    def take_back(self) -> None:
        """The rows :meth:`put_away` packed, as totals again."""
        self.rows = {key: Totals.unpack(packed) for key, packed in self.packed.items()}
        self.packed = {}


@dataclass(frozen=True)
class Departure:
    """The last process that left with no successor: how, and when (wall clock)."""

    pid: int
    service: str
    how: str  # "exited" (final push) or "stopped pushing" (expired)
    wall: float


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
        # The totals of processes that have left, packed (Totals.pack): out of the garbage
        # collector's sight (they change only when a process leaves or comes back).
        self.retired: dict[Key, Packed] = {}
        self.retired_reporter = [0, 0, 0]  # dropped, send_errors, overflow
        self._retired_ids: OrderedDict[str, Source] = OrderedDict()
        self.prehistory: dict[Key, Totals] = {}
        self.buckets: tuple[float, ...] | None = None
        self.received = 0
        self.rejected = dict.fromkeys(protocol.REJECT_REASONS, 0)
        self.rows_rejected = dict.fromkeys(protocol.ROW_REJECT_REASONS, 0)
        self.overflow_keys: set[Key] = set()
        self._keys: set[Key] = set()  # every series ever applied: keys are never un-known
        self._sources_full_logged = False
        self.generation = 0  # bumped on every change; caches key on it (not a version of anything)
        self._totals_cache: tuple[int, dict[Key, Totals]] | None = None
        self._observed_cache: tuple[int, dict[Key, Totals]] | None = None
        # Sums over several processes and differences from the prehistory, by method, with
        # the objects they were made from (made again only when one of those is new).
        self._sums = _Made()
        self._differences = _Made()
        # History points: (monotonic time, wall time, observed totals packed by Totals.pack, so
        # that an hour of points adds nothing to the garbage collector's full collections).
        self.ring: deque[tuple[float, float, dict[Key, Packed]]] = deque()
        self.ring.append((self.started, self.started_wall, {}))
        self.departed: Departure | None = None
        self.awaiting: set[str] = set()  # sources from the state file not heard from yet
        self.restored = False  # state was read back from a state file at start
        self.changes = 0  # bumped when a source appears or retires: the state file is due
        self.applying = False  # a datagram is being applied in slices (ingest_slices)

    # -- ingest -------------------------------------------------------------------------------

    def ingest(self, data: bytes) -> str | None:
        """Decode and apply one datagram; returns the rejection reason, or None when applied."""
        return drive(self.ingest_slices(data))

    def ingest_slices(self, data: bytes) -> Slices[str | None]:
        """:meth:`ingest` in slices (:mod:`sidecar.slices`); ``applying`` is True until it
        ends. The store's generation moves once, at the end: until then every cached answer
        stands, and series are read from before the datagram or after each of its rows."""
        self.received += 1
        self.applying = True
        deadline = Deadline()
        try:
            msg = yield from protocol.decode_slices(data)
            if deadline.passed():  # the rows are applied from the next slice on
                yield
            yield from self.apply_slices(msg)
        except ProtocolError as err:
            return self._count(err)
        finally:
            self.applying = False
        return None

    def reject(self, err: ProtocolError) -> str:
        """Count a received datagram that could not even be read (oversized); the reason."""
        self.received += 1
        return self._count(err)

    def _count(self, err: ProtocolError) -> str:
        self.rejected[err.reason] += 1
        self.generation += 1
        log.debug("rejected a datagram: %s", err)
        return err.reason

    def apply(self, msg: Message) -> None:
        """Apply a decoded message (raises ProtocolError when it must be rejected as a whole).

        Rows that break a rule are skipped one by one and counted in ``rows_rejected``.
        """
        drive(self.apply_slices(msg))

    def apply_slices(self, msg: Message) -> Slices[None]:
        """:meth:`apply` in slices: it yields between rows when a slice's time is over."""
        self._check_buckets(msg)
        now = self.clock()
        src, created, measured = self._source_of(msg, now)
        rejected = self.rows_rejected
        for reason, detail in msg.rejected_rows:
            rejected[reason] += 1
            log.debug("rejected a row of source %s: %s", msg.source, detail)
        self._note_push(src, msg, now, measured)
        yield from self._apply_rows(src, msg)
        if msg.final:
            src.final_seq = msg.seq
        if src.final_seq is not None and src.final_seq == msg.seq:
            self._retire(src, "exited")  # every part of the final snapshot keeps it retired
        elif created:
            self._succeed(now)  # later matches are made by tick()
        self.generation += 1

    def _check_buckets(self, msg: Message) -> None:
        """The first message sets the classic bounds; a message with others is refused."""
        if self.buckets is None:
            self.buckets = msg.buckets
        elif msg.buckets != self.buckets:
            raise ProtocolError("bucket_mismatch", f"bounds {list(msg.buckets)} differ from "
                                                   f"{list(self.buckets)} already exported")

    def _source_of(self, msg: Message, now: float) -> tuple[Source, bool, bool]:
        """The message's source (made, or taken back from the retired, when need be); whether
        it was made now, and whether its push gap can be measured. Raises ProtocolError when
        the message is not newer or there is no room for another source."""
        src = self.sources.get(msg.source)
        known = src if src is not None else self._retired_ids.get(msg.source)
        if known is not None and (known.pid != msg.pid or known.started != msg.started):
            # The same id from another process start: a new source; the old one is retired
            # (its totals kept, once) and forgotten.
            log.info("a new process reuses a source id; the old one is retired",
                     extra={"source": msg.source, "pid": msg.pid})
            if src is not None:
                self._retire(src, "stopped pushing")
            del self._retired_ids[msg.source]
            src = known = None
        if known is not None:
            _check_newer(known, msg)
            if src is None:
                src = self._unretire(msg.source)
        elif len(self.sources) >= MAX_SOURCES:
            if not self._sources_full_logged:
                self._sources_full_logged = True
                log.warning("%d reporting processes are live; messages from new ones are "
                            "refused until some exit or expire", MAX_SOURCES)
            raise ProtocolError("too_many_series", f"{MAX_SOURCES} reporting processes are "
                                                   f"live; source {msg.source} is refused")
        measured = src is not None and src.heard  # a push gap since its previous push here
        if src is None:
            # Seen for the first time. If it began before this sidecar did (with slack for a
            # process that starts together with us), what it already counted is prehistory.
            preexisting = msg.started < self.started_wall - 2.0
            src = Source(msg.source, msg.pid, msg.started, msg.service, msg.version, msg.seq,
                         set(), msg.seq, preexisting, now, msg.time, msg.health or "healthy",
                         msg.checks or {}, may_succeed=True,
                         prehistory_seq=msg.seq if preexisting else None)
            self.sources[msg.source] = src
            self.changes += 1
            log.info("new reporting process", extra={"source": msg.source, "pid": msg.pid,
                                                     "reporting_service": msg.service})
            return src, True, measured
        if not src.heard:  # known from the state file: what it counted meanwhile predates us
            src.heard, src.prehistory_seq = True, msg.seq
            self.awaiting.discard(src.id)
        return src, False, measured

    @staticmethod
    def _note_push(src: Source, msg: Message, now: float, measured: bool) -> None:
        """What the message says of its process: sequence, push gap, health, own counters."""
        if msg.seq > src.seq:
            step = (now - src.last_push) / (msg.seq - src.seq)
            if measured and (src.gap is None or step < src.gap):
                src.gap = step
            src.seq, src.parts_seen = msg.seq, set()
        src.parts_seen.add(msg.part)
        src.last_push, src.last_push_wall = now, msg.time
        src.service, src.version = msg.service, msg.version
        if msg.health is not None:
            src.health, src.checks = msg.health, msg.checks or {}
        if msg.dropped is not None:
            src.dropped = msg.dropped
        if msg.send_errors is not None:
            src.send_errors = msg.send_errors
        if msg.overflow is not None:
            src.overflow = msg.overflow

    def _apply_rows(self, src: Source, msg: Message) -> Slices[None]:
        """The message's rows into its source's totals; a row that breaks a rule is skipped."""
        rows = src.rows
        prehistory = msg.seq == src.prehistory_seq
        deadline = Deadline()
        for i, row in enumerate(msg.rows):
            if not i % 32 and i and deadline.passed():
                yield
                deadline.reset()
            key = (row.service, row.method, row.type)
            old = rows.get(key)
            if old is None:
                known_type = src.types.get(key[:2])
                if known_type is not None:  # the method was reported with another type
                    placeholder = src.rows[(key[0], key[1], known_type)]
                    if placeholder.started or any(placeholder.codes.values()):
                        self._reject_row("type_changed", f"{row.service}/{row.method} was "
                                                         f"{known_type}, now {row.type}")
                        continue
                    del src.rows[(key[0], key[1], known_type)]
                if key not in self._keys:
                    if len(self._keys) >= self.max_series:
                        self._refuse(key)
                        continue
                    self._keys.add(key)
                src.types[key[:2]] = row.type
            elif _unchanged(old, row):
                continue
            else:
                problem = _decreased(old, row)
                if problem:
                    self._reject_row("counter_decreased", f"{row.service}/{row.method} "
                                                          f"{problem} within one source")
                    continue
            totals = _totals(row)
            if prehistory and key not in src.prehistory_keys:
                self.prehistory[key] = self.prehistory.get(key, Totals()) + (
                    totals if old is None else totals - old)
                src.prehistory_keys.add(key)
            rows[key] = totals

    def _reject_row(self, reason: str, detail: str) -> None:
        self.rows_rejected[reason] += 1
        log.debug("rejected a row: %s: %s", reason, detail)

    def _refuse(self, key: Key) -> None:
        """A new series past --max-series: counted once, logged once, not exported."""
        if key in self.overflow_keys:
            return
        if not self.overflow_keys:
            log.warning("series limit %d reached: new RPC methods are counted in "
                        "oracle_sidecar_series_overflow_total, not exported", self.max_series)
        if len(self.overflow_keys) < 100 * self.max_series:
            self.overflow_keys.add(key)

    def _retire(self, src: Source, how: str, successor: Source | None = None) -> None:
        """Fold ``src`` into the retired totals: it "exited", "stopped pushing" or was
        "replaced" by ``successor``."""
        rows, retired = src.rows, self.retired
        src.put_away()
        for key, packed in src.packed.items():
            before = retired.get(key)
            retired[key] = packed if before is None else (Totals.unpack(before)
                                                          + rows[key]).pack()
        self.retired_reporter = [self.retired_reporter[0] + src.dropped,
                                 self.retired_reporter[1] + src.send_errors,
                                 self.retired_reporter[2] + src.overflow]
        del self.sources[src.id]
        self.awaiting.discard(src.id)
        src.replaced_by = successor.id if successor is not None else None
        self._retired_ids[src.id] = src
        while len(self._retired_ids) > RETIRED_IDS:
            self._retired_ids.popitem(last=False)
        if successor is None:
            self.departed = Departure(src.pid, src.service, how, self.wall())
        self.changes += 1
        self.generation += 1

    def _unretire(self, source_id: str) -> Source:
        src = self._retired_ids.pop(source_id)
        src.take_back()
        for key, totals in src.rows.items():
            self.retired[key] = (Totals.unpack(self.retired[key]) - totals).pack()
        self.retired_reporter = [self.retired_reporter[0] - src.dropped,
                                 self.retired_reporter[1] - src.send_errors,
                                 self.retired_reporter[2] - src.overflow]
        self.sources[source_id] = src
        successor = self.sources.get(src.replaced_by or "")
        if successor is not None:  # it was no successor after all: it may still be one
            successor.may_succeed = True
            log.info("a reporting process taken as succeeded is pushing again; both are "
                     "counted", extra={"source": source_id, "successor": successor.id})
        else:
            log.info("a retired reporting process is back", extra={"source": source_id})
        src.replaced_by = None
        self.changes += 1
        return src

    def gone(self, src: Source, now: float | None = None) -> bool:
        """Whether ``src`` has missed its pushes: silent longer than its own interval plus
        MISSED_SLACK (``stale_after`` when it pushed once only, and never longer)."""
        silent = (self.clock() if now is None else now) - src.last_push
        limit = self.stale_after if src.gap is None else min(src.gap + MISSED_SLACK,
                                                             self.stale_after)
        return silent > limit

    def _succeed(self, now: float) -> None:
        """Retire each gone source that a newer process of its service has taken over.

        A process succeeds a gone one when it started after that one's last push and has not
        succeeded another yet: one newcomer replaces one departed process, the longest silent
        first. A process that dies with no newcomer is not replaced and shows as down.
        """
        heirs = [s for s in self.sources.values() if s.may_succeed and not self.gone(s, now)]
        if not heirs:
            return
        gone = sorted((s for s in self.sources.values() if self.gone(s, now)),
                      key=lambda s: s.last_push)
        for old in gone:
            heir = min((h for h in heirs if h.may_succeed and h.service == old.service
                        and h.started > old.last_push_wall), key=lambda h: h.started,
                       default=None)
            if heir is None:
                continue
            heir.may_succeed = False
            log.info("reporting process replaced by a newer one; its counts are kept",
                     extra={"source": old.id, "pid": old.pid, "successor": heir.id,
                            "successor_pid": heir.pid})
            self._retire(old, "replaced", heir)

    # -- time ---------------------------------------------------------------------------------

    def tick(self) -> None:
        """Expire silent sources and add a history point when one is due (call every second)."""
        drive(self.tick_slices())

    def tick_slices(self) -> Slices[None]:
        """:meth:`tick` in slices (:mod:`sidecar.slices`); the point is the store at the call."""
        now = self.clock()
        self._succeed(now)
        for src in list(self.sources.values()):
            if now - src.last_push > self.expire_after:
                log.warning("reporting process expired after %.0f s without a push",
                            now - src.last_push, extra={"source": src.id, "pid": src.pid})
                self._retire(src, "stopped pushing")
        if now - self.ring[-1][0] >= RING_STEP:
            wall = self.wall()
            point = yield from self._point()
            self.ring.append((now, wall, point))
            self._prune_ring(now)

    def _point(self) -> Slices[dict[Key, Packed]]:
        """The observed totals, packed; a method whose totals did not change since the last
        point shares that point's tuple. (Compared packed: keeping the totals the last point
        was made from would keep a Totals object per method in the garbage collector's
        sight.)"""
        observed = yield from self.observed_slices()
        last = self.ring[-1][2]
        point: dict[Key, Packed] = {}
        deadline = Deadline()
        for i, (key, t) in enumerate(observed.items()):
            packed = t.pack()
            before = last.get(key)
            point[key] = before if before == packed else packed
            if not i % 32 and deadline.passed():
                yield
                deadline.reset()
        return point

    def _prune_ring(self, now: float) -> None:
        kept: deque[tuple[float, float, dict[Key, Packed]]] = deque()
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
        return drive(self.totals_slices())

    def totals_slices(self) -> Slices[dict[Key, Totals]]:
        """:meth:`totals` in slices (:mod:`sidecar.slices`), as the store was at the call.

        A method counted by one process (or only retired) is that process's own object; a sum
        over several is kept with the objects it was made from and made again only when one of
        them is new (a push, a retirement), so a push that changed a few methods costs a few
        sums, and one that changed thousands is summed across turns of the event loop.
        """
        generation = self.generation
        if self._totals_cache is not None and self._totals_cache[0] == generation:
            return self._totals_cache[1]
        # The sums it holds are let go of one by one as they are made again, not thousands at
        # once when the new dict takes its place (freeing them is a slice's work).
        self._totals_cache = None
        # The store as it is now (copies at C speed), then its sums in slices.
        layers: list[Mapping[Key, Totals | Packed]] = [self.retired.copy()]
        layers += [src.rows.copy() for src in self.sources.values()]
        parts: dict[Key, list[Totals | Packed]] = {}
        deadline = Deadline()
        for layer in layers:
            for i, (key, t) in enumerate(layer.items()):
                if not i % 256 and deadline.passed():
                    yield
                    deadline.reset()
                have = parts.get(key)
                if have is None:
                    parts[key] = [t]
                else:
                    have.append(t)
        out = yield from _remade(parts, self._sums, _summed)
        self._totals_cache = (generation, out)
        return out

    def observed(self) -> dict[Key, Totals]:
        """Totals without prehistory: what happened while this sidecar was listening."""
        return drive(self.observed_slices())

    def observed_slices(self) -> Slices[dict[Key, Totals]]:
        """:meth:`observed` in slices, as the store was at the call; a difference is made
        again only when the totals or the prehistory of its method are new objects."""
        generation, prehistory = self.generation, dict(self.prehistory)
        totals = yield from self.totals_slices()
        if not prehistory:
            return totals
        if self._observed_cache is not None and self._observed_cache[0] == generation:
            return self._observed_cache[1]
        self._observed_cache = None  # as in totals_slices
        pairs = {key: (t, prehistory[key]) if key in prehistory else (t,)
                 for key, t in totals.items()}
        out = yield from _remade(pairs, self._differences, _difference)
        self._observed_cache = (generation, out)
        return out

    def window_start(self, seconds: float) -> tuple[float, dict[Key, Packed]]:
        """(covered seconds, the history point it starts from) for the last ``seconds``: the
        totals observed at its start, packed (:meth:`Totals.pack`)."""
        now = self.clock()
        start = self.ring[0]
        for point in self.ring:
            if point[0] <= now - seconds:
                start = point
            else:
                break
        return now - start[0], start[2]

    def reporter_counts(self) -> tuple[int, int, int]:
        """Reporters' own (dropped, send_errors, overflow), summed, retired ones included."""
        d, e, o = self.retired_reporter
        for s in self.sources.values():
            d, e, o = d + s.dropped, e + s.send_errors, o + s.overflow
        return d, e, o

    def is_fresh(self, src: Source) -> bool:
        return self.clock() - src.last_push <= self.stale_after

    def status(self) -> tuple[str, str]:
        """(healthy | degraded | down | unknown, the reason in words).

        ``unknown`` only for a sidecar that has never heard from any process (nor has a state
        file that did); once the last live process has left, ``down`` says how and when.
        """
        if not self.sources:
            gone = self.departed
            if gone is None:
                return "unknown", "no gRPC process has reported to this sidecar yet"
            who = f"the Oracle process {gone.pid}" + (f" ({gone.service})" if gone.service
                                                      else "")
            ago = max(0.0, self.wall() - gone.wall)
            return "down", f"{who} {gone.how} {ago:.0f} s ago and has not come back"
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
        by one, within a flush interval each. Until it has, a per-RPC sum would miss (or hold
        old counts of) the processes not yet heard from, and Prometheus would take the dip for
        a counter reset. The RPC series are held back meanwhile. With a state file, until every
        process it names has pushed again or retired (at most ``SETTLE_MAX`` seconds, or
        ``stale_after`` when longer); without one, for ``stale_after`` once a process that
        started before this sidecar is heard. A sidecar that starts before its processes never
        settles.
        """
        elapsed = self.clock() - self.started
        if self.restored:
            return bool(self.awaiting) and elapsed < max(SETTLE_MAX, self.stale_after)
        return elapsed < self.stale_after and any(s.preexisting for s in self.sources.values())

    def last_push_age(self) -> float | None:
        """Seconds since the most recent push from any live source."""
        if not self.sources:
            return None
        return self.clock() - max(s.last_push for s in self.sources.values())


def _check_newer(src: Source, msg: Message) -> None:
    """Reject a message its source already sent, or whose reporter counts went down."""
    if msg.seq < src.seq or (msg.seq == src.seq and msg.part in src.parts_seen):
        raise ProtocolError("not_newer", f"seq {msg.seq} part {msg.part} of source "
                                         f"{msg.source} was already applied")
    for what, before, after in (("dropped", src.dropped, msg.dropped),
                                ("send_errors", src.send_errors, msg.send_errors),
                                ("overflow", src.overflow, msg.overflow)):
        if after is not None and after < before:
            raise ProtocolError("counter_decreased", f"reporter.{what} of source {msg.source} "
                                                     f"went from {before} to {after}")


def _unchanged(old: Totals, row: Row) -> bool:
    """True when a row repeats the source's totals (an idle method): nothing to do."""
    return (row.started == old.started and row.hist == old.hist and row.sum == old.sum
            and row.codes == old.codes and row.exceptions == old.exceptions
            and row.msg_received == old.msg_received and row.msg_sent == old.msg_sent
            and row.max == old.max and row.last_error == old.last_error
            and row.fine == old.fine)


def _decreased(old: Totals, row: Row) -> str | None:
    """Which counter of ``row`` went down from ``old``, in words; None when none did."""
    if row.started < old.started:
        return f"started went from {old.started} to {row.started}"
    for code, n in old.codes.items():
        if row.codes.get(code, 0) < n:
            return f"code {code} went from {n} to {row.codes.get(code, 0)}"
    if not all(map(operator.ge, row.hist, old.hist)):
        i = next(i for i, (a, b) in enumerate(zip(old.hist, row.hist, strict=True)) if b < a)
        return f"bucket {i} went from {old.hist[i]} to {row.hist[i]}"
    if old.fine is not None and row.fine is not None and old.fine != row.fine:
        down = fine_histogram.decrease(row.fine, old.fine)
        if down is not None:
            return f"fine bucket {down[0]} went from {down[1]} to {down[2]}"
    if row.sum < old.sum - 1e-9:
        return f"sum went from {old.sum} to {row.sum}"
    for name, n in old.exceptions.items():
        if row.exceptions.get(name, 0) < n:
            return f"exception {name} went from {n} to {row.exceptions.get(name, 0)}"
    if row.msg_received < old.msg_received:
        return f"msg_received went from {old.msg_received} to {row.msg_received}"
    if row.msg_sent < old.msg_sent:
        return f"msg_sent went from {old.msg_sent} to {row.msg_sent}"
    return None
