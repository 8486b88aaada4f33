#!/usr/bin/env bash
# Checks the packages that packaging/build.sh made, and the systemd units.
#
#   packaging/check.sh                                  static checks
#   VIGIE_PACKAGING_INSTALL=1 packaging/check.sh        + install, enroll, purge (root only,
#                                                         in a throwaway machine or container)
#
# Static checks: the payload of each .deb (dpkg-deb -c) and .rpm (rpm -qlvp,
# when rpm is installed) holds the expected files with the expected modes and
# owners; configuration files are conffiles / %config(noreplace); binaries are
# stripped; maintainer scripts and scriptlets parse (sh -n) and do what they
# must; lintian and rpmlint (when installed) report nothing beyond the reviewed
# overrides in packaging/lintian/ (shipped in the .debs) and the filters in
# packaging/vigie.rpmlintrc;
# `systemd-analyze verify` prints nothing for both units; the exposure score of
# `systemd-analyze security --offline=true` is at most 2.0 for both.
#
# Install checks (root, VIGIE_PACKAGING_INSTALL=1, dpkg, no Vigie package or
# user present beforehand): installs the collector .deb (user, modes, first
# init), runs its server as vigie-collector on a free loopback port, then
# installs the agent .deb three times: without a token (`vigie-agent check`
# passes on the shipped configuration, not enrolled), with
# /etc/vigie-agent/enroll.token (enrolls, deletes the token, reinstall keeps
# the conffile and the identity), and with VIGIE_ENROLL_TOKEN +
# VIGIE_COLLECTOR_URL + VIGIE_CA_FILE; each time it checks files, the user and
# its groups, modes, then purges and checks that nothing is left. Services are
# not started by systemd here unless systemd is PID 1.
#
# Exit status: 0 when every check passed, 1 otherwise. Prints "N passed, N failed".
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
glibc=${VIGIE_GLIBC:-2.28}
work=$(mktemp -d)
passed=0
failed=0
collector_pid=

pass() {
    printf 'ok    %s\n' "$*"
    passed=$((passed + 1))
}
fail() {
    printf 'FAIL  %s\n' "$*"
    failed=$((failed + 1))
}
skip() {
    printf 'skip  %s\n' "$*"
}
section() {
    printf '\n== %s\n' "$*"
}
# check DESCRIPTION COMMAND...: passes when the command succeeds.
check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
have() {
    command -v "$1" >/dev/null 2>&1
}

cleanup() {
    if [ -n "$collector_pid" ]; then
        kill "$collector_pid" 2>/dev/null || true
        wait "$collector_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The one file matching a glob.
one() {
    local matches=()
    shopt -s nullglob
    # shellcheck disable=SC2206 # the glob is meant to expand
    matches=($1)
    shopt -u nullglob
    if [ "${#matches[@]}" -ne 1 ]; then
        echo "expected one file matching $1, found ${#matches[@]}: run packaging/build.sh first" >&2
        exit 1
    fi
    printf '%s\n' "${matches[0]}"
}

deb_agent=$(one "$target_dir/debian/vigie-agent_*.deb")
deb_collector=$(one "$target_dir/debian/vigie-collector_*.deb")
rpm_agent=$(one "$target_dir/generate-rpm/vigie-agent-*.rpm")
rpm_collector=$(one "$target_dir/generate-rpm/vigie-collector-*.rpm")

section "sizes"
ls -l "$deb_agent" "$deb_collector" "$rpm_agent" "$rpm_collector"

# ---------------------------------------------------------------- deb payloads

# deb_has DEB MODE OWNER PATH: the payload lists PATH with MODE (ls -l form) and
# OWNER (uid/gid: dpkg-deb -c prints them numerically).
deb_has() {
    local deb=$1 mode=$2 owner=$3 path=$4
    if awk -v m="$mode" -v o="$owner" -v p="./${path#/}" \
        '$1 == m && $2 == o && $6 == p { found = 1 } END { exit !found }' <"$work/$(basename "$deb").list"; then
        pass "$(basename "$deb"): $mode $owner $path"
    else
        fail "$(basename "$deb"): $mode $owner $path (got: $(grep -F " ./${path#/}" "$work/$(basename "$deb").list" | awk '{print $1, $2}' | head -n 1))"
    fi
}

# stripped FILE: no symbol table left.
stripped() {
    ! readelf -S "$1" | grep -q '\.symtab'
}

# glibc_needed FILE: the newest GLIBC_x.y symbol version FILE links to.
glibc_needed() {
    objdump -T "$1" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1
}

# version_le A B: version A <= version B.
version_le() {
    [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]
}

# sh_ok FILE: parses as sh, and shellcheck (when installed) finds nothing.
sh_ok() {
    sh -n "$1" || return 1
    if have shellcheck; then shellcheck -s sh -e SC2317 "$1" || return 1; fi
}

check_deb_common() {
    local deb=$1 name=$2 ctrl=$work/$2.ctrl
    dpkg-deb -c "$deb" >"$work/$(basename "$deb").list"
    section "$(basename "$deb"): payload (dpkg-deb -c)"
    cat "$work/$(basename "$deb").list"
    echo
    dpkg-deb -f "$deb" Package Version Architecture Depends Installed-Size
    dpkg-deb -e "$deb" "$ctrl"
    deb_has "$deb" -rwxr-xr-x 0/0 "/usr/bin/$name"
    deb_has "$deb" -rwxr-xr-x 0/0 "/usr/libexec/vigie/$name-setup"
    deb_has "$deb" -rw-r--r-- 0/0 "/usr/lib/systemd/system/$name.service"
    deb_has "$deb" -rw-r--r-- 0/0 "/usr/share/doc/$name/README.md"
    deb_has "$deb" -rw-r--r-- 0/0 "/usr/share/lintian/overrides/$name"
    dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/bin/$name" >"$work/$name.bin"
    chmod 755 "$work/$name.bin"
    check "$name.deb: /usr/bin/$name is stripped" stripped "$work/$name.bin"
    if [ "$glibc" = native ]; then
        skip "$name.deb: glibc version not checked (VIGIE_GLIBC=native)"
    else
        local needs
        needs=$(glibc_needed "$work/$name.bin")
        check "$name.deb: /usr/bin/$name needs glibc $needs, at most $glibc (RHEL 8)" version_le "$needs" "$glibc"
    fi
    check "$name.deb: unit file is the one in systemd/" \
        cmp -s "systemd/$name.service" <(dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/lib/systemd/system/$name.service")
    for script in postinst prerm postrm; do
        if [ -f "$ctrl/$script" ]; then
            check "$name.deb: $script parses (sh -n, shellcheck)" sh_ok "$ctrl/$script"
        else
            fail "$name.deb: no $script"
        fi
    done
    check "$name.deb: postinst runs $name-setup configure" grep -q "/usr/libexec/vigie/$name-setup configure" "$ctrl/postinst"
    check "$name.deb: postinst enables the unit (deb-systemd-helper)" grep -q "deb-systemd-helper enable $name.service" "$ctrl/postinst"
    check "$name.deb: prerm stops the unit on remove" grep -q "deb-systemd-invoke stop $name.service" "$ctrl/prerm"
    check "$name.deb: postrm removes user and state on purge" grep -q "rm -rf /var/lib/$name /etc/$name" "$ctrl/postrm"
}

section "deb"
check_deb_common "$deb_agent" vigie-agent
deb_has "$deb_agent" -rw-r----- 0/0 /etc/vigie-agent/agent.toml
check "vigie-agent.deb: agent.toml is a conffile" grep -qx /etc/vigie-agent/agent.toml "$work/vigie-agent.ctrl/conffiles"
check "vigie-agent.deb: postinst does not start the agent unless enrolled" \
    grep -q 'was_enrolled" = no' "$work/vigie-agent.ctrl/postinst"

check_deb_common "$deb_collector" vigie-collector
deb_has "$deb_collector" -rw-r----- 0/0 /etc/vigie-collector/collector.toml
check "vigie-collector.deb: collector.toml is a conffile" \
    grep -qx /etc/vigie-collector/collector.toml "$work/vigie-collector.ctrl/conffiles"
for dir in sigma correlations mappings; do
    want=$(find "rules/$dir" -maxdepth 1 -name '*.yml' | wc -l)
    got=$(grep -c " ./usr/share/vigie/rules/$dir/[^/]*\.yml$" "$work/$(basename "$deb_collector").list" || true)
    check "vigie-collector.deb: /usr/share/vigie/rules/$dir holds the $want rules/$dir/*.yml (got $got)" test "$want" -eq "$got"
done
check "collector.toml: [detection] uses the shipped rules" \
    grep -q '^rules = \["/usr/share/vigie/rules/sigma", "/usr/share/vigie/rules/correlations"\]' packaging/collector.toml
check "collector.toml: [detection] uses the shipped mappings" \
    grep -q '^mappings = \["/usr/share/vigie/rules/mappings"\]' packaging/collector.toml

# ---------------------------------------------------------------- rpm payloads

# rpm_has NAME LINE: the rpm payload of NAME has LINE (mode user group flags path).
rpm_has() {
    check "$1.rpm: $2" grep -qxF -- "$2" "$work/$1.rpmlist"
}

section "rpm"
if have rpm; then
    for pair in "vigie-agent:$rpm_agent" "vigie-collector:$rpm_collector"; do
        name=${pair%%:*}
        pkg=${pair#*:}
        section "$(basename "$pkg"): payload (rpm -qlvp)"
        rpm -qlvp "$pkg"
        rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]' "$pkg" \
            >"$work/$name.rpmlist"
        echo
        rpm -qp --requires "$pkg" | sort -u | sed 's/^/requires: /'
        conf=/etc/$name/${name#vigie-}.toml
        # Columns: mode, user, group, flags (c = %config, n = noreplace), path.
        rpm_has "$name" "-rw-r----- root $name cn $conf"
        rpm_has "$name" "-rwxr-xr-x root root  /usr/bin/$name"
        rpm_has "$name" "-rwxr-xr-x root root  /usr/libexec/vigie/$name-setup"
        rpm_has "$name" "-rw-r--r-- root root  /usr/lib/systemd/system/$name.service"
        rpm_has "$name" "-rw-r--r-- root root d /usr/share/doc/$name/README.md"
        for tag in PREIN POSTIN PREUN POSTUN; do
            rpm -qp --qf "%{$tag}" "$pkg" >"$work/$name.$tag"
            check "$name.rpm: $tag scriptlet parses (sh -n, shellcheck)" sh_ok "$work/$name.$tag"
        done
        check "$name.rpm: %pre creates the user with useradd" grep -q "useradd --system --gid $name" "$work/$name.PREIN"
        check "$name.rpm: %post runs $name-setup configure" grep -q "/usr/libexec/vigie/$name-setup configure" "$work/$name.POSTIN"
        check "$name.rpm: requires no group(...) (RHEL 8/9 cannot provide group(adm))" \
            bash -c "! rpm -qp --requires '$pkg' | grep -q '^group('"
    done
    if [ "$(grep -c ' /usr/share/vigie/rules/' "$work/vigie-collector.rpmlist")" -eq \
        "$(find rules/sigma rules/correlations rules/mappings -maxdepth 1 -name '*.yml' | wc -l)" ]; then
        pass "vigie-collector.rpm: ships every rules/{sigma,correlations,mappings}/*.yml"
    else
        fail "vigie-collector.rpm: rules in the payload differ from rules/"
    fi
    check "vigie-agent.rpm: %pre adds the user to adm and systemd-journal" \
        grep -q "for group in adm systemd-journal" "$work/vigie-agent.PREIN"
else
    skip "rpm is not installed (apt-get install rpm): rpm payloads not listed"
fi

# ---------------------------------------------------------------- linters

section "lintian"
if have lintian; then
    # The reviewed overrides (O: lines) are shown, but only errors and
    # warnings fail (--show-overrides alone would make overrides fail too).
    lintian --fail-on none --show-overrides "$deb_agent" "$deb_collector" 2>/dev/null | grep '^O:' || true
    if lintian --fail-on error,warning "$deb_agent" "$deb_collector"; then
        pass "lintian: nothing beyond the reviewed overrides in packaging/lintian/"
    else
        fail "lintian reported the tags above"
    fi
else
    skip "lintian is not installed (apt-get install lintian)"
fi

section "rpmlint"
if have rpmlint; then
    out=$(rpmlint -r packaging/vigie.rpmlintrc "$rpm_agent" "$rpm_collector" 2>&1) || true
    printf '%s\n' "$out"
    if printf '%s\n' "$out" | grep -Eq ' 0 errors, 0 warnings'; then
        pass "rpmlint: nothing beyond packaging/vigie.rpmlintrc"
    else
        fail "rpmlint reported errors or warnings"
    fi
else
    skip "rpmlint is not installed (apt-get install rpmlint)"
fi

# ---------------------------------------------------------------- systemd units

section "systemd"
if have systemd-analyze; then
    # verify needs the binaries: check copies pointing at the packaged ones.
    mkdir -p "$work/units"
    for name in vigie-agent vigie-collector; do
        sed "s#/usr/bin/$name#$work/$name.bin#g" "systemd/$name.service" >"$work/units/$name.service"
    done
    out=$(systemd-analyze verify "$work/units/vigie-agent.service" "$work/units/vigie-collector.service" 2>&1) || true
    if [ -z "$out" ]; then
        pass "systemd-analyze verify: nothing printed (both units)"
    else
        printf '%s\n' "$out"
        fail "systemd-analyze verify printed the lines above"
    fi
    for name in vigie-agent vigie-collector; do
        score=$(systemd-analyze security --offline=true "systemd/$name.service" 2>&1 | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
        echo "$name.service: exposure $score"
        # --threshold is in tenths: 20 = 2.0.
        if systemd-analyze security --offline=true --threshold=20 "systemd/$name.service" >/dev/null 2>&1; then
            pass "$name.service: exposure $score <= 2.0"
        else
            fail "$name.service: exposure $score > 2.0"
        fi
    done
else
    skip "systemd-analyze is not installed"
fi

# ---------------------------------------------------------------- install

# mode_is PATH MODE OWNER GROUP
mode_is() {
    local got
    got=$(stat -c '%a %U %G' "$1" 2>/dev/null || echo missing)
    if [ "$got" = "$2 $3 $4" ]; then
        pass "$1: $2 $3 $4"
    else
        fail "$1: want $2 $3 $4, got $got"
    fi
}

# gone NAME: nothing of package NAME is left after a purge.
gone() {
    local name=$1
    check "$name purged: dpkg no longer knows it" bash -c "! dpkg-query -W -f='\${Status}' $name 2>/dev/null | grep -q installed"
    check "$name purged: no user" bash -c "! getent passwd $name >/dev/null"
    check "$name purged: no group" bash -c "! getent group $name >/dev/null"
    for path in "/usr/bin/$name" "/etc/$name" "/var/lib/$name" "/usr/lib/systemd/system/$name.service" "/usr/share/doc/$name" \
        "/usr/libexec/vigie/$name-setup" "/etc/systemd/system/multi-user.target.wants/$name.service"; do
        check "$name purged: no $path" test ! -e "$path"
    done
}

agent_installed_checks() {
    mode_is /usr/bin/vigie-agent 755 root root
    mode_is /etc/vigie-agent 750 root vigie-agent
    mode_is /etc/vigie-agent/agent.toml 640 root vigie-agent
    mode_is /var/lib/vigie-agent 750 vigie-agent vigie-agent
    mode_is /usr/lib/systemd/system/vigie-agent.service 644 root root
    # shellcheck disable=SC2016 # expanded by the inner bash
    check "vigie-agent: system user with no login shell" \
        bash -c '[ "$(getent passwd vigie-agent | cut -d: -f7)" = /usr/sbin/nologin ] && [ "$(id -u vigie-agent)" -lt 1000 ]'
    for group in adm systemd-journal; do
        if getent group "$group" >/dev/null; then
            check "vigie-agent: member of $group" bash -c "id -nG vigie-agent | tr ' ' '\n' | grep -qx $group"
        else
            skip "group $group does not exist on this machine"
        fi
    done
    check "vigie-agent: unit enabled (multi-user.target.wants)" test -L /etc/systemd/system/multi-user.target.wants/vigie-agent.service
    out=$(systemd-analyze verify /usr/lib/systemd/system/vigie-agent.service 2>&1) || true
    check "systemd-analyze verify (installed vigie-agent.service): nothing printed${out:+: $out}" test -z "$out"
}

collector_installed_checks() {
    mode_is /etc/vigie-collector 750 root vigie-collector
    mode_is /etc/vigie-collector/collector.toml 640 root vigie-collector
    mode_is /var/lib/vigie-collector 750 vigie-collector vigie-collector
    mode_is /var/lib/vigie-collector/admin.token 600 vigie-collector vigie-collector
    mode_is /var/lib/vigie-collector/pki/ca.key 600 vigie-collector vigie-collector
    mode_is /var/lib/vigie-collector/vigie.db 600 vigie-collector vigie-collector
    check "vigie-collector: no second collector.toml in the data directory" test ! -e /var/lib/vigie-collector/collector.toml
    check "vigie-collector: shipped rules exist" test -s /usr/share/vigie/rules/sigma/lnx_sudo_root_shell.yml
    out=$(systemd-analyze verify /usr/lib/systemd/system/vigie-collector.service 2>&1) || true
    check "systemd-analyze verify (installed vigie-collector.service): nothing printed${out:+: $out}" test -z "$out"
}

# start_collector: serves the installed collector's shipped configuration on a
# free loopback port, as the service would; sets port and token (2 uses).
port=
token=
start_collector() {
    local conf
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$work/collector"
    chmod 755 "$work" "$work/collector"
    conf=$work/collector/collector.toml
    sed "s/^listen = .*/listen = \"127.0.0.1:$port\"/" /etc/vigie-collector/collector.toml >"$conf"
    chmod 644 "$conf"
    runuser -u vigie-collector -- /usr/bin/vigie-collector serve --config "$conf" >"$work/collector.log" 2>&1 &
    collector_pid=$!
    for _ in $(seq 1 120); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        sleep 0.5
    done
    check "vigie-collector serves the shipped configuration on 127.0.0.1:$port" \
        bash -c "(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null"
    check "vigie-collector loaded the shipped rules (none rejected)" \
        bash -c "sed 's/\x1b\[[0-9;]*m//g' '$work/collector.log' | grep 'rule pack loaded' | grep -q 'rejected=0\$'"
    token=$(runuser -u vigie-collector -- /usr/bin/vigie-collector token create \
        --config /etc/vigie-collector/collector.toml --uses 2)
}

stop_collector() {
    kill "$collector_pid" 2>/dev/null || true
    wait "$collector_pid" 2>/dev/null || true
    collector_pid=
}

# not_installed_yet: no Vigie package or user on this machine.
not_installed_yet() {
    for name in vigie-agent vigie-collector; do
        if dpkg-query -W "$name" >/dev/null 2>&1 || getent passwd "$name" >/dev/null || [ -e "/usr/bin/$name" ]; then
            fail "$name is already installed or its user exists: not a throwaway machine, install checks skipped"
            return 1
        fi
    done
}

install_checks() {
    section "install (dpkg -i, as root)"
    not_installed_yet || return 0

    # The collector: first install initializes the data directory.
    dpkg -i "$deb_collector"
    collector_installed_checks
    start_collector

    # 1. No token: installed, enabled, not enrolled; the shipped configuration checks.
    section "install vigie-agent without a token"
    dpkg -i "$deb_agent"
    agent_installed_checks
    check "vigie-agent: not enrolled" test ! -e /var/lib/vigie-agent/identity.json
    check "vigie-agent check --config /etc/vigie-agent/agent.toml (as vigie-agent, shipped config)" \
        runuser -u vigie-agent -- /usr/bin/vigie-agent check --config /etc/vigie-agent/agent.toml
    check "shipped agent.toml is unchanged" cmp -s packaging/agent.toml /etc/vigie-agent/agent.toml
    dpkg --purge vigie-agent
    gone vigie-agent

    # 2. Token file + CA in place, URL from the environment.
    section "install vigie-agent with /etc/vigie-agent/enroll.token"
    install -d -m 0755 /etc/vigie-agent
    install -m 0644 /var/lib/vigie-collector/pki/ca.pem /etc/vigie-agent/ca.pem
    (umask 077 && printf '%s\n' "$token" >/etc/vigie-agent/enroll.token)
    VIGIE_COLLECTOR_URL=https://127.0.0.1:$port dpkg -i "$deb_agent"
    agent_installed_checks
    check "vigie-agent: enrolled (identity.json)" test -s /var/lib/vigie-agent/identity.json
    mode_is /var/lib/vigie-agent/agent.key 600 vigie-agent vigie-agent
    check "vigie-agent: token file deleted after enrollment" test ! -e /etc/vigie-agent/enroll.token
    check "vigie-agent: [collector] url set from VIGIE_COLLECTOR_URL" \
        grep -qx "url = \"https://127.0.0.1:$port\"" /etc/vigie-agent/agent.toml
    check "vigie-agent check (enrolled)" \
        bash -c "runuser -u vigie-agent -- /usr/bin/vigie-agent check --config /etc/vigie-agent/agent.toml | grep -q 'enrolled as'"
    local id_before
    id_before=$(cat /var/lib/vigie-agent/identity.json)
    dpkg -i "$deb_agent"
    check "reinstall keeps the identity" test "$id_before" = "$(cat /var/lib/vigie-agent/identity.json)"
    check "reinstall keeps the edited conffile" grep -qx "url = \"https://127.0.0.1:$port\"" /etc/vigie-agent/agent.toml
    dpkg --purge vigie-agent
    gone vigie-agent

    # 3. Environment only.
    section "install vigie-agent with VIGIE_ENROLL_TOKEN, VIGIE_COLLECTOR_URL, VIGIE_CA_FILE"
    VIGIE_ENROLL_TOKEN=$token VIGIE_COLLECTOR_URL=https://127.0.0.1:$port \
        VIGIE_CA_FILE=/var/lib/vigie-collector/pki/ca.pem dpkg -i "$deb_agent"
    agent_installed_checks
    check "vigie-agent: enrolled (identity.json)" test -s /var/lib/vigie-agent/identity.json
    mode_is /etc/vigie-agent/ca.pem 644 root root
    check "vigie-agent check (enrolled)" \
        bash -c "runuser -u vigie-agent -- /usr/bin/vigie-agent check --config /etc/vigie-agent/agent.toml | grep -q 'enrolled as'"
    dpkg --purge vigie-agent
    gone vigie-agent

    stop_collector
    dpkg --purge vigie-collector
    gone vigie-collector
    check "no /usr/libexec/vigie or /usr/share/vigie left" bash -c '! [ -e /usr/libexec/vigie ] && ! [ -e /usr/share/vigie ]'
}

# The .rpm packages installed with Debian's rpm, in a database of their own
# (--nodeps: this machine's libraries are dpkg's): the scriptlets run for
# real (%pre creates the user, %post sets up and enrolls, %preun / %postun
# disable and, with VIGIE_PURGE=1, remove everything).
rpm_install_checks() {
    section "install (rpm -i --nodeps, as root, database in a temporary directory)"
    not_installed_yet || return 0
    local db=$work/rpmdb
    mkdir -p "$db"
    rpm --dbpath "$db" --initdb
    rpmdo() {
        rpm --dbpath "$db" --nodeps "$@"
    }

    rpmdo -i "$rpm_collector"
    collector_installed_checks
    # shellcheck disable=SC2016 # expanded by the inner bash
    check "vigie-collector.rpm: %pre made a system user" bash -c '[ "$(id -u vigie-collector)" -lt 1000 ]'
    check "vigie-collector.rpm: rpm -V finds the payload intact" rpmdo -V vigie-collector
    start_collector

    section "install vigie-agent.rpm with VIGIE_ENROLL_TOKEN, VIGIE_COLLECTOR_URL, VIGIE_CA_FILE"
    VIGIE_ENROLL_TOKEN=$token VIGIE_COLLECTOR_URL=https://127.0.0.1:$port \
        VIGIE_CA_FILE=/var/lib/vigie-collector/pki/ca.pem rpmdo -i "$rpm_agent"
    agent_installed_checks
    check "vigie-agent.rpm: enrolled (identity.json)" test -s /var/lib/vigie-agent/identity.json
    mode_is /var/lib/vigie-agent/agent.key 600 vigie-agent vigie-agent
    check "vigie-agent.rpm: vigie-agent check (enrolled)" \
        bash -c "runuser -u vigie-agent -- /usr/bin/vigie-agent check --config /etc/vigie-agent/agent.toml | grep -q 'enrolled as'"
    local id_before
    id_before=$(cat /var/lib/vigie-agent/identity.json)
    rpmdo -U --replacepkgs "$rpm_agent"
    check "vigie-agent.rpm: upgrade (rpm -U) keeps the identity" test "$id_before" = "$(cat /var/lib/vigie-agent/identity.json)"
    check "vigie-agent.rpm: upgrade keeps the edited %config(noreplace)" \
        grep -qx "url = \"https://127.0.0.1:$port\"" /etc/vigie-agent/agent.toml
    rpmdo -e vigie-agent
    check "vigie-agent.rpm: rpm -e keeps the state and the user (no VIGIE_PURGE)" \
        bash -c 'test -s /var/lib/vigie-agent/identity.json && getent passwd vigie-agent >/dev/null'
    check "vigie-agent.rpm: rpm -e removes the binary and disables the unit" \
        bash -c '! [ -e /usr/bin/vigie-agent ] && ! [ -e /etc/systemd/system/multi-user.target.wants/vigie-agent.service ]'
    rpmdo -i "$rpm_agent"
    VIGIE_PURGE=1 rpmdo -e vigie-agent
    gone vigie-agent

    stop_collector
    VIGIE_PURGE=1 rpmdo -e vigie-collector
    gone vigie-collector
    check "no /usr/libexec/vigie or /usr/share/vigie left" bash -c '! [ -e /usr/libexec/vigie ] && ! [ -e /usr/share/vigie ]'
}

if [ "${VIGIE_PACKAGING_INSTALL:-0}" = 1 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        skip "install checks need root"
    elif ! have dpkg; then
        skip "install checks need dpkg"
    else
        install_checks
        if have rpm; then
            rpm_install_checks
        else
            skip "rpm install checks: rpm is not installed"
        fi
    fi
else
    skip "install checks (set VIGIE_PACKAGING_INSTALL=1, as root, on a throwaway machine)"
fi

echo
echo "packaging: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
