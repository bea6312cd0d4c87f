"""A receiver for one-datagram-per-RPC, built the way this project's sidecar receives.

``python -m benchmarks._statsd_receiver --socket PATH``: an asyncio datagram endpoint on a Unix
socket (``transport.max_size`` lowered to 64 KiB + 1, as the sidecar does), parsing each statsd
line ``name:value|h`` into a count and a sum per name. Prints ``ready`` once bound; on SIGTERM
prints ``{"datagrams": N, "bad": M}`` and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
from typing import Any


class Aggregate(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams = 0
        self.bad = 0
        self.counts: dict[str, int] = {}
        self.sums: dict[str, float] = {}

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams += 1
        name, _, rest = data.decode().partition(":")
        value, _, _kind = rest.partition("|")
        try:
            v = float(value)
        except ValueError:
            self.bad += 1
            return
        self.counts[name] = self.counts.get(name, 0) + 1
        self.sums[name] = self.sums.get(name, 0.0) + v


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(args.socket)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    agg = Aggregate()
    transport, _ = await loop.create_datagram_endpoint(lambda: agg, sock=sock)
    transport.max_size = 64 * 1024 + 1  # type: ignore[attr-defined]
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    transport.close()
    print(json.dumps({"datagrams": agg.datagrams, "bad": agg.bad}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
