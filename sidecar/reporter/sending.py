"""Handing a report's datagrams to the sidecar's socket, standard library only.

Never blocks the service: the socket is non-blocking and only the reporter's background thread
ever waits (pacing, below). Whatever goes wrong is counted (``dropped``, ``send_errors``) and
logged once per change of reachability, never raised.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time

__all__ = ["PACING_BUDGET", "Sender"]

log = logging.getLogger("sidecar.reporter")

PACING_BUDGET = 0.5  # seconds a report may wait for the sidecar to drain its queue


class Sender:
    """The datagram socket to the sidecar, and what sending through it has cost."""

    def __init__(self, socket_path: str, interval: float) -> None:
        self.socket_path = socket_path
        self.interval = interval
        self._sock: socket.socket | None = None
        self.reachable: bool | None = None  # whether the last push reached the sidecar
        self.reset()

    def reset(self) -> None:
        """Counters from zero (a new process: a forked child starts its own)."""
        self.dropped = 0  # datagrams given up
        self.send_errors = 0
        self.sent = 0
        self._next_part = 0  # the part a split report starts with (the first given up)

    def send_paced(self, datagrams: list[bytes]) -> bool:
        """Send the parts of one report; wait out a full queue within the pacing budget.

        A sender's buffer holds only a few 64 KiB datagrams the sidecar has not read yet, so a
        burst of parts would lose the same ones on every push. On EAGAIN/ENOBUFS the same part
        is tried again after 1, 2, 4 ... 50 ms, while the report has waited less than half the
        interval (at most PACING_BUDGET); parts given up count as dropped, and the next report
        starts with the first of them. Only the reporter's background thread ever waits.
        """
        n = len(datagrams)
        first = self._next_part if self._next_part < n else 0
        self._next_part = 0
        deadline = time.monotonic() + min(self.interval / 2, PACING_BUDGET)
        for k in range(n):
            index = (first + k) % n
            delay = 0.001
            while True:
                failure = self._send(datagrams[index])
                if failure is None:
                    break
                if failure in (errno.EAGAIN, errno.ENOBUFS) and \
                        time.monotonic() + delay <= deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
                    continue
                # Given up: this part and every one after it in this report.
                left = n - k
                self.dropped += left
                if failure not in (errno.EAGAIN, errno.ENOBUFS):
                    self.send_errors += left
                if n > 1:
                    self._next_part = index
                self._unreachable(failure)
                return False
        if self.reachable is False:
            log.info("metrics sidecar reachable again at %s", self.socket_path)
        self.reachable = True
        return True

    def _send(self, datagram: bytes) -> int | None:
        """Hand one datagram to the socket; the errno when it failed, else None."""
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
        try:
            self._sock.sendto(datagram, self.socket_path)
        except OSError as err:
            return err.errno or errno.EIO
        self.sent += 1
        return None

    def _unreachable(self, failure: int) -> None:
        if self.reachable is not False:  # log the change, not every failure
            log.warning("metrics sidecar not reachable at %s: %s; counting drops until it "
                        "answers", self.socket_path, os.strerror(failure))
        self.reachable = False

    def close(self) -> None:
        """Close the socket (a later send opens it again)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def after_fork(self) -> None:
        """In a forked child: its own socket and counters."""
        self._sock = None
        self.reset()
