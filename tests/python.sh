#!/usr/bin/env bash
# Runs one of the tests' Python scripts in target/test-venv, a virtual environment made (once,
# and again when tests/requirements.txt changes) with the independent tools of that file (PyPI).
#
#   bash tests/python.sh tests/SCRIPT.py ARGS...
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/test-venv
log() { printf '[tests/python] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

mkdir -p target
# tests run in parallel: one of them installs, the others wait for it
exec 9>target/test-venv.lock
flock 9
want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$want" ]; then
  log "installing tests/requirements.txt into $VENV"
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian and Ubuntu ship venv's ensurepip separately
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q -r tests/requirements.txt >&2
  echo "$want" > "$VENV/.requirements"
fi
flock -u 9
exec "$VENV/bin/python" "$@"
