"""Percentiles a person sees are within 2 % of the exact ones: real handlers, real sidecars.

The exact figure is the nearest-rank percentile of the durations the reporter was given, each
one recorded by the test as it was observed (the interceptor's own measurement for the real
gRPC calls, the injected value for the rest).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from sidecar import protocol
from sidecar.exposition import Exposition
from sidecar.reporter.core import Reporter, Series
from sidecar.store import Store
from tests.conftest import SidecarProcess, http_get, http_json, wait_for
from tests.dashboard.conftest import Clock
from tests.dashboard.helpers import DashboardProcess, kubeconfig
from tests.fakes.kube_api import pod
from tests.test_fine import nearest_rank

SERVICE = "test.Fine"
QUANTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}


class RecordingReporter(Reporter):
    """A real Reporter that also keeps every duration it is given, per method."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: dict[str, list[float]] = defaultdict(list)
        self._seen_lock = threading.Lock()

    def observe(self, series: Series, seconds: float, code: str = "OK",
                exception: str | None = None) -> None:
        with self._seen_lock:
            self.seen[series.method].append(seconds)
        super().observe(series, seconds, code, exception)


def assert_within_2_percent(row: dict[str, Any], durations: list[float], what: str) -> None:
    """Every percentile of a snapshot row within 2 % of the exact nearest-rank value."""
    assert row["count"] == len(durations), what
    for name, q in QUANTILES.items():
        exact = nearest_rank(durations, q) * 1000
        assert abs(row[name] - exact) <= 0.02 * exact, f"{what} {name}: {row[name]} vs {exact}"


# Durations in seconds, drawn from a seeded generator.
SLEPT: dict[str, Callable[[random.Random], float]] = {
    "Narrow": lambda rng: rng.uniform(0.120, 0.180),
    "Wide": lambda rng: min(rng.lognormvariate(math.log(0.4), 0.6), 3.0),
    "Bimodal": lambda rng: rng.uniform(0.010, 0.020) if rng.random() < 0.7
    else rng.uniform(0.300, 0.600),
}
INJECTED: dict[str, Callable[[random.Random], float]] = {
    "Fast": lambda rng: rng.uniform(0.0002, 0.0049),
    "HeavyTail": lambda rng: min(0.02 * rng.paretovariate(0.9), 30.0),
}


def _sleeper(request: bytes, context: grpc.ServicerContext) -> bytes:
    time.sleep(float(request.decode()))
    return b"ok"


def test_snapshot_percentiles_of_real_sleeping_handlers_are_within_2_percent(
        sidecar: SidecarProcess) -> None:
    """Real grpcio handlers sleeping seeded durations, plus injected ones: all within 2 %.

    Narrow uniform, log-normal wide and bimodal calls go through a real server and the real
    interceptor; sub-5 ms and a heavy tail up to 30 s are given to ``observe`` directly.
    Both the since-start and the 1-minute windows are checked.
    """
    rep = RecordingReporter(SERVICE, socket_path=sidecar.socket, interval=0.2).start()
    server = grpc.server(futures.ThreadPoolExecutor(64), interceptors=[rep.server_interceptor()])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
        name: grpc.unary_unary_rpc_method_handler(_sleeper) for name in SLEPT})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        rng = random.Random(14)
        calls = [(name, SLEPT[name](rng)) for name in SLEPT for _ in range(160)]
        rng.shuffle(calls)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            pending = [channel.unary_unary(f"/{SERVICE}/{name}").future(
                f"{seconds:.6f}".encode(), timeout=60) for name, seconds in calls]
            assert [f.result() for f in pending] == [b"ok"] * len(calls)
        for name, draw in INJECTED.items():
            series = rep.series(f"/{SERVICE}/{name}")
            assert series is not None
            for _ in range(2000):
                rep.observe(series, draw(rng))
        # The sleeping handlers really took their durations (the interceptor saw at least that).
        for name in SLEPT:
            asked = sorted(s for n, s in calls if n == name)
            assert all(m >= a - 0.001 for m, a in zip(sorted(rep.seen[name]), asked, strict=True))

        expected = {name: len(v) for name, v in rep.seen.items()}

        def arrived() -> dict[str, Any] | None:
            snap = http_json(sidecar.url + "/api/v1/snapshot")
            rows = {r["method"]: r for r in snap["windows"]["1m"]["rpcs"]}
            done = all(rows.get(m, {}).get("count") == n for m, n in expected.items())
            return snap if done else None

        snap = wait_for(arrived, 15, message="every call in the sidecar's 1-minute window")
        for window in ("all", "1m"):
            rows = {r["method"]: r for r in snap["windows"][window]["rpcs"]}
            for name, durations in rep.seen.items():
                assert_within_2_percent(rows[name], durations, f"{window} {name}")
            everything = [d for v in rep.seen.values() for d in v]
            assert_within_2_percent(snap["windows"][window]["totals"], everything,
                                    f"{window} totals")
    finally:
        server.stop(None)
        rep.close()


def test_windows_subtract_exactly_and_hold_only_their_own_calls() -> None:
    """A window's percentiles are those of the calls inside it; earlier calls drop out exactly.

    A real Reporter's pushes go through the wire format into a Store with a clock the test
    moves: slow calls, two minutes, fast calls; the 1-minute window sees the fast ones only.
    """
    clock = Clock()
    store = Store(stale_after=3600, expire_after=7200, clock=clock, wall=clock.wall)
    rep = RecordingReporter(SERVICE, socket_path="/nonexistent/socket")
    rng = random.Random(7)
    series = rep.series(f"/{SERVICE}/Get")
    assert series is not None

    seq = iter(range(1, 1000))
    started = clock.wall()  # one process: its start time never changes

    def push() -> None:
        for datagram in protocol.encode(
                source={"id": rep.source_id, "pid": 1, "started": started}, seq=next(seq),
                time=clock.wall(), buckets=rep.buckets, rows=rep.rows(), health="healthy",
                checks={}, reporter={}):
            assert store.ingest(datagram) is None

    for _ in range(1500):
        rep.observe(series, rng.uniform(1.0, 2.0))
    slow = list(rep.seen["Get"])
    push()
    for _ in range(24):  # two minutes of history points
        clock.now += 5
        store.tick()
        push()
    for _ in range(1000):
        rep.observe(series, rng.lognormvariate(math.log(0.15), 0.3))
    fast = rep.seen["Get"][len(slow):]
    push()
    snap = Exposition(store).snapshot({})
    (recent,) = snap["windows"]["1m"]["rpcs"]
    assert_within_2_percent(recent, fast, "1m")
    (everything,) = snap["windows"]["all"]["rpcs"]
    assert_within_2_percent(everything, slow + fast, "all")
    expo = Exposition(store)
    points = expo.history()["points"]
    assert sum(p["count"] for p in points) == len(slow) + len(fast)
    last = points[-1]
    exact = nearest_rank(fast, 0.95) * 1000
    assert last["count"] == len(fast) and abs(last["p95_ms"] - exact) <= 0.02 * exact
    # The history keeps finished intervals between reads; they match a fresh computation.
    for _ in range(3):
        clock.now += 5
        store.tick()
        for _ in range(100):
            rep.observe(series, rng.uniform(0.01, 0.02))
        push()
        for rpc in (None, f"{SERVICE}/Get"):
            kept, fresh = expo.history(rpc)["points"], Exposition(store).history(rpc)["points"]
            kept[-1].pop("time"), fresh[-1].pop("time")  # "now", read from the wall clock
            assert kept == fresh


def test_fleet_p95_of_two_pods_is_within_2_percent_of_all_their_calls(
        sidecar_factory: Any, fake_kube: Any, tmp_path: Path) -> None:
    """Two pods (two real sidecars) with different durations behind the real dashboard.

    The dashboard finds them through the (fake) Kubernetes API; its summed row and totals for
    every window are the percentiles of all calls together, within 2 %, not the higher pod's.
    """
    first = sidecar_factory(socket_path=str(tmp_path / "pod0" / "metrics.sock"), start=False)
    second = sidecar_factory("--host", "127.0.0.2", "--port", str(first.port),
                             socket_path=str(tmp_path / "pod1" / "metrics.sock"), start=False)
    for sc in (first, second):
        sc.start(wait=False)
    for ip in ("127.0.0.1", "127.0.0.2"):
        wait_for(lambda ip=ip: http_get(f"http://{ip}:{first.port}/livez", timeout=2)[0] == 200,
                 15, message=f"the sidecar on {ip} to answer")
    fake_kube.pods = [pod("oracle-a", "127.0.0.1"), pod("oracle-b", "127.0.0.2")]
    reporters = [RecordingReporter(SERVICE, socket_path=sc.socket, interval=0.2).start()
                 for sc in (first, second)]
    rng = random.Random(21)
    draws = [lambda: rng.uniform(0.120, 0.180),  # pod a: narrow
             lambda: rng.lognormvariate(math.log(0.4), 0.7)]  # pod b: wide, slower
    for rep, draw, n in zip(reporters, draws, (3000, 1200), strict=True):
        series = rep.series(f"/{SERVICE}/Get")
        assert series is not None
        for _ in range(n):
            rep.observe(series, draw())
    dash = DashboardProcess(
        ["--refresh", "1", "--namespace", "oracle", "--sidecar-port", str(first.port),
         "--selector", "app.kubernetes.io/component=oracle"], tmp_path / "dashboard.log",
        env={"KUBECONFIG": str(kubeconfig(tmp_path / "kubeconfig", fake_kube.url))}).start()
    try:
        everything = reporters[0].seen["Get"] + reporters[1].seen["Get"]
        for window in ("1m", "all"):
            status = wait_for(lambda w=window: (lambda s: s if s["summed"]["totals"]["count"]
                                                == len(everything) else None)(dash.status(w)),
                              15, message=f"both pods' calls in the {window} window")
            summed = status["summed"]
            assert summed["pods_counted"] == 2 and summed["percentiles"] == "merged"
            (row,) = summed["rpcs"]
            assert row["percentiles"] == "merged"
            assert_within_2_percent(row, everything, f"fleet {window}")
            assert_within_2_percent(summed["totals"], everything, f"fleet totals {window}")
            highest = max(p["window"]["rpcs"][0]["p95_ms"] for p in status["pods"])
            assert row["p95_ms"] < 0.98 * highest  # the merged figure, not the highest pod's
    finally:
        dash.stop()
        for rep in reporters:
            rep.close()


def test_chart_p95_of_two_pods_is_that_of_their_calls_together_in_each_interval() -> None:
    """The dashboard's chart series: per slot, the p95 of both pods' calls of that interval.

    Two Stores (two pods' sidecars, in process, one clock) each fed by a real Reporter through
    the wire format; their /api/v1/history documents merged as the dashboard merges them.
    """
    from sidecar.dashboard.aggregate import history_points, merge_history

    clock = Clock()
    stores = [Store(stale_after=3600, expire_after=7200, clock=clock, wall=clock.wall)
              for _ in range(2)]
    reporters = [RecordingReporter(SERVICE, socket_path="/nonexistent/socket") for _ in stores]
    rng = random.Random(12)
    draws = [lambda: rng.uniform(0.02, 0.05), lambda: rng.lognormvariate(math.log(0.3), 0.5)]
    seq = iter(range(1, 1000))
    started = clock.wall()  # two processes, each with one start time
    intervals: list[list[float]] = []
    for step in range(6):
        clock.now += 5
        for store in stores:
            store.tick()
        calls: list[float] = []
        number = next(seq)
        for rep, store, draw in zip(reporters, stores, draws, strict=True):
            series = rep.series(f"/{SERVICE}/Get")
            assert series is not None
            before = len(rep.seen["Get"])
            for _ in range(300 + 50 * step):
                rep.observe(series, draw())
            calls += rep.seen["Get"][before:]
            for datagram in protocol.encode(
                    source={"id": rep.source_id, "pid": 1, "started": started},
                    seq=number, time=clock.wall(), buckets=rep.buckets, rows=rep.rows(),
                    health="healthy", checks={}, reporter={}):
                assert store.ingest(datagram) is None
        intervals.append(calls)
    clock.now += 5
    for store in stores:
        store.tick()
    series = merge_history(history_points(Exposition(s).history()) for s in stores)
    assert [p["count"] for p in series][-6:] == [len(c) for c in intervals]
    for point, calls in zip(series[-6:], intervals, strict=True):
        exact = nearest_rank(calls, 0.95) * 1000
        assert abs(point["p95_ms"] - exact) <= 0.02 * exact, (point, exact)
