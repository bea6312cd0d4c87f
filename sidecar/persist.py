"""The sidecar's state file: what a restarted sidecar cannot learn again from the reporters.

Kept beside the socket (``<socket>.state.json``; in the chart that is the pod's shared emptyDir,
which outlives a sidecar container's restart): the retired totals, every known source with its
last sequence number and counts, the retired sources (so one that comes back is not counted
twice), the histogram bounds and the last departure. Written atomically (a temporary file
renamed over the old one) when a source appears or retires (at most every ``MIN_GAP`` seconds,
and never more than ``SAVE_SHARE`` of the time), and otherwise at most every ``SAVE_EVERY``
seconds when something changed; read back once at start. On the sidecar's event loop a large
state is written by a forked child (:meth:`StateFile.start_if_due`). A file that cannot be
read, is corrupt, or belongs to something else is ignored with one WARNING and replaced by the
next save.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import time
from dataclasses import fields
from typing import Any

from sidecar import fine, forked
from sidecar.stats import Totals
from sidecar.store import Departure, Key, Source, Store

__all__ = ["SAVE_EVERY", "StateFile", "dump", "restore", "state_path"]

log = logging.getLogger("sidecar.persist")

KIND = "oracle-sidecar state"
FORMAT = 1
SAVE_EVERY = 10.0  # seconds between saves of changed counts; a source coming or going: at once
MIN_GAP = 0.1  # seconds between two saves, so that a flood of new sources cannot keep it writing
SAVE_SHARE = 0.05  # and never more than this share of the time spent saving (large states)
FORK_ROWS = 100  # a state of more rows (about 2 ms of encoding, what a fork costs the loop) is
# saved by a forked child
_TOTALS = tuple(f.name for f in fields(Totals))


def state_path(socket_path: str) -> str:
    """Where the state of the sidecar on ``socket_path`` is kept."""
    return socket_path + ".state.json"


# -- writing ------------------------------------------------------------------------------------

def _totals_doc(t: Totals) -> dict[str, Any]:
    doc = {name: getattr(t, name) for name in _TOTALS}
    doc["fine"] = fine.to_json(t.fine)  # an array in memory, its wire form in the file
    return doc


def _rows_doc(rows: dict[Key, Totals]) -> list[Any]:
    return [[*key, _totals_doc(t)] for key, t in rows.items()]


def _source_doc(s: Source, now: float) -> dict[str, Any]:
    return {
        "id": s.id, "pid": s.pid, "started": s.started, "service": s.service,
        "version": s.version, "seq": s.seq, "parts_seen": sorted(s.parts_seen),
        "first_seq": s.first_seq, "preexisting": s.preexisting,
        "last_push_age": max(0.0, now - s.last_push), "last_push_wall": s.last_push_wall,
        "health": s.health, "checks": s.checks, "rows": _rows_doc(s.rows),
        "dropped": s.dropped, "send_errors": s.send_errors, "overflow": s.overflow,
        "gap": s.gap, "may_succeed": s.may_succeed, "replaced_by": s.replaced_by,
    }


def dump(store: Store, socket_path: str) -> dict[str, Any]:
    """The state file's document for ``store``."""
    now = store.clock()
    gone = store.departed
    return {
        "kind": KIND,
        "format": FORMAT,
        "socket": os.path.abspath(socket_path),
        "saved": store.wall(),
        "buckets": None if store.buckets is None else list(store.buckets),
        "retired": _rows_doc(store.retired),
        "retired_reporter": list(store.retired_reporter),
        "sources": [_source_doc(s, now) for s in store.sources.values()],
        "retired_sources": [_source_doc(s, now) for s in store._retired_ids.values()],
        "departed": None if gone is None else {"pid": gone.pid, "service": gone.service,
                                               "how": gone.how, "wall": gone.wall},
    }


# -- reading ------------------------------------------------------------------------------------

def _count(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{what} is {value!r}, not a count")
    return value


def _number(value: Any, what: str, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if type(value) not in (int, float) or not math.isfinite(value):
        raise ValueError(f"{what} is {value!r}, not a number")
    return float(value)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} is {value!r}, not text")
    return value


def _counts(value: Any, what: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not an object")
    return {_text(k, what): _count(n, f"{what}[{k}]") for k, n in value.items()}


def _totals(doc: Any, n_buckets: int | None, what: str) -> Totals:
    if not isinstance(doc, dict):
        raise ValueError(f"{what} is not an object")
    values = {k: v for k, v in doc.items() if k in _TOTALS}
    hist = values.get("hist", [])
    if not isinstance(hist, list) or (hist and len(hist) != n_buckets):
        raise ValueError(f"{what}.hist does not match the bucket bounds")
    values["hist"] = tuple(_count(n, f"{what}.hist") for n in hist)
    values["started"] = _count(values.get("started", 0), f"{what}.started")
    values["codes"] = _counts(values.get("codes", {}), f"{what}.codes")
    values["exceptions"] = _counts(values.get("exceptions", {}), f"{what}.exceptions")
    for name in ("sum", "max"):
        values[name] = _number(values.get(name, 0.0), f"{what}.{name}")
    for name in ("msg_received", "msg_sent"):
        values[name] = _count(values.get(name, 0), f"{what}.{name}")
    values["fine"] = fine.from_json(values.get("fine"), fine.MAX_BUCKETS + 1)
    last = values.get("last_error")
    if last is not None:
        if not isinstance(last, list) or len(last) != 2:
            raise ValueError(f"{what}.last_error is {last!r}")
        values["last_error"] = (_text(last[0], what), _number(last[1], what))
    # Fields added after this reader was written come back as JSON gives them.
    known: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                             for k, v in values.items()}
    return Totals(**known)


def _rows(doc: Any, n_buckets: int | None, what: str) -> dict[Key, Totals]:
    if not isinstance(doc, list):
        raise ValueError(f"{what} is not a list")
    rows: dict[Key, Totals] = {}
    for i, row in enumerate(doc):
        if not isinstance(row, list) or len(row) != 4:
            raise ValueError(f"{what}[{i}] is not [service, method, type, totals]")
        key = (_text(row[0], what), _text(row[1], what), _text(row[2], what))
        rows[key] = _totals(row[3], n_buckets, f"{what}[{i}]")
    return rows


def _source(doc: Any, n_buckets: int | None, age: float, now: float, what: str) -> Source:
    if not isinstance(doc, dict):
        raise ValueError(f"{what} is not an object")
    checks = doc.get("checks", {})
    if not isinstance(checks, dict) or not all(isinstance(v, str) for v in checks.values()):
        raise ValueError(f"{what}.checks is not an object of texts")
    parts = doc.get("parts_seen", [])
    if not isinstance(parts, list):
        raise ValueError(f"{what}.parts_seen is not a list")
    replaced_by = doc.get("replaced_by")
    return Source(
        id=_text(doc.get("id"), f"{what}.id"),
        pid=_count(doc.get("pid"), f"{what}.pid"),
        started=_number(doc.get("started"), f"{what}.started"),
        service=_text(doc.get("service", ""), f"{what}.service"),
        version=_text(doc.get("version", ""), f"{what}.version"),
        seq=_count(doc.get("seq"), f"{what}.seq"),
        parts_seen={_count(p, f"{what}.parts_seen") for p in parts},
        first_seq=_count(doc.get("first_seq", 0), f"{what}.first_seq"),
        preexisting=bool(doc.get("preexisting")),
        last_push=now - age - _number(doc.get("last_push_age", 0.0), f"{what}.last_push_age"),
        last_push_wall=_number(doc.get("last_push_wall"), f"{what}.last_push_wall"),
        health=_text(doc.get("health", "healthy"), f"{what}.health"),
        checks=dict(checks),
        rows=_rows(doc.get("rows", []), n_buckets, f"{what}.rows"),
        dropped=_count(doc.get("dropped", 0), f"{what}.dropped"),
        send_errors=_count(doc.get("send_errors", 0), f"{what}.send_errors"),
        overflow=_count(doc.get("overflow", 0), f"{what}.overflow"),
        gap=_number(doc.get("gap"), f"{what}.gap", allow_none=True),
        may_succeed=bool(doc.get("may_succeed")),
        replaced_by=None if replaced_by is None else _text(replaced_by, f"{what}.replaced_by"),
        heard=False,
    )


def restore(store: Store, doc: Any, socket_path: str) -> None:
    """Put the state of ``doc`` into a fresh ``store``; ValueError (nothing changed) if invalid."""
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise ValueError("it is not an oracle-sidecar state file")
    if doc.get("format") != FORMAT:
        raise ValueError(f"its format is {doc.get('format')!r}; this sidecar reads {FORMAT}")
    if doc.get("socket") != os.path.abspath(socket_path):
        raise ValueError(f"it was written for the socket {doc.get('socket')!r}")
    raw = doc.get("buckets")
    buckets = None
    if raw is not None:
        if not isinstance(raw, list) or not raw:
            raise ValueError("its bucket bounds are not a list")
        buckets = tuple(_number(b, "a bucket bound") for b in raw)
        if list(buckets) != sorted(set(buckets)):
            raise ValueError("its bucket bounds are not increasing")
    n = None if buckets is None else len(buckets) + 1
    now = store.clock()
    age = max(0.0, store.wall() - _number(doc.get("saved"), "saved"))
    retired = _rows(doc.get("retired", []), n, "retired")
    reporter = doc.get("retired_reporter", [0, 0, 0])
    if not isinstance(reporter, list) or len(reporter) != 3:
        raise ValueError("retired_reporter is not three counts")
    reporter = [_count(v, "retired_reporter") for v in reporter]
    live = [_source(d, n, age, now, f"sources[{i}]")
            for i, d in enumerate(_list(doc.get("sources", []), "sources"))]
    gone = [_source(d, n, age, now, f"retired_sources[{i}]")
            for i, d in enumerate(_list(doc.get("retired_sources", []), "retired_sources"))]
    raw_departed = doc.get("departed")
    departed = None
    if raw_departed is not None:
        if not isinstance(raw_departed, dict):
            raise ValueError("departed is not an object")
        departed = Departure(_count(raw_departed.get("pid"), "departed.pid"),
                             _text(raw_departed.get("service", ""), "departed.service"),
                             _text(raw_departed.get("how"), "departed.how"),
                             _number(raw_departed.get("wall"), "departed.wall"))
    # Everything parsed: only now does the store change.
    store.buckets = buckets
    store.retired = retired
    store.retired_reporter = reporter
    store.sources = {s.id: s for s in live}
    for s in gone:
        s.heard = True
        store._retired_ids[s.id] = s
    store.departed = departed
    store.awaiting = {s.id for s in live}
    store.restored = True
    store._keys = set(retired) | {k for s in live + gone for k in s.rows}
    # What was counted before this sidecar started is kept out of its windows.
    prehistory: dict[Key, Totals] = dict(retired)
    for s in live:
        for key, totals in s.rows.items():
            prehistory[key] = prehistory[key] + totals if key in prehistory else totals
    store.prehistory = prehistory
    store.generation += 1


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list")
    return value


# -- the file -----------------------------------------------------------------------------------

class StateFile:
    """Loads the store's state at start and saves it when due."""

    def __init__(self, socket_path: str, store: Store) -> None:
        self.socket_path = socket_path
        self.path = state_path(socket_path)
        self.store = store
        self.saved_at: float | None = None  # store clock of the last save
        self.saved_changes = -1
        self.saved_generation = -1
        self.problem: str | None = None
        self.saves = 0
        self.last_cost = 0.0  # seconds the last save took
        self._saving: asyncio.Future[bool] | None = None

    def load(self) -> bool:
        """Restore the store from the file; False (one WARNING) when it cannot be used."""
        try:
            with open(self.path, "rb") as f:
                doc = json.loads(f.read())
            restore(self.store, doc, self.socket_path)
        except FileNotFoundError:
            return False
        except (OSError, ValueError, TypeError, KeyError, RecursionError) as err:
            log.warning("ignoring the state file %s: %s; counting starts afresh", self.path,
                        err.strerror if isinstance(err, OSError) else err)
            return False
        store = self.store
        log.info("state read back", extra={"state_file": self.path,
                                           "sources": len(store.sources),
                                           "retired_sources": len(store._retired_ids)})
        self.saved_changes, self.saved_generation = store.changes, store.generation
        self.saved_at = store.clock()
        return True

    def due(self) -> bool:
        """Whether a save is due now: a source appeared or left, or counts changed a while ago
        (never while a datagram is half applied)."""
        store = self.store
        if store.applying:
            return False
        now = store.clock()
        since = None if self.saved_at is None else now - self.saved_at
        if store.changes != self.saved_changes:
            return since is None or since >= max(MIN_GAP, self.last_cost / SAVE_SHARE)
        return store.generation != self.saved_generation and (since is None or since >= SAVE_EVERY)

    def maybe_save(self) -> None:
        """Save here and now when a save is due (where no event loop runs: tests, tools)."""
        if self.due():
            self.save()

    def start_if_due(self) -> None:
        """On the event loop: when a save is due and none is running, save; here for a state
        of at most FORK_ROWS rows (cheaper than a fork), else in a forked child
        (:mod:`sidecar.forked`), so that the loop never waits for a large state's encoding."""
        if (self._saving is None or self._saving.done()) and self.due():
            store = self.store
            rows = len(store.retired) + sum(
                len(s.rows) for s in itertools.chain(store.sources.values(),
                                                     store._retired_ids.values()))
            if rows <= FORK_ROWS:
                self.save()
            else:
                self._saving = asyncio.ensure_future(self.save_in_child())

    async def close(self) -> None:
        """Wait for a save in progress, then save the final state here (at shutdown)."""
        if self._saving is not None:
            with contextlib.suppress(Exception):
                await self._saving
        self.save()

    def save(self) -> bool:
        """Write the state now (temporary file, then rename); False with one WARNING if not."""
        marks, t0 = (self.store.changes, self.store.generation), time.perf_counter()
        return self._saved(self._write(), time.perf_counter() - t0, marks)

    async def save_in_child(self) -> bool:
        """:meth:`save`, with the state dumped and written by a forked child."""
        marks, t0 = (self.store.changes, self.store.generation), time.perf_counter()
        try:  # the fork is made before the first await: the child writes the state of ``marks``
            problem = (await forked.run(lambda: (self._write() or "").encode())).decode() or None
        except forked.ChildFailed as err:
            problem = f"cannot write the state file {self.path}: {err}"
        return self._saved(problem, time.perf_counter() - t0, marks)

    def _write(self) -> str | None:
        """Dump the store and write it to the file; what went wrong, or None."""
        tmp = self.path + ".tmp"  # one sidecar per socket: the bound socket guarantees it
        try:
            body = json.dumps(dump(self.store, self.socket_path), separators=(",", ":"))
            # Never through a symlink someone with access to the directory planted.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
            with open(fd, "w", encoding="utf-8") as f:
                f.write(body)
            os.replace(tmp, self.path)
        except (OSError, ValueError) as err:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return f"cannot write the state file {self.path}: " + (
                err.strerror or str(err) if isinstance(err, OSError) else str(err))
        return None

    def _saved(self, problem: str | None, cost: float, marks: tuple[int, int]) -> bool:
        """Note how a save of the state at ``marks`` (changes, generation) went."""
        store = self.store
        self.saved_at = store.clock()  # after a failure: retried after MIN_GAP / SAVE_EVERY
        if problem is not None:
            if problem != self.problem:
                log.warning("%s; a sidecar restart would start counting afresh", problem)
            self.problem = problem
            return False
        if self.problem:
            log.info("state file written again", extra={"state_file": self.path})
        self.problem = None
        self.last_cost = cost
        self.saved_changes, self.saved_generation = marks
        self.saves += 1
        return True
