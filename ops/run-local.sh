#!/usr/bin/env bash
# Runs weir on ./streams.toml against Redis on 127.0.0.1:6379. If nothing answers there it
# starts a local redis-server (AOF on, appendfsync always, data in ./.redis), installing
# Debian's redis-server first when it is missing. Extra arguments go to `weir run`.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "run-local: redis-server not found; installing Debian's redis-server and redis-tools" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  mkdir -p .redis
  echo "run-local: no Redis on 127.0.0.1:6379; starting one (data and log in ./.redis)" >&2
  redis-server --port 6379 --bind 127.0.0.1 --daemonize yes --dir "$PWD/.redis" \
    --appendonly yes --appendfsync always --logfile "$PWD/.redis/redis.log"
  for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "run-local: redis-server did not start; see .redis/redis.log" >&2; exit 1; }
fi

if [ -n "${WEIR_HTTP__ADMIN_TOKEN:-}" ]; then
  echo "run-local: dashboard at http://127.0.0.1:9464/ (sign in with \$WEIR_HTTP__ADMIN_TOKEN)" >&2
fi

# The first build takes minutes on a small machine: say so, and let cargo show its progress
# (one line per crate) instead of sitting silent; later runs build nothing and start at once.
if [ ! -x target/release/weir ]; then
  echo "run-local: building weir in release mode (first run only: a few minutes on 2 cores; progress below)" >&2
fi
cargo build --release --locked --bin weir
exec target/release/weir run -c streams.toml "$@"
