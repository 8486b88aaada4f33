#!/usr/bin/env bash
# Builds the .deb and .rpm of vigie-agent and vigie-collector.
#
#   packaging/build.sh            -> target/debian/*.deb, target/generate-rpm/*.rpm
#
# Installs cargo-deb, cargo-generate-rpm and cargo-zigbuild (cargo install
# --locked) and zig (the ziglang wheel from PyPI, in a virtualenv under
# ~/.cache/vigie-packaging) only when they are missing (~8 minutes on 2 cores
# the first time), builds the two release binaries once (the release profile
# strips them), then packages them without building again.
#
# The binaries are linked against glibc 2.28 (cargo zigbuild --target
# x86_64-unknown-linux-gnu.2.28), so that the packages run on RHEL 8 and 9,
# Debian 10 and later, Ubuntu 20.04 and later. Linked against this machine's
# glibc (2.36) they would need GLIBC_2.34 and fail to start on RHEL 8.
#
# Environment:
#   CARGO_TARGET_DIR        honoured (default: ./target)
#   VIGIE_PACKAGE_PROFILE   Cargo profile (default: release); CI uses
#                           `package-check`, the release profile without optimizations
#   VIGIE_GLIBC             oldest glibc to run on (default: 2.28), or `native` to
#                           link against this machine's with a plain cargo build
#
# Package metadata: [package.metadata.deb] and [package.metadata.generate-rpm]
# in agent/Cargo.toml and collector/Cargo.toml. Check the result with
# packaging/check.sh.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
export CARGO_TARGET_DIR=$target_dir
profile=${VIGIE_PACKAGE_PROFILE:-release}
glibc=${VIGIE_GLIBC:-2.28}
triple=x86_64-unknown-linux-gnu
zig_version=0.14.1

log() {
    printf '==> %s\n' "$*" >&2
}

ensure_tool() {
    local subcommand=$1 crate=$2
    # The binary itself: `cargo zigbuild --version` is not an option of zigbuild.
    if "cargo-$subcommand" --version >/dev/null 2>&1; then
        log "$crate: $("cargo-$subcommand" --version 2>&1 | head -n 1)"
        return
    fi
    log "installing $crate (cargo install --locked; takes minutes)"
    # Without CARGO_TARGET_DIR, cargo install builds in a temporary directory
    # it removes afterwards, away from the workspace's target directory.
    env -u CARGO_TARGET_DIR cargo install --locked "$crate"
}

# zig, from PyPI (the ziglang wheel), in a virtualenv of its own; cargo zigbuild
# finds it as `python3 -m ziglang` through PATH.
ensure_zig() {
    local venv=${XDG_CACHE_HOME:-$HOME/.cache}/vigie-packaging/zig-$zig_version
    if ! "$venv/bin/python3" -m ziglang version >/dev/null 2>&1; then
        log "installing zig $zig_version (pip install ziglang into $venv)"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check "ziglang==$zig_version"
    fi
    export PATH=$venv/bin:$PATH
    log "zig $(python3 -m ziglang version)"
}

ensure_tool deb cargo-deb
ensure_tool generate-rpm cargo-generate-rpm

target_args=()
if [ "$glibc" = native ]; then
    log "building the binaries (profile $profile, this machine's glibc, target dir $target_dir)"
    cargo build --profile "$profile" --locked -p vigie-agent -p vigie-collector
else
    ensure_tool zigbuild cargo-zigbuild
    ensure_zig
    log "building the binaries (profile $profile, glibc $glibc, target dir $target_dir)"
    cargo zigbuild --profile "$profile" --locked --target "$triple.$glibc" -p vigie-agent -p vigie-collector
    target_args=(--target "$triple")
fi

rm -f "$target_dir"/debian/vigie-*.deb "$target_dir"/generate-rpm/vigie-*.rpm
mkdir -p "$target_dir/debian" "$target_dir/generate-rpm"
for pkg in agent collector; do
    log "packaging vigie-$pkg"
    cargo deb --no-build --profile "$profile" "${target_args[@]}" -p "vigie-$pkg" --output "$target_dir/debian/"
    cargo generate-rpm --profile "$profile" "${target_args[@]}" -p "$pkg" --target-dir "$target_dir" \
        --output "$target_dir/generate-rpm/"
done

log "packages:"
ls -l "$target_dir"/debian/vigie-*.deb "$target_dir"/generate-rpm/vigie-*.rpm
