"""``oracle-sidecar demo``: every process started and wired, and every one stopped again."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert "curl -s 127.0.0.1:" in proc.log()
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


def test_busy_ports_are_named_before_anything_starts(procs):
    """Taken ports (one listening, one answering on another address): the demo names each with
    the flag and variable that change it, starts nothing, and exits 1."""
    with socket.socket() as wild, socket.socket() as local:
        wild.bind(("0.0.0.0", 0))
        wild.listen()
        local.bind(("127.0.0.1", 0))
        local.listen()
        oracle_port, http_port = wild.getsockname()[1], local.getsockname()[1]
        proc = procs("demo", ["demo", "--oracle-port", str(oracle_port), "--control-port", "0",
                              "--http-port", str(http_port), "--dashboard-port", "0",
                              "--rate", "0"])
        assert proc.proc.wait(30) == 1
    log = proc.log()
    assert (f"port {oracle_port} (the demo Oracle's gRPC port) is not free on 127.0.0.1: "
            in log)
    assert "choose another with --oracle-port PORT or ORACLE_PORT=PORT (0 = any free port)" \
        in log
    assert f"port {http_port} (the sidecar's HTTP port) is not free on 127.0.0.1: " in log
    assert "--http-port PORT or ORACLE_HTTP_PORT=PORT (0 = any free port)" in log
    assert "demo: nothing was started" in log
    assert "started" not in log.replace("nothing was started", "") and "Open:" not in log


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


def test_demo_listens_on_loopback_and_its_try_lines_work_as_written(procs, tmp_path):
    """Default --host 127.0.0.1 (not every interface); the printed oracle-sidecar "Try:" line
    runs as written from the repository root without an activated venv."""
    proc, ports = _start_demo(procs, "--no-dashboard")
    wait_for(lambda: "Press Ctrl-C to stop." in proc.log() or not proc.running(), 30,
             "the demo to start everything")
    assert proc.running(), proc.log()
    with socket.socket() as other:  # free on another loopback address: not bound to 0.0.0.0
        other.bind(("127.0.0.2", ports["http"]))
    (line,) = [x.strip() for x in proc.log().splitlines() if " load --target " in x]
    assert not line.startswith("oracle-sidecar ")  # not on PATH without the venv activated
    line = line.replace("--requests 2000", "--requests 20")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if Path(p).resolve() != Path(sys.executable).parent.resolve())
    done = subprocess.run(["bash", "-c", line], env={**os.environ, "PATH": path},
                          cwd=Path(__file__).parents[2], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, (line, done.stdout, done.stderr)
    assert proc.stop(signal.SIGINT, timeout=30) == 0, proc.log()


def _piped_demo(tmp_path):
    """The demo with stdout to a pipe, as ``demo | tee log`` has it."""
    ports = [str(free_port()) for _ in range(3)]
    with open(tmp_path / "err", "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli", "demo", "--oracle-port", ports[0],
             "--control-port", ports[1], "--http-port", ports[2], "--no-dashboard",
             "--rate", "4"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)


@pytest.mark.parametrize("how", ["reader-exits-then-sigint", "reader-exits-alone"])
def test_piping_the_demo_then_stopping_it_is_clean(tmp_path, how):
    """demo | tee, then Ctrl-C (tee dies first) or the reader exiting: no BrokenPipeError
    traceback, exit 0, children stopped, temporary directory removed."""
    demo = _piped_demo(tmp_path)
    try:
        first = demo.stdout.readline().decode()
        socket_dir = Path(re.search(r"demo: socket (\S+)", first).group(1)).parent
        if how == "reader-exits-then-sigint":
            seen = first
            while "Press Ctrl-C to stop." not in seen:
                line = demo.stdout.readline().decode()
                assert line, seen
                seen += line
            children = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", seen)]
            demo.stdout.close()  # tee got the SIGINT first
            os.killpg(demo.pid, signal.SIGINT)
        else:
            children = []
            demo.stdout.close()  # the next line the demo writes finds no reader
        assert demo.wait(60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
    err = (tmp_path / "err").read_text()
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert not socket_dir.exists()
    assert not [pid for pid in children if alive(pid)]
