"""Benchmark 5: the dashboard's /api/status and one alerter run, each against 20 targets.

One real sidecar is fed a snapshot of the Oracle's 8 methods every second (with a few errors,
so windows have rates and error rates). ``benchmarks._replay`` serves its answers on 20 ports,
so the dashboard and the alerter see 20 pods while the machine runs one sidecar. The dashboard
(``oracle-sidecar dashboard``, refresh 0.2 s so that it shares a fetch for only 0.1 s) is asked
for ``/api/status`` after a pause (a fresh round: 20 fetches, aggregation, JSON) and again at
once (the shared round). The alerter (``oracle-sidecar alert --dry-run``) is run as the
CronJob runs it: one process per evaluation, timed from start to exit.
"""

from __future__ import annotations

import importlib.util
import json
import resource
import subprocess
import sys
import threading
import time
from typing import Any

from benchmarks.machine import memory_mib
from benchmarks.procs import Http, Procs, free_port, wait_until
from benchmarks.report import Section, percentile, spread, table
from benchmarks.sidecar_server import Pusher

__all__ = ["run"]

TARGETS = 20
# Nothing of the user's environment may point the dashboard or the alerter elsewhere.
QUIET_ENV = {"NPS_BOT_TOKEN": "", "NPS_BOT_TOKEN_FILE": "", "NPS_CHAT_ID": "",
             "TELEGRAM_API_URL": "http://127.0.0.1:9", "ALERT_STATE_CONFIGMAP": "",
             "ALERT_STATE_FILE": "", "ORACLE_HTTP_URL": "", "LOG_LEVEL": "WARNING"}


def missing() -> str | None:
    """Why this benchmark cannot run here, or None."""
    for module, what in (("sidecar.dashboard.app", "the dashboard"),
                         ("sidecar.alerter.run", "the alerter")):
        if importlib.util.find_spec(module) is None:
            return f"{what} ({module}) is not in this tree yet"
    return None


def _feed(pusher: Pusher, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        pusher.push()


def _ms(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{spread(ms).median:.1f} / {percentile(ms, 90):.1f} / {max(ms):.1f}" if ms else "–"


def run(quick: bool, machine: str, command: str) -> Section:
    why = missing()
    if why:
        return _section(None, None, why, quick, machine, command)
    requests, alert_runs, warm = (3, 1, 1.2) if quick else (30, 5, 2.5)
    with Procs() as procs:
        _, sidecar_port, socket_path = procs.sidecar()
        pusher = Pusher(socket_path, 8)
        pusher.push()
        stop = threading.Event()
        feeder = threading.Thread(target=_feed, args=(pusher, stop), daemon=True)
        feeder.start()
        try:
            ports = [free_port() for _ in range(TARGETS)]
            replay = procs.python("benchmarks._replay", "--upstream", str(sidecar_port),
                                  *(a for p in ports for a in ("--port", str(p))),
                                  stdout=subprocess.PIPE, name="replay")
            assert replay.stdout is not None
            if replay.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"the replay server did not start:\n{procs.log(replay)}")
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            time.sleep(warm)  # a push or more, so the 1m window has a rate
            dash = _dashboard(procs, urls, requests)
            alerts = _alerter(procs, urls, alert_runs)
        finally:
            stop.set()
            feeder.join(3)
            pusher.close()
    return _section(dash, alerts, None, quick, machine, command)


def _dashboard(procs: Procs, urls: list[str], requests: int) -> dict[str, Any]:
    port = free_port()
    dash = procs.python("sidecar.cli", "dashboard", "--host", "127.0.0.1", "--port", str(port),
                        "--refresh", "0.2", "--timeout", "2",
                        *(a for u in urls for a in ("--target", u)), name="dashboard",
                        env=QUIET_ENV)
    http = Http(port)
    wait_until(lambda: procs.alive(dash) and http.get("/livez")[0] == 200, 20,
               "the dashboard to answer /livez")
    http.get("/api/status")  # the first round opens the connections to the targets
    fresh, shared = [], []
    pods = problems = size = 0
    for _ in range(requests):
        time.sleep(0.25)  # longer than the 0.1 s a round is shared: this one fetches anew
        status, body, seconds = http.get("/api/status")
        if status != 200:
            raise RuntimeError(f"/api/status answered {status}: {body[:300]!r}")
        fresh.append(seconds)
        doc = json.loads(body)
        pods, problems, size = len(doc["pods"]), len(doc["problems"]), len(body)
        shared.append(http.get("/api/status")[2])
    http.close()
    mem = memory_mib(dash.pid)
    procs.stop(dash)
    return {"fresh": fresh, "shared": shared, "pods": pods, "problems": problems,
            "size": size, "rss": mem["VmRSS"]}


def _alerter(procs: Procs, urls: list[str], runs: int) -> dict[str, Any]:
    walls, cpus, codes, out_lines = [], [], [], 0
    state = procs.dir / "alert-state.json"
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "sidecar.cli", "alert", "--dry-run", "--state-file",
             str(state), *(a for u in urls for a in ("--target", u))],
            capture_output=True, timeout=120, cwd=procs.dir,
            env={**_env(), **QUIET_ENV})
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        codes.append(done.returncode)
        out_lines = len(done.stdout.splitlines())
    # Python starting and importing the alerter, for scale: the same interpreter, no work.
    startups = []
    for _ in range(min(runs, 3)):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import sidecar.alerter.run"], timeout=60,
                       cwd=procs.dir, env=_env(), check=True)
        startups.append(time.perf_counter() - t0)
    return {"wall": walls, "cpu": cpus, "codes": codes, "startup": spread(startups).median,
            "out_lines": out_lines}


def _env() -> dict[str, str]:
    import os

    from benchmarks.procs import ROOT

    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _section(dash: dict[str, Any] | None, alerts: dict[str, Any] | None, skipped: str | None,
             quick: bool, machine: str, command: str) -> Section:
    section = Section(
        key="dashboard",
        title="5. Dashboard and alerter against 20 targets",
        intro=(f"One real sidecar, fed the Oracle's 8 methods every second; its answers are "
               f"served on {TARGETS} ports (`benchmarks._replay`, refreshed once a second), so "
               f"the dashboard and the alerter see {TARGETS} pods while the machine runs one "
               f"sidecar. `/api/status` is asked after a 0.25 s pause (a fresh round: "
               f"{TARGETS} fetches of `/api/v1/snapshot`, aggregation, JSON) and again at once "
               f"(the shared round). The alerter runs `--dry-run` as its CronJob does, one "
               f"process per evaluation, timed from start to exit."
               + (" Quick mode: figures indicative only." if quick else "")),
        machine=machine,
        command=command,
        skipped=skipped,
    )
    if dash is None or alerts is None:
        return section
    section.tables.append(table(
        ["request", "ms median / p90 / max", "requests", "pods in the answer", "body"],
        [("/api/status, fresh round", _ms(dash["fresh"]), str(len(dash["fresh"])),
          str(dash["pods"]), f"{dash['size'] / 1024:.0f} KiB"),
         ("/api/status, shared round", _ms(dash["shared"]), str(len(dash["shared"])),
          str(dash["pods"]), f"{dash['size'] / 1024:.0f} KiB")],
        right=(1, 2, 3, 4)))
    wall = spread(alerts["wall"])
    cpu = spread(alerts["cpu"])
    section.tables.append(table(
        ["alerter run (`alert --dry-run`, 20 targets)", "wall s, median (min–max)",
         "CPU s, median (min–max)", "exit codes", "Python + import alone, s (median)"],
        [(f"{len(alerts['wall'])} runs", wall.text(2), cpu.text(2),
          ", ".join(str(c) for c in alerts["codes"]), f"{alerts['startup']:.2f}")],
        right=(1, 2, 4)))
    section.notes = [
        f"The dashboard answered with {dash['pods']} pods and {dash['problems']} problem(s); "
        f"its RSS after the run was {dash['rss']:.1f} MiB.",
        "The alerter's wall time is mostly Python starting and importing (last column); the "
        "evaluation of 20 targets is the difference. Exit code 1 would mean a target could not "
        "be evaluated.",
    ]
    return section
