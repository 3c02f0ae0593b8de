#!/usr/bin/env bash
# Validates FHIR JSON files with fhir.resources (PyPI), installed once into target/fhir-venv.
#
#   bash tests/fhir-valid.sh FILE...    # exit 0 when every file is a valid resource
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=8.3.0
VENV=target/fhir-venv
log() { printf '[tests/fhir-valid] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

mkdir -p target
# tests run in parallel: one of them installs, the others wait for it
exec 9>target/fhir-venv.lock
flock 9
if ! "$VENV/bin/python" -c "import fhir.resources, sys; sys.exit(fhir.resources.__version__ != '$VERSION')" 2>/dev/null; then
  log "installing fhir.resources $VERSION into $VENV"
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian and Ubuntu ship venv's ensurepip separately
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q "fhir.resources==$VERSION" >&2
fi
flock -u 9
exec "$VENV/bin/python" tests/fhir_valid.py "$@"
