"""Log files under ORACLE_LOG_DIR: one pair per process role, safe when processes share one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sidecar.logs import log_files
from tests.conftest import SidecarProcess, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent

WRITER = """
import logging, sys
from sidecar.logs import JsonLogFormatter, SharedRotatingFileHandler
handler = SharedRotatingFileHandler(sys.argv[1], maxBytes=20_000, backupCount=1000)
handler.setFormatter(JsonLogFormatter("oracle"))
log = logging.getLogger("w")
log.addHandler(handler)
log.setLevel(logging.INFO)
for i in range(int(sys.argv[3])):
    log.info("line", extra={"writer": sys.argv[2], "n": i})
"""


def test_each_role_has_its_own_files() -> None:
    """sidecar, dashboard, alerter and the Oracle write different files."""
    names = {service: log_files(service) for service in
             ("oracle-sidecar", "oracle-dashboard", "alerter", "oracle")}
    assert names["oracle-sidecar"] == ("sidecar.log", "sidecar-error.log")
    assert names["oracle"] == ("oracle.log", "oracle-error.log")
    assert len({f for pair in names.values() for f in pair}) == 8


def test_the_sidecar_process_writes_sidecar_log(tmp_path: Path) -> None:
    """A real `serve` with ORACLE_LOG_DIR writes its JSON lines to sidecar.log, nothing else."""
    logs = tmp_path / "logs"
    sc = SidecarProcess(str(tmp_path / "run" / "metrics.sock"), free_port(),
                        env={"ORACLE_LOG_DIR": str(logs)}, log_path=tmp_path / "out.log")
    sc.start()
    try:
        wait_for(lambda: "receiving pushes" in (logs / "sidecar.log").read_text(), 10,
                 message="the sidecar's line in sidecar.log")
    finally:
        assert sc.proc is not None
        sc.proc.terminate()
        sc.proc.wait(20)
    assert sorted(p.name for p in logs.iterdir()) == ["sidecar-error.log", "sidecar.log"]
    assert all(json.loads(line)["service"] == "oracle-sidecar"
               for line in (logs / "sidecar.log").read_text().splitlines())


def test_processes_sharing_one_rotating_file_lose_no_line(tmp_path: Path) -> None:
    """Four processes write one file that rotates ~30 times: every line arrives, whole, once."""
    target = tmp_path / "oracle.log"
    per_writer = 1500
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(w),
                                 str(per_writer)], env=env) for w in range(4)]
    for proc in writers:
        assert proc.wait(120) == 0
    files = [p for p in tmp_path.iterdir() if p.name.startswith("oracle.log")
             and not p.name.endswith(".lock")]
    assert len(files) > 10  # it did rotate, many times
    seen = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    got = sorted((int(d["writer"]), d["n"]) for d in seen)
    assert got == sorted((w, n) for w in range(4) for n in range(per_writer))


def test_configuration_doc_names_the_log_directory_and_every_role_file() -> None:
    """docs/configuration.md documents ORACLE_LOG_DIR and each role's file names."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert "`ORACLE_LOG_DIR`" in text
    for service in ("oracle-sidecar", "oracle-dashboard", "alerter", "oracle"):
        for name in log_files(service):
            assert f"`{name}" in text, name
