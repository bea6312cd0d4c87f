"""The conformance vectors of docs/protocol.md, passed by the Python decoder and store."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sidecar.store import Store
from tests.conftest import SidecarProcess, http_get, http_json, wait_for
from tests.protocol.run_vectors import datagram, load_cases, state_problems, step_problems

CASES = load_cases()


def store_state(store: Store) -> dict[str, Any]:
    """The observed state in the shape run_vectors compares: series and live sources."""
    series = {key: {"started": t.started, "handled": dict(t.codes), "count": sum(t.hist),
                    "sum": t.sum, "exceptions": dict(t.exceptions)}
              for key, t in store.totals().items()}
    sources = {sid: {"service": s.service, "version": s.version, "checks": s.checks,
                     "dropped": s.dropped, "send_errors": s.send_errors}
               for sid, s in store.sources.items()}
    return {"series": series, "sources": sources}


def test_there_are_vectors_for_every_reason() -> None:
    """The vectors cover every datagram and row rejection reason a sender can cause."""
    from sidecar import protocol

    seen = {s["expect"] for _, c in CASES for s in c["steps"]}
    rows = {r for _, c in CASES for s in c["steps"] for r in s.get("rows_rejected", {})}
    assert set(protocol.REJECT_REASONS) <= seen | {"too_many_series"}
    assert set(protocol.ROW_REJECT_REASONS) <= rows


@pytest.mark.parametrize(("name", "case"), CASES, ids=[n for n, _ in CASES])
def test_vector(name: str, case: dict[str, Any]) -> None:
    """Each vector's steps get their expected results and leave the expected series."""
    store = Store()
    base = time.time()
    problems = []
    for i, step in enumerate(case["steps"]):
        before = dict(store.rows_rejected)
        result = store.ingest(datagram(step, base)) or "accepted"
        rows = {r: n - before[r] for r, n in store.rows_rejected.items() if n > before[r]}
        problems += step_problems(i, step, result, rows)
    problems += state_problems(case, store_state(store))
    assert not problems, f"{name}: {case['name']}\n" + "\n".join(problems)


def test_the_runner_passes_every_vector_against_a_real_sidecar(sidecar: SidecarProcess) -> None:
    """run_vectors.py, run as a script, feeds every case to a running sidecar: all pass."""
    script = Path(__file__).with_name("run_vectors.py")
    done = subprocess.run([sys.executable, str(script), "--socket", sidecar.socket,
                           "--url", sidecar.url], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(CASES)} of {len(CASES)} cases passed" in done.stdout


def test_final_on_one_part_turns_ready_503_at_once(sidecar: SidecarProcess) -> None:
    """A final snapshot retires its process at its first final part; /ready says so at once."""
    (case,) = [c for n, c in CASES if n == "final_on_first_part_only"]
    base = time.time()
    first, final_part, other_part = (datagram(s, base) for s in case["steps"])
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as tx:
        tx.sendto(first, sidecar.socket)
        wait_for(lambda: http_get(sidecar.url + "/ready")[0] == 200, 10, message="ready")
        tx.sendto(final_part, sidecar.socket)
        wait_for(lambda: http_get(sidecar.url + "/ready")[0] == 503, 5,  # expiry is 60 s
                 message="/ready 503 after the final part")
        tx.sendto(other_part, sidecar.socket)  # the snapshot's other part, without final
        wait_for(lambda: 'grpc_method="B"' in sidecar.metrics(), 5, message="part 1 applied")
    assert http_get(sidecar.url + "/ready")[0] == 503
    assert http_json(sidecar.url + "/health")["sources"] == []
