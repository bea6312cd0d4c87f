"""The README's tour works as written: commands a fresh shell can find, and the JSON habit of
the original product pointed at what answers JSON here."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import SidecarProcess, http_get

ROOT = Path(__file__).resolve().parent.parent


def shell_lines(doc: Path) -> list[str]:
    """The command lines of the ``sh`` code blocks of ``doc``."""
    blocks = re.findall(r"```sh\n(.*?)```", doc.read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_tour_commands_run_without_an_activated_venv() -> None:
    """Every oracle-sidecar command in the README's shell blocks is .venv/bin/oracle-sidecar,
    and the tour says once how to activate instead."""
    lines = shell_lines(ROOT / "README.md")
    called = [line for line in lines if "oracle-sidecar " in line]
    assert called, "the tour shows the command line"
    assert all(line.startswith(".venv/bin/oracle-sidecar ") for line in called), called
    tour = (ROOT / "README.md").read_text().split("## A five-minute tour", 1)[1]
    assert ". .venv/bin/activate" in tour.split("1. ", 1)[0]


def test_coming_from_the_json_metrics(sidecar: SidecarProcess) -> None:
    """README and docs/metrics.md say where the JSON went; the URLs they give answer JSON."""
    for doc in (ROOT / "README.md", ROOT / "docs" / "metrics.md"):
        text = doc.read_text()
        assert "Coming from the JSON `/metrics`" in text, doc
        assert "metrics?format=json" in text and "/api/v1/snapshot" in text, doc
    for path in ("/metrics?format=json", "/api/v1/snapshot"):
        status, body, _ = http_get(sidecar.url + path)
        assert status == 200 and "health" in json.loads(body)
    status, body, _ = http_get(sidecar.url + "/metrics")
    assert status == 200 and body.startswith("#")  # Prometheus text stays the default
