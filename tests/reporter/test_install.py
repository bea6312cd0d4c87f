"""The reporter installed alone into an Oracle's environment, the way an Oracle image gets it.

A fresh virtual environment gets the pins of an older Oracle (grpcio 1.62 and protobuf 4.25; and
grpcio 1.50 alone, the oldest the interceptors support) from PyPI, then ``pip install <this
repository>``: nothing is added but the project, nothing is changed, the commands that need an
extra say which in one line, and a grpcio server there with the interceptor is counted exactly
by a sidecar of the full install. pip's cache stays in the test's temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from sidecar.extras import EXTRA_OF
from tests.conftest import SidecarProcess, wait_for
from tests.reliability.conftest import Traffic, Worker, exported

ROOT = Path(__file__).resolve().parents[2]
# An Oracle pinned to older grpcio and protobuf, and the oldest grpcio the interceptors support.
ORACLE_PINS = {"grpcio-1.62-protobuf-4.25": ("grpcio==1.62.*", "protobuf==4.25.*"),
               "grpcio-1.50": ("grpcio==1.50.*",)}


@dataclass
class OracleVenv:
    pins: tuple[str, ...]
    python: str
    bin: Path
    before: list[str]
    after: list[str]
    home: Path


def _run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 400
         ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"{argv}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")}
    env.update(PIP_CACHE_DIR=str(home / "pip-cache"), PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_INPUT="1", PYTHONDONTWRITEBYTECODE="1")
    return env


@pytest.fixture(scope="module", params=list(ORACLE_PINS), ids=list(ORACLE_PINS))
def oracle_venv(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> OracleVenv:
    """A venv with the Oracle's pins, then ``pip install`` of a copy of this repository."""
    pins = ORACLE_PINS[request.param]
    home = tmp_path_factory.mktemp("oracle-venv")
    env = _clean_env(home)
    _run([sys.executable, "-m", "venv", str(home / "venv")], env, home)
    python = str(home / "venv" / "bin" / "python")
    pip = [python, "-m", "pip"]
    _run([*pip, "install", "-q", *pins], env, home)
    before = _run([*pip, "freeze"], env, home).stdout.splitlines()
    # A copy of what a release ships, so that building does not write into the repository.
    source = home / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, source / name)
    shutil.copytree(ROOT / "sidecar", source / "sidecar",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([*pip, "install", "-q", str(source)], env, home)
    after = _run([*pip, "freeze"], env, home).stdout.splitlines()
    return OracleVenv(pins, python, home / "venv" / "bin", before, after, home)


@pytest.mark.slow
def test_pip_install_adds_only_the_project_and_changes_no_pin(oracle_venv: OracleVenv) -> None:
    """`pip install .` beside the Oracle's pinned grpcio (and protobuf) adds only itself."""
    for pin in oracle_venv.pins:
        assert any(line.startswith(pin.rstrip("*")) for line in oracle_venv.before), pin
    added = sorted(set(oracle_venv.after) - set(oracle_venv.before))
    removed = sorted(set(oracle_venv.before) - set(oracle_venv.after))
    assert removed == []
    assert len(added) == 1 and added[0].startswith("oracle-sidecar"), added


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(EXTRA_OF))
def test_command_without_its_extra_names_the_extra_in_one_line(
        oracle_venv: OracleVenv, command: str) -> None:
    """`oracle-sidecar CMD` without its extra: exit code 2 and one line naming the extra."""
    done = subprocess.run([str(oracle_venv.bin / "oracle-sidecar"), command],
                          env=_clean_env(oracle_venv.home), cwd=oracle_venv.home,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"pip install 'oracle-sidecar[{EXTRA_OF[command]}]'" in lines[0]
    assert lines[0].startswith(f"oracle-sidecar {command} needs the '{EXTRA_OF[command]}' extra")


@pytest.mark.slow
def test_reporter_imports_neither_protobuf_nor_a_third_party_package(
        oracle_venv: OracleVenv) -> None:
    """The reporter and its interceptors load nothing but grpc (and what grpc loads itself)."""
    code = ("import sys; {imports}; "
            "print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}}"
            " - set(sys.stdlib_module_names))))")
    env = _clean_env(oracle_venv.home)

    def top_level(imports: str) -> set[str]:
        done = _run([oracle_venv.python, "-c", code.format(imports=imports)], env,
                    oracle_venv.home)
        return set(done.stdout.split())

    baseline = top_level("import grpc")
    loaded = top_level("import sidecar.reporter, sidecar.reporter.interceptors")
    assert loaded - baseline == {"sidecar"}, loaded - baseline
    assert "google" not in loaded


@pytest.mark.slow
def test_old_grpcio_server_with_the_interceptor_is_counted_exactly_by_the_full_sidecar(
        oracle_venv: OracleVenv, sidecar: SidecarProcess, tmp_path: Path) -> None:
    """A grpcio 1.62 / 1.50 server in that venv, real calls: the sidecar's totals equal them."""
    worker = Worker(sidecar.socket, tmp_path / "worker.log", python=oracle_venv.python)
    try:
        want = oracle_venv.pins[0].removeprefix("grpcio==").rstrip("*")
        assert worker.grpc_version.startswith(want), worker.grpc_version
        assert worker.reporter_file is not None
        assert Path(worker.reporter_file).is_relative_to(oracle_venv.home / "venv")
        with Traffic([worker.target], limit=60) as traffic:
            wait_for(lambda: sum(traffic.totals().values()) >= 200, 30,
                     message="200 calls to the grpcio 1.62 server")
        truth = traffic.totals()
        assert len({code for _, code in truth}) == 3  # OK, the abort and the exception
        wait_for(lambda: exported(sidecar.metrics()) == truth, 10,
                 message=f"the sidecar to export exactly {dict(truth)}")
    finally:
        worker.kill()
