"""The demo Oracle's control endpoint: a JSON API on localhost that turns the knobs."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from sidecar.demo.control import ControlServer
from sidecar.demo.knobs import Faults, Knobs
from tests.demo.helpers import http


@pytest.fixture
def control() -> Iterator[tuple[Knobs, str]]:
    """A control server on a free localhost port over fresh knobs."""
    knobs = Knobs(Faults(error_rate={"GetReading": 0.1}))
    server = ControlServer(knobs, port=0)
    server.start()
    yield knobs, f"http://127.0.0.1:{server.port}"
    server.close()


def test_get_shows_faults_baseline_and_scenario(control):
    """GET /knobs answers the current state as JSON."""
    _, url = control
    status, body = http("GET", url + "/knobs")
    assert status == 200
    assert body["faults"]["error_rate"] == {"GetReading": 0.1}
    assert body["scenario"]["phases"] == "off"


def test_post_patches_and_reset_restores(control):
    """POST /knobs changes the live knobs at once; POST /reset brings back the start-up ones."""
    knobs, url = control
    status, body = http("POST", url + "/knobs", {"health": "degraded",
                                                  "latency": {"*": "12s..15s@0.1"}})
    assert status == 200
    assert body["faults"]["health"] == "degraded"
    assert knobs.faults.health == "degraded"
    assert str(knobs.faults.latency_for("GetReading")) == "12s..15s@0.1"
    status, body = http("POST", url + "/reset", {})
    assert status == 200
    assert knobs.faults == Faults(error_rate={"GetReading": 0.1})


@pytest.mark.parametrize(("body", "message"), [
    ({"health": "sideways"}, "health must be one of"),
    ({"error_rate": {"GetReading": 2}}, "between 0 and 1"),
    ({"error_code": "OK"}, "not a gRPC error code"),
    ({"scenario": "chaos"}, "not a phase"),
    ([1, 2], "JSON object"),
])
def test_bad_patches_are_400_and_change_nothing(control, body, message):
    """Every refusal is a 400 with a readable reason; the knobs stay as they were."""
    knobs, url = control
    before = knobs.faults
    status, reply = http("POST", url + "/knobs", body)
    assert status == 400
    assert message in reply["error"]
    assert knobs.faults is before


def test_non_json_and_unknown_paths(control):
    """A body that is not JSON is a 400; an unknown path is a JSON 404 listing the endpoints."""
    _, url = control
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=5) as sock:
        sock.sendall(b"POST /knobs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{nope")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.split(b"\r\n", 1)[0].split()[1] == b"400"
    assert b"not JSON" in reply
    status, reply = http("GET", url + "/nothing")
    assert status == 404
    assert "POST /knobs" in reply["endpoints"]


def test_binds_localhost_only(control):
    """The endpoint changes what the service does, so it listens on 127.0.0.1 alone."""
    knobs, _ = control
    server = ControlServer(knobs, port=0)
    try:
        assert server._httpd.server_address[0] == "127.0.0.1"
    finally:
        server.close()
