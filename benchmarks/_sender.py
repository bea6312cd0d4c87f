"""Load for the delivery and sidecar benchmarks, in its own process.

- ``per-rpc --socket P --rate R --duration S``: records R RPC/s and sends one datagram per RPC
  (a statsd line, non-blocking, connected socket), counting sends refused with EAGAIN.
- ``snapshot --socket P --rate R --duration S``: records R RPC/s with the real reporter, which
  pushes a cumulative snapshot every second and once more at close.
- ``blast --socket P --sources K --methods M --duration S``: K reporting processes' worth of
  valid snapshots (M methods each), sent as fast as the receiver takes them (blocking sends:
  the kernel makes the sender wait when the receiver's queue is full).

Each prints one JSON line of what it did. RPCs are paced to the offered rate by catching up
every ~0.2 ms, so they come in small bursts, as RPCs finishing on many threads do.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import time
from typing import Any

from sidecar import protocol
from sidecar.demo import METHODS, SERVICE, full_method

_perf = time.perf_counter


def _paced(rate: float, duration: float, record: Any) -> tuple[int, float]:
    """Call ``record(i)`` ``rate`` times a second for ``duration`` seconds; (calls, seconds)."""
    start = _perf()
    end = start + duration
    done = 0
    while True:
        now = _perf()
        if now >= end:
            break
        due = int((now - start) * rate)
        while done < due:
            record(done)
            done += 1
        time.sleep(0.0002)
    return done, _perf() - start


def per_rpc(args: argparse.Namespace) -> dict[str, Any]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.connect(args.socket)
    sock.setblocking(False)
    names = [f"grpc.{SERVICE}.{m}.OK:" for m in METHODS]
    counts = {"sent": 0, "eagain": 0, "errors": 0}
    send = sock.send

    def record(i: int) -> None:
        t0 = _perf()
        elapsed = _perf() - t0
        try:
            send(f"{names[i & 7]}{elapsed:.9f}|h".encode())
            counts["sent"] += 1
        except BlockingIOError:
            counts["eagain"] += 1
        except OSError:
            counts["errors"] += 1

    cpu0 = time.process_time()
    rpcs, seconds = _paced(args.rate, args.duration, record)
    cpu = time.process_time() - cpu0
    sock.close()
    return {"rpcs": rpcs, "seconds": seconds, "cpu": cpu, **counts}


def snapshot(args: argparse.Namespace) -> dict[str, Any]:
    from sidecar.reporter import Reporter

    rep = Reporter(SERVICE, "bench", [full_method(m) for m in METHODS], args.socket, 1.0)
    rep.start()
    full = [full_method(m) for m in METHODS]
    series_of, observe = rep.series, rep.observe

    def record(i: int) -> None:
        s = series_of(full[i & 7])
        if s is None:
            return
        s.started += 1
        t0 = _perf()
        observe(s, _perf() - t0)

    cpu0 = time.process_time()
    rpcs, seconds = _paced(args.rate, args.duration, record)
    rep.close()
    cpu = time.process_time() - cpu0
    return {"rpcs": rpcs, "seconds": seconds, "cpu": cpu, "sent": rep.sent,
            "dropped": rep.dropped, "errors": rep.send_errors}


def _templates(sources: int, methods: int) -> list[bytes]:
    """One valid snapshot per source, with a placeholder sequence number to fill in."""
    rng = random.Random(1)
    buckets = protocol.DEFAULT_BUCKETS
    started = time.time()
    out = []
    for k in range(sources):
        rows = []
        for j in range(methods):
            name = METHODS[j] if methods == len(METHODS) else f"Method{j:04d}"
            ok = rng.randint(1000, 100000)
            hist = [0] * (len(buckets) + 1)
            hist[rng.randint(0, 5)] = ok
            rows.append({"service": SERVICE, "method": name, "type": "unary", "started": ok,
                         "codes": {"OK": ok}, "hist": hist, "sum": ok * 0.004, "max": 0.3})
        parts = protocol.encode(
            source={"id": f"{os.getpid():x}{k:08x}", "pid": 100000 + k, "started": started,
                    "service": SERVICE, "version": "bench"},
            seq=999_999_937, time=started, buckets=buckets, rows=rows, health="healthy",
            checks={}, reporter={"dropped": 0, "send_errors": 0, "overflow": 0})
        if len(parts) != 1:
            raise SystemExit(f"{methods} methods do not fit one datagram")
        out.append(parts[0])
    return out


def blast(args: argparse.Namespace) -> dict[str, Any]:
    templates = [t.split(b'"seq":999999937', 1) for t in _templates(args.sources, args.methods)]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.connect(args.socket)
    sock.settimeout(1.0)
    sent = timeouts = 0
    seq = 1
    start = _perf()
    end = start + args.duration
    while _perf() < end:
        for head, tail in templates:
            try:
                sock.send(b'%s"seq":%d%s' % (head, seq, tail))
                sent += 1
            except TimeoutError:
                timeouts += 1
            if sent & 63 == 0 and _perf() >= end:
                break
        seq += 1
    seconds = _perf() - start
    sock.close()
    return {"sent": sent, "seconds": seconds, "timeouts": timeouts,
            "bytes": len(templates[0][0]) + len(templates[0][1]) + 12}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["per-rpc", "snapshot", "blast"])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--sources", type=int, default=1)
    parser.add_argument("--methods", type=int, default=8)
    args = parser.parse_args()
    result = {"per-rpc": per_rpc, "snapshot": snapshot, "blast": blast}[args.mode](args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
