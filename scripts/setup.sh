#!/usr/bin/env bash
# Creates everything the project needs on a fresh Debian machine with Python 3.11+.
# Safe to run again: each step is skipped when its result is already there.
#   scripts/setup.sh          Python packages only (the sidecar, the demo, the benchmarks)
#   scripts/setup.sh --test   also the Debian packages and Python packages the tests need
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: $PYTHON is older than 3.11; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

# Debian packages the tests drive for real: the Prometheus server with promtool, Chromium, and
# Go with go-grpc-prometheus for the reference server of tests/prometheus/test_goref.py.
if (( want_test )); then
  missing=()
  command -v promtool >/dev/null || missing+=(prometheus)
  [[ -x /usr/bin/chromium ]] || missing+=(chromium)
  command -v go >/dev/null || missing+=(golang-go)
  for pkg in golang-google-grpc-dev golang-github-grpc-ecosystem-go-grpc-prometheus-dev \
             golang-github-prometheus-client-golang-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  # The Node.js reporter of tests/protocol/node and its native unix-dgram package (node-gyp).
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  command -v g++ >/dev/null || missing+=(g++)
  command -v make >/dev/null || missing+=(make)
  if (( ${#missing[@]} )); then
    if [[ $(id -u) -ne 0 ]]; then
      echo "setup: the tests need the Debian packages ${missing[*]}; run as root or install them" >&2
      exit 1
    fi
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d 101 keeps the packages' own services (a system Prometheus on :9090) from
    # starting; a policy file the machine already has is left as it is.
    ours=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
      ours=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if (( ours )); then rm -f /usr/sbin/policy-rc.d; fi
  fi
fi

# The virtual environment, rebuilt only when pyproject.toml changes. The project's own
# dependencies are none (the reporter alone); the extras bring the sidecar, the demo's gRPC
# stubs, the benchmarks' alternatives and, with --test, the test tools.
extras=sidecar,demo,bench
(( want_test )) && extras=sidecar,demo,test,bench
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-$extras
if [[ ! -f $stamp ]]; then
  [[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
  rm -f .venv/.installed-* && touch "$stamp"
fi

# The Node.js reporter's packages, reinstalled when its lock file or the Node version changes;
# node-gyp builds against the installed headers rather than downloading them.
if (( want_test )); then
  node_dir=tests/protocol/node
  stamp=$node_dir/node_modules/.installed-$(cat $node_dir/package-lock.json <(node --version) \
    | sha256sum | cut -c1-16)
  if [[ ! -f $stamp ]]; then
    if [[ -f /usr/include/node/node.h ]]; then export npm_config_nodedir=/usr; fi
    npm ci --prefix "$node_dir" --no-audit --no-fund --no-update-notifier --loglevel=error
    touch "$stamp"
  fi
fi
