#!/usr/bin/env bash
# Forwards FILE with rsyslog (imfile -> omfwd over TLS) to `vigie-bench
# tls-sink` on loopback and prints how long the whole file took:
#
#   rsyslog: lines=N elapsed_s=T lines_per_s=R cpu_s=C hwm_kib=H first_byte_s=F auth=MODE
#
# elapsed_s runs from the moment rsyslogd is started to the moment the sink
# counted the N-th line (the same definition `vigie-bench e2e` uses for the
# agent). cpu_s and hwm_kib are rsyslogd's utime+stime and VmHWM when the
# last line arrived.
#
# Usage: bench/rsyslog.sh FILE LINES [WORKDIR]
#   VIGIE_BENCH     the vigie-bench binary (default: target/release/vigie-bench)
#   RSYSLOG_AUTH    x509/certvalid (default) or anon
#   RSYSLOGD        rsyslogd binary (default: rsyslogd from PATH)
# WORKDIR (default: a new temporary directory, removed at the end) holds the
# certificates, the rendered config, rsyslog's state files and logs.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bench=${VIGIE_BENCH:-$here/../target/release/vigie-bench}
rsyslogd=${RSYSLOGD:-$(command -v rsyslogd || echo /usr/sbin/rsyslogd)}
auth=${RSYSLOG_AUTH:-x509/certvalid}

if [ $# -lt 2 ]; then
  echo "usage: $0 FILE LINES [WORKDIR]" >&2
  exit 2
fi
file=$(realpath "$1")
lines=$2
if [ $# -ge 3 ]; then
  work=$(realpath -m "$3"); keep=1
else
  work=$(mktemp -d /tmp/vigie-bench-rsyslog.XXXXXX); keep=0
fi
mkdir -p "$work/spool"

sink_pid=""; rs_pid=""
cleanup() {
  [ -n "$rs_pid" ] && kill "$rs_pid" 2>/dev/null || true
  [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null || true
  [ "$keep" = 0 ] && rm -rf "$work"
  return 0
}
trap cleanup EXIT

rm -f "$work/port"
"$bench" tls-sink --lines "$lines" --pki-dir "$work/pki" --port-file "$work/port" \
  --timeout-secs 900 >"$work/sink.out" 2>"$work/sink.err" &
sink_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { echo "tls-sink did not start: $(cat "$work/sink.err")" >&2; exit 1; }
port=$(cat "$work/port")

sed -e "s|@WORKDIR@|$work/spool|g" -e "s|@CA@|$work/pki/ca.pem|g" -e "s|@FILE@|$file|g" \
    -e "s|@PORT@|$port|g" -e "s|@AUTHMODE@|$auth|g" \
    "$here/rsyslog.conf.template" >"$work/rsyslog.conf"
"$rsyslogd" -N1 -f "$work/rsyslog.conf" >"$work/check.log" 2>&1 \
  || { echo "rsyslog config invalid: $(cat "$work/check.log")" >&2; exit 1; }

t0=$(date +%s%N)
"$rsyslogd" -n -f "$work/rsyslog.conf" -i "$work/rsyslogd.pid" >"$work/rsyslogd.log" 2>&1 &
rs_pid=$!

if ! wait "$sink_pid"; then
  sink_pid=""
  echo "tls-sink failed: $(tail -n 5 "$work/sink.err")" >&2
  echo "rsyslogd: $(tail -n 20 "$work/rsyslogd.log")" >&2
  exit 1
fi
sink_pid=""
# Read rsyslogd's CPU time and peak memory before stopping it.
stat=$(cat "/proc/$rs_pid/stat")
read -r -a f <<<"${stat##*) }"
tck=$(getconf CLK_TCK)
cpu_ticks=$(( f[11] + f[12] ))
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$rs_pid/status")
kill -TERM "$rs_pid"; wait "$rs_pid" || true; rs_pid=""

res=$(cat "$work/sink.out")
last=$(sed -n 's/.*last_line_unix_ns=\([0-9]*\).*/\1/p' <<<"$res")
first=$(sed -n 's/.*first_byte_unix_ns=\([0-9]*\).*/\1/p' <<<"$res")
awk -v n="$lines" -v t0="$t0" -v last="$last" -v first="$first" -v c="$cpu_ticks" -v tck="$tck" \
    -v hwm="$hwm" -v auth="$auth" 'BEGIN {
  e = (last - t0) / 1e9
  printf "rsyslog: lines=%d elapsed_s=%.3f lines_per_s=%.0f cpu_s=%.2f hwm_kib=%d first_byte_s=%.3f auth=%s\n",
    n, e, n / e, c / tck, hwm, (first - t0) / 1e9, auth
}'
