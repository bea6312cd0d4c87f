"""A receiver that drains datagrams and counts them, for the per-RPC datagram alternatives.

``python -m benchmarks._sink --unix PATH ... --udp-port N``: binds each socket, prints
``ready`` once bound, drains them with one blocking thread each until its stdin closes, then
prints ``{"PATH or udp:N": datagrams received, ...}`` as one JSON line. A plain blocking ``recv``
loop is the cheapest receiver Python has, so it drops as little as a receiver can.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading


def _drain(sock: socket.socket, counts: dict[str, int], key: str, stop: threading.Event) -> None:
    sock.settimeout(0.2)
    n = 0
    while not stop.is_set():
        try:
            sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        n += 1
    counts[key] = n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--unix", action="append", default=[])
    parser.add_argument("--udp-port", type=int, action="append", default=[])
    args = parser.parse_args()
    socks: list[tuple[str, socket.socket]] = []
    for path in args.unix:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        s.bind(path)
        socks.append((path, s))
    for port in args.udp_port:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        s.bind(("127.0.0.1", port))
        socks.append((f"udp:{port}", s))
    counts: dict[str, int] = {}
    stop = threading.Event()
    threads = [threading.Thread(target=_drain, args=(s, counts, key, stop), daemon=True)
               for key, s in socks]
    for t in threads:
        t.start()
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    stop.set()
    for t in threads:
        t.join(2.0)
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
