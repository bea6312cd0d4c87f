"""Benchmark 9: ingest CPU per snapshot, before and after; split snapshots delivered per push.

- Ingest: one stream of 8-method cumulative snapshots (the Oracle's methods, three codes each,
  every count growing each push, as a busy service sends them) is ingested by the code of this
  tree and by the code before issue 15/17's ingest work (commit 171f136 unless
  `INGEST_BEFORE` names another, extracted with `git archive`), in alternating rounds of the
  same run: in-process (CPU time of `Store.ingest` per snapshot, next to `json.loads` alone,
  the floor no Python decoder goes under), and in a real `oracle-sidecar serve` process fed
  over its socket (the process's CPU per snapshot, receiving included).
- Per row (issue 15's second round, against `bf4345c` unless `INGEST_SESSION_BEFORE` names
  another commit): in-process CPU per datagram of three streams, each code in alternating
  rounds: the 8-method stream above; 8 methods as this tree's reporter sends them (fine counts
  and message counts included, a few hundred fine buckets per method); and one 64 KiB part (about
  370 rows) of a 2 000-method snapshot, every method changed, the largest single piece of work
  a push puts on the sidecar's event loop (the garbage collector runs as in the sidecar).
- Split snapshots: the reference reporter with 1 500 methods of 200-character names (a
  snapshot of 10 or more parts) pushes to a real sidecar, paced as docs/protocol.md says and
  with pacing off (a part given up at the first EAGAIN, as before): parts delivered per push.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

from benchmarks.machine import cpu_seconds
from benchmarks.procs import ROOT, Http, Procs, free_port, wait_until
from benchmarks.report import Section, spread, table
from sidecar import protocol
from sidecar.demo import METHODS, SERVICE

__all__ = ["run"]

BEFORE = os.environ.get("INGEST_BEFORE", "171f136")  # main before the ingest work
# main before issue 15's second round on ingest (per-row checks, fine counts)
SESSION_BEFORE = os.environ.get("INGEST_SESSION_BEFORE", "bf4345c")

# Runs in a child with PYTHONPATH at one tree: CPU seconds of json.loads and of Store.ingest
# over the datagrams of the file argv[1].
PROBE = """
import json, sys, time
from sidecar.store import Store
data = open(sys.argv[1], "rb").read().split(b"\\n")
t = time.process_time()
for d in data:
    json.loads(d.decode("utf-8"))
loads = time.process_time() - t
store = Store()
t = time.process_time()
bad = sum(store.ingest(d) is not None for d in data)
ingest = time.process_time() - t
print(json.dumps({"n": len(data), "loads": loads, "ingest": ingest, "rejected": bad}))
"""

# As PROBE, with the CPU seconds of each datagram's json.loads and ingest (argv[2]: how many
# datagrams the first push took, measured apart: its rows make new series).
PROBE_EACH = """
import json, sys, time
from sidecar.store import Store
data = open(sys.argv[1], "rb").read().split(b"\\n")
first = int(sys.argv[2])
clock = time.process_time
loads = []
for d in data:
    t = clock()
    json.loads(d.decode("utf-8"))
    loads.append(clock() - t)
store = Store()
ingest = []
bad = 0
for d in data:
    t = clock()
    bad += store.ingest(d) is not None
    ingest.append(clock() - t)
print(json.dumps({"loads": loads[first:], "ingest": ingest[first:], "rejected": bad}))
"""


def snapshots(n: int, go_names: bool = True) -> list[bytes]:
    """``n`` pushes of one busy process with the Oracle's 8 methods.

    Codes are spelt as Go does, as this tree's reporter sends them, or (``go_names`` False)
    upper case, the only spelling the code before the Go names accepted.
    """
    internal, not_found = ("Internal", "NotFound") if go_names else ("INTERNAL", "NOT_FOUND")
    rng = random.Random(7)
    n_hist = len(protocol.DEFAULT_BUCKETS) + 1
    rows: list[dict[str, Any]] = [
        {"service": SERVICE, "method": m, "type": "unary", "started": 0,
         "codes": {"OK": 0, internal: 0, not_found: 0}, "hist": [0] * n_hist, "sum": 0.0,
         "max": 0.0, "exceptions": {"KeyError": 0}} for m in METHODS]
    out = []
    for seq in range(1, n + 1):
        for row in rows:
            k = rng.randint(50, 150)
            row["started"] += k
            row["codes"]["OK"] += k - 2
            row["codes"][internal] += 1
            row["codes"][not_found] += 1
            row["exceptions"]["KeyError"] += 1
            row["hist"][rng.randint(0, 6)] += k
            row["sum"] = round(row["sum"] + k * 0.004, 9)
            row["max"] = 0.3
            row["last_error"] = [internal, 1.8e9 + seq]
        out += protocol.encode(
            source={"id": "bench-ingest", "pid": 4242, "started": time.time(),
                    "service": SERVICE, "version": "bench"},
            seq=seq, time=1.8e9 + seq, buckets=protocol.DEFAULT_BUCKETS, rows=rows,
            health="healthy", checks={"model": "loaded"},
            reporter={"dropped": 0, "send_errors": 0, "overflow": 0})
    started = json.loads(out[0])["source"]["started"]
    return [d.replace(json.dumps(json.loads(d)["source"]["started"]).encode(),
                      json.dumps(started).encode(), 1) for d in out]


def reporter_snapshots(n: int) -> list[bytes]:
    """``n`` pushes of this tree's reporter with the Oracle's 8 methods, ~100 calls each per
    push (durations spread over two decades, 1 % errors), as its flush encodes them."""
    from sidecar.reporter import core

    rng = random.Random(11)
    rep = core.Reporter(SERVICE, "bench", socket_path="/nonexistent/bench.sock")
    series = [rep.series(f"/{SERVICE}/{m}") for m in METHODS]
    out = []
    for seq in range(1, n + 1):
        for s in series:
            assert s is not None
            for _ in range(rng.randint(50, 150)):
                failed = rng.random() < 0.01
                rep.observe(s, rng.lognormvariate(-4, 1.2), "Internal" if failed else "OK",
                            "KeyError" if failed else None)
        out += protocol.encode(
            source={"id": "bench-fine", "pid": 4244, "started": 1.7e9, "service": SERVICE,
                    "version": "bench"},
            seq=seq, time=1.7e9 + seq, buckets=rep.buckets, rows=rep.rows(), health="healthy",
            checks={}, reporter={"dropped": 0, "send_errors": 0, "overflow": 0})
    return out


def _before_tree(directory: Path, commit: str = BEFORE) -> Path | None:
    """The sidecar package as of ``commit``, or None when git cannot give it."""
    done = subprocess.run(["git", "archive", commit, "sidecar"], cwd=ROOT, capture_output=True,
                          check=False)
    if done.returncode != 0:
        return None
    with tarfile.open(fileobj=BytesIO(done.stdout)) as tar:
        tar.extractall(directory, filter="data")
    return directory


def _probe(tree: Path, data_file: Path, first: int | None = None) -> dict[str, Any]:
    """PROBE (PROBE_EACH when ``first`` says how many datagrams to leave out) in a child."""
    args = [PROBE, str(data_file)] if first is None else [PROBE_EACH, str(data_file), str(first)]
    done = subprocess.run([sys.executable, "-c", *args], cwd=tree,
                          env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
                          text=True, check=True, timeout=600)
    return dict(json.loads(done.stdout))


def _per_row(tmp: Path, quick: bool, rounds: int) -> dict[str, Any]:
    """The per-row streams, each code in alternating rounds (see the module's docstring)."""
    from benchmarks._scrape_load import snapshots as many_methods

    pushes = many_methods(2000, 4 if quick else 8, time.time())
    streams = {"8": snapshots(300 if quick else 2000),
               "fine": reporter_snapshots(300 if quick else 2000),
               "2000": [part for push in pushes for part in push]}
    files = {}
    for name, data in streams.items():
        files[name] = tmp / f"row-{name}.jsonl"
        files[name].write_bytes(b"\n".join(data))
    before = _before_tree(tmp / "session-before", SESSION_BEFORE)
    trees = {"after": ROOT, **({"before": before} if before else {})}
    got: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {tree: [] for tree in trees} for name in streams}
    for _ in range(rounds):
        for tree_name, tree in trees.items():
            got["8"][tree_name].append(_probe(tree, files["8"]))
            got["fine"][tree_name].append(_probe(tree, files["fine"]))
            got["2000"][tree_name].append(_probe(tree, files["2000"], len(pushes[0])))
    refused = {(name, tree) for name, by_tree in got.items() for tree, runs in by_tree.items()
               if any(r["rejected"] for r in runs)}
    if refused:  # the figures would time rejections, not ingest
        raise RuntimeError(f"datagrams rejected in the per-row streams: {sorted(refused)}")
    return {"got": got, "n": {k: len(v) for k, v in streams.items()},
            "bytes": {"fine": len(streams["fine"][-1]), "2000": len(pushes[-1][0])},
            "rows": len(json.loads(pushes[-1][0])["rpcs"]), "have_before": bool(before)}


def _real_process(procs: Procs, tree: Path, data: list[bytes]) -> float:
    """CPU seconds a real sidecar of ``tree`` spends on ``data``, fed as fast as it reads."""
    port = free_port()
    path = str(procs.dir / f"ingest{len(procs.children)}.sock")
    child = procs.start([sys.executable, "-m", "sidecar.cli", "serve", "--socket", path,
                         "--host", "127.0.0.1", "--port", str(port), "--drain-seconds", "0",
                         "--log-level", "WARNING"], name="sidecar",
                        env={"PYTHONPATH": str(tree)}, cwd=tree)
    http = Http(port)
    try:
        wait_until(lambda: procs.alive(child) and http.get("/livez")[0] == 200, 20,
                   "the sidecar to answer /livez")
        cpu0 = cpu_seconds(child.pid)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as tx:
            tx.settimeout(30)  # blocking: a full queue waits for the sidecar, nothing is lost
            for d in data:
                tx.sendto(d, path)
        wait_until(lambda: _received(http) >= len(data), 60, "every snapshot read")
        return cpu_seconds(child.pid) - cpu0
    finally:
        http.close()
        procs.stop(child)


def _received(http: Http) -> int:
    for line in http.get("/metrics")[1].decode().splitlines():
        if line.startswith("oracle_sidecar_messages_received_total "):
            return int(float(line.split()[1]))
    return 0


def _pushes(procs: Procs, pushes: int, paced: bool) -> dict[str, Any]:
    """Parts sent and delivered per push of a 1 500-method reporter to a real sidecar."""
    from sidecar.reporter import core, sending

    sidecar, _, path = procs.sidecar()
    rep = core.Reporter("split.Service", "1", socket_path=path, max_series=1500)
    names = [f"split.Service/M{i:05d}".ljust(200, "x") for i in range(1500)]
    for name in names:
        with contextlib.suppress(ValueError), rep.track(name):
            raise ValueError(name)
    budget = sending.PACING_BUDGET
    sending.PACING_BUDGET = budget if paced else 0.0
    delivered, parts, seconds = [], [], []
    try:
        for _ in range(pushes):
            sent, dropped = rep.sent, rep.dropped
            t0 = time.perf_counter()
            rep.flush()
            seconds.append(time.perf_counter() - t0)
            delivered.append(rep.sent - sent)
            parts.append(rep.sent - sent + rep.dropped - dropped)
            for name in names:
                with rep.track(name):
                    pass
            time.sleep(0.2)  # the sidecar reads what it got before the next push
    finally:
        sending.PACING_BUDGET = budget
        procs.stop(sidecar)
    return {"delivered": delivered, "parts": parts, "seconds": seconds}


def run(quick: bool, machine: str, command: str) -> Section:
    n = 300 if quick else 2000
    rounds = 2 if quick else 5
    # Each code gets the spelling its own reporter sends (the code before accepts upper case only).
    streams = {"after": snapshots(n), "before": snapshots(n, go_names=False)}
    data = streams["after"]
    inproc: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    real: dict[str, list[float]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp, Procs() as procs:
        files = {name: Path(tmp) / f"{name}.jsonl" for name in streams}
        for name, path in files.items():
            path.write_bytes(b"\n".join(streams[name]))
        before = _before_tree(Path(tmp) / "before")
        trees = {"after": ROOT, **({"before": before} if before else {})}
        for _ in range(rounds):
            for name, tree in trees.items():
                inproc[name].append(_probe(tree, files[name]))
                real[name].append(_real_process(procs, tree, streams[name]))
        per_row = _per_row(Path(tmp), quick, rounds)
        pushes = 3 if quick else 10
        paced = _pushes(procs, pushes, paced=True)
        unpaced = _pushes(procs, pushes, paced=False)
    return _section(n, data, inproc, real, paced, unpaced, before is not None, machine, command,
                    per_row)


def _section(n: int, data: list[bytes], inproc: dict[str, list[dict[str, float]]],
             real: dict[str, list[float]], paced: dict[str, Any], unpaced: dict[str, Any],
             have_before: bool, machine: str, command: str, per_row: dict[str, Any]
             ) -> Section:
    def us(values: list[float]) -> str:
        return spread([v / n * 1e6 for v in values]).text(1) if values else "–"

    rows = []
    for name, label in (("before", f"before (`{BEFORE}`)"), ("after", "after (this tree)")):
        runs = inproc[name]
        ratio = spread([r["ingest"] / r["loads"] for r in runs]).text(2) if runs else "–"
        rows.append([label, us([r["loads"] for r in runs]), us([r["ingest"] for r in runs]),
                     f"×{ratio}", us(real[name])])
    t1 = table(["code", "json.loads alone, µs", "decode + apply in-process, µs",
                "÷ json.loads", "real sidecar process, µs"], rows, right=[1, 2, 3, 4])
    speedup = [b["ingest"] / a["ingest"] for a, b in zip(inproc["after"], inproc["before"],
                                                         strict=False)]
    real_speedup = [b / a for a, b in zip(real["after"], real["before"], strict=False)]

    def per_push(r: dict[str, Any]) -> str:
        return ", ".join(f"{d}/{p}" for d, p in zip(r["delivered"], r["parts"], strict=True))

    t2 = table(["reporter", "parts delivered / parts, per push", "all parts every push",
                "push takes, ms median (max)"],
               [[label, per_push(r), "yes" if r["delivered"] == r["parts"] else "**no**",
                 f"{spread([s * 1000 for s in r['seconds']]).median:.0f} "
                 f"({max(r['seconds']) * 1000:.0f})"]
                for label, r in (("paced (docs/protocol.md)", paced),
                                 ("pacing off (a part given up at once)", unpaced))])
    t3 = _per_row_table(per_row)
    after = spread([r["ingest"] / n * 1e6 for r in inproc["after"]])
    real_after = spread([v / n * 1e6 for v in real["after"]])
    notes = [
        f"{n} snapshots of {len(data[0]):,} bytes each per round; CPU time (user + system) "
        f"of the whole run divided by the snapshots; median (range) over rounds.",
        "CPU time per snapshot grows with the machine's load (caches and cores shared with "
        "other work); `÷ json.loads`, the decoder's cost over parsing the same bytes with the "
        "standard library, is the figure that carries over between machines.",
    ]
    if have_before:
        notes.append(f"In-process ingest is ×{spread(speedup).text(2)} faster than before, the "
                     f"real process ×{spread(real_speedup).text(2)} (receiving included: "
                     f"`recv_into` one reusable buffer instead of a 64 KiB allocation per "
                     f"datagram).")
    return Section(
        key="ingest",
        title="9. Ingest CPU per snapshot, and split snapshots delivered",
        intro="\n".join("- " + " ".join(item.split()) for item in
                        __doc__.split("\n\n", 1)[1].strip().removeprefix("- ").split("\n- ")),
        machine=machine, command=command, tables=[t1, t3, t2], notes=notes,
        targets=[
            ("ingest CPU per 8-method snapshot <= 100 µs", f"{after.text(1)} µs in-process, "
             f"{real_after.text(1)} µs in a real sidecar process",
             after.median <= 100 and real_after.median <= 100),
            ("parts delivered for a 10-part snapshot: all, every push",
             f"{per_push(paced)} (pacing off: {per_push(unpaced)})",
             paced["delivered"] == paced["parts"]),
        ])


def _per_row_table(per_row: dict[str, Any]) -> str:
    """The per-row streams: CPU per datagram (per part of the 2 000-method snapshot: the median
    and the largest over the parts of the pushes after the first), json.loads alone, and their
    ratio."""
    got, n, rows = per_row["got"], per_row["n"], []
    labels = {"8": "8 methods, benchmark stream (as above)",
              "fine": f"8 methods as the reporter sends them, fine counts (up to "
                      f"{per_row['bytes']['fine']:,} B)",
              "2000": f"one part of a 2 000-method snapshot ({per_row['bytes']['2000']:,} B, "
                      f"{per_row['rows']} rows)"}
    codes = {"before": f"before (`{SESSION_BEFORE}`)", "after": "after (this tree)"}
    for name, label in labels.items():
        for tree, runs in got[name].items():
            if name == "2000":
                each = [r["ingest"] for r in runs]
                ingest = (f"{spread([statistics.median(e) * 1e3 for e in each]).text(2)} ms, "
                          f"largest {max(max(e) for e in each) * 1e3:.2f} ms")
                loads = spread([statistics.median(r["loads"]) * 1e3 for r in runs]).text(2)
                ratio = spread([statistics.median(r["ingest"]) / statistics.median(r["loads"])
                                for r in runs]).text(2)
                loads += " ms"
            else:
                ingest = spread([r["ingest"] / n[name] * 1e6 for r in runs]).text(1) + " µs"
                loads = spread([r["loads"] / n[name] * 1e6 for r in runs]).text(1) + " µs"
                ratio = spread([r["ingest"] / r["loads"] for r in runs]).text(2)
            rows.append([label, codes[tree], loads, ingest, f"×{ratio}"])
    return table(["stream", "code", "json.loads alone", "decode + apply in-process",
                  "÷ json.loads"], rows, right=[2, 3, 4])
