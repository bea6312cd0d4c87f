"""The sidecar's state file: what a restarted sidecar cannot learn again from the reporters.

Kept beside the socket (``<socket>.state.json``; in the chart that is the pod's shared emptyDir,
which outlives a sidecar container's restart): the retired totals, every known source with its
last sequence number and counts, the retired sources (so one that comes back is not counted
twice), the histogram bounds and the last departure. Written atomically (a temporary file
renamed over the old one) when a source appears or retires (at most every ``MIN_GAP`` seconds,
and never more than ``SAVE_SHARE`` of the time), and otherwise at most every ``SAVE_EVERY``
seconds when something changed; read back once at start. On the sidecar's event loop a save
takes the state at one instant, encodes it in slices (:mod:`sidecar.slices`) and leaves the
file's writing to a thread (:meth:`StateFile.start_if_due`). A file that cannot be read, is
corrupt, or belongs to something else is ignored with one WARNING and replaced by the next save.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from dataclasses import fields
from typing import Any

from sidecar import fine, slices
from sidecar.slices import Deadline, Slices, drive
from sidecar.stats import Packed, Totals
from sidecar.store import Departure, Key, Source, Store

__all__ = ["SAVE_EVERY", "StateFile", "dump", "encode", "restore", "state_path"]

log = logging.getLogger("sidecar.persist")

KIND = "oracle-sidecar state"
FORMAT = 1
SAVE_EVERY = 10.0  # seconds between saves of changed counts; a source coming or going: at once
MIN_GAP = 0.1  # seconds between two saves, so that a flood of new sources cannot keep it writing
SAVE_SHARE = 0.05  # and never more than this share of the time spent saving (large states)
_TOTALS = tuple(f.name for f in fields(Totals))


def state_path(socket_path: str) -> str:
    """Where the state of the sidecar on ``socket_path`` is kept."""
    return socket_path + ".state.json"


# -- writing ------------------------------------------------------------------------------------

def _totals_doc(t: Totals) -> dict[str, Any]:
    doc = {name: getattr(t, name) for name in _TOTALS}
    doc["fine"] = fine.to_json(t.fine)  # an array in memory, its wire form in the file
    return doc


def _source_head(s: Source, now: float) -> dict[str, Any]:
    """What the file keeps of a source, but its rows."""
    return {
        "id": s.id, "pid": s.pid, "started": s.started, "service": s.service,
        "version": s.version, "seq": s.seq, "parts_seen": sorted(s.parts_seen),
        "first_seq": s.first_seq, "preexisting": s.preexisting,
        "last_push_age": max(0.0, now - s.last_push), "last_push_wall": s.last_push_wall,
        "health": s.health, "checks": s.checks,
        "dropped": s.dropped, "send_errors": s.send_errors, "overflow": s.overflow,
        "gap": s.gap, "may_succeed": s.may_succeed, "replaced_by": s.replaced_by,
    }


Rows = list[tuple[Key, Totals | Packed]]  # a retired source's rows are packed
_JSON = json.JSONEncoder(separators=(",", ":")).encode


def encode(store: Store, socket_path: str) -> Slices[list[str]]:
    """The state file's text for ``store`` as it is at the call, in pieces, encoded in slices.

    Everything the file holds is taken here, before the first slice: its rows are the store's
    Totals, which are never changed once made, so the slices encode the state of this instant
    whatever is applied between them.
    """
    now = store.clock()
    gone = store.departed
    head = {
        "kind": KIND,
        "format": FORMAT,
        "socket": os.path.abspath(socket_path),
        "saved": store.wall(),
        "buckets": None if store.buckets is None else list(store.buckets),
        "retired_reporter": list(store.retired_reporter),
        "departed": None if gone is None else {"pid": gone.pid, "service": gone.service,
                                               "how": gone.how, "wall": gone.wall},
    }
    retired: Rows = list(store.retired.items())
    groups: dict[str, list[tuple[dict[str, Any], Rows]]] = {
        name: [(_source_head(s, now), [*s.rows.items()] or [*s.packed.items()]) for s in these]
        for name, these in (("sources", store.sources.values()),
                            ("retired_sources", store._retired_ids.values()))}
    return _encoded(head, retired, groups)


def _encoded(head: dict[str, Any], retired: Rows,
             groups: dict[str, list[tuple[dict[str, Any], Rows]]]) -> Slices[list[str]]:
    text = [_JSON(head)[:-1], ',"retired":']
    deadline = Deadline()
    yield from _rows_text(retired, text, deadline)
    for name, sources in groups.items():
        text.append(f',"{name}":[')
        for i, (doc, rows) in enumerate(sources):
            text.append(("," if i else "") + _JSON(doc)[:-1] + ',"rows":')
            yield from _rows_text(rows, text, deadline)
            text.append("}")
        text.append("]")
    text.append("}")
    return text


def _rows_text(rows: Rows, text: list[str], deadline: Deadline) -> Slices[None]:
    """``rows`` as a JSON list of [service, method, type, totals], onto ``text``."""
    text.append("[")
    for i, (key, totals) in enumerate(rows):
        if deadline.passed():
            yield
            deadline.reset()
        t = totals if isinstance(totals, Totals) else Totals.unpack(totals)
        text.append(("," if i else "") + _JSON([*key, _totals_doc(t)]))
    text.append("]")


def dump(store: Store, socket_path: str) -> dict[str, Any]:
    """The state file's document for ``store``."""
    doc: dict[str, Any] = json.loads("".join(drive(encode(store, socket_path))))
    return doc


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
    store.retired = {key: totals.pack() for key, totals in retired.items()}
    store.retired_reporter = reporter
    store.sources = {s.id: s for s in live}
    for s in gone:
        s.heard = True
        s.put_away()
        store._retired_ids[s.id] = s
    store.departed = departed
    store.awaiting = {s.id for s in live}
    store.restored = True
    store._keys = set(retired) | {k for s in live + gone for k in [*s.rows, *s.packed]}
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

    def start_if_due(self) -> asyncio.Future[bool] | None:
        """On the event loop: when a save is due and none is running, start one
        (:meth:`save_on_loop`) and return it."""
        if (self._saving is None or self._saving.done()) and self.due():
            self._saving = self.save_on_loop()
            return self._saving
        return None

    def save_on_loop(self) -> asyncio.Future[bool]:
        """:meth:`save` on the event loop: the state is taken now, encoded in slices, and
        written by a thread, so that the loop never waits for a large state nor for the disk."""
        return asyncio.ensure_future(self._save_on_loop(encode(self.store, self.socket_path),
                                                        self._marks()))

    async def close(self) -> None:
        """Wait for a save in progress, then save the final state here (at shutdown)."""
        if self._saving is not None:
            with contextlib.suppress(Exception):
                await self._saving
        self.save()

    def save(self) -> bool:
        """Write the state now (temporary file, then rename); False with one WARNING if not."""
        marks = self._marks()
        return self._saved(self._write(drive(encode(self.store, self.socket_path))), marks)

    async def _save_on_loop(self, text: Slices[list[str]], marks: tuple[int, int, float]
                            ) -> bool:
        pieces = await slices.run(text)
        return self._saved(await asyncio.to_thread(self._write, pieces), marks)

    def _marks(self) -> tuple[int, int, float]:
        """What a save starting now saves: the store's changes and generation; its start."""
        return self.store.changes, self.store.generation, time.perf_counter()

    def _write(self, text: list[str]) -> str | None:
        """Write ``text`` to the file; what went wrong, or None."""
        tmp = self.path + ".tmp"  # one sidecar per socket: the bound socket guarantees it
        try:
            # Never through a symlink someone with access to the directory planted.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
            with open(fd, "w", encoding="utf-8") as f:
                f.writelines(text)
            os.replace(tmp, self.path)
        except (OSError, ValueError) as err:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return f"cannot write the state file {self.path}: " + (
                err.strerror or str(err) if isinstance(err, OSError) else str(err))
        return None

    def _saved(self, problem: str | None, marks: tuple[int, int, float]) -> bool:
        """Note how a save of the state at ``marks`` (changes, generation, start) went."""
        store = self.store
        changes, generation, started = marks
        self.saved_at = store.clock()  # after a failure: retried after MIN_GAP / SAVE_EVERY
        if problem is not None:
            if problem != self.problem:
                log.warning("%s; a sidecar restart would start counting afresh", problem)
            self.problem = problem
            return False
        if self.problem:
            log.info("state file written again", extra={"state_file": self.path})
        self.problem = None
        self.last_cost = time.perf_counter() - started
        self.saved_changes, self.saved_generation = changes, generation
        self.saves += 1
        return True
