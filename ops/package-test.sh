#!/usr/bin/env bash
# Builds the Debian package (ops/build-release.sh: a release build, ~6-8 min on 2 cores
# from scratch) and checks it on this machine as an operator would: dpkg -i, the files in
# their places, `weir --version`, `weir check` (as the weir user) against a redis-server of
# its own through the installed config, an edited config kept across a reinstall, remove
# keeping the config and the user, purge removing both. Needs root and a machine without a
# weir package of its own (it is removed at the end). Not part of `cargo test`: too slow.
# Usage: ops/package-test.sh [--no-build]   (--no-build: use target/dist/weir_*.deb as it is)
set -euo pipefail
cd "$(dirname "$0")/.."

[[ $(id -u) == 0 ]] || { echo "package-test: needs root (dpkg -i)" >&2; exit 2; }
if dpkg -s weir >/dev/null 2>&1; then
    echo "package-test: a weir package is already installed; remove it first (dpkg --purge weir)" >&2
    exit 2
fi
[[ "${1:-}" == "--no-build" ]] || ops/build-release.sh
deb=$(ls target/dist/weir_*.deb | head -1)

tmp=$(mktemp -d)
redis_pid=
cleanup() {
    [[ -n "$redis_pid" ]] && kill "$redis_pid" 2>/dev/null || true
    dpkg --purge weir >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "package-test: FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }

step "dpkg -i $deb"
dpkg -i "$deb"
for f in /usr/bin/weir /etc/weir/streams.toml /etc/weir/schemas/envelope.schema.json \
    /usr/lib/systemd/system/weir.service /usr/lib/systemd/system/weir@.service \
    /usr/share/weir/prometheus/weir-alerts.yml /usr/share/weir/grafana/weir-dashboard.json \
    /usr/share/bash-completion/completions/weir /usr/share/zsh/vendor-completions/_weir \
    /usr/share/fish/vendor_completions.d/weir.fish /usr/share/man/man1/weir.1.gz \
    /usr/share/man/man1/weir-check.1.gz; do
    [[ -e "$f" ]] || fail "$f is not installed"
done
grep -qx /etc/weir/streams.toml /var/lib/dpkg/info/weir.conffiles || fail "streams.toml is not a conffile"
getent passwd weir >/dev/null || fail "no weir user"
grep -q '^ExecStart=/usr/bin/weir run -c /etc/weir/streams.toml' /usr/lib/systemd/system/weir.service \
    || fail "the unit does not run /usr/bin/weir"
grep -q '^User=weir' /usr/lib/systemd/system/weir.service || fail "the unit does not run as weir"
file -L /usr/bin/weir | grep -q 'stripped' && ! file -L /usr/bin/weir | grep -q 'not stripped' \
    || fail "/usr/bin/weir is not stripped"

step "weir --version"
weir --version | tee "$tmp/version"
grep -Eq '^weir [0-9.]+ \(commit [0-9a-f]{7,}, built [0-9]{4}-[0-9]{2}-[0-9]{2}\)$' "$tmp/version" \
    || fail "--version shows no commit"

step "completions load in bash"
bash -c 'source /usr/share/bash-completion/completions/weir && complete -p weir' | grep -q _weir \
    || fail "bash completions do not load"

step "weir check (as the weir user) with the installed config against a redis-server"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly yes --dir "$tmp" \
    >"$tmp/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
runuser -u weir -- env WEIR_REDIS__URL="redis://127.0.0.1:$port/0" \
    weir check -c /etc/weir/streams.toml | tee "$tmp/check" || fail "weir check failed"
grep -q '^ok   acl:' "$tmp/check" || fail "no acl finding"
redis-cli -p "$port" CONFIG SET appendonly no >/dev/null
if runuser -u weir -- env WEIR_REDIS__URL="redis://127.0.0.1:$port/0" \
    weir check -c /etc/weir/streams.toml >"$tmp/check2"; then
    fail "weir check passed with AOF off"
fi
grep -q '^FAIL aof:' "$tmp/check2" || fail "AOF off not named"

step "an edited config survives a reinstall (conffile)"
echo "# edited by the operator" >>/etc/weir/streams.toml
dpkg -i "$deb" >/dev/null
grep -q '^# edited by the operator' /etc/weir/streams.toml || fail "the edited config was replaced"

step "dpkg -r keeps the config and the user"
dpkg -r weir >/dev/null
[[ ! -e /usr/bin/weir ]] || fail "/usr/bin/weir left after remove"
[[ -e /etc/weir/streams.toml ]] || fail "remove deleted the config"
getent passwd weir >/dev/null || fail "remove deleted the user"

step "dpkg --purge removes the config and the user"
dpkg --purge weir >/dev/null
[[ ! -e /etc/weir ]] || fail "/etc/weir left after purge"
! getent passwd weir >/dev/null || fail "the weir user is left after purge"
! getent group weir >/dev/null || fail "the weir group is left after purge"

echo "package-test: ok ($deb)"
