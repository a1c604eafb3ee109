#!/bin/bash
# Per call, on each side of one system's echo run: the socket system calls
# and the context switches (each a sleep: on a quiet machine, a CPU that
# idles and must be woken). Whether the two ends overlap or take turns
# shows here whatever the machine's load: taking turns, each side sleeps
# once per window of calls; overlapped, the busier side hardly sleeps.
#
# Starts `rpc-bench serve` (pinned to CPU 0) and `rpc-bench instr-client`
# (pinned to CPU 1) making CALLS calls, counted with `perf stat`.
#
#   ./sleeps.sh target/release/rpc-bench ebb multi1 64 16 300000
#   ./sleeps.sh target/release/rpc-bench tarpc multi1 64 16 300000 chrt -f 20
#
# Arguments: BINARY SYSTEM FLAVOUR PAYLOAD CONCURRENCY CALLS [PREFIX...];
# PREFIX runs both processes under a command (`chrt -f 20`: real-time
# priority, so that on a loaded machine each gets its CPU as it wakes).
# Linux only; needs perf with syscall tracepoints (root).
set -euo pipefail
if [ $# -lt 6 ]; then
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
BIN=$1; SYS=$2; FL=$3; P=$4; C=$5; N=$6; shift 6
EV='syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_writev,syscalls:sys_enter_readv,context-switches,task-clock'
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
coproc SRV { exec "$@" taskset -c 0 "$BIN" serve --system "$SYS" --flavour "$FL"; }
SPID=$SRV_PID
read -r line <&"${SRV[0]}"
addr=${line#listening }
perf stat -x, -e "$EV" -p "$SPID" -o "$TMP/server" &
PERF=$!
sleep 0.2
t0=$(date +%s.%N)
perf stat -x, -e "$EV" -o "$TMP/client" -- "$@" taskset -c 1 "$BIN" instr-client \
  --system "$SYS" --addr "$addr" --flavour "$FL" --payload "$P" --concurrency "$C" \
  --calls "$N" --connect-timeout-ms 5000 >/dev/null
t1=$(date +%s.%N)
kill -INT "$PERF"; wait "$PERF" || true
exec {SRV[1]}>&-
wait "$SPID" 2>/dev/null || true
python3 - "$TMP" "$N" "$t0" "$t1" "$SYS $FL ${P} B c=$C" <<'PY'
import sys
tmp, n, t0, t1, what = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
def side(path):
    out = []
    for line in open(path):
        f = line.strip().split(',')
        if len(f) < 3 or not f[0].replace('.', '').isdigit():
            continue
        name, v = f[2].split(':')[-1].replace('sys_enter_', ''), float(f[0])
        if name == 'task-clock':
            out.append(f"CPU {v * 1e3 / n:.2f} µs")
        elif v > 0:
            out.append(f"{name} {v / n:.3f}")
    return ', '.join(out)
print(f"{what}: {n / (t1 - t0):,.0f} calls/s (start-up included); per call:")
print(f"  server: {side(tmp + '/server')}")
print(f"  client: {side(tmp + '/client')}")
PY
