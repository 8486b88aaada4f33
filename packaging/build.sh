#!/usr/bin/env bash
# Builds the .deb and .rpm of vigie-agent and vigie-collector.
#
#   packaging/build.sh            -> target/debian/*.deb, target/generate-rpm/*.rpm
#
# Installs cargo-deb and cargo-generate-rpm (cargo install --locked) only when
# they are missing (~6 minutes on 2 cores the first time), builds the two
# release binaries once (the release profile strips them), then packages them
# without building again. CARGO_TARGET_DIR is honoured (default: ./target).
# VIGIE_PACKAGE_PROFILE picks another Cargo profile (default: release); CI uses
# `package-check`, the release profile without optimizations.
# Package metadata: [package.metadata.deb] and [package.metadata.generate-rpm]
# in agent/Cargo.toml and collector/Cargo.toml. Check the result with
# packaging/check.sh.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
export CARGO_TARGET_DIR=$target_dir
profile=${VIGIE_PACKAGE_PROFILE:-release}

log() {
    printf '==> %s\n' "$*" >&2
}

ensure_tool() {
    local subcommand=$1 crate=$2
    if cargo "$subcommand" --version >/dev/null 2>&1; then
        log "$crate: $(cargo "$subcommand" --version 2>&1 | head -n 1)"
        return
    fi
    log "installing $crate (cargo install --locked; takes minutes)"
    # Without CARGO_TARGET_DIR, cargo install builds in a temporary directory
    # it removes afterwards, away from the workspace's target directory.
    env -u CARGO_TARGET_DIR cargo install --locked "$crate"
}

ensure_tool deb cargo-deb
ensure_tool generate-rpm cargo-generate-rpm

log "building the binaries (profile $profile, target dir $target_dir)"
cargo build --profile "$profile" --locked -p vigie-agent -p vigie-collector

rm -f "$target_dir"/debian/vigie-*.deb "$target_dir"/generate-rpm/vigie-*.rpm
for pkg in agent collector; do
    log "packaging vigie-$pkg"
    cargo deb --no-build --profile "$profile" -p "vigie-$pkg"
    cargo generate-rpm --profile "$profile" -p "$pkg" --target-dir "$target_dir"
done

log "packages:"
ls -l "$target_dir"/debian/vigie-*.deb "$target_dir"/generate-rpm/vigie-*.rpm
