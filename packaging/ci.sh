#!/usr/bin/env bash
# CI's packaging check, called by .ci/run after the tests:
#
#   packaging/ci.sh
#
# 1. Installs what the checks need when it is missing: lintian, rpm, rpmlint,
#    ShellCheck and binutils from Debian's packages (apt-get, as root);
#    cargo-deb, cargo-generate-rpm, cargo-zigbuild and zig (packaging/build.sh,
#    ~8 minutes once).
# 2. Builds both packages with the `package-check` profile, linked against
#    glibc 2.28 like a release: the release profile's layout and stripping
#    without its optimizations (~4 minutes from a cold target instead of 11).
#    Releases use packaging/build.sh as is.
# 3. Runs packaging/check.sh: payloads, scripts, the glibc floor, lintian,
#    rpmlint, `systemd-analyze verify` and the exposure scores; as root, also
#    the install checks (dpkg -i, enrollment, `vigie-agent check` on the shipped
#    configuration, purge; then the rpm with Debian's rpm: install, upgrade,
#    erase), which leave nothing behind. They need a machine without a Vigie
#    package or user: set VIGIE_PACKAGING_INSTALL=0 to skip them on a machine
#    of your own.
#
# Exits non-zero when a tool cannot be installed or any check fails: CI does
# not pass on a skipped linter.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

log() {
    printf '==> %s\n' "$*" >&2
}
have() {
    command -v "$1" >/dev/null 2>&1
}

# Debian package for each command the checks use.
declare -A debian_package=(
    [lintian]=lintian
    [rpm]=rpm
    [rpmlint]=rpmlint
    [shellcheck]=shellcheck
    [dpkg-deb]=dpkg
    [readelf]=binutils
    [objdump]=binutils
    [systemd-analyze]=systemd
)
missing=()
for command in "${!debian_package[@]}"; do
    have "$command" || missing+=("${debian_package[$command]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! have apt-get; then
        echo "packaging/ci.sh: missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root on Debian" >&2
        exit 1
    fi
    log "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

export VIGIE_PACKAGE_PROFILE=package-check
packaging/build.sh

if [ "$(id -u)" -eq 0 ] && have dpkg; then
    export VIGIE_PACKAGING_INSTALL=${VIGIE_PACKAGING_INSTALL:-1}
else
    log "not root: the install checks (dpkg -i) are skipped"
fi
packaging/check.sh
