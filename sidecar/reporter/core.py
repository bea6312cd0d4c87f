"""The reporter's recording and pushing machinery, standard library only.

Recording an RPC touches only the calling thread's own table (a ``threading.local``), so it takes
no lock and no update is ever lost: each counter has exactly one writer. A daemon thread sums the
tables once per interval and sends the cumulative snapshot to the sidecar's Unix datagram socket
without blocking; whatever goes wrong there is counted, never raised into the service.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import secrets
import socket
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from operator import add
from typing import Any

from sidecar import fine, protocol

__all__ = ["DEFAULT_SOCKET", "Reporter", "Series"]

DEFAULT_SOCKET = "/var/run/oracle-sidecar/metrics.sock"
PACING_BUDGET = 0.5  # seconds a snapshot may wait for the sidecar to drain its queue
log = logging.getLogger("sidecar.reporter")

HealthCallback = Callable[[], tuple[str, dict[str, str]]]
# What start(methods=...) takes: names (unary), {name: type}, or (name, type) pairs.
Methods = Iterable[str] | Iterable[tuple[str, str]] | Mapping[str, str]


class Series:
    """One RPC method's counters in one thread. Only that thread writes them."""

    __slots__ = ("codes", "exceptions", "hist", "last_error", "max", "method", "msg_received",
                 "msg_sent", "ok", "service", "started", "sum", "type")

    def __init__(self, service: str, method: str, rpc_type: str, n_buckets: int) -> None:
        self.service = service
        self.method = method
        self.type = rpc_type
        self.started = 0
        self.ok = 0
        self.codes: dict[str, int] = {}  # codes other than OK
        self.hist = [0] * n_buckets  # per fine bucket (classic when there is no fine schema)
        self.sum = 0.0
        self.max = 0.0
        self.exceptions: dict[str, int] = {}
        self.last_error: tuple[str, float] | None = None
        # Stream messages, counted by the interceptors for streaming types only; a unary row's
        # are its calls and its OKs, as go-grpc-prometheus counts them (see Reporter.rows).
        self.msg_received = 0
        self.msg_sent = 0


def declared_methods(methods: Methods = (), services: Iterable[Any] = ()) -> list[tuple[str, str]]:
    """``(/pkg.Service/Method, grpc_type)`` of every method declared to :func:`start`.

    ``methods``: full names (unary), a ``{name: type}`` mapping or ``(name, type)`` pairs, the
    type one of ``unary``, ``client_stream``, ``server_stream``, ``bidi_stream``.
    ``services``: protobuf service descriptors (``pb2.DESCRIPTOR.services_by_name["Svc"]``),
    read duck-typed (``full_name``; ``methods`` with ``name``, ``client_streaming``,
    ``server_streaming``), so this module never imports protobuf.
    """
    out: list[tuple[str, str]] = []
    items = methods.items() if isinstance(methods, Mapping) else methods
    for item in items:
        full, rpc_type = (item, "unary") if isinstance(item, str) else item
        if rpc_type not in protocol.RPC_TYPES:
            raise ValueError(f"method {full!r}: type {rpc_type!r} is not one of "
                             f"{', '.join(protocol.RPC_TYPES)}")
        out.append((full, rpc_type))
    for service in services:
        try:
            name, methods_of = service.full_name, list(service.methods)
            for m in methods_of:
                client, server = m.client_streaming, m.server_streaming
                out.append((f"/{name}/{m.name}", _TYPES[bool(client), bool(server)]))
        except AttributeError as err:
            raise TypeError(f"services takes protobuf service descriptors, e.g. "
                            f"pb2.DESCRIPTOR.services_by_name['Name'], not "
                            f"{type(service).__name__} ({err})") from None
    return out


_TYPES = {(False, False): "unary", (True, False): "client_stream",
          (False, True): "server_stream", (True, True): "bidi_stream"}


def split_method(full: str, default_service: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` -> (``pkg.Service``, ``Method``); a bare name gets the default."""
    service, _, method = full.lstrip("/").rpartition("/")
    return (protocol.clean_name(service or default_service or "unknown"),
            protocol.clean_name(method or "unknown"))


class Reporter:
    """Counts RPCs in this process and pushes cumulative snapshots to the sidecar.

    Use :func:`sidecar.reporter.start` to make the process-wide one; tests may build their own.
    """

    def __init__(
        self,
        service: str = "",
        version: str = "",
        methods: Methods = (),
        socket_path: str | None = None,
        interval: float = 1.0,
        buckets: tuple[float, ...] = protocol.DEFAULT_BUCKETS,
        max_series: int = 1000,
        health_timeout: float = 0.5,
        services: Iterable[Any] = (),
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be above zero seconds, not {interval}")
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError("buckets must be strictly increasing upper bounds")
        self.service = protocol.clean_name(service, "") if service else ""
        self.version = protocol.clean_name(version, "") if version else ""
        self.socket_path = socket_path or os.environ.get("ORACLE_METRICS_SOCKET") or DEFAULT_SOCKET
        self.interval = interval
        self.buckets = tuple(float(b) for b in buckets)
        # The record path counts into fine buckets (one bisect, one increment); the classic
        # counts are their exact sums, made once per flush. Odd classic bounds that would need
        # too many fine ones: classic counts only, as before the fine histogram.
        self._fine = fine.bounds(self.buckets)
        self._record_bounds = self._fine if self._fine is not None else self.buckets
        self._n_record = len(self._record_bounds) + 1
        self.max_series = max_series
        self.health_timeout = health_timeout
        self._health: tuple[str, dict[str, str]] = ("healthy", {})
        self._health_callback: HealthCallback | None = None
        self._health_pool: ThreadPoolExecutor | None = None
        self._health_pending: Future[tuple[str, dict[str, str]]] | None = None
        self._lock = threading.Lock()  # guards the table registry and the series count
        self._methods = declared_methods(methods, services)
        self._retyped_logged: set[str] = set()
        self._reset_state()
        self._closed = False
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._receiver_ok: bool | None = None
        os.register_at_fork(after_in_child=self._after_fork)

    def _reset_state(self) -> None:
        self.source_id = secrets.token_hex(8)
        self.pid = os.getpid()
        self.start_time = time.time()
        self._seq = 0
        self._local = threading.local()
        self._tables: list[tuple[threading.Thread | None, dict[str, Series]]] = []
        self._retired: dict[str, Series] = {}  # tables of threads that ended, summed
        self._series_count = 0
        self.overflow = 0
        self.dropped = 0  # datagrams given up
        self.send_errors = 0
        self.sent = 0
        self._next_part = 0  # the part a split snapshot starts with (the first given up)
        self._carry: set[tuple[str, str]] = set()  # rows past 64 parts, sent first next time
        self._too_large_logged = False
        for full, rpc_type in self._methods:
            service, method = split_method(full, self.service)
            key = f"/{service}/{method}"
            if key not in self._retired:
                self._retired[key] = Series(service, method, rpc_type, self._n_record)
                self._series_count += 1

    # -- the per-RPC path ---------------------------------------------------------------------

    def series(self, full_method: str, rpc_type: str = "unary") -> Series | None:
        """This thread's counters for ``full_method`` (``/pkg.Service/Method``), made on first use.

        Returns None past ``max_series`` distinct methods: the RPC is then counted in
        ``overflow`` only, so a misbehaving caller cannot grow memory without bound.
        """
        try:
            table: dict[str, Series] = self._local.table
        except AttributeError:
            table = {}
            self._local.table = table
            with self._lock:
                self._tables.append((threading.current_thread(), table))
        found = table.get(full_method)
        if found is not None:
            return found
        with self._lock:
            known = any(full_method in t for _, t in self._tables) or full_method in self._retired
            if not known:
                if self._series_count >= self.max_series:
                    self.overflow += 1
                    return None
                self._series_count += 1
            declared = self._retired.get(full_method)
            if declared is not None and declared.type != rpc_type:
                self._retype(declared, full_method, rpc_type)
        service, method = split_method(full_method, self.service)
        created = Series(service, method, rpc_type, self._n_record)
        table[full_method] = created
        return created

    def _retype(self, declared: Series, full_method: str, rpc_type: str) -> None:
        """A method declared with one type turned out to be another (under self._lock)."""
        if full_method not in self._retyped_logged:
            self._retyped_logged.add(full_method)
            log.warning("%s was declared %s but its handler is %s; it is reported as %s. Declare "
                        "it with its type (methods={name: type} or services=[descriptor]) so "
                        "that the first pushes do not show it as %s", full_method,
                        declared.type, rpc_type, rpc_type, declared.type)
        if not (declared.started or declared.ok or declared.codes):  # still the zero row
            declared.type = rpc_type

    def observe(self, series: Series, seconds: float, code: str = "OK",
                exception: str | None = None) -> None:
        """Count one finished RPC of ``series`` (made by :meth:`series` in this thread).

        ``code`` is Go's name (``NotFound``) or the spec's (``NOT_FOUND``); anything else counts
        as ``Unknown``.
        """
        if code == "OK":
            series.ok += 1
        else:
            code = protocol.code_name(code) or "Unknown"
            series.codes[code] = series.codes.get(code, 0) + 1
            series.last_error = (code, time.time())
            if exception is not None:
                if exception not in series.exceptions:  # a new type: keep the message valid
                    exception = protocol.clean_name(exception, limit=protocol.MAX_EXCEPTION)
                    if len(series.exceptions) >= protocol.MAX_KEYS - 1:
                        exception = "(other)"
                series.exceptions[exception] = series.exceptions.get(exception, 0) + 1
        series.hist[bisect_left(self._record_bounds, seconds)] += 1
        series.sum += seconds
        if seconds > series.max:
            series.max = seconds

    def track(self, name: str) -> _Tracked:
        """Time a block (``with``) or a function (decorator) as one unary RPC called ``name``.

        ``name`` is ``Service/Method`` or a bare method name of this reporter's service. An
        exception that escapes counts as Unknown with its type, and is re-raised untouched.
        """
        full = name if name.startswith("/") else "/" + (
            name if "/" in name else f"{self.service or 'app'}/{name}")
        return _Tracked(self, full)

    def server_interceptor(self) -> Any:
        """A ``grpc.ServerInterceptor`` for ``grpc.server(..., interceptors=[...])``."""
        from sidecar.reporter.interceptors import ServerInterceptor

        return ServerInterceptor(self)

    def aio_server_interceptor(self) -> Any:
        """A ``grpc.aio.ServerInterceptor`` for ``grpc.aio.server(interceptors=[...])``."""
        from sidecar.reporter.interceptors import AioServerInterceptor

        return AioServerInterceptor(self)

    # -- health -------------------------------------------------------------------------------

    @property
    def reachable(self) -> bool | None:
        """Whether the last push reached the sidecar (None before the first push)."""
        return self._receiver_ok

    def set_health(self, status: str, checks: dict[str, str] | None = None) -> None:
        """Report ``healthy``, ``degraded`` or ``down`` with named checks from now on.

        A health callback, when one is set, takes precedence over this value.
        """
        if status not in protocol.HEALTH_STATES:
            raise ValueError(f"health status {status!r} is not one of "
                             f"{', '.join(protocol.HEALTH_STATES)}")
        self._health = (status, _clean_checks(checks or {}))

    def set_health_callback(self, callback: HealthCallback | None) -> None:
        """Call ``callback() -> (status, checks)`` at each flush, within ``health_timeout``.

        An exception, a bad answer or a timeout reports ``degraded`` with the reason as a check.
        """
        self._health_callback = callback

    def _current_health(self) -> tuple[str, dict[str, str]]:
        callback = self._health_callback
        if callback is None:
            return self._health
        if self._health_pending is not None and not self._health_pending.done():
            return "degraded", {"health_callback": "still running from an earlier flush"}
        if self._health_pool is None:
            self._health_pool = ThreadPoolExecutor(1, thread_name_prefix="oracle-health")
        self._health_pending = self._health_pool.submit(callback)
        try:
            status, checks = self._health_pending.result(timeout=self.health_timeout)
            if status not in protocol.HEALTH_STATES or not isinstance(checks, dict):
                raise ValueError(f"health callback answered {status!r}, {type(checks).__name__}")
            return status, _clean_checks(checks)
        except FutureTimeout:
            return "degraded", {"health_callback": f"no answer within {self.health_timeout} s"}
        except Exception as err:  # the service's callback failed: report it, never raise
            return "degraded", {"health_callback": f"{type(err).__name__}: {err}"[:200]}

    # -- snapshots and pushing ----------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """The cumulative totals of every method, summed over this process's threads."""
        with self._lock:
            alive: list[tuple[threading.Thread | None, dict[str, Series]]] = []
            for thread, table in self._tables:
                if thread is not None and thread.is_alive():
                    alive.append((thread, table))
                else:  # its thread ended: nobody writes this table any more
                    _fold(self._retired, table, self._n_record)
            self._tables = alive
            sources = [self._retired, *(tab for _, tab in alive)]
        # Keyed by what the message says, so that two raw names cleaned to the same name make
        # one row (the sidecar takes one row per service and method). A method declared up
        # front without its kind is a unary placeholder until its first call tells the kind.
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for table in sources:
            for s in table.copy().values():
                key = (s.service, s.method)
                row = merged.get(key)
                if row is not None and s.type != row["type"] and s.type != "unary":
                    row["type"] = s.type
                if row is None:
                    row = merged[key] = {
                        "service": s.service, "method": s.method, "type": s.type,
                        "started": 0, "codes": {}, "hist": [0] * len(s.hist), "sum": 0.0,
                        "max": 0.0, "exceptions": {}, "last_error": None,
                        "msg_received": 0, "msg_sent": 0,
                    }
                _add_into(row, s)
        out = []
        for row in merged.values():
            if self._fine is not None:
                counts = row["hist"]
                row["hist"] = fine.fold_classic(fine.sparse(counts), self.buckets)
                row["fine"] = {"schema": fine.SCHEMA, "runs": fine.runs(counts)}
            codes = row["codes"]
            # A series is read without a lock, so `started` may be read before an RPC that was
            # finished by the time `ok` is read: keep started >= handled, as the protocol asks.
            row["started"] = max(row["started"], sum(codes.values()))
            if row["type"] == "unary":  # go-grpc-prometheus: 1 received per call, 1 sent per OK
                row["msg_received"], row["msg_sent"] = row["started"], codes.get("OK", 0)
            if row["last_error"] is None:
                del row["last_error"]
            if not row["exceptions"]:
                del row["exceptions"]
            row["sum"] = round(row["sum"], 9)
            out.append(row)
        return out

    def flush(self, final: bool = False) -> bool:
        """Send one snapshot now; True when every part was handed to the sidecar's socket."""
        with self._flush_lock:
            status, checks = self._current_health()
            if final:
                status, checks = "down", {**checks, "reporter": "process is shutting down"}
            self._seq += 1
            rows = self.rows()
            if self._carry:  # rows a 64-part snapshot could not hold last time go first
                rows.sort(key=lambda r: (r["service"], r["method"]) not in self._carry)
            datagrams, rest, too_large = protocol.encode_parts(
                source={"id": self.source_id, "pid": self.pid, "started": self.start_time,
                        "service": self.service, "version": self.version},
                seq=self._seq,
                time=time.time(),
                buckets=self.buckets,
                rows=rows,
                health=status,
                checks=checks,
                reporter={"dropped": self.dropped, "send_errors": self.send_errors,
                          "overflow": self.overflow},
                final=final,
            )
            self._carry = {(r["service"], r["method"]) for r in rest}
            if too_large and not self._too_large_logged:
                self._too_large_logged = True
                log.warning("%d methods have rows larger than a datagram and are not sent "
                            "(e.g. %s/%s)", len(too_large), too_large[0]["service"],
                            too_large[0]["method"])
            return self._send_paced(datagrams) and not rest and not too_large

    def _send_paced(self, datagrams: list[bytes]) -> bool:
        """Send the parts of one snapshot; wait out a full queue within the pacing budget.

        A sender's buffer holds only a few 64 KiB datagrams the sidecar has not read yet, so a
        burst of parts would lose the same ones on every push. On EAGAIN/ENOBUFS the same part
        is tried again after 1, 2, 4 ... 50 ms, while the snapshot has waited less than half the
        interval (at most PACING_BUDGET); parts given up count as dropped, and the next snapshot
        starts with the first of them. Only this background thread ever waits.
        """
        n = len(datagrams)
        first = self._next_part if self._next_part < n else 0
        self._next_part = 0
        deadline = time.monotonic() + min(self.interval / 2, PACING_BUDGET)
        for k in range(n):
            index = (first + k) % n
            delay = 0.001
            while True:
                failure = self._send(datagrams[index])
                if failure is None:
                    break
                if failure in (errno.EAGAIN, errno.ENOBUFS) and \
                        time.monotonic() + delay <= deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
                    continue
                # Given up: this part and every one after it in this snapshot.
                left = n - k
                self.dropped += left
                if failure not in (errno.EAGAIN, errno.ENOBUFS):
                    self.send_errors += left
                if n > 1:
                    self._next_part = index
                self._unreachable(failure)
                return False
        if self._receiver_ok is False:
            log.info("metrics sidecar reachable again at %s", self.socket_path)
        self._receiver_ok = True
        return True

    def _send(self, datagram: bytes) -> int | None:
        """Hand one datagram to the socket; the errno when it failed, else None."""
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
        try:
            self._sock.sendto(datagram, self.socket_path)
        except OSError as err:
            return err.errno or errno.EIO
        self.sent += 1
        return None

    def _unreachable(self, failure: int) -> None:
        if self._receiver_ok is not False:  # log the change, not every failure
            log.warning("metrics sidecar not reachable at %s: %s; counting drops until it "
                        "answers", self.socket_path, os.strerror(failure))
        self._receiver_ok = False

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Reporter:
        """Start the background flusher (idempotent) and push a first snapshot at once."""
        if self._flusher is None or not self._flusher.is_alive():
            self._stop.clear()
            self._closed = False
            self._flusher = threading.Thread(target=self._run, name="oracle-sidecar-reporter",
                                             daemon=True)
            self._flusher.start()
            _live.add(self)
        return self

    def _run(self) -> None:
        while True:
            try:
                self.flush()
            except Exception:  # never let a reporting bug reach the service
                log.exception("metrics reporter failed to build a snapshot")
            if self._stop.wait(self.interval):
                return

    def close(self, timeout: float = 2.0) -> None:
        """Stop the flusher and send the final snapshot (marked final). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join(timeout)
        try:
            self.flush(final=True)
        except Exception:
            log.exception("metrics reporter failed to send its final snapshot")
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._health_pool is not None:
            self._health_pool.shutdown(wait=False, cancel_futures=True)
            self._health_pool = None
        _live.discard(self)

    def _after_fork(self) -> None:
        # The child is a new process: new identity, empty counters, its own flusher and socket.
        was_running = (self._flusher is not None and self._flusher.is_alive()) or (
            self in _live and not self._closed)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher = None
        self._sock = None
        self._health_pool = None
        self._health_pending = None
        self._reset_state()
        if was_running:
            self.start()


class _Tracked:
    """Context manager and decorator made by :meth:`Reporter.track`."""

    __slots__ = ("_full", "_reporter", "_series", "_t0")

    def __init__(self, reporter: Reporter, full: str) -> None:
        self._reporter = reporter
        self._full = full

    def __enter__(self) -> _Tracked:
        self._series = self._reporter.series(self._full)
        if self._series is not None:
            self._series.started += 1
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        elapsed = time.perf_counter() - self._t0
        if self._series is not None:
            if exc_type is None:
                self._reporter.observe(self._series, elapsed)
            else:
                self._reporter.observe(self._series, elapsed, "Unknown", exc_type.__name__)

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        import functools

        reporter, full = self._reporter, self._full

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _Tracked(reporter, full):
                return func(*args, **kwargs)

        return wrapper


def _clean_checks(checks: dict[Any, Any]) -> dict[str, str]:
    """Health checks as the protocol accepts them (one slot is left for the reporter's own)."""
    return {protocol.clean_name(str(k)): protocol.clean_text(str(v))
            for k, v in list(checks.items())[: protocol.MAX_KEYS - 1]}


def _add_into(row: dict[str, Any], s: Series) -> None:
    row["started"] += s.started
    codes = row["codes"]
    if s.ok:
        codes["OK"] = codes.get("OK", 0) + s.ok
    for code, n in s.codes.copy().items():
        codes[code] = codes.get(code, 0) + n
    row["hist"] = list(map(add, row["hist"], list(s.hist)))
    row["sum"] += s.sum
    row["max"] = max(row["max"], s.max)
    row["msg_received"] += s.msg_received
    row["msg_sent"] += s.msg_sent
    for name, n in s.exceptions.copy().items():
        row["exceptions"][name] = row["exceptions"].get(name, 0) + n
    if s.last_error is not None and (row["last_error"] is None
                                     or s.last_error[1] > row["last_error"][1]):
        row["last_error"] = list(s.last_error)


def _fold(into: dict[str, Series], table: dict[str, Series], n_buckets: int) -> None:
    """Add a finished thread's counters to ``into`` (only the flusher calls this)."""
    for key, s in table.items():
        t = into.get(key)
        if t is None:
            t = into[key] = Series(s.service, s.method, s.type, n_buckets)
        t.started += s.started
        t.ok += s.ok
        for code, n in s.codes.items():
            t.codes[code] = t.codes.get(code, 0) + n
        t.hist = list(map(add, t.hist, s.hist))
        t.sum += s.sum
        t.max = max(t.max, s.max)
        t.msg_received += s.msg_received
        t.msg_sent += s.msg_sent
        for name, n in s.exceptions.items():
            t.exceptions[name] = t.exceptions.get(name, 0) + n
        if s.last_error is not None and (t.last_error is None or s.last_error[1] > t.last_error[1]):
            t.last_error = s.last_error


_live: weakref.WeakSet[Reporter] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for reporter in list(_live):
        reporter.close(timeout=0.5)
