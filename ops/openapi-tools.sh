#!/usr/bin/env bash
# Installs the two tools tests/openapi.rs runs against a live engine, from PyPI, into a
# virtualenv under target/ (nothing system-wide): openapi-spec-validator (is the served
# document valid OpenAPI?) and schemathesis (does the engine answer as the document says?).
# Pinned, so a new release cannot turn CI red overnight. Idempotent: quick when present.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/openapi-tools
validator=openapi-spec-validator==0.9.0
schemathesis=schemathesis==4.32.5

if [ -x "$venv/bin/openapi-spec-validator" ] && [ -x "$venv/bin/schemathesis" ] &&
  "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "${schemathesis#*==}"; then
  exit 0
fi
if ! command -v python3 >/dev/null; then
  echo "openapi-tools: python3 not found; install it (Debian: apt-get install python3 python3-venv)" >&2
  exit 1
fi
echo "openapi-tools: installing $validator and $schemathesis into $venv" >&2
if ! python3 -m venv "$venv"; then
  echo "openapi-tools: python3 -m venv failed; install the venv module (Debian: apt-get install python3-venv)" >&2
  exit 1
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$validator" "$schemathesis"
