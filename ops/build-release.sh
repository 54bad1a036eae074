#!/usr/bin/env bash
# Release artifacts in target/dist/ (see README "Packaging"):
#   weir                     stripped binary, with a .gnu_debuglink to weir.debug
#   weir.debug               its debug info (symbols back for a crash: keep it beside weir)
#   weir-<version>-<arch>.tar.gz   binary, config, schemas, units, completions, man pages, ops files
#   weir_<version>-1_<arch>.deb    the Debian package (cargo-deb), and weir-dbgsym_….ddeb
#   completions/, man/, systemd/   generated from the CLI definition and ops/systemd
# Usage: ops/build-release.sh [--no-deb]
# SOURCE_DATE_EPOCH defaults to the last commit's time, so `weir --version` and the archives
# carry the same date on every build of one commit.
set -euo pipefail
cd "$(dirname "$0")/.."

deb=1
[[ "${1:-}" == "--no-deb" ]] && deb=0

export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
started=$(date +%s)

cargo build --release --locked --bin weir
release="${CARGO_TARGET_DIR:-target}/release/weir"
dist=target/dist
rm -rf "$dist"
mkdir -p "$dist"/{completions,man,systemd}

# Split the debug info off, not thrown away: weir.debug holds it, weir names it by a
# debuglink (gdb and eu-stack find it beside the binary or under /usr/lib/debug).
objcopy --only-keep-debug "$release" "$dist/weir.debug"
objcopy --strip-debug --strip-unneeded "$release" "$dist/weir"
(cd "$dist" && objcopy --add-gnu-debuglink=weir.debug weir)
chmod 755 "$dist/weir"

"$dist/weir" completions bash >"$dist/completions/weir.bash"
"$dist/weir" completions zsh >"$dist/completions/_weir"
"$dist/weir" completions fish >"$dist/completions/weir.fish"
"$dist/weir" man "$dist/man" >/dev/null
gzip -9n "$dist"/man/*.1

# The packaged units are ops/systemd's, with the binary where the package puts it.
for unit in weir.service weir@.service; do
    sed -e 's|/usr/local/bin/weir|/usr/bin/weir|g' \
        -e 's|^Documentation=.*|Documentation=man:weir(1) file:///usr/share/doc/weir/README.md|' \
        -e 's|^# Install: copy the binary.*|# Installed by the weir package: edit /etc/weir/streams.toml (and /etc/weir/weir.env),|' \
        -e 's|^# then `systemctl enable --now weir`.|# check it with `weir check -c /etc/weir/streams.toml`, then `systemctl enable --now weir`.|' \
        "ops/systemd/$unit" >"$dist/systemd/$unit"
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(uname -m)
name="weir-$version-$arch-linux"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name"
cp -r "$dist/weir" streams.toml schemas "$dist/completions" "$dist/man" "$dist/systemd" \
    README.md ops/RUNBOOK.md ops/prometheus ops/grafana ops/redis "$stage/$name/"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    -C "$stage" -czf "$dist/$name.tar.gz" "$name"

if [[ $deb == 1 ]]; then
    if ! cargo deb --version >/dev/null 2>&1; then
        echo "installing cargo-deb (cargo install cargo-deb --locked)…" >&2
        cargo install cargo-deb --locked
    fi
    cargo deb --no-build --locked --dbgsym --output "$dist/"
fi

size() { stat -c %s "$1" | awk -v f="$1" '{ printf "%-48s %6.1f MB\n", f, $1 / 1048576 }'; }
echo
size "$release"
for f in "$dist/weir" "$dist/weir.debug" "$dist"/*.tar.gz "$dist"/*.deb "$dist"/*.ddeb; do
    [[ -e "$f" ]] && size "$f"
done
echo "took $(($(date +%s) - started)) s"
