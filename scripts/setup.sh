#!/usr/bin/env bash
# Create .venv at the repository root and install sparkify into it (editable, with dev extras).
# Checks for Java 17 or 21 (Spark 4 needs one) and says exactly how to get one if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "setup: Python >= 3.11 is required (PySpark 4); found: $("$PYTHON" --version 2>&1)." >&2
  echo "       Set PYTHON=/path/to/python3.11 and run again." >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.sparkify-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing sparkify and its dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi

# Java 17 or 21 for Spark 4.
if ! .venv/bin/python -c 'from sparkify.spark import find_java; print("setup: Java found at", find_java())'; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing openjdk-17-jre-headless with apt-get"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless
    .venv/bin/python -c 'from sparkify.spark import find_java; print("setup: Java found at", find_java())'
  else
    exit 1
  fi
fi
