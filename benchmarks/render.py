"""Benchmark 10: /metrics rendering (issue 15): the writer against prometheus-client and Go.

- Render after a push, in process: the same store, fed a snapshot in which every method
  changed, rendered by the sidecar's writer (sidecar.promtext, incremental) and by
  prometheus-client's ``generate_latest`` over the collectors the sidecar used before
  (benchmarks/_promclient.py), text and OpenMetrics, for 8 and 800 methods; and Go's
  client_golang (benchmarks/gorender, Gather + the expfmt encoders) rendering the same 800-method
  family set in the same run. Wall time per render, in turn, round after round.
- /metrics after a push over HTTP, side by side with Go: a real ``oracle-sidecar serve`` and
  benchmarks/gorender's ``-serve`` (client_golang's promhttp.HandlerFor over the same family
  set, /push changing every series), one keep-alive client each, the same pattern for every
  request: push, pause, GET. Each server's /livez after the same push and pause is the floor
  (what any answer costs on this machine), and the server's own CPU for each request is read
  from its threads' /proc schedstat before the request and a moment after the answer (the
  server's time, kernel send path included, without the client's or the scheduler's waits).
- Scrape load: 2 000 methods, all changed by a push every second, /metrics scraped every 250 ms
  (text and OpenMetrics in turn, with or without the JSON snapshot every 2 s), /livez probed
  every 20 ms on a new connection; the sidecar's app runs in a process of its own with a monitor
  on its event loop (benchmarks/_scrape_load.py).
- Idle RSS of a real ``oracle-sidecar serve``.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._gorender import build
from benchmarks._promclient import Reference
from benchmarks.machine import cpu_seconds, memory_mib
from benchmarks.procs import Http, Procs, free_port, wait_until
from benchmarks.report import Section, percentile, spread, table
from benchmarks.sidecar_server import Pusher
from sidecar.exposition import Exposition
from sidecar.store import Store

__all__ = ["run"]

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
FORMATS = (("text", "text/plain"), ("OpenMetrics", OPENMETRICS))
# What Prometheus sends when it scrapes: OpenMetrics 1.0.0 first, then 0.0.1 (the only version
# Debian's client_golang 1.14 negotiates), then the text format.
SCRAPE_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                 "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
OVER_HTTP = (("text", "/metrics", "text/plain"), ("OpenMetrics", "/metrics", SCRAPE_ACCEPT),
             ("livez", "/livez", None))
SETTLE = 0.002  # after an answer, before the server's CPU is read again: it finishes the request


class _Feed:
    """The sidecar benchmark's snapshots, applied straight to an in-process store."""

    def __init__(self, store: Store, methods: int) -> None:
        self.store = store
        self.pusher = Pusher(None, methods)

    def push(self) -> None:
        for part in self.pusher.snapshot():
            assert self.store.ingest(part) is None


def _median_ms(values: list[float]) -> float:
    return spread(values).median * 1000


def _ms(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{spread(ms).median:.2f} / {percentile(ms, 90):.2f}" if ms else "–"


def _in_process(methods: int, rounds: int) -> dict[str, Any]:
    store = Store()
    feed = _Feed(store, methods)
    feed.push()
    ours, theirs = Exposition(store), Reference(store)
    out: dict[str, Any] = {}
    for name, accept in FORMATS:
        new: list[float] = []
        old: list[float] = []
        cached: list[float] = []
        for _ in range(rounds):
            feed.push()
            for which, render in (("new", ours), ("old", theirs)):
                t0 = time.perf_counter()
                body = render.metrics(accept)[0]
                (new if which == "new" else old).append(time.perf_counter() - t0)
                out[f"{name}_{which}_bytes"] = len(body)
            t0 = time.perf_counter()
            ours.metrics(accept)
            cached.append(time.perf_counter() - t0)
        out[name] = {"new": new, "old": old, "cached": cached}
    return out


def _go(binary: Path, methods: int, rounds: int) -> dict[str, Any]:
    done = subprocess.run([str(binary), "-methods", str(methods), "-rounds", str(rounds)],
                          capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _http(procs: Procs, methods: int, rounds: int, gorender: Path) -> dict[str, Any]:
    """Round trip, server CPU and body size per request, by server and request (OVER_HTTP)."""
    sidecar, port, path = procs.sidecar()
    pusher = Pusher(path, methods)
    go = procs.start([str(gorender), "-serve", "127.0.0.1:0", "-methods", str(methods)],
                     "gorender", stdout=subprocess.PIPE)
    assert go.stdout is not None
    address = go.stdout.readline().decode().strip()  # host:port once it listens
    if not address:
        raise RuntimeError(f"gorender -serve did not start:\n{procs.log(go)[-2000:]}")
    go_port = int(address.rsplit(":", 1)[1])
    clients = {"sidecar": Http(port), "Go": Http(go_port)}
    servers = {"sidecar": (sidecar.pid, pusher.push),
               "Go": (go.pid, lambda: clients["Go"].get("/push")[0])}
    for name, (_, push) in servers.items():
        push()
        http = clients[name]
        wait_until(lambda http=http: http.get("/metrics")[1].count(
            b"grpc_server_started_total{") >= methods, 30, f"{methods} methods on {name}")
        if not http.get("/metrics", {"Accept": SCRAPE_ACCEPT})[1].endswith(b"# EOF\n"):
            raise RuntimeError(f"{name} did not answer Prometheus's Accept with OpenMetrics")
    pause = 0.05 + methods / 20_000  # received and applied before the scrape
    out: dict[str, Any] = {name: {what: {"seconds": [], "cpu": [], "bytes": 0}
                                  for what, _, _ in OVER_HTTP} for name in servers}
    for _ in range(rounds):
        for name, (pid, push) in servers.items():
            for what, url, accept in OVER_HTTP:
                push()
                time.sleep(pause)
                cpu0 = cpu_seconds(pid)
                status, body, seconds = clients[name].get(url, {"Accept": accept} if accept
                                                          else None)
                time.sleep(SETTLE)
                cpu = cpu_seconds(pid) - cpu0
                if status != 200:
                    raise RuntimeError(f"{name} answered {url} with {status}")
                figures = out[name][what]
                figures["seconds"].append(seconds)
                figures["cpu"].append(cpu)
                figures["bytes"] = len(body)
    for http in clients.values():
        http.close()
    pusher.close()
    procs.stop(go)
    procs.stop(sidecar)
    return out


def _load(procs: Procs, seconds: float, json_every: int, part_bytes: int, history: float = 0.0
          ) -> dict[str, Any]:
    port, socket_path = free_port(), str(procs.dir / f"load{len(procs.children)}.sock")
    serve = procs.python("benchmarks._scrape_load", "serve", "--socket", socket_path,
                         "--port", str(port), "--seconds", str(seconds + 8), "--history",
                         str(history), stdout=subprocess.PIPE, name="serve")
    assert serve.stdout is not None
    serve.stdout.readline()
    push = procs.python("benchmarks._scrape_load", "push", "--socket", socket_path,
                        "--every", "1", "--seconds", str(seconds + 4), "--part-bytes",
                        str(part_bytes), stdout=subprocess.PIPE, name="push")
    assert push.stdout is not None
    push.stdout.readline()
    http = Http(port)
    wait_until(lambda: http.get("/metrics")[1].count(b"grpc_server_started_total{") >= 2000,
               30, "2 000 methods on /metrics")
    http.close()
    scrape = procs.python("benchmarks._scrape_load", "scrape", "--port", str(port),
                          "--every", "0.25", "--seconds", str(seconds), "--json-every",
                          str(json_every), stdout=subprocess.PIPE, name="scrape")
    probe = procs.python("benchmarks._scrape_load", "probe", "--port", str(port),
                         "--every", "0.02", "--seconds", str(seconds), stdout=subprocess.PIPE,
                         name="probe")
    scrapes = json.loads(scrape.communicate(timeout=seconds + 120)[0])["scrapes"]
    probes = json.loads(probe.communicate(timeout=seconds + 120)[0])
    push.communicate(timeout=seconds + 120)
    loop = json.loads(serve.communicate(timeout=seconds + 120)[0])
    return {"scrapes": scrapes, "probes": probes["seconds"], "lags": loop["lags"],
            "cpu": loop["cpu"], "full": loop["full"], "json_every": json_every,
            "part_bytes": part_bytes, "history": history}


def _idle_rss(procs: Procs) -> float:
    sidecar, _, _ = procs.sidecar()
    time.sleep(1.0)
    rss = memory_mib(sidecar.pid)["VmRSS"]
    procs.stop(sidecar)
    return rss


def run(quick: bool, machine: str, command: str) -> Section:
    rounds = {8: 5 if quick else 40, 800: 2 if quick else 12}
    renders = {m: _in_process(m, r) for m, r in rounds.items()}
    with tempfile.TemporaryDirectory(prefix="oracle-gorender-") as tmp, Procs() as procs:
        gorender = build(Path(tmp))
        go = _go(gorender, 800, rounds[800])
        over_http = {8: _http(procs, 8, 15 if quick else 60, gorender),
                     800: _http(procs, 800, 3 if quick else rounds[800], gorender)}
        seconds = 3.0 if quick else 15.0
        history = 600 if quick else 3600
        loads = [_load(procs, seconds, 0, 65_507), _load(procs, seconds, 0, 65_507, history),
                 _load(procs, seconds, 8, 65_507), _load(procs, seconds, 8, 16_384),
                 _load(procs, seconds, 8, 65_507, history)]
        rss = [_idle_rss(procs) for _ in range(1 if quick else 3)]
    return _section(renders, go, over_http, loads, rss, quick, machine, command)


def _section(renders: dict[int, Any], go: dict[str, Any], over_http: dict[int, Any],
             loads: list[dict[str, Any]], rss: list[float], quick: bool, machine: str,
             command: str) -> Section:
    rows = []
    ratios = {}
    for methods, r in renders.items():
        for name, _ in FORMATS:
            new, old = r[name]["new"], r[name]["old"]
            speedup = spread([o / n for o, n in zip(old, new, strict=True)]).median
            go_key = "text" if name == "text" else "openmetrics"
            if methods == 800:
                ratios[name] = spread(new).median / spread(go[go_key]).median
            rows.append((f"{methods:,} methods, {name}", _ms(new), _ms(r[name]["cached"]),
                         _ms(old), f"×{speedup:,.0f}",
                         _ms(go[go_key]) if methods == 800 else "–",
                         f"{ratios[name]:.2f}" if methods == 800 else "–",
                         f"{r[f'{name}_new_bytes'] / 1024:,.0f} KiB"))
    t1 = table(["render after a push (in process)", "writer ms median / p90",
                "writer, nothing changed", "prometheus-client ms", "old ÷ new",
                "Go client_golang ms", "writer ÷ Go", "body"], rows, right=(1, 2, 3, 4, 5, 6, 7))
    rows2 = []
    for m, servers in over_http.items():
        for name, _ in FORMATS:
            for server, figures in servers.items():
                metrics, livez = figures[name], figures["livez"]
                rt, floor = _median_ms(metrics["seconds"]), _median_ms(livez["seconds"])
                go_rt = _median_ms(servers["Go"][name]["seconds"])
                rows2.append((f"{m:,} methods, {name}: {server}", _ms(metrics["seconds"]),
                              f"{floor:.2f}", f"{rt - floor:.2f}",
                              f"{_median_ms(metrics['cpu']):.2f} "
                              f"({_median_ms(livez['cpu']):.2f})",
                              f"×{rt / go_rt:.2f}" if server != "Go" else "–",
                              f"{metrics['bytes'] / 1024:,.1f} KiB",
                              str(len(metrics["seconds"]))))
    t2 = table(["/metrics over HTTP: push, pause, GET", "round trip ms median / p90",
                "floor: /livez ms", "round trip − floor", "server CPU ms (/livez)",
                "÷ Go round trip", "body", "requests"], rows2, right=(1, 2, 3, 4, 5, 6, 7))
    rows3 = []
    for load in loads:
        lags = [x * 1000 for x in load["lags"]]
        cpu = [x * 1000 for x in load["cpu"]]
        probes = [x * 1000 for x in load["probes"]]
        metrics = [s["seconds"] * 1000 for s in load["scrapes"] if s["path"] == "/metrics"]
        what = ("/metrics" + (" + JSON snapshot every 2 s" if load["json_every"] else "")
                + f", {load['part_bytes'] // 1024} KiB parts"
                + (f", after {load['history'] / 60:.0f} min of history (restarted service)"
                   if load["history"] else ""))
        full = [x * 1000 for x in load["full"]]
        rows3.append((what, f"{max(lags):.1f}", f"{max(cpu):.1f}",
                      f"{max(full):.1f} ({len(full)})" if full else "– (0)",
                      f"{percentile(probes, 50):.1f} / {percentile(probes, 99):.1f} / "
                      f"{max(probes):.1f}", f"{spread(metrics).median:.0f}",
                      str(len(probes)), str(len(load["scrapes"]))))
    t3 = table(["2 000 busy methods, scraped every 250 ms", "longest loop stall ms (wall)",
                "longest loop step ms (CPU)", "of it: longest full collection ms (count)",
                "/livez ms p50 / p99 / max", "/metrics ms median", "probes", "scrapes"], rows3,
               right=(1, 2, 3, 4, 5, 6, 7))
    idle = spread(rss)
    ours, go8 = over_http[8]["sidecar"], over_http[8]["Go"]
    floor8 = _median_ms(ours["livez"]["seconds"])
    part = {name: _median_ms(ours[name]["seconds"]) - floor8 for name, _ in FORMATS}
    eight = "; ".join(
        f"{name} {part[name]:.2f} ms (round trip {_median_ms(ours[name]['seconds']):.2f} − "
        f"/livez floor {floor8:.2f}; server CPU {_median_ms(ours[name]['cpu']):.2f} ms, "
        f"/livez {_median_ms(ours['livez']['cpu']):.2f}; Go promhttp round trip "
        f"{_median_ms(go8[name]['seconds']):.2f} ms, server CPU "
        f"{_median_ms(go8[name]['cpu']):.2f})" for name, _ in FORMATS)
    eight_hundred = spread([v * 1000 for v in renders[800]["text"]["new"]]).median
    # The verdicts take the worst of all rows: /metrics alone and with JSON snapshots (made in
    # slices on the loop too), with and without history.
    probes99 = max(percentile([x * 1000 for x in load["probes"]], 99) for load in loads)
    stall = max(max(load["cpu"]) for load in loads) * 1000
    wall = max(max(load["lags"]) for load in loads) * 1000
    metrics_stall = max(max(load["cpu"]) for load in loads if not load["json_every"]) * 1000
    section = Section(
        key="render",
        title="10. /metrics rendering: the writer, prometheus-client and Go",
        intro=("The same store rendered by the sidecar's writer (sidecar/promtext.py, per-series "
               "incremental) and by prometheus-client's `generate_latest` over the collectors "
               "the sidecar used before, right after a push that changed every method; Go's "
               "client_golang 1.14 (Debian) renders the same 800-method family set (started, "
               "handled × 17 codes, the 15-bucket histogram, messages received and sent) in "
               "the same run, Gather plus encoder, as a Go server does on every scrape. Then "
               "over HTTP, a real sidecar beside a Go server (client_golang's promhttp over "
               "the same family set, benchmarks/gorender -serve), each request after a push "
               "and the same pause: the /metrics round trip, the floor (/livez after the same "
               "push and pause: what any answer costs on this machine, whose idle CPUs are slow "
               "to wake), and the server's own CPU for the request (its threads' schedstat, "
               "read before the request and 2 ms after the answer; kernel send path "
               "included). Then a sidecar under continuous scrapes "
               "of 2 000 busy methods with a 20 ms /livez prober, its event loop watched by "
               "a 1 ms timer: the wall-clock stall includes waits for a CPU on a shared "
               "machine, the CPU column is the loop's own longest step. The last row serves "
               "after the store has lived through an hour of those methods from an earlier "
               "process that then exited (every history point the sidecar keeps, retired "
               "totals beside the live ones: the steady state of a service that has "
               "restarted)."
               + (" Quick mode: figures indicative only." if quick else "")),
        machine=machine,
        command=command,
        tables=[t1, t2, t3],
    )
    section.targets = [
        ("/metrics after a push, 8 methods <= 0.5 ms (the sidecar's part: HTTP round trip "
         "− its /livez round trip after the same push and pause)", eight,
         max(part.values()) <= 0.5),
        ("800 methods <= 25 ms and within 2× of Go",
         f"{eight_hundred:.1f} ms text; ×{ratios['text']:.2f} / ×{ratios['OpenMetrics']:.2f} "
         f"Go's time (text / OpenMetrics)",
         eight_hundred <= 25 and max(ratios.values()) <= 2),
        ("loop stall <= 10 ms while scraping 2 000 series (loop's own CPU, worst row)",
         f"{stall:.1f} ms longest step; wall {wall:.0f} ms (/metrics alone: "
         f"{metrics_stall:.1f} ms)", stall <= 10),
        ("/livez p99 <= 20 ms during continuous scraping (worst row)",
         f"{probes99:.1f} ms", probes99 <= 20),
        ("idle RSS <= 40 MiB", f"{idle.text(2)} MiB", idle.median <= 40),
    ]
    section.notes = [
        "prometheus-client is no longer imported by `oracle-sidecar serve`; the process_* "
        "figures are its ProcessCollector's, read with four system calls.",
        "Over HTTP, Go's server exports only the RPC families; the sidecar's body also holds "
        "its own counters, health and process figures (read on every scrape).",
    ]
    return section
