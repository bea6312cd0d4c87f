"""``oracle-sidecar demo``: the whole system on one machine, as separate processes.

First checks that every port it needs is free on ``--host`` (127.0.0.1 unless told), and
starts nothing when one is taken, naming the port and the flag and variable that change it.
Then starts, in this order and each once the one before answers: the sidecar (``serve``) on a socket
in a fresh temporary directory, the demo Oracle reporting to that socket, the alerter in a loop
(state in a file there; it only logs unless NPS_BOT_TOKEN and NPS_CHAT_ID are set), the
dashboard when ``sidecar.dashboard.app`` is importable (showing that alert state), and a gentle
load (``--rate`` calls per second spread over the eight methods). Then prints the URLs to open
and commands to try, ``oracle-sidecar`` written as the shell finds it from here.

SIGINT (Ctrl-C) or SIGTERM stops the children in reverse order (SIGTERM, then SIGKILL after
10 s), removes the socket and the temporary directory, and exits 0. A second Ctrl-C kills at
once. When a child exits on its own, the demo says which, shows the end of its log, stops the
rest and exits 1 (keeping the logs). Children run in their own session, so a Ctrl-C reaches
the demo alone, and on Linux they get SIGTERM if the demo itself is killed. A stdout whose
reader is gone (``demo | tee log`` and Ctrl-C, or ``demo | head``) stops it the same clean way.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

from sidecar import options
from sidecar.demo.knobs import argument_type, parse_scenario

__all__ = ["configure", "run"]

_STOP_TIMEOUT = 10.0
_TAIL_LINES = 15


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path | None
    log_file: IO[bytes] | None

    def running(self) -> bool:
        return self.proc.poll() is None


class _Stop:
    """Set by SIGINT/SIGTERM; a second signal asks to kill instead of waiting."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name = ""
        self.force = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            self.force = True
            _say("second signal: killing the children now")
            return
        self.signal_name = signal.Signals(signum).name
        self.event.set()

    def output_closed(self) -> None:
        """stdout's reader is gone: stop as on a signal (nobody is reading the demo any more)."""
        if not self.event.is_set():
            self.signal_name = "a closed output (its reader exited)"
            self.event.set()


class _ChildDied(Exception):
    def __init__(self, child: _Child) -> None:
        super().__init__(child.name)
        self.child = child


class _Interrupted(Exception):
    pass


class _Output:
    """The demo's stdout, which may be a pipe whose reader is gone (``demo | tee log``, Ctrl-C
    kills tee first; ``demo | head``). A write that finds it closed points stdout at /dev/null
    (no BrokenPipeError, now or at exit) and calls ``on_close`` once: the demo then stops as
    if interrupted, so its children and temporary directory go too."""

    def __init__(self) -> None:
        self.closed = False
        self.on_close: Callable[[], None] | None = None

    def write(self, text: str) -> None:
        if self.closed:
            return
        try:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            self.closed = True
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            if self.on_close is not None:
                self.on_close()


_out = _Output()


def _say(text: str) -> None:
    _out.write(f"demo: {text}")


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host.strip("[]"), 0))
        return int(sock.getsockname()[1])


# The ports the demo listens on: (attribute, flag, env var, what it is).
_PORTS = (
    ("http_port", "--http-port", "ORACLE_HTTP_PORT", "the sidecar's HTTP port"),
    ("oracle_port", "--oracle-port", "ORACLE_PORT", "the demo Oracle's gRPC port"),
    ("control_port", "--control-port", "ORACLE_CONTROL_PORT",
     "the demo Oracle's control port"),
    ("dashboard_port", "--dashboard-port", "DASHBOARD_PORT", "the dashboard's port"),
)
_WILDCARDS = ("0.0.0.0", "::", "[::]", "")


def _busy(host: str, port: int) -> str | None:
    """Why ``port`` cannot be used on ``host`` (something listens or answers there), or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as err:
            return err.strerror or str(err)
    if _tcp_open(_reach(host), port):  # e.g. a server bound with SO_REUSEPORT
        return "another program answers there"
    return None


def _reach(host: str) -> str:
    """The address to connect to a server bound on ``host``."""
    return "127.0.0.1" if host in _WILDCARDS else host.strip("[]")


def _url_host(host: str) -> str:
    shown = _reach(host)
    return f"[{shown}]" if ":" in shown else shown


def _ports_problems(args: argparse.Namespace, ports: list[tuple[str, str, str, str]]
                    ) -> list[str]:
    """One line per port that is taken, naming the flag and variable that change it."""
    problems = []
    for name, flag, env, what in ports:
        port = getattr(args, name)
        host = "127.0.0.1" if name == "control_port" else args.host
        why = _busy(host, port)
        if why is not None:
            problems.append(f"port {port} ({what}) is not free on {host}: {why}; choose "
                            f"another with {flag} PORT or {env}=PORT (0 = any free port)")
    return problems


def _command() -> str:
    """How the reader can run ``oracle-sidecar`` from here, as a shell would find it."""
    script = Path(sys.executable).parent / "oracle-sidecar"
    on_path = shutil.which("oracle-sidecar")
    if on_path and script.exists() and Path(on_path).resolve() == script.resolve():
        return "oracle-sidecar"
    if not script.exists():
        return f"{sys.executable} -m sidecar.cli"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: deliver SIGTERM to this child when the demo dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Demo:
    def __init__(self, args: argparse.Namespace, stop: _Stop) -> None:
        self.args = args
        self.stop = stop
        self.children: list[_Child] = []
        self.dir = Path(tempfile.mkdtemp(prefix="oracle-sidecar-demo-"))
        self.socket = self.dir / "metrics.sock"
        self.alert_state = self.dir / "alert-state.json"
        self.env = {**os.environ, "ORACLE_METRICS_SOCKET": str(self.socket),
                    "PYTHONUNBUFFERED": "1"}

    # -- children ------------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str]) -> _Child:
        log_path = None if self.args.verbose else self.dir / f"{name}.log"
        log_file = open(log_path, "wb") if log_path else None  # noqa: SIM115 - closed in stop
        preexec = _die_with_parent if sys.platform == "linux" else None
        proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli", *argv],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT if log_file else None,
            start_new_session=True,
            preexec_fn=preexec,
        )
        child = _Child(name, proc, log_path, log_file)
        self.children.append(child)
        return child

    def wait_until(self, child: _Child, ready: str, check: Callable[[], bool]) -> None:
        """Poll ``check()`` until true; raise when the child dies, a signal comes, or time's up."""
        deadline = time.monotonic() + self.args.startup_timeout
        while True:
            if self.stop.event.is_set():
                raise _Interrupted
            if not child.running():
                raise _ChildDied(child)
            if check():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{child.name} did not get {ready} within "
                                   f"{self.args.startup_timeout:g} s")
            self.stop.event.wait(0.1)

    def watch(self) -> _Child | None:
        """Block until a signal (returns None) or until a child exits (returns it)."""
        while not self.stop.event.wait(0.2):
            for child in self.children:
                if not child.running():
                    return child
        return None

    def stop_all(self) -> None:
        """SIGTERM each child, newest first; SIGKILL one that outlives the timeout."""
        for child in reversed(self.children):
            if child.running():
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + _STOP_TIMEOUT
                while child.running() and time.monotonic() < deadline and not self.stop.force:
                    time.sleep(0.05)
                if child.running():
                    reason = "on a second signal" if self.stop.force else \
                        f"still running after {_STOP_TIMEOUT:g} s"
                    _say(f"killing {child.name} (pid {child.proc.pid}): {reason}")
                    child.proc.kill()
                child.proc.wait()
            if child.log_file is not None:
                child.log_file.close()

    def report_death(self, child: _Child) -> None:
        _say(f"{child.name} (pid {child.proc.pid}) exited with code {child.proc.returncode}; "
             "stopping the others")
        if child.log_path is not None and child.log_file is not None:
            child.log_file.flush()
            lines = child.log_path.read_text(errors="replace").splitlines()[-_TAIL_LINES:]
            if lines:
                _say(f"last lines of {child.log_path}:")
                for line in lines:
                    _out.write(f"    {line}")

    def cleanup(self, keep: bool) -> None:
        self.socket.unlink(missing_ok=True)
        if keep:
            _say(f"logs kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- the sequence --------------------------------------------------------------------------

    def start_all(self) -> None:
        a = self.args
        reach, web = _reach(a.host), _url_host(a.host)
        sidecar = self.spawn("sidecar", [
            "serve", "--socket", str(self.socket), "--host", a.host, "--port", str(a.http_port),
            "--grpc-health-target", f"{web}:{a.oracle_port}", "--drain-seconds", "0",
        ])
        self.wait_until(sidecar, "its socket and /livez",
                        lambda: self.socket.exists() and _http_ok(web, a.http_port, "/livez"))
        _say(f"started sidecar (pid {sidecar.proc.pid}) on http://{web}:{a.http_port}")

        grpc_host = f"[{a.host}]" if ":" in a.host and not a.host.startswith("[") else a.host
        oracle_argv = [
            "demo-oracle", "--host", grpc_host, "--port", str(a.oracle_port),
            "--control-port", str(a.control_port),
            "--socket", str(self.socket), "--phase-seconds", str(a.phase_seconds),
            "--scenario", ",".join(a.scenario) or "off", "--drain-seconds", "0",
            "--grace-seconds", "2",
        ]
        if not os.environ.get("ORACLE_LATENCY"):
            oracle_argv += ["--latency", "2ms..40ms"]  # a plausible spread on the dashboard
        oracle = self.spawn("oracle", oracle_argv)
        self.wait_until(oracle, "its gRPC and control ports", lambda: _tcp_open(
            reach, a.oracle_port) and _http_ok("127.0.0.1", a.control_port, "/knobs"))
        _say(f"started oracle (pid {oracle.proc.pid}): gRPC {web}:{a.oracle_port}, "
             f"control http://127.0.0.1:{a.control_port}/knobs")

        # The alerter, as its CronJob would run it but in a loop, keeping its state in a file the
        # dashboard shows. Without NPS_BOT_TOKEN/NPS_CHAT_ID it only logs what it would send.
        alerter = self.spawn("alerter", [
            "alert", "--loop", "--interval", "10", "--target", f"http://{web}:{a.http_port}",
            "--state-file", str(self.alert_state), "--window", "1m", "--min-requests", "10",
            "--cooldown", "120",
        ])
        _say(f"started alerter (pid {alerter.proc.pid}): every 10 s, state {self.alert_state}")

        if a.no_dashboard:
            _say("dashboard skipped (--no-dashboard)")
        elif not _importable("sidecar.dashboard.app"):
            _say("dashboard skipped: the module sidecar.dashboard.app is not installed")
        else:
            dashboard = self.spawn("dashboard", [
                "dashboard", "--host", a.host, "--port", str(a.dashboard_port),
                "--target", f"http://{web}:{a.http_port}",
                "--alert-state-file", str(self.alert_state),
            ])
            self.wait_until(dashboard, "its port", lambda: _tcp_open(reach, a.dashboard_port))
            _say(f"started dashboard (pid {dashboard.proc.pid}) on "
                 f"http://{web}:{a.dashboard_port}")

        if a.rate > 0:
            load = self.spawn("load", [
                "load", "--target", f"{web}:{a.oracle_port}", "--rate", f"{a.rate:g}",
                "--concurrency", "64",
            ])
            _say(f"started load (pid {load.proc.pid}): {a.rate:g} RPC/s over the 8 methods")
        else:
            _say("load skipped (--rate 0)")

    def banner(self) -> None:
        a = self.args
        web = _url_host(a.host)
        dashboard = any(c.name == "dashboard" for c in self.children)
        knobs = f"127.0.0.1:{a.control_port}/knobs"
        command = _command()
        lines = [
            "",
            "Open:",
            *([f"  dashboard  http://{web}:{a.dashboard_port}/"] if dashboard else []),
            f"  metrics    http://{web}:{a.http_port}/metrics",
            f"  snapshot   http://{web}:{a.http_port}/api/v1/snapshot",
            "Try:",
            f"  curl -s {web}:{a.http_port}/ready",
            f"  curl -s {web}:{a.http_port}/health",
            f"  curl -s {web}:{a.http_port}/metrics | grep grpc_server_handled_total",
            f"  curl -s {knobs}",
            f"  curl -s -X POST {knobs} -d '{{\"health\": \"degraded\"}}'   # /ready turns 503",
            f"  curl -s -X POST {knobs} -d '{{\"error_rate\": {{\"GetReading\": 0.3}}}}'",
            f"  curl -s -X POST {knobs} -d '{{\"latency\": {{\"*\": \"12s..15s@0.1\"}}}}'"
            "   # P95 above 10 s",
            f"  curl -s -X POST {knobs} -d '{{\"scenario\": \"cycle\", \"phase_seconds\": 60}}'",
            f"  curl -s -X POST 127.0.0.1:{a.control_port}/reset",
            f"  {command} load --target {web}:{a.oracle_port} --requests 2000",
            f"Alerts: {self.alert_state} (set NPS_BOT_TOKEN and NPS_CHAT_ID to get them on "
            "Telegram)",
            f"Logs: {self.dir}/*.log" if not a.verbose else "Logs: above",
            "Press Ctrl-C to stop.",
            "",
        ]
        _out.write("\n".join(lines))


def _http_ok(host: str, port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=1) as reply:
            return bool(reply.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False




def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the demo's flags; ports share their env vars with the roles they configure."""
    options.add(parser, "--host", env="DEMO_HOST", default="127.0.0.1",
                help="address the sidecar, the Oracle and the dashboard listen on (0.0.0.0: "
                "every interface; the control endpoint stays on 127.0.0.1)")
    options.add(parser, "--oracle-port", env="ORACLE_PORT", type=options.port, default=50052,
                help="the demo Oracle's gRPC port (0: any free port)")
    options.add(parser, "--control-port", env="ORACLE_CONTROL_PORT", type=options.port,
                default=50053, help="the demo Oracle's control endpoint (0: any free port)")
    options.add(parser, "--http-port", env="ORACLE_HTTP_PORT", type=options.port, default=9090,
                help="the sidecar's HTTP port (0: any free port)")
    options.add(parser, "--dashboard-port", env="DASHBOARD_PORT", type=options.port,
                default=9000, help="the dashboard's port (0: any free port)")
    options.add(parser, "--rate", env="DEMO_RATE", type=options.non_negative_float, default=16.0,
                help="calls per second of the gentle load, over all 8 methods (0: no load)")
    options.add(parser, "--scenario", env="ORACLE_SCENARIO", type=argument_type(parse_scenario),
                default="off", help="off, cycle (healthy -> errors -> slow -> degraded -> ...), "
                "or a comma list of those phases")
    options.add(parser, "--phase-seconds", env="ORACLE_PHASE_SECONDS",
                type=options.positive_duration, default=120.0, help="length of a scenario phase")
    options.add(parser, "--startup-timeout", env="DEMO_STARTUP_TIMEOUT",
                type=options.positive_duration, default=30.0,
                help="seconds each process gets to start answering")
    options.flag(parser, "--no-dashboard", env="DEMO_NO_DASHBOARD",
                 help="do not start the dashboard")
    options.flag(parser, "--verbose", env="DEMO_VERBOSE",
                 help="show every process's logs here instead of in files")


def run(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM (exit 0) or until a child fails (exit 1)."""
    dashboard = not args.no_dashboard and _importable("sidecar.dashboard.app")
    ports = [p for p in _PORTS if p[0] != "dashboard_port" or dashboard]
    try:
        for name, *_ in ports:
            if getattr(args, name) == 0:
                setattr(args, name, _free_port("127.0.0.1" if name == "control_port"
                                               else args.host))
    except OSError as err:
        _say(f"cannot listen on {args.host}: {err.strerror or err}; choose another with "
             f"--host or DEMO_HOST")
        return 1
    problems = _ports_problems(args, ports)
    if problems:
        for problem in problems:
            _say(problem)
        _say("nothing was started")
        return 1
    stop = _Stop()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    _out.on_close = stop.output_closed
    demo = _Demo(args, stop)
    _say(f"socket {demo.socket}")
    failed = True
    try:
        if not stop.event.is_set():
            demo.start_all()
            demo.banner()
        died = demo.watch()
        if died is not None:
            demo.report_death(died)
        else:
            failed = False
    except _Interrupted:
        failed = False
    except _ChildDied as err:
        demo.report_death(err.child)
    except (TimeoutError, OSError) as err:
        _say(f"cannot start: {err}; stopping the others")
    finally:
        if stop.event.is_set():
            _say(f"received {stop.signal_name}, stopping")
        demo.stop_all()
        demo.cleanup(keep=failed)
        _out.on_close = None
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if failed:
        return 1
    _say("stopped cleanly")
    return 0
