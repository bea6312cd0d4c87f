"""A bounded fuzz run: 100 000 random and mutated datagrams against a running sidecar."""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from typing import Any

from sidecar.store import Store
from tests.conftest import SidecarProcess, http_get, parse_metrics
from tests.reliability.conftest import rss_kib
from tests.reliability.hostile import Mutator

COUNT = int(os.environ.get("RELIABILITY_FUZZ_COUNT", "100000"))
SEED = int(os.environ.get("RELIABILITY_FUZZ_SEED", "20261128"))
BATCH = 5_000


def _no_constant(name: str) -> None:
    raise AssertionError(f"{name} in a JSON answer: browsers cannot parse it")


def counters(sc: SidecarProcess) -> tuple[int, Counter[str]]:
    """(datagrams received, rejections by reason) as the sidecar exports them."""
    samples = parse_metrics(sc.metrics())
    received = int(samples[("oracle_sidecar_messages_received_total", frozenset())])
    rejected: Counter[str] = Counter()
    for (name, labels), value in samples.items():
        if name == "oracle_sidecar_messages_rejected_total":
            rejected[dict(labels)["reason"]] = int(value)
    return received, rejected


def test_hundred_thousand_hostile_datagrams_are_all_counted_and_nothing_breaks(
        sidecar_factory: Any, figures: Any) -> None:
    """No crash, every datagram counted, each rejection under its exact reason, RSS bounded.

    The datagrams are sent with a blocking socket: when the sidecar's 10-datagram queue is
    full, the kernel holds the sender until the sidecar reads, so none is dropped and the
    sidecar's counts can be checked exactly. An in-process Store fed the same datagrams in the
    same order says what each reason's count must be. Sources never expire during the run
    (``--expire-after 3600``), since the replica has no clock.
    """
    # The replica never ticks: the sidecar must not expire sources either, however long a
    # loaded machine takes (past the default 60 s, expired sources made room for new ones).
    sidecar: SidecarProcess = sidecar_factory("--expire-after", "3600")
    replica = Store()
    expected: Counter[str] = Counter()
    mutator = Mutator(SEED)
    scrape_ms: list[float] = []
    rss: list[int] = []
    assert sidecar.proc is not None
    pid = sidecar.proc.pid
    sizes = 0
    t0 = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as tx:
        tx.settimeout(10)  # a sidecar that stopped reading fails the test, it does not hang it
        sent = 0
        while sent < COUNT:
            batch = [next(mutator) for _ in range(min(BATCH, COUNT - sent))]
            for datagram in batch:
                try:
                    tx.sendto(datagram, sidecar.socket)
                except OSError as err:
                    assert err.errno == 90 and len(datagram) > 200_000, err  # EMSGSIZE only
                    continue
                sizes += len(datagram)
                sent += 1
                reason = replica.ingest(datagram)
                expected[reason or "accepted"] += 1
            s0 = time.perf_counter()
            status, text, _ = http_get(sidecar.url + "/metrics")
            scrape_ms.append((time.perf_counter() - s0) * 1000)
            assert status == 200 and parse_metrics(text)
            rss.append(rss_kib(pid))
    elapsed = time.monotonic() - t0

    received, rejected = counters(sidecar)
    deadline = time.monotonic() + 10
    while received < sent and time.monotonic() < deadline:
        time.sleep(0.1)
        received, rejected = counters(sidecar)
    assert received == sent == COUNT
    assert sum(rejected.values()) + expected["accepted"] == received
    assert rejected == Counter({k: v for k, v in expected.items() if k != "accepted"}) + Counter(
        {k: 0 for k in rejected}), (rejected, expected)
    assert "failed to apply a datagram" not in sidecar.log()  # nothing escaped the decoder
    assert http_get(sidecar.url + "/livez")[0] == 200
    warm = rss[1]  # after the first 10 000: sources and series have filled their caps
    growth_kib = max(rss[1:]) - warm
    assert growth_kib < 16 * 1024, rss  # bounded: no per-datagram state survives
    for path in ("/health", "/api/v1/snapshot", "/api/v1/history"):
        status, body, _ = http_get(sidecar.url + path)
        assert status == 200 and len(body) < 2_000_000
        json.loads(body, parse_constant=_no_constant)  # strict JSON: no NaN, no Infinity
    figures(datagrams=sent, seed=SEED, seconds=round(elapsed, 1),
            per_second=round(sent / elapsed), megabytes=round(sizes / 2**20, 1),
            accepted=expected["accepted"],
            rejected={k: v for k, v in sorted(rejected.items()) if v},
            rss_mib_after_10k=round(warm / 1024, 1), rss_mib_max=round(max(rss) / 1024, 1),
            rss_growth_after_warmup_mib=round(growth_kib / 1024, 1),
            scrape_ms_max=round(max(scrape_ms), 1), scrapes=len(scrape_ms))
