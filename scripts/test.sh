#!/usr/bin/env bash
# Installs everything the tests need (Debian packages, virtual environment) and runs them all.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/test_store.py -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export PYTHONDONTWRITEBYTECODE=1
.venv/bin/ruff check sidecar tests benchmarks prometheus scripts
.venv/bin/mypy sidecar  # strict (pyproject.toml [tool.mypy])
exec .venv/bin/pytest "$@"
