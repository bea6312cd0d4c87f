#!/usr/bin/env bash
# Installs the project in a virtual environment and runs the whole system on this machine:
# the demo Oracle, the sidecar, the dashboard and a gentle load. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/oracle-sidecar demo "$@"
