"""``oracle-sidecar demo``: every process started and wired, and every one stopped again."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
from pathlib import Path

from sidecar.demo import METHODS, SERVICE
from tests.demo.helpers import alive, free_port, handled_by_method, http, wait_for


def _start_demo(procs, *extra: str):
    ports = {name: free_port() for name in ("oracle", "control", "http", "dashboard")}
    proc = procs("demo", [
        "demo", "--oracle-port", str(ports["oracle"]), "--control-port", str(ports["control"]),
        "--http-port", str(ports["http"]), "--dashboard-port", str(ports["dashboard"]),
        "--rate", "40", *extra,
    ])
    return proc, ports


def _logged(proc, pattern: str) -> str:
    """The first group of ``pattern`` in the demo's output; fails the test when absent."""
    match = re.search(pattern, proc.log())
    assert match is not None, f"{pattern!r} not in the demo's output:\n{proc.log()}"
    return match.group(1)


def _children(proc) -> dict[str, int]:
    return {name: int(pid) for name, pid in
            re.findall(r"demo: started (\w+) \(pid (\d+)\)", proc.log())}


def test_demo_serves_every_method_and_sigint_stops_everything(procs):
    """/ready 200 and all eight methods in /metrics within seconds; SIGINT leaves nothing behind."""
    proc, ports = _start_demo(procs)
    url = f"http://127.0.0.1:{ports['http']}"
    wait_for(lambda: "Press Ctrl-C to stop." in proc.log() or not proc.running(), 30,
             "the demo to start everything")
    assert proc.running(), proc.log()
    socket_path = Path(_logged(proc, r"demo: socket (\S+)"))
    children = _children(proc)
    assert {"sidecar", "oracle", "alerter", "load"} <= set(children)
    assert all(alive(pid) for pid in children.values())
    assert socket_path.exists()

    wait_for(lambda: http("GET", url + "/ready")[0] == 200, 10, "/ready 200")

    def all_methods_counted() -> bool:
        counts = handled_by_method(http("GET", url + "/metrics")[1], SERVICE)
        return all(counts.get(m, {}).get("OK", 0) > 0 for m in METHODS)

    wait_for(all_methods_counted, 10, "grpc_server_handled_total for all eight methods")
    assert "curl -s localhost:" in proc.log()
    if importlib.util.find_spec("sidecar.dashboard.app") is not None:
        assert "dashboard" in children
        assert http("GET", f"http://127.0.0.1:{ports['dashboard']}/")[0] == 200
    else:
        assert "dashboard skipped" in proc.log()

    assert proc.stop(signal.SIGINT, timeout=30) == 0, proc.log()
    assert not [name for name, pid in children.items() if alive(pid)], proc.log()
    assert not socket_path.exists()
    assert not socket_path.parent.exists()  # the temporary directory is gone too
    assert "demo: stopped cleanly" in proc.log()


def test_a_dying_child_is_named_and_the_rest_are_stopped(procs):
    """When the Oracle is killed, the demo names it, stops the others and exits 1."""
    proc, _ = _start_demo(procs, "--no-dashboard")
    wait_for(lambda: "Press Ctrl-C to stop." in proc.log() or not proc.running(), 30,
             "the demo to start everything")
    children = _children(proc)
    assert set(children) == {"sidecar", "oracle", "alerter", "load"}
    os.kill(children["oracle"], signal.SIGKILL)
    assert proc.proc.wait(30) == 1
    log = proc.log()
    assert f"demo: oracle (pid {children['oracle']}) exited with code -9" in log
    assert not [name for name, pid in children.items() if alive(pid)], log
    kept = Path(_logged(proc, r"demo: logs kept in (\S+)"))
    assert (kept / "oracle.log").exists()
    assert not (kept / "metrics.sock").exists()
    shutil.rmtree(kept)


def test_a_busy_port_stops_the_demo_with_the_reason(procs):
    """When the Oracle's port is taken, the demo shows the Oracle's error and exits 1."""
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = procs("demo", ["demo", "--oracle-port", str(port), "--control-port", "0",
                              "--http-port", "0", "--no-dashboard", "--rate", "0"])
        assert proc.proc.wait(30) == 1
    log = proc.log()
    assert "demo: oracle (pid" in log
    assert "cannot listen for gRPC" in log
    shutil.rmtree(_logged(proc, r"demo: logs kept in (\S+)"))


def test_children_do_not_outlive_a_killed_demo(procs):
    """Even SIGKILL on the demo (no clean-up possible) takes its children down (Linux)."""
    proc, _ = _start_demo(procs, "--no-dashboard")
    wait_for(lambda: "Press Ctrl-C to stop." in proc.log() or not proc.running(), 30,
             "the demo to start everything")
    children = _children(proc)
    socket_dir = Path(_logged(proc, r"demo: socket (\S+)")).parent
    proc.stop(signal.SIGKILL)
    try:
        wait_for(lambda: not any(alive(pid) for pid in children.values()), 15,
                 "the children to exit after their parent died")
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
