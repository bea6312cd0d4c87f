"""Benchmark 1: what recording one RPC costs in the service, isolated, for each alternative.

Each alternative is a loop that records ``n`` RPCs exactly the way its library is used around
a gRPC handler: two ``perf_counter()`` calls for the duration, then the recording, cycling over
the Oracle's eight methods. Every round runs every alternative once, in a rotated order, and
the ratio to the reporter is taken within the round, so a slow moment of this shared machine
moves both sides of a ratio. ``n`` is one million for the cheap alternatives and smaller for
the expensive ones, so that each run lasts about the same time (the table shows ``n``).

The datagram alternatives send to a separate receiver process (``benchmarks._sink``) that
drains as fast as Python can; what it received is shown as "delivered".
"""

from __future__ import annotations

import gc
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from benchmarks.procs import Procs, free_port
from benchmarks.report import Section, Spread, ratio_text, spread, table
from sidecar.demo import METHODS, SERVICE, full_method

__all__ = ["run"]

perf = time.perf_counter
FULL = [full_method(m) for m in METHODS]
assert len(FULL) == 8  # the loops pick a method with i & 7
REQUEST = b"x" * 32


@dataclass
class Alt:
    """One alternative: how it records, and (after the run) what it cost."""

    key: str
    label: str
    how: str
    make: Callable[[Any], Callable[[int], None]]
    reference: str = "reporter"  # the row its ratio is taken against
    run: Callable[[int], None] | None = None
    n: int = 0
    attempts: int = 0  # recordings made, calibration included (for delivery)
    sink_key: str | None = None
    eagain: int = 0  # non-blocking sends refused by a full receiver queue
    seconds: list[float] = field(default_factory=list)  # per RPC, one per round
    ratios: list[float] = field(default_factory=list)


class _State:
    client = None
    code = None


class FakeContext:
    """Enough of ``grpc.ServicerContext`` for both interceptors: an RPC that ended OK."""

    _state = _State()

    def code(self) -> None:
        return None


def handler(request: bytes, context: Any) -> bytes:
    return request


def _wrapped(interceptor: Any) -> list[Callable[[bytes, Any], bytes]]:
    """The unary behaviours an interceptor makes around ``handler``, one per method."""
    import grpc

    out = []
    for m in FULL:
        details = SimpleNamespace(method=m, invocation_metadata=())
        wrapped = interceptor.intercept_service(
            lambda d: grpc.unary_unary_rpc_method_handler(handler), details)
        out.append(wrapped.unary_unary)
    return out


# -- the alternatives ---------------------------------------------------------------------------

def make_floor(ctx: Any) -> Callable[[int], None]:
    counts: dict[str, int] = {}

    def run(n: int) -> None:
        methods = FULL
        for i in range(n):
            m = methods[i & 7]
            t0 = perf()
            _ = perf() - t0
            counts[m] = counts.get(m, 0) + 1

    return run


def _reporter(ctx: Any) -> Any:
    from sidecar.reporter import Reporter

    if ctx.reporter is None:  # not started: no flusher thread, no pushes while timed
        ctx.reporter = Reporter(SERVICE, "bench", FULL, ctx.unix_rep)
    return ctx.reporter


def make_reporter(ctx: Any) -> Callable[[int], None]:
    return record_loop(_reporter(ctx))


def record_loop(rep: Any) -> Callable[[int], None]:
    """The reporter's record path for ``n`` RPCs over the Oracle's 8 methods (also used by
    benchmarks.fine on its two record-path variants)."""

    def run(n: int) -> None:
        methods, series_of, observe = FULL, rep.series, rep.observe
        for i in range(n):  # what ServerInterceptor does around the handler
            s = series_of(methods[i & 7])
            if s is None:
                continue
            s.started += 1
            t0 = perf()
            elapsed = perf() - t0
            observe(s, elapsed)

    return run


def make_track(ctx: Any) -> Callable[[int], None]:
    rep = _reporter(ctx)

    def run(n: int) -> None:
        methods, track = FULL, rep.track
        for i in range(n):
            with track(methods[i & 7]):
                pass

    return run


def make_bare(ctx: Any) -> Callable[[int], None]:
    behaviours = [handler] * 8
    context = FakeContext()

    def run(n: int) -> None:
        for i in range(n):
            behaviours[i & 7](REQUEST, context)

    return run


def make_reporter_interceptor(ctx: Any) -> Callable[[int], None]:
    behaviours = _wrapped(_reporter(ctx).server_interceptor())
    context = FakeContext()

    def run(n: int) -> None:
        for i in range(n):
            behaviours[i & 7](REQUEST, context)

    return run


def _prom_metrics() -> tuple[Any, Any, Any]:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry(auto_describe=False)
    labels = ["grpc_type", "grpc_service", "grpc_method"]
    started = Counter("grpc_server_started_total", "started", labels, registry=registry)
    handled = Counter("grpc_server_handled_total", "handled", [*labels, "grpc_code"],
                      registry=registry)
    seconds = Histogram("grpc_server_handling_seconds", "seconds", labels, registry=registry)
    return started, handled, seconds


def make_prom_cached(ctx: Any) -> Callable[[int], None]:
    started, handled, seconds = _prom_metrics()
    kids = [(started.labels("unary", SERVICE, m), handled.labels("unary", SERVICE, m, "OK"),
             seconds.labels("unary", SERVICE, m)) for m in METHODS]

    def run(n: int) -> None:
        children = kids
        for i in range(n):
            s, h, d = children[i & 7]
            s.inc()
            t0 = perf()
            elapsed = perf() - t0
            h.inc()
            d.observe(elapsed)

    return run


def make_prom_labels(ctx: Any) -> Callable[[int], None]:
    started, handled, seconds = _prom_metrics()

    def run(n: int) -> None:
        methods = METHODS
        for i in range(n):
            m = methods[i & 7]
            started.labels("unary", SERVICE, m).inc()
            t0 = perf()
            elapsed = perf() - t0
            handled.labels("unary", SERVICE, m, "OK").inc()
            seconds.labels("unary", SERVICE, m).observe(elapsed)

    return run


def make_pgp(ctx: Any) -> Callable[[int], None]:
    from prometheus_client import CollectorRegistry
    from py_grpc_prometheus.prometheus_server_interceptor import PromServerInterceptor

    interceptor = PromServerInterceptor(enable_handling_time_histogram=True,
                                        registry=CollectorRegistry(auto_describe=False))
    behaviours = _wrapped(interceptor)
    context = FakeContext()

    def run(n: int) -> None:
        for i in range(n):
            behaviours[i & 7](REQUEST, context)

    return run


def make_otel(ctx: Any) -> Callable[[int], None]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    ctx.closers.append(provider.shutdown)
    hist = provider.get_meter("bench").create_histogram("rpc.server.duration", unit="ms")
    attributes: list[dict[str, Any]] = [
        {"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": m,
         "rpc.grpc.status_code": 0} for m in METHODS]

    def run(n: int) -> None:
        record, attrs = hist.record, attributes
        for i in range(n):
            t0 = perf()
            elapsed = perf() - t0
            record(elapsed * 1000, attrs[i & 7])

    return run


def make_datagram(ctx: Any) -> Callable[[int], None]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.connect(ctx.unix_raw)
    sock.setblocking(False)
    ctx.closers.append(sock.close)
    prefixes = [f"grpc.{SERVICE}.{m}.OK:" for m in METHODS]
    alt = ctx.alts["datagram"]

    def run(n: int) -> None:
        send, names, eagain = sock.send, prefixes, 0
        for i in range(n):
            t0 = perf()
            elapsed = perf() - t0
            try:
                send(f"{names[i & 7]}{elapsed:.9f}|h".encode())
            except BlockingIOError:
                eagain += 1
        alt.eagain += eagain

    return run


def make_dogstatsd(ctx: Any) -> Callable[[int], None]:
    from datadog.dogstatsd.base import DogStatsd

    client = DogStatsd(socket_path=ctx.unix_dd)  # the defaults: unbuffered, no sender thread
    ctx.closers.append(client.close_socket)
    tags = [[f"grpc_service:{SERVICE}", f"grpc_method:{m}", "grpc_code:OK"] for m in METHODS]

    def run(n: int) -> None:
        histogram, t = client.histogram, tags
        for i in range(n):
            t0 = perf()
            elapsed = perf() - t0
            histogram("grpc.server.handling_seconds", elapsed, tags=t[i & 7])

    return run


def make_statsd(ctx: Any) -> Callable[[int], None]:
    import statsd

    client = statsd.StatsClient("127.0.0.1", ctx.udp_port)
    ctx.closers.append(client.close)
    names = [f"grpc.server.{SERVICE.replace('.', '_')}.{m}.OK" for m in METHODS]

    def run(n: int) -> None:
        timing, stat = client.timing, names
        for i in range(n):
            t0 = perf()
            elapsed = perf() - t0
            timing(stat[i & 7], elapsed * 1000)

    return run


def alternatives() -> list[Alt]:
    """Every alternative, in table order."""
    return [
        Alt("floor", "floor: plain dict", "2× perf_counter + one dict counter update",
            make_floor),
        Alt("reporter", "**reporter** (interceptor path)",
            "`rep.series(m)`, `started += 1`, 2× perf_counter, `rep.observe(s, dt)`",
            make_reporter),
        Alt("track", "reporter `track()`", "`with rep.track(m): pass`", make_track),
        Alt("prom_cached", "prometheus-client, cached children",
            "started.inc(), handled.inc(), histogram.observe() on children made once",
            make_prom_cached),
        Alt("prom_labels", "prometheus-client, `labels()` per call",
            "the same three, each through `.labels(...)` on every RPC", make_prom_labels),
        Alt("otel", "OpenTelemetry SDK histogram",
            "`histogram.record(ms, attributes)`, in-memory reader", make_otel),
        Alt("datagram", "one Unix datagram per RPC",
            "format a statsd line, non-blocking `send` on a connected socket", make_datagram),
        Alt("dogstatsd", "datadog DogStatsD, Unix socket",
            "`statsd.histogram(name, dt, tags=[3 tags])`, library defaults", make_dogstatsd),
        Alt("statsd", "statsd over UDP 127.0.0.1", "`client.timing(name, ms)`", make_statsd),
        Alt("bare", "bare handler call (no interceptor)", "`handler(request, context)`",
            make_bare, reference=""),
        Alt("reporter_int", "**reporter** `ServerInterceptor`",
            "the wrapped behaviour, handler call included", make_reporter_interceptor,
            reference=""),
        Alt("pgp", "py-grpc-prometheus `PromServerInterceptor`",
            "the wrapped behaviour (histogram on), handler call included", make_pgp,
            reference="reporter_int"),
    ]


# -- the run ------------------------------------------------------------------------------------

def _round_n(x: float) -> int:
    """Two significant digits, so the table shows round numbers."""
    if x <= 0:
        return 1
    digits = len(str(int(x))) - 2
    return max(1, int(round(x, -digits))) if digits > 0 else max(1, int(x))


def _timed(alt: Alt, n: int) -> float:
    assert alt.run is not None
    gc.collect()
    t0 = perf()
    alt.run(n)
    elapsed = perf() - t0
    alt.attempts += n
    return elapsed


def run(quick: bool, machine: str, command: str) -> Section:
    rounds = 3 if quick else 7
    budget = 0.04 if quick else 0.6  # seconds per alternative per round
    floor_n, cap = (2_000, 200_000) if quick else (20_000, 1_000_000)
    alts = alternatives()
    by_key = {a.key: a for a in alts}
    with Procs() as procs:
        unix_raw, unix_dd = str(procs.dir / "raw.sock"), str(procs.dir / "dd.sock")
        unix_rep = str(procs.dir / "reporter.sock")
        udp_port = free_port()
        sink = procs.python("benchmarks._sink", "--unix", unix_raw, "--unix", unix_dd,
                            "--unix", unix_rep, "--udp-port", str(udp_port), name="sink",
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert sink.stdout is not None and sink.stdin is not None
        if sink.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the datagram sink did not start:\n{procs.log(sink)}")
        ctx = SimpleNamespace(procs=procs, unix_raw=unix_raw, unix_dd=unix_dd, unix_rep=unix_rep,
                              udp_port=udp_port, closers=[], alts=by_key, reporter=None)
        by_key["datagram"].sink_key = unix_raw
        by_key["dogstatsd"].sink_key = unix_dd
        by_key["statsd"].sink_key = f"udp:{udp_port}"
        try:
            for alt in alts:
                alt.run = alt.make(ctx)
                alt.run(2_000)  # warm up: first-use paths, caches
                alt.attempts += 2_000
                probe = 5_000 if quick else 20_000
                cost = _timed(alt, probe) / probe
                alt.n = _round_n(min(cap, max(floor_n, budget / cost)))
            for r in range(rounds):
                order = alts[r % len(alts):] + alts[: r % len(alts)]
                if r % 2:
                    order.reverse()
                for alt in order:
                    alt.seconds.append(_timed(alt, alt.n) / alt.n)
                for alt in alts:
                    ref = by_key.get(alt.reference)
                    if ref is not None:
                        alt.ratios.append(alt.seconds[-1] / ref.seconds[-1])
            flush_ms = spread(_flush_cost(ctx.reporter))
        finally:
            for close in ctx.closers:
                try:
                    close()
                except Exception as err:  # a library's close failing must not hide figures
                    print(f"closing failed: {err!r}", file=sys.stderr)
            sink.stdin.close()
            received = json.loads(sink.stdout.readline() or b"{}")
            procs.stop(sink)
    return _section(alts, by_key, received, flush_ms, rounds, quick, machine, command)


def _flush_cost(rep: Any) -> list[float]:
    """Milliseconds to build, encode and send one snapshot of the reporter's 8 methods."""
    out = []
    for _ in range(5):
        t0 = perf()
        rep.flush()
        out.append((perf() - t0) * 1000)
    return out


def _section(alts: list[Alt], by_key: dict[str, Alt], received: dict[str, int],
             flush_ms: Spread, rounds: int,
             quick: bool, machine: str, command: str) -> Section:
    rows = []
    for alt in alts:
        us = spread([s * 1e6 for s in alt.seconds])
        ratio = ratio_text(spread(alt.ratios), 1) if alt.ratios else "(reference)" \
            if alt.key in ("reporter", "reporter_int") else "–"
        if alt.key == "reporter":
            ratio = "1 (reference)"
        elif alt.key == "reporter_int":
            ratio = "1 (reference for pgp)"
        delivered = "–"
        if alt.sink_key is not None and alt.attempts:
            got = received.get(alt.sink_key, 0)
            delivered = f"{100 * got / alt.attempts:.1f} %"
            if alt.eagain:
                delivered += f" ({alt.eagain:,} EAGAIN)"
        rows.append((alt.label, alt.how, us.text(2), ratio, f"{alt.n:,}", delivered))
    headers = ["alternative", "what one recording does", "µs per RPC, median (min–max)",
               "× reporter, median (min–max)", "n per round", "delivered"]
    t = table(headers, rows, right=(2, 3, 4))
    reporter, rep_int, bare = by_key["reporter"], by_key["reporter_int"], by_key["bare"]
    rep_us = spread([s * 1e6 for s in reporter.seconds])
    overhead = spread([(a - b) * 1e6 for a, b in zip(rep_int.seconds, bare.seconds,
                                                      strict=True)])
    pgp_overhead = spread([(a - b) * 1e6 for a, b in zip(by_key["pgp"].seconds, bare.seconds,
                                                          strict=True)])
    pgp_ratio = spread(by_key["pgp"].ratios)
    labels_ratio = spread(by_key["prom_labels"].ratios)
    cached_ratio = spread(by_key["prom_cached"].ratios)
    floor_ratio = spread(by_key["floor"].ratios)
    section = Section(
        key="isolated",
        title="1. Per-RPC recording cost, isolated",
        intro=("A tight loop of recordings per alternative, cycling over the Oracle's 8 methods; "
               f"{rounds} rounds, each running every alternative once in a rotated order. "
               "The ratio is taken within each round (alternative ÷ reporter measured the same "
               "way), then the median and range over rounds are shown. Interceptor rows call "
               "the real wrapped behaviour with a stand-in context, so they include the "
               "handler call (see the bare row); their ratio is against the reporter's own "
               "interceptor. The datagram alternatives send to a separate process that drains "
               "with a blocking `recv` loop; \"delivered\" is what it received of all the "
               "recordings made (warm-up included)."
               + (" Quick mode: few, short rounds; figures are indicative only." if quick
                  else "")),
        machine=machine,
        command=command,
        tables=[t],
    )
    section.targets = [
        ("reporter ≤ 1 µs per RPC (median, isolated)", f"{rep_us.text(2)} µs",
         rep_us.median <= 1.0),
        ("reporter ≥ 10× cheaper than prometheus-client the way py-grpc-prometheus uses it",
         f"py-grpc-prometheus interceptor {ratio_text(pgp_ratio, 1)} the reporter's "
         f"interceptor; labels() per call {ratio_text(labels_ratio, 1)}",
         pgp_ratio.median >= 10),
    ]
    section.notes = [
        f"Interceptor overhead above the bare handler call: reporter "
        f"{overhead.text(2)} µs, py-grpc-prometheus {pgp_overhead.text(2)} µs per RPC.",
        f"The reporter costs {ratio_text(_inverse(floor_ratio), 1)} the floor "
        f"(two perf_counter calls and a dict update); prometheus-client with cached children "
        f"costs {ratio_text(cached_ratio, 1)} the reporter.",
        f"The reporter here is not started (no flusher thread). Its snapshot, built and "
        f"encoded once a second by the flusher, took {flush_ms.text(2)} ms for the Oracle's "
        f"8 methods: that is per second, not per RPC.",
    ]
    return section


def _inverse(s: Spread) -> Spread:
    if s.n == 0:
        return s
    return Spread(1 / s.median, 1 / s.high, 1 / s.low, s.n)
