"""What the sidecar says about the store: Prometheus metrics and the JSON documents.

/metrics is written by :mod:`sidecar.promtext` (text format 0.0.4 or OpenMetrics 1.0, as the
scrape asks). The per-RPC families change only when a push arrives, and then only for the
methods whose totals changed: each series' lines are kept as bytes, keyed by the totals they
were written from, so a render after a push writes only the series whose totals differ and
joins the rest. The render runs in slices (:meth:`Exposition.metrics_slices`) so that a server
can answer other requests between them. The figures that age with the clock (push age,
freshness, readiness, the process's own) are written on every scrape.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import time
import weakref
from collections.abc import Mapping
from itertools import accumulate
from typing import Any, cast

from sidecar import __version__, protocol
from sidecar.documents import (
    ALL,
    HEALTH_STATES,
    WINDOWS,
    Health,
    HealthState,
    History,
    Point,
    ReportedState,
    RpcFigures,
    RpcType,
    Snapshot,
    Window,
    Windows,
)
from sidecar.promtext import (
    EOF,
    escape_label,
    go_float,
    go_int,
    header,
    negotiate,
    om_float,
    om_int,
)
from sidecar.slices import Deadline, Slices, drive
from sidecar.stats import Packed, Totals, add_all_slices, delta, summarise
from sidecar.store import Key, Store

__all__ = ["BLOCK_BYTES", "WINDOWS", "Exposition"]

BLOCK_BYTES = 256 * 1024  # the body is kept and sent in blocks of about this size
_SMALL = 1_000_000  # below this, Go spells an integral float64 as the integer itself
_ZEROS = (0,) * len(protocol.CODES)  # a code's count when a series has none

# The RPC families in the order they are written: (name, type, help).
RPC_FAMILIES = (
    ("grpc_server_started_total", "counter", "RPCs started on the server."),
    ("grpc_server_handled_total", "counter", "RPCs completed on the server, by status code."),
    ("grpc_server_handling_seconds", "histogram", "Time the server took to handle RPCs."),
    ("oracle_sidecar_rpc_exceptions_total", "counter",
     "Uncaught exceptions in RPC handlers, by type."),
    ("grpc_server_msg_received_total", "counter", "RPC stream messages received on the server."),
    ("grpc_server_msg_sent_total", "counter", "gRPC stream messages sent by the server."),
)
COUNTERS = (
    ("oracle_sidecar_messages_received_total", "Datagrams received from reporters."),
    ("oracle_sidecar_messages_rejected_total", "Datagrams rejected, by reason."),
    ("oracle_sidecar_rows_rejected_total", "Rows of accepted datagrams skipped, by reason."),
    ("oracle_sidecar_reporter_dropped_total", "Datagrams the reporters gave up."),
    ("oracle_sidecar_reporter_send_errors_total",
     "Reporter sends that failed for a reason other than a full queue (no sidecar, bad path)."),
    ("oracle_sidecar_reporter_overflow_total",
     "RPCs the reporters did not count per method because of their series limit."),
    ("oracle_sidecar_series_overflow_total",
     "RPC series refused by this sidecar's series limit."),
)
GAUGES = (
    ("oracle_sidecar_health_status", "gauge",
     "1 for the Oracle's current health state, 0 for the others."),
    ("oracle_sidecar_ready", "gauge", "1 when /ready answers 200."),
    ("oracle_sidecar_last_push_age_seconds", "gauge",
     "Seconds since the last push from any live reporting process (NaN when there is none)."),
    ("oracle_sidecar_sources", "gauge", "Reporting processes, by freshness."),
    ("oracle_sidecar_build_info", "info", "The sidecar's version."),
)
PROCESS = (
    ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes."),
    ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes."),
    ("process_start_time_seconds", "gauge",
     "Start time of the process since unix epoch in seconds."),
    ("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds."),
    ("process_open_fds", "gauge", "Number of open file descriptors."),
    ("process_max_fds", "gauge", "Maximum number of open file descriptors."),
)


class _Format:
    """The exposition in one format, with each RPC series' lines kept as bytes."""

    def __init__(self, om: bool) -> None:
        self.om = om
        self.counter = om_int if om else go_int  # a counter's spelling
        self.float = om_float if om else go_float
        self.heads = [header(n, k, h, om).encode() for n, k, h in RPC_FAMILIES]
        self.bounds: tuple[float, ...] | None = None
        # Each series' lines, and the totals they were written from (two dicts, not a pair
        # per series: a tuple holding totals stays in the garbage collector's sight).
        self.series: dict[Key, tuple[bytes, ...]] = {}
        self.written: dict[Key, Totals] = {}
        self.labels: dict[Key, bytes] = {}
        self.order: list[Key] = []
        self.rpc: tuple[tuple[int, bool], list[bytes]] | None = None
        # The templates, by whether the values are small integers: see set_bounds.
        self._line: dict[bool, tuple[bytes, bytes, bytes]] = {}
        self._handled: dict[bool, bytes] = {}
        self._hist: dict[bool, bytes] = {}
        self._empty: list[int] = []

    def set_bounds(self, bounds: tuple[float, ...]) -> None:
        """Bucket bounds changed (or first seen): every series is written anew.

        Each family is written with a bytes template, by whether the series' values are all
        small integers (below 10^6, which Go spells as plain integers: ``%d``) or not (spelled
        first: ``%b``). In the multi-line families' templates ``\\0`` stands for the series'
        labels, put in after formatting (no label holds a NUL: the protocol refuses control
        characters in names); the one-line families take the labels as their first value.
        """
        self.bounds = bounds
        self.series.clear()
        self.written.clear()
        self._empty = [0] * (len(bounds) + 1)
        # ``le`` as Go's text format spells it in both formats: what Prometheus stores from a
        # Go server (promhttp serves text unless told otherwise), so le="1" selects ours too.
        les = [go_float(b) for b in bounds] + ["+Inf"]
        for small in (True, False):
            counter = "%d.0" if small and self.om else "%d" if small else "%b"
            count = "%d" if small or self.om else "%b"  # OpenMetrics: histogram counts as ints
            started, received, sent = (f"{name}{{%b}} {counter}\n".encode() for name in (
                "grpc_server_started_total", "grpc_server_msg_received_total",
                "grpc_server_msg_sent_total"))
            self._line[small] = (started, received, sent)
            self._handled[small] = "".join(
                f'grpc_server_handled_total{{grpc_code="{code}",\0}} {counter}\n'
                for code in protocol.CODES).encode()
            self._hist[small] = ("".join(f'grpc_server_handling_seconds_bucket{{\0,le="{le}"}} '
                                         f"{count}\n" for le in les)
                                 + f"grpc_server_handling_seconds_count{{\0}} {count}\n"
                                 + "grpc_server_handling_seconds_sum{\0} %b\n").encode()

    def write(self, key: Key, t: Totals) -> tuple[bytes, ...]:
        """The lines of one series in each of the RPC_FAMILIES, in their order."""
        labels = self.labels.get(key)
        if labels is None:
            service, method, rpc_type = map(escape_label, key)
            labels = self.labels[key] = (f'grpc_method="{method}",grpc_service="{service}",'
                                         f'grpc_type="{rpc_type}"').encode()
        handled: list[Any] = list(map(t.codes.get, protocol.CODES, _ZEROS))
        cumulative: list[Any] = list(accumulate(t.hist)) if t.hist else self._empty
        started: int | bytes
        received: int | bytes
        sent: int | bytes
        started, received, sent = t.started, t.msg_received, t.msg_sent
        small = (started < _SMALL and cumulative[-1] < _SMALL and received < _SMALL
                 and sent < _SMALL and max(handled) < _SMALL)
        if not small:
            counter = self.counter
            started, received, sent = (counter(started).encode(), counter(received).encode(),
                                       counter(sent).encode())
            handled = [counter(n).encode() for n in handled]
            if not self.om:  # OpenMetrics writes histogram counts as integers
                cumulative = [go_int(n).encode() for n in cumulative]
        if t.exceptions:
            service, method, _ = key
            where = (f'grpc_method="{escape_label(method)}",'
                     f'grpc_service="{escape_label(service)}"')
            exceptions = "".join(
                f'oracle_sidecar_rpc_exceptions_total{{exception="{escape_label(name)}",'
                f"{where}}} {self.counter(n)}\n"
                for name, n in sorted(t.exceptions.items())).encode()
        else:
            exceptions = b""
        started_line, received_line, sent_line = self._line[small]
        return (started_line % (labels, started),
                (self._handled[small] % tuple(handled)).replace(b"\0", labels),
                (self._hist[small] % (*cumulative, cumulative[-1], self.float(t.sum).encode())
                 ).replace(b"\0", labels),
                exceptions,
                received_line % (labels, received),
                sent_line % (labels, sent))

    def forget_replaced(self, totals: dict[Key, Totals]) -> Slices[None]:
        """Let go of the totals each series was written from where ``totals`` (the store's
        now) has others: their lines are written again at the next scrape all the same, and
        meanwhile the garbage collector's full collections need not go through a stale copy
        of every busy method. In slices; a render between them keeps what it wrote."""
        written = self.written
        deadline = Deadline()
        for i, (key, t) in enumerate(list(written.items())):
            if not i % 256 and deadline.passed():
                yield
                deadline.reset()
            if totals.get(key) is not t and written.get(key) is t:
                del written[key]

    def render_rpc(self, totals: dict[Key, Totals], bounds: tuple[float, ...], tail: bytes
                   ) -> Slices[list[bytes]]:
        """The RPC families for ``totals``, then ``tail``, as blocks of about BLOCK_BYTES;
        yields between slices (:mod:`sidecar.slices`)."""
        if bounds != self.bounds:
            self.set_bounds(bounds)
        series, written_from = self.series, self.written
        added = False
        written = 0
        deadline = Deadline()
        for i, (key, t) in enumerate(totals.items()):
            if not i % 64 and deadline.passed():
                yield
                deadline = Deadline()
            kept = written_from.get(key)
            if kept is t:
                continue
            if kept is not None and kept == t:  # the same figures in a new object
                written_from[key] = t
                continue
            if key not in series:
                added = True
            series[key] = self.write(key, t)
            written_from[key] = t
            written += 1
            if not written % 16 and deadline.passed():
                yield
                deadline = Deadline()
        if added or len(series) != len(totals) or len(self.order) != len(totals):
            for key in series.keys() - totals.keys():
                del series[key]
                written_from.pop(key, None)
                self.labels.pop(key, None)
            self.order = sorted(totals)
            yield
        chunks = [series[key] for key in self.order]
        parts = []
        for i, head in enumerate(self.heads):
            parts.append(head)
            parts += [c[i] for c in chunks]
        parts.append(tail)
        if sum(map(len, parts)) < BLOCK_BYTES:  # one block: joined at once
            return [b"".join(parts)]
        blocks: list[bytes] = []
        pending: list[bytes] = []
        size = 0
        for i, head in enumerate(self.heads):
            pending.append(head)
            for c in chunks:
                pending.append(c[i])
                size += len(c[i])
                if size >= BLOCK_BYTES:
                    blocks.append(b"".join(pending))
                    pending, size = [], 0
                    if deadline.passed():
                        yield
                        deadline = Deadline()
        pending.append(tail)
        blocks.append(b"".join(pending))
        return blocks


class _Process:
    """The sidecar process's own figures, as prometheus-client's ProcessCollector reads them
    from /proc (same names, same meaning; none where /proc is missing), read with the fewest
    system calls: a scrape after an idle spell pays for each one many times over.

    Memory comes from /proc/self/statm (the same counts /proc/self/stat gives, in pages), kept
    open and read again from its start; CPU time from ``times()`` (the same ticks of the same
    kernel clock /proc/self/stat shows); the start time once; the soft limit on open files from
    ``getrlimit`` (what /proc/self/limits shows); open descriptors from the size Linux 6.2+
    gives /proc/self/fd (counting its entries on older kernels, where that size is 0).
    """

    def __init__(self) -> None:
        self.ticks = float(os.sysconf("SC_CLK_TCK"))
        self.pagesize = resource.getpagesize()
        self.boot = 0.0
        try:
            with open("/proc/stat", "rb") as stat:
                self.boot = next((float(line.split()[1]) for line in stat
                                  if line.startswith(b"btime ")), 0.0)
        except OSError:
            pass
        self._pid = 0  # the process the fields below are of (a forked child reads its own)
        self._statm = -1
        self._close: weakref.finalize[[int], _Process] | None = None
        self._start = 0.0

    def _statm_fd(self) -> int:
        """/proc/self/statm's descriptor (opened once per process, closed with this reader),
        and the start time."""
        if self._pid != os.getpid():
            with open("/proc/self/stat", "rb") as stat:
                start = float(stat.read().split(b")")[-1].split()[19])
            self._start = start / self.ticks + self.boot
            if self._close is not None:
                self._close()  # the parent's, inherited by a forked child
            self._statm = os.open("/proc/self/statm", os.O_RDONLY)
            self._close = weakref.finalize(self, os.close, self._statm)
            self._pid = os.getpid()
        return self._statm

    def read(self) -> list[tuple[str, float]]:
        """(name, value) in the order ProcessCollector yields them."""
        if not self.boot:
            return []
        out = []
        try:
            size, resident = os.pread(self._statm_fd(), 128, 0).split()[:2]
            cpu = os.times()
            out += [("process_virtual_memory_bytes", float(size) * self.pagesize),
                    ("process_resident_memory_bytes", float(resident) * self.pagesize),
                    ("process_start_time_seconds", self._start),
                    ("process_cpu_seconds_total", cpu.user + cpu.system)]
        except OSError:
            pass
        try:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            fds = os.stat("/proc/self/fd").st_size or len(os.listdir("/proc/self/fd"))
            out += [("process_open_fds", float(fds)),
                    ("process_max_fds",
                     math.inf if soft == resource.RLIM_INFINITY else float(soft))]
        except OSError:
            pass
        return out


class Exposition:
    """Renders /metrics and the JSON documents for one store."""

    def __init__(self, store: Store, ready: Any = lambda: False) -> None:
        self.store = store
        self.ready = ready
        self._formats = {False: _Format(False), True: _Format(True)}
        self._process = _Process()
        build = (f'oracle_sidecar_build_info{{python="{escape_label(platform.python_version())}"'
                 f',version="{escape_label(__version__)}"}}')
        self._heads = {om: {n: header(n, k, h, om) for n, k, h in
                            [*((n, "counter", h) for n, h in COUNTERS), *GAUGES, *PROCESS]}
                       for om in (False, True)}
        # The lines that take one of a few values, written once: by health state, by readiness.
        self._health = {om: {state: self._health_lines(om, state) for state in HEALTH_STATES}
                        for om in (False, True)}
        self._ready = {om: {ready: self._heads[om]["oracle_sidecar_ready"]
                            + f"oracle_sidecar_ready {(om_float if om else go_float)(ready)}\n"
                            for ready in (0.0, 1.0)}
                       for om in (False, True)}
        self._build = {om: self._heads[om]["oracle_sidecar_build_info"]
                       + f"{build} {'1.0' if om else '1'}\n" for om in (False, True)}
        self._counter_templates: dict[tuple[bool, tuple[str, ...], tuple[str, ...]], str] = {}
        # history: the finished intervals' points, by (start, end, rpc)
        self._history: dict[tuple[float, float, str | None], Point] = {}

    def metrics(self, accept: str | None) -> tuple[bytes, str]:
        """(body, content type) for a scrape with this Accept header, rendered at once."""
        blocks, content_type = drive(self.metrics_slices(accept))
        return b"".join(blocks), content_type

    def metrics_slices(self, accept: str | None
                       ) -> Slices[tuple[list[bytes], str]]:
        """:meth:`metrics` as slices: yields whenever the caller may serve something else, and
        returns the body as blocks of about BLOCK_BYTES, to be sent one after the other.

        The totals are read once, at the start; pushes applied between slices are in the next
        scrape. Renders must not overlap (the caller serialises them).
        """
        om, content_type = negotiate(accept)
        fmt = self._formats[om]
        store = self.store
        generation = (store.generation, store.settling())
        if fmt.rpc is None or fmt.rpc[0] != generation:
            totals = {} if generation[1] else (yield from store.totals_slices())
            rpc = yield from fmt.render_rpc(totals, store.buckets or protocol.DEFAULT_BUCKETS,
                                            self._counters(om).encode())
            fmt.rpc = (generation, rpc)
        return [*fmt.rpc[1], self._state(om).encode()], content_type

    def forget_replaced(self, totals: dict[Key, Totals]) -> Slices[None]:
        """What each format keeps of the totals it last wrote, where ``totals`` (the store's
        now) has others (:meth:`_Format.forget_replaced`)."""
        for fmt in self._formats.values():
            yield from fmt.forget_replaced(totals)

    def _counters(self, om: bool) -> str:
        """The sidecar's own counters (they change only with the store's generation)."""
        store = self.store
        rejected, rows = store.rejected, store.rows_rejected
        shape = (om, tuple(rejected), tuple(rows))
        template = self._counter_templates.get(shape)
        if template is None:
            template = self._counter_templates[shape] = self._counter_template(om, *shape[1:])
        dropped, errors, overflow = store.reporter_counts()
        return template % tuple(map(om_int if om else go_int, (
            store.received, *rejected.values(), *rows.values(), dropped, errors, overflow,
            len(store.overflow_keys))))

    def _counter_template(self, om: bool, rejected: tuple[str, ...], rows: tuple[str, ...]
                          ) -> str:
        """The counters' lines with ``%s`` for each value, for these reasons (every reason
        from the start), in the order :meth:`_counters` gives the values."""
        out = []
        for name, reasons in (("oracle_sidecar_messages_received_total", None),
                              ("oracle_sidecar_messages_rejected_total", rejected),
                              ("oracle_sidecar_rows_rejected_total", rows),
                              ("oracle_sidecar_reporter_dropped_total", None),
                              ("oracle_sidecar_reporter_send_errors_total", None),
                              ("oracle_sidecar_reporter_overflow_total", None),
                              ("oracle_sidecar_series_overflow_total", None)):
            out.append(self._heads[om][name].replace("%", "%%"))
            if reasons is None:
                out.append(f"{name} %s\n")
            else:
                out.extend(f'{name}{{reason="{escape_label(reason).replace("%", "%%")}"}} %s\n'
                           for reason in reasons)
        return "".join(out)

    def _state(self, om: bool) -> str:
        """The figures that change with the clock, written on every scrape."""
        store, heads = self.store, self._heads[om]
        spell = om_float if om else go_float
        status, _ = store.status()
        health = self._health[om].get(status)
        if health is None:  # a state HEALTH_STATES does not name ("unknown"): every line 0
            health = self._health[om][status] = self._health_lines(om, status)
        age = store.last_push_age()
        fresh = sum(1 for s in store.sources.values() if store.is_fresh(s))
        out = [health, self._ready[om][1.0 if self.ready() else 0.0],
               heads["oracle_sidecar_last_push_age_seconds"],
               f"oracle_sidecar_last_push_age_seconds {spell(math.nan if age is None else age)}\n",
               heads["oracle_sidecar_sources"],
               f'oracle_sidecar_sources{{state="fresh"}} {spell(fresh)}\n'
               f'oracle_sidecar_sources{{state="stale"}} {spell(len(store.sources) - fresh)}\n',
               self._build[om]]
        for name, value in self._process.read():
            out.append(heads[name])
            out.append(f"{name} {spell(value)}\n")
        if om:
            out.append(EOF)
        return "".join(out)

    def _health_lines(self, om: bool, status: str) -> str:
        """The health family when the store's status is ``status``."""
        one, zero = (om_float if om else go_float)(1.0), (om_float if om else go_float)(0.0)
        return self._heads[om]["oracle_sidecar_health_status"] + "".join(
            f'oracle_sidecar_health_status{{status="{state}"}} '
            f"{one if state == status else zero}\n" for state in HEALTH_STATES)

    # -- JSON ---------------------------------------------------------------------------------

    def health(self, ready: bool, reason: str) -> Health:
        """The /health document (made for its caller alone, as the snapshot that holds it)."""
        store = self.store
        status, why = store.status()
        now = store.clock()
        sources = sorted(store.sources.values(), key=lambda s: s.started)
        newest = sources[-1] if sources else None
        checks: dict[str, str] = {}
        for s in sources:
            checks.update(s.checks)
        age = store.last_push_age()
        return {
            "status": cast(HealthState, status),
            "reason": why,
            "ready": ready,
            "ready_reason": reason,
            "version": __version__,
            "uptime_seconds": round(now - store.started, 3),
            "service": newest.service if newest else None,
            "service_version": newest.version if newest else None,
            "service_uptime_seconds": round(time.time() - newest.started, 3) if newest else None,
            "checks": checks,
            "last_push_age_seconds": None if age is None else round(age, 3),
            "sources": [
                {
                    "id": s.id, "pid": s.pid, "service": s.service, "version": s.version,
                    "started": s.started, "seq": s.seq, "status": cast(ReportedState, s.health),
                    "checks": dict(s.checks), "fresh": store.is_fresh(s),
                    "last_push_age_seconds": round(now - s.last_push, 3),
                    "dropped": s.dropped, "send_errors": s.send_errors,
                }
                for s in sources
            ],
        }

    def snapshot(self, health: Health) -> Snapshot:
        """The /api/v1/snapshot document: per-RPC figures for every window, and health."""
        return drive(self.snapshot_slices(health))

    def snapshot_slices(self, health: Health) -> Slices[Snapshot]:
        """:meth:`snapshot` in slices (:mod:`sidecar.slices`): each window from its start in
        the history as it is at the call to the totals summed right after. The document is made
        for its caller alone: nothing in it is held by anything else."""
        store = self.store
        bounds = store.buckets or protocol.DEFAULT_BUCKETS
        starts = {name: store.window_start(seconds) for name, seconds in WINDOWS.items()}
        uptime = store.clock() - store.started
        now = yield from store.observed_slices()
        totals = yield from store.totals_slices()
        keys = sorted(now)  # sorted once (a few milliseconds for thousands)
        every = keys if now is totals or now.keys() == totals.keys() else sorted(totals)
        found: dict[str, Window] = {}
        for name, (covered, before) in starts.items():
            found[name] = yield from self._window(covered, bounds, totals, keys, now, before,
                                                  WINDOWS[name])
        found[ALL] = yield from self._window(uptime, bounds, totals, every, totals, {}, None)
        windows = cast(Windows, found)  # every name of WINDOWS, and ALL
        errors_by_rpc: dict[str, dict[str, int]] = {}
        by_type: dict[str, int] = {}
        deadline = Deadline()
        for i, k in enumerate(every):
            if not i % 64 and deadline.passed():
                yield
                deadline.reset()
            t = totals[k]
            if t.handled - t.codes.get("OK", 0):
                errors_by_rpc[f"{k[0]}/{k[1]}"] = {c: n for c, n in sorted(t.codes.items())
                                                   if c != "OK"}
            for name, n in t.exceptions.items():
                by_type[name] = by_type.get(name, 0) + n
        return {
            "version": __version__,
            "time": time.time(),
            "uptime_seconds": round(uptime, 3),
            "buckets": list(bounds),
            "health": health,
            "windows": windows,
            "errors": {"by_rpc": errors_by_rpc, "by_type": dict(sorted(by_type.items()))},
        }

    @staticmethod
    def _window(covered: float, bounds: tuple[float, ...], totals: dict[Key, Totals],
                keys: list[Key], now: dict[Key, Totals], before: Mapping[Key, Packed],
                seconds: float | None) -> Slices[Window]:
        """The figures of ``keys`` (``now``'s, sorted) from ``before`` to ``now``."""
        rpcs: list[RpcFigures] = []
        deltas = []
        deadline = Deadline()
        for i, key in enumerate(keys):
            if not i % 16 and deadline.passed():
                yield
                deadline.reset()
            start = before.get(key)
            d = delta(now[key], None if start is None else Totals.unpack(start))
            deltas.append(d)
            row = summarise(d, bounds, covered, totals[key].max if key in totals else 0.0)
            rpcs.append({"service": key[0], "method": key[1], "type": cast(RpcType, key[2]),
                         **row})
        summed = yield from add_all_slices(deltas)
        largest = max((t.max for t in totals.values()), default=0.0)
        return {
            "seconds": seconds,
            "covered_seconds": round(covered, 3),
            "totals": summarise(summed, bounds, covered, largest),
            "rpcs": rpcs,
        }

    def history(self, rpc: str | None = None) -> History:
        """The /api/v1/history document: one point per ring interval over the last hour.

        Each point holds the figures of the interval that ends at its time, summed over RPCs,
        or for one RPC when ``rpc`` is ``Service/Method``.
        """
        return drive(self.history_slices(rpc))

    def history_slices(self, rpc: str | None = None) -> Slices[History]:
        """:meth:`history` in slices (:mod:`sidecar.slices`): the history as it is at the
        call, then now's totals."""
        store = self.store
        bounds = store.buckets or protocol.DEFAULT_BUCKETS
        ring: list[tuple[float, float, Mapping[Key, Totals | Packed]]] = list(store.ring)
        clock, wall_now = store.clock(), time.time()
        ring.append((clock, wall_now, (yield from store.observed_slices())))

        def pick(points: Mapping[Key, Totals | Packed]) -> Slices[Totals]:
            return add_all_slices(p if isinstance(p, Totals) else Totals.unpack(p)
                                  for key, p in points.items()
                                  if rpc is None or f"{key[0]}/{key[1]}" == rpc)

        # Ring points never change: the point between two of them is kept, so a refresh
        # computes only the newest interval (the ring's last point to now).
        cache = self._history
        kept = len(ring) - 1  # ring[kept] is "now", never kept
        sums: dict[int, Totals] = {}

        def total(i: int) -> Slices[Totals]:
            if i not in sums:
                sums[i] = yield from pick(ring[i][2])
            return sums[i]

        points: list[Point] = []
        for i in range(1, len(ring)):
            (t0, _, _), (t1, wall, _) = ring[i - 1], ring[i]
            key = (t0, t1, rpc)
            point = cache.get(key) if i < kept else None
            if point is None:
                previous = yield from total(i - 1)
                current = yield from total(i)
                d = current - previous if previous.hist or previous.codes else current
                s = summarise(d, bounds, t1 - t0, current.max)  # capped as the snapshot's are
                point = {
                    "time": round(wall, 3), "seconds": round(t1 - t0, 3), "count": s["count"],
                    "errors": s["errors"], "rate_per_second": s["rate_per_second"],
                    "error_rate_percent": s["error_rate_percent"], "p95_ms": s["p95_ms"],
                    "max_ms": s["max_ms"], "fine": s["fine"],
                }
                if i < kept:
                    cache[key] = point
            points.append(point)
        if len(cache) > 4 * kept:  # points pruned from the ring, or other RPCs asked
            live = {(ring[i - 1][0], ring[i][0]) for i in range(1, kept)}
            self._history = {k: v for k, v in cache.items() if k[:2] in live and k[2] == rpc}
        return {"rpc": rpc, "buckets": list(bounds), "points": points}
