"""Faults with real processes: a sidecar killed, a socket taken away, gRPC processes restarted.

Each test drives real ``oracle-sidecar serve`` processes and real grpcio server processes
(``tests.reliability.worker``) with real client traffic, injects the fault while the traffic
runs, and then compares what the sidecar exports with what the clients saw. Every loop is
bounded; every process is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sidecar.persist import state_path
from tests.conftest import SidecarProcess, http_get, http_json, parse_metrics, wait_for
from tests.reliability.conftest import Monotonic, Traffic, Worker, exported


def wait_exact(sc: SidecarProcess, traffic: Traffic, targets: list[str] | None = None,
               timeout: float = 10.0) -> Counter[tuple[str, str]]:
    """Wait until the sidecar exports exactly what the clients saw; return those totals."""
    truth = traffic.totals(targets)
    assert sum(truth.values()) > 0
    try:
        wait_for(lambda: exported(sc.metrics()) == truth, timeout,
                 message=f"exported totals to equal the client's {dict(truth)}")
    except AssertionError as err:
        raise AssertionError(f"{err}; exported: {dict(exported(sc.metrics()))}") from None
    return truth


def sample(sc: SidecarProcess, name: str) -> float:
    return sum(v for (n, _), v in parse_metrics(sc.metrics()).items() if n == name)


def test_sidecar_killed_and_restarted_five_times_during_traffic_exports_exact_totals(
        sidecar_factory: Any, workers: Any, figures: Any) -> None:
    """kill -9 of the sidecar, five times, two gRPC processes busy: totals exact, monotonic.

    Monotonic even across the restarts: a restarted sidecar reads back its state file and holds
    the RPC series back until every process it knew has pushed again, so a scrape never sees
    the sum of only some processes (which Prometheus would take for a counter reset). Each
    step waits for its condition, so a loaded machine only makes it slower.
    """
    sc: SidecarProcess = sidecar_factory("--stale-after", "1")
    procs = [workers(sc.socket), workers(sc.socket)]
    ids = {w.source for w in procs}
    recoveries = []
    with Monotonic(lambda: sc.url) as mono, Traffic([w.target for w in procs]) as traffic:
        wait_for(lambda: {s["id"] for s in json.loads(
            Path(state_path(sc.socket)).read_text())["sources"]} == ids, 10,
            message="the state file to know both gRPC processes")
        for _ in range(5):
            errors = [w.stats()["send_errors"] for w in procs]
            assert sc.kill() == -signal.SIGKILL
            wait_for(lambda e=errors: all(w.stats()["send_errors"] > n
                                          for w, n in zip(procs, e, strict=True)), 10,
                     message="both processes to count a push nobody received")
            t0 = time.monotonic()
            sc.start()  # same port, same socket path: replaces the stale socket
            wait_for(lambda: len({k[0] for k in exported(sc.metrics())}) == 3, 15,
                     message="the restarted sidecar to hear from the gRPC processes")
            recoveries.append(time.monotonic() - t0)
            served = sum(exported(sc.metrics()).values())
            wait_for(lambda s=served: sum(exported(sc.metrics()).values()) > s, 15,
                     message="traffic counted through the restarted sidecar")
    truth = wait_exact(sc, traffic)
    assert mono.decreases == [], mono.decreases[:5]
    stats = [w.stats() for w in procs]
    assert all(s["send_errors"] > 0 for s in stats), stats  # the outages were counted
    figures(kills=5, rpcs=sum(truth.values()), exact=True, scrapes=mono.scrapes,
            counter_decreases=len(mono.decreases),
            recovery_s_median=round(statistics.median(recoveries), 2),
            recovery_s_max=round(max(recoveries), 2),
            reporter_send_errors=sum(s["send_errors"] for s in stats))


def test_socket_directory_removed_and_recreated_during_traffic(
        sidecar: SidecarProcess, workers: Any, figures: Any) -> None:
    """The socket directory vanishes (and comes back empty): socket re-made 0660, totals exact."""
    worker = workers(sidecar.socket)
    directory = os.path.dirname(sidecar.socket)
    recoveries = []
    with Traffic([worker.target]) as traffic:
        time.sleep(0.5)
        for attempt in range(4):
            inode = os.stat(sidecar.socket).st_ino
            shutil.rmtree(directory)
            t0 = time.monotonic()
            if attempt % 2:
                os.mkdir(directory)  # someone re-creates the directory, empty

            def remade(old: int = inode) -> bool:
                return os.path.exists(sidecar.socket) and os.stat(sidecar.socket).st_ino != old

            wait_for(remade, 5, message="the sidecar to make its socket again")
            recoveries.append(time.monotonic() - t0)
            mode = os.stat(sidecar.socket).st_mode
            assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
            time.sleep(0.5)
    truth = wait_exact(sidecar, traffic)
    assert "made it again" in sidecar.log()
    assert http_get(sidecar.url + "/ready")[0] == 200
    figures(removals=4, rpcs=sum(truth.values()), exact=True,
            recovery_s_max=round(max(recoveries), 2), mode="0660",
            reporter_drops=worker.stats()["dropped"])


def test_socket_path_replaced_by_a_regular_file_is_reported_and_recovers_when_removed(
        sidecar: SidecarProcess, workers: Any, figures: Any) -> None:
    """A regular file at the socket path: /ready 503 naming it, file kept; removed -> exact."""
    worker = workers(sidecar.socket)
    with Traffic([worker.target]) as traffic:
        wait_for(lambda: http_get(sidecar.url + "/ready")[0] == 200, 5, message="ready")
        os.unlink(sidecar.socket)
        with open(sidecar.socket, "w") as f:
            f.write("not a socket")
        t0 = time.monotonic()
        _, body, _ = wait_for(
            lambda: (r := http_get(sidecar.url + "/ready"))[0] == 503 and r, 5,
            message="/ready to turn 503")
        detected = time.monotonic() - t0
        assert "not a socket" in body
        health = http_json(sidecar.url + "/health")
        assert "not a socket" in health["checks"]["sidecar_socket"]
        time.sleep(1.5)  # the reporter's pushes now fail: ECONNREFUSED, counted
        errors = worker.stats()["send_errors"]
        assert errors > 0
        with open(sidecar.socket) as f:
            assert f.read() == "not a socket"  # never deleted by the sidecar
        os.unlink(sidecar.socket)  # the operator removes it
        t1 = time.monotonic()
        wait_for(lambda: http_get(sidecar.url + "/ready")[0] == 200, 10,
                 message="ready again once the file is gone")
        recovered = time.monotonic() - t1
    truth = wait_exact(sidecar, traffic)
    assert sidecar.log().count("was replaced by a file that is not a socket") == 1  # once
    figures(rpcs=sum(truth.values()), exact=True, detected_s=round(detected, 2),
            recovered_s=round(recovered, 2), reporter_send_errors=errors)


def test_sidecar_started_after_the_grpc_process_gets_every_earlier_count(
        sidecar_factory: Any, workers: Any, tmp_path: Any, figures: Any) -> None:
    """The gRPC process runs (and counts) before any sidecar exists; the late sidecar is exact.

    The late sidecar's first push arrives within one interval; it shows the RPC series once it
    has settled (``--stale-after``: it cannot know whether other processes are running yet).
    """
    sc: SidecarProcess = sidecar_factory("--stale-after", "2", start=False)
    worker = workers(sc.socket)  # the socket and its directory do not exist yet
    with Traffic([worker.target]) as traffic:
        time.sleep(1.0)
        before = sum(traffic.totals().values())
        t0 = time.monotonic()
        sc.start()
        wait_for(lambda: sample(sc, "oracle_sidecar_sources") == 1, 10, message="the first push")
        first_push = time.monotonic() - t0
        wait_for(lambda: exported(sc.metrics()), 10, message="the RPC series")
        shown = time.monotonic() - t0
        time.sleep(0.5)
    truth = wait_exact(sc, traffic)
    stats = worker.stats()
    assert stats["send_errors"] > 0  # ENOENT while there was no sidecar, counted, not raised
    figures(rpcs_before_sidecar=before, rpcs=sum(truth.values()), exact=True,
            first_push_s=round(first_push, 2), series_shown_s=round(shown, 2), stale_after_s=2,
            reporter_send_errors=stats["send_errors"])


def test_several_grpc_processes_and_graceful_restarts_sum_exactly_and_stay_monotonic(
        sidecar: SidecarProcess, workers: Any, figures: Any) -> None:
    """Three reporting processes; two are restarted (SIGTERM) mid-traffic: sums exact, monotonic."""
    procs: list[Worker] = [workers(sidecar.socket) for _ in range(3)]
    restarts = 0
    with Monotonic(lambda: sidecar.url, families=("grpc_server_", "oracle_sidecar_")) as mono, \
            Traffic([w.target for w in procs], threads=3) as traffic:
        time.sleep(1.0)
        for i in (0, 1):
            old = procs[i]
            new = workers(sidecar.socket)
            traffic.retarget(old.target, new.target)
            assert old.stop() == 0
            assert old.final is not None and old.final["final"]
            procs[i] = new
            restarts += 1
            time.sleep(1.0)
    truth = wait_exact(sidecar, traffic)
    samples = parse_metrics(sidecar.metrics())
    assert samples[("oracle_sidecar_sources", frozenset({("state", "fresh")}))] == 3
    assert mono.decreases == [], mono.decreases[:5]
    assert mono.scrapes > 10
    figures(processes=3, graceful_restarts=restarts, rpcs=sum(truth.values()), exact=True,
            scrapes=mono.scrapes, counter_decreases=0)


def test_grpc_process_killed_9_loses_at_most_its_last_interval_and_counters_stay_monotonic(
        sidecar_factory: Any, workers: Any, figures: Any) -> None:
    """kill -9 of a gRPC process: no final push, so at most one interval of its RPCs is lost.

    This is the one fault the design cannot make exact: the counts since the last push die
    with the process. The test pins the bound (what the client saw in one interval) and that
    the source goes stale, then is retired without any counter going down.
    """
    sc: SidecarProcess = sidecar_factory("--stale-after", "1", "--expire-after", "2")
    interval = 1.0
    worker = workers(sc.socket, interval=interval)
    with Monotonic(lambda: sc.url) as mono:
        with Traffic([worker.target]) as traffic:
            time.sleep(2.5)  # mid-interval
            before = sum(traffic.totals().values())
            worker.kill()
            time.sleep(0.2)
        truth = traffic.totals()
        rate = before / 2.5
        wait_for(lambda: "has not pushed" in http_json(sc.url + "/ready")["reason"], 5,
                 message="the killed process to count as stale")
        wait_for(lambda: sample(sc, "oracle_sidecar_sources") == 0, 10,
                 message="the killed process to be retired")
        time.sleep(0.5)
    got = exported(sc.metrics())
    lost = sum(truth.values()) - sum(got.values())
    assert all(got[k] <= n for k, n in truth.items())
    assert 0 <= lost <= rate * interval * 1.5 + 5, (lost, rate)
    assert mono.decreases == []
    figures(rpcs=sum(truth.values()), lost=lost, interval_s=interval,
            rpcs_per_interval=round(rate * interval), counter_decreases=0)


def test_sigterm_during_traffic_unready_first_exit_zero_and_nothing_lost(
        sidecar_factory: Any, workers: Any, figures: Any) -> None:
    """SIGTERM to the sidecar under traffic: 503 while draining, exit 0; the next one is exact."""
    sc: SidecarProcess = sidecar_factory("--drain-seconds", "1.5")
    worker = workers(sc.socket)
    with Traffic([worker.target]) as traffic:
        wait_for(lambda: http_get(sc.url + "/ready")[0] == 200, 5, message="ready")
        assert sc.proc is not None
        t0 = time.monotonic()
        sc.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: http_get(sc.url + "/ready")[0] == 503, 1, interval=0.02,
                 message="/ready 503 right after SIGTERM")
        unready = time.monotonic() - t0
        assert http_get(sc.url + "/metrics")[0] == 200  # still scraped while draining
        code = sc.proc.wait(10)
        exited = time.monotonic() - t0
        time.sleep(0.5)
        second = sidecar_factory("--stale-after", "1")
        time.sleep(0.5)
    assert code == 0
    truth = wait_exact(second, traffic)
    figures(rpcs=sum(truth.values()), exact=True, unready_after_s=round(unready, 3),
            exit_code=code, exited_after_s=round(exited, 2), drain_s=1.5)


def test_grpc_process_sigterm_final_flush_delivers_the_last_counts(
        sidecar: SidecarProcess, workers: Any, figures: Any) -> None:
    """A gRPC process stopped by SIGTERM pushes a final snapshot: the RPCs since the last count."""
    worker = workers(sidecar.socket, interval=30.0)  # periodic pushes: only the first one
    with Traffic([worker.target]) as traffic:
        wait_for(lambda: sample(sidecar, "oracle_sidecar_sources") == 1, 5,
                 message="the first push")
        time.sleep(1.5)
        traffic.stop()
        truth = traffic.totals()
        at_last_push = exported(sidecar.metrics())
        assert worker.stop() == 0
    assert sum(at_last_push.values()) < sum(truth.values())  # the final push carries the rest
    wait_exact(sidecar, traffic)
    samples = parse_metrics(sidecar.metrics())
    assert samples[("oracle_sidecar_sources", frozenset({("state", "fresh")}))] == 0  # retired
    figures(rpcs=sum(truth.values()), carried_by_final_push=sum(truth.values())
            - sum(at_last_push.values()), exact=True)
