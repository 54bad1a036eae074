#!/usr/bin/env bash
# Every check CI runs: formatting, the MSRV (ops/check-msrv.sh), lints, the API docs (no
# rustdoc warnings: broken links, undocumented public items), and the whole test suite
# (unit + integration tests against real redis-server processes the tests start).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null || ! command -v curl >/dev/null || ! command -v promtool >/dev/null || ! command -v openssl >/dev/null; then
  echo "test: redis-server, curl or promtool not found; installing Debian's redis-server, redis-tools, curl and prometheus (for promtool)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server redis-tools curl prometheus openssl
fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "test: chromium or chromedriver not found; installing Debian's chromium and chromium-driver (the dashboard's browser tests)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver
fi

if ! command -v python3 >/dev/null; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3
fi

# The OpenAPI test's tools (openapi-spec-validator, schemathesis) from PyPI into target/; the
# test installs them itself when missing, this makes a failed install visible up front.
ops/openapi-tools.sh

cargo fmt --all -- --check
ops/check-msrv.sh
cargo clippy --locked --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked
cargo test --locked
