#!/usr/bin/env bash
# Checks that Cargo.toml's rust-version (the MSRV) is honest, as far as this toolchain can tell:
#  (a) it is not below the rust-version of any package in the locked dependency tree, nor below
#      the language features weir uses (LANGUAGE_FLOOR);
#  (b) clippy's `incompatible_msrv` lint, which flags std APIs newer than rust-version, is not
#      allowed anywhere and no clippy.toml `msrv` overrides rust-version.
# Building on the MSRV toolchain itself would prove more, but CI has one toolchain: rustc only
# rejects let-chains on a toolchain older than 1.88, never on a newer one with a lower
# rust-version, which is why the floor below is written down here.
set -euo pipefail
cd "$(dirname "$0")/.."

# let-chains (`if let … && …`, edition 2024) are stable since 1.88.
LANGUAGE_FLOOR=1.88

fail() { echo "check-msrv: $*" >&2; exit 1; }
command -v python3 >/dev/null || fail "python3 is needed to read cargo metadata"

# Prints why the MSRV is wrong and exits 1, or says what it checked.
read -r -d '' check_versions <<'PY' || true
import json, os, sys

def version(v):
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
ours = [p for p in meta["packages"] if p["id"] in members]
deps = [p for p in meta["packages"] if p["id"] not in members and p.get("rust_version")]
need = max(deps, key=lambda p: version(p["rust_version"]), default=None)
floor = os.environ["LANGUAGE_FLOOR"]
bad = False
for p in ours:
    msrv = p.get("rust_version")
    if not msrv:
        print(f"check-msrv: {p['name']} has no rust-version in Cargo.toml", file=sys.stderr)
        bad = True
        continue
    if version(msrv) < version(floor):
        print(f"check-msrv: {p['name']} rust-version {msrv} is below {floor}, which the code needs (let-chains)", file=sys.stderr)
        bad = True
    if need and version(msrv) < version(need["rust_version"]):
        print(f"check-msrv: {p['name']} rust-version {msrv} is below {need['name']} {need['version']}, which needs {need['rust_version']}", file=sys.stderr)
        bad = True
    if not bad:
        print(f"check-msrv: {p['name']} rust-version {msrv} >= every dependency (highest: {need['name'] if need else 'none'} {need['rust_version'] if need else ''}) and the language floor {floor}")
sys.exit(1 if bad else 0)
PY
cargo metadata --locked --format-version 1 | LANGUAGE_FLOOR="$LANGUAGE_FLOOR" python3 -c "$check_versions"

# (b) The lint must stay on: -D warnings in CI turns it into an error.
allowed=$(grep -rnE '(allow|expect)\s*\(.*(incompatible_msrv|clippy::suspicious)|(incompatible_msrv|suspicious)\s*=\s*("allow"|\{[^}]*"allow")' \
  --include='*.rs' --include='*.toml' src tests benches examples Cargo.toml clippy.toml .cargo 2>/dev/null || true)
[ -z "$allowed" ] || fail "clippy::incompatible_msrv must stay on; found:
$allowed"
if grep -qE '^\s*msrv\s*=' clippy.toml 2>/dev/null; then
  fail "clippy.toml sets msrv; leave it out so clippy reads rust-version from Cargo.toml"
fi
