"""The demo Oracle's control endpoint: a tiny JSON API on localhost to turn the knobs at run time.

::

    GET  /knobs           current faults, baseline and scenario
    POST /knobs  {json}   patch them: {"health": "degraded"}, {"error_rate": {"GetReading": 0.2}}
    POST /reset           back to the start-up settings

It binds 127.0.0.1 only (``kubectl port-forward`` reaches it too): it changes what the service
does, so it must not face the network. A stdlib ``http.server`` in a thread, because the demo
Oracle is a thread-pool grpcio server with no event loop.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sidecar.demo.knobs import KnobError, Knobs

__all__ = ["ControlServer"]

log = logging.getLogger("nps.oracle.control")
_MAX_BODY = 64 * 1024
_HELP = {
    "endpoints": {
        "GET /knobs": "current faults, baseline and scenario",
        "POST /knobs": "patch knobs with a JSON object; keys: error_rate, error_code, latency, "
        "health, failing_check, scenario, phase_seconds",
        "POST /reset": "back to the start-up settings",
    },
    "examples": [
        {"health": "degraded"},
        {"error_rate": {"GetReading": 0.2, "*": 0.05}, "error_code": "UNAVAILABLE"},
        {"latency": {"*": "12s..15s@0.1"}},
        {"scenario": "cycle", "phase_seconds": 60},
        {"error_rate": {}, "latency": {}, "health": "healthy", "scenario": "off"},
    ],
}


class ControlServer:
    """Serves the control API for ``knobs`` on ``host:port`` (port 0: any free port)."""

    def __init__(self, knobs: Knobs, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = type("Handler", (_Handler,), {"knobs": knobs})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.1,), name="oracle-control", daemon=True
        )

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    knobs: Knobs
    server_version = "oracle-demo-control"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path in ("/", "/help"):
            self._reply(HTTPStatus.OK, _HELP)
        elif self.path == "/knobs":
            self._reply(HTTPStatus.OK, self.knobs.state())
        else:
            self._not_found()

    def do_POST(self) -> None:
        if self.path not in ("/knobs", "/reset"):
            self._not_found()
            return
        try:
            patch = self._json_body()
            if self.path == "/reset":
                state = self.knobs.reset()
            else:
                if not isinstance(patch, dict):
                    raise KnobError("the body must be a JSON object of knobs")
                state = self.knobs.update(patch)
        except KnobError as err:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": str(err)})
            return
        self._reply(HTTPStatus.OK, state)

    do_PUT = do_PATCH = do_POST

    def _json_body(self) -> Any:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise KnobError("bad Content-Length") from None
        if length > _MAX_BODY:
            raise KnobError(f"the body is larger than {_MAX_BODY} bytes")
        raw = self.rfile.read(length) if length > 0 else b""
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise KnobError(f"the body is not JSON: {err}") from None

    def _not_found(self) -> None:
        self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {self.command} "
                                                    f"{self.path}", **_HELP})

    def _reply(self, status: HTTPStatus, body: Any) -> None:
        data = json.dumps(body, indent=2).encode() + b"\n"
        if status >= HTTPStatus.BAD_REQUEST:
            self.close_connection = True  # a body we did not read must not become a request
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("control %s", format % args)
