#!/usr/bin/env bash
# Consume benchmark: N entries pre-filled, one pool, `noop` handler, concurrency C.
# Starts its own redis-server (no persistence) on a free port, measures the same-session
# reference `redis-benchmark XADD -P16`, then times `weir run` draining the stream, and
# prints entries/s, the ratio to the reference, and Redis CPU per entry (INFO commandstats).
#   benches/consume.sh [N=400000] [CONCURRENCY=64] [RUNS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-400000}; C=${2:-64}; RUNS=${3:-3}
cargo build --release --locked --quiet
dir=$(mktemp -d); port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" --daemonize yes --logfile "$dir/redis.log"
pid=""
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
cat > "$dir/streams.toml" <<TOML
[redis]
url = "redis://127.0.0.1:$port/0"
[stream]
name = "bench"
max_len = 100000000
[http]
listen = "127.0.0.1:0"
[[pools]]
name = "p"
concurrency = $C
types = ["*"]
handler = { kind = "noop" }
TOML
ref=$(redis-benchmark -p "$port" -q -n "$N" -P 16 XADD ref '*' type noop.x data '{"i":1}' 2>/dev/null | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1)
redis-cli -p "$port" DEL ref >/dev/null
echo "reference redis-benchmark XADD -P16: ${ref} entries/s"
for run in $(seq 1 "$RUNS"); do
  redis-cli -p "$port" DEL bench >/dev/null
  redis-benchmark -p "$port" -q -n "$N" -P 16 XADD bench '*' type noop.x data '{"i":1}' >/dev/null 2>&1
  redis-cli -p "$port" CONFIG RESETSTAT >/dev/null
  start=$(date +%s.%N)
  WEIR_LOG=warn ./target/release/weir -c "$dir/streams.toml" run 2>/dev/null & pid=$!
  while :; do
    info=$(redis-cli -p "$port" XINFO GROUPS bench 2>/dev/null || true)
    lag=$(echo "$info" | grep -A1 '^lag$' | tail -1 || true); pending=$(echo "$info" | grep -A1 '^pending$' | tail -1 || true)
    [ "$lag" = "0" ] && [ "$pending" = "0" ] && break
    sleep 0.02
  done
  end=$(date +%s.%N)
  kill -TERM "$pid"; wait "$pid" || true
  usec=$(redis-cli -p "$port" INFO commandstats | grep -E 'cmdstat_(xreadgroup|xack|xclaim|xautoclaim|xpending):' | sed 's/.*usec=\([0-9]*\),.*/\1/' | paste -sd+ | bc)
  python3 - "$N" "$start" "$end" "$ref" "$usec" "$run" <<'PY'
import sys
n, start, end, ref, usec, run = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
rate = n / (end - start)
print(f"run {run}: consumed {n} in {end-start:.2f}s = {rate:,.0f}/s  ratio {rate/ref:.2f}  redis {usec/n:.2f} us/entry")
PY
  redis-cli -p "$port" XGROUP DESTROY bench p >/dev/null
done
