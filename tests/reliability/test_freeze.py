"""A frozen sidecar (SIGSTOP) must not slow the gRPC service, and must cost no count."""

from __future__ import annotations

import math
import random
import signal
import time
from typing import Any

import grpc

from tests.conftest import SidecarProcess, parse_metrics, wait_for
from tests.reliability.conftest import exported
from tests.reliability.worker import SERVICE

FREEZE = 10.0  # seconds the sidecar stays stopped
LIMIT = 1.10  # p99 with monitoring may be at most 10 % above p99 without
P50_LIMIT = 1.25  # a guard against a per-call cost; the interceptor itself adds ~3-6 % here
INTERVAL = 0.5  # the reporter pushes twice as often as its default, so the queue overflows
ATTEMPTS = 3  # freezes at most; more only while the pooled p99 ratio is above LIMIT
CHUNK = 200  # consecutive calls (about 0.1 s) resampled together by the bootstrap

Calls = list[tuple[str, float]]  # (arm, latency in ms), in the order they were made


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def interleaved(stubs: dict[str, Any], seconds: float) -> tuple[Calls, int]:
    """Sequential unary calls for ``seconds``, alternating the arms A B B A A B B A ...

    Alternating call by call gives both arms the same machine: whatever else runs on it hits
    both alike. Returns the calls in order, and how many failed.
    """
    arms = list(stubs)
    pattern = [arms[0], arms[1], arms[1], arms[0]]
    out: Calls = []
    failed = 0
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        arm = pattern[i % 4]
        i += 1
        t0 = time.perf_counter()
        try:
            stubs[arm](b"", timeout=5)
        except grpc.RpcError:
            failed += 1
            continue
        out.append((arm, (time.perf_counter() - t0) * 1000))
    return out, failed


def p99_ratio(calls: Calls, a: str = "monitored", b: str = "plain") -> float:
    return quantile([x for arm, x in calls if arm == a], 0.99) / quantile(
        [x for arm, x in calls if arm == b], 0.99)


def bootstrap_low(calls: Calls, level: float = 0.05, rounds: int = 300) -> float:
    """Lower end of a one-sided 95 % interval of the p99 ratio (moving-block bootstrap).

    Blocks of CHUNK consecutive calls are resampled whole, so the bursts of load that make the
    tail (and hit both arms within a block) stay together, as they happened.
    """
    rng = random.Random(8)
    chunks = [calls[i:i + CHUNK] for i in range(0, len(calls), CHUNK)]
    ratios = []
    for _ in range(rounds):
        sample: Calls = []
        for _ in chunks:
            sample.extend(rng.choice(chunks))
        ratios.append(p99_ratio(sample))
    return quantile(ratios, level)


def test_frozen_sidecar_leaves_p99_latency_alone_and_loses_no_count(
        sidecar: SidecarProcess, workers: Any, figures: Any) -> None:
    """SIGSTOP the sidecar 10 s under traffic: p99 within 10 % of no monitoring; exact after.

    Two identical grpcio server processes serve the same handler: one with the reporter
    (pushing every 0.5 s, so its 10-datagram queue to the frozen sidecar overflows and later
    pushes meet EAGAIN), one with no monitoring at all. While the sidecar is frozen, one client
    thread calls them alternately, call by call (A B B A ...), so both arms meet the same
    background load, from the other tests and engineers on this 2-core machine.

    The statistic is the p99 of every call of an arm in the freeze, as a ratio. Measured here,
    one 10 s window's ratio scatters by about +-15 % even between two identical servers (the
    A/A ratio, the plain arm's alternate calls against each other, is recorded each time): its
    p99 rests on ~90 slow calls, and those are other processes' bursts. So:

    1. a window whose ratio is within 10 % passes;
    2. one that is not is not a verdict: the freeze is repeated (3 in all, at most) and the
       ratio is taken over all the windows' calls together, which narrows the scatter;
    3. after the third, the test fails only if a moving-block bootstrap says the monitored p99
       is more than 10 % worse with 95 % confidence.

    A real fault in the reporter (a send that blocks, a lock held across it, a busy retry)
    moves p99 by multiples in every window and fails; noise does not. The exact checks need no
    statistics: no call fails, p50 stays within 25 % (its noise is ~1 %; the interceptor's own
    cost shows as 3-6 %), no monitored call waits anywhere near
    the freeze, the reporter keeps flushing during the freeze and counts drops instead of
    blocking, and after SIGCONT the exported total equals the client's.
    """
    monitored = workers(sidecar.socket, interval=INTERVAL)
    plain = workers(sidecar.socket, monitoring=False)
    channels = {arm: grpc.insecure_channel(w.target)
                for arm, w in (("monitored", monitored), ("plain", plain))}
    stubs = {arm: ch.unary_unary(f"/{SERVICE}/Ok") for arm, ch in channels.items()}
    attempts: list[dict[str, Any]] = []
    pooled: Calls = []
    try:
        warm, failed = interleaved(stubs, 1.0)  # warm up both servers and channels
        assert failed == 0
        to_monitored = sum(1 for arm, _ in warm if arm == "monitored")
        wait_for(lambda: exported(sidecar.metrics()), 5, message="the first push")
        for _ in range(ATTEMPTS):
            before = monitored.stats()
            assert sidecar.proc is not None
            sidecar.proc.send_signal(signal.SIGSTOP)
            try:
                window, failed = interleaved(stubs, FREEZE)
                during = monitored.stats()
            finally:
                sidecar.proc.send_signal(signal.SIGCONT)
            to_monitored += sum(1 for arm, _ in window if arm == "monitored")
            pooled += window
            attempts.append(_summary(window, failed, before, during))
            if p99_ratio(pooled) <= LIMIT:
                break
        t0 = time.monotonic()
        wait_for(lambda: exported(sidecar.metrics())[("Ok", "OK")] == to_monitored, 10,
                 message=f"the exported Ok total to equal the client's {to_monitored}")
        exact_after = time.monotonic() - t0
    finally:
        for ch in channels.values():
            ch.close()
    ratio = p99_ratio(pooled)
    low = bootstrap_low(pooled) if ratio > LIMIT else None
    dropped = parse_metrics(sidecar.metrics())[("oracle_sidecar_reporter_dropped_total",
                                                frozenset())]
    figures(freeze_s=FREEZE, freezes=len(attempts), pooled_p99_ratio=round(ratio, 3),
            bootstrap_low=low, exact_after_sigcont_s=round(exact_after, 2),
            calls_to_monitored=to_monitored, exported_dropped=dropped, windows=attempts)
    for a in attempts:
        assert a["failed"] == 0, a
        assert a["p50_ratio"] <= P50_LIMIT, a
        assert a["max_ms"]["monitored"] < 1000, a  # no call waited for the frozen sidecar
        assert a["flushes_during"] >= FREEZE / INTERVAL * 0.8, a  # the flusher never blocked
        assert a["drops_during"] > 0, a  # ... and it counted drops instead
    assert dropped > 0
    assert ratio <= LIMIT or (low is not None and low <= LIMIT), attempts


def _summary(calls: Calls, failed: int, before: dict[str, int], during: dict[str, int]
             ) -> dict[str, Any]:
    arms = {arm: [x for a, x in calls if a == arm] for arm in ("monitored", "plain")}
    plain = [("a" if i % 2 else "b", x) for i, (a, x) in enumerate(
        c for c in calls if c[0] == "plain")]
    return {
        "calls": {arm: len(v) for arm, v in arms.items()},
        "p50_ms": {arm: round(quantile(v, 0.50), 3) for arm, v in arms.items()},
        "p99_ms": {arm: round(quantile(v, 0.99), 3) for arm, v in arms.items()},
        "max_ms": {arm: round(max(v), 1) for arm, v in arms.items()},
        "p50_ratio": round(quantile(arms["monitored"], 0.5) / quantile(arms["plain"], 0.5), 3),
        "p99_ratio": round(p99_ratio(calls), 3),
        "aa_p99_ratio": round(p99_ratio(plain, "a", "b"), 3),
        "failed": failed,
        "flushes_during": during["seq"] - before["seq"],
        "drops_during": during["dropped"] - before["dropped"],
    }
