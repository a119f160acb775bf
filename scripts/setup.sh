#!/usr/bin/env bash
# Set up what scorehouse needs on a fresh machine: Java 17+, redis-server, chromium
# (for the UI test) and a virtualenv (.venv) with the pinned dependencies. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else return 1; fi; }
apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1; }
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
  echo "setup: installing a Java 17 runtime (Spark needs Java 17+)"
  apt_install openjdk-17-jre-headless || { echo "setup: install Java 17+ (e.g. apt-get install openjdk-17-jre-headless) and rerun" >&2; exit 1; }
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "setup: installing redis-server (Debian package)"
  apt_install redis-server || { echo "setup: install redis-server 7 (apt-get install redis-server) and rerun" >&2; exit 1; }
  # The package starts a system service on 6379; the project runs its own servers.
  (as_root systemctl disable --now redis-server >/dev/null 2>&1 || as_root service redis-server stop >/dev/null 2>&1) || true
fi

# Headless Chromium renders the Prefect UI in tests/e2e/test_prefect_deployments.py.
if ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing chromium (Debian package; the deployment e2e test screenshots the Prefect UI)"
  apt_install chromium || echo "setup: could not install chromium (apt-get install chromium); the Prefect UI e2e test needs it" >&2
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.scorehouse-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "setup: installing pinned dependencies into .venv (first time: several minutes)"
  .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
  .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev,btyd]'
  touch "$stamp"
fi
echo "setup: ready (java $(java_major), $(redis-server --version | cut -d' ' -f3), $(.venv/bin/python --version))"
