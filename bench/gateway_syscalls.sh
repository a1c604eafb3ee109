#!/bin/bash
# System calls and CPU per answered call of the ebb gateway, native RPC.
#
#   bench/gateway_syscalls.sh BUILD RATE SECONDS [CONNECTIONS]
#
# One gateway (`gateway.threads = 1`, pinned to CPU 0, one process node,
# `jsq`, the set-up of bench/gateway_cost.py) is offered RATE calls/s of
# 64 B Demo.echo over CONNECTIONS (8) connections of `ebb load` for
# SECONDS, after a 1 s warm-up; perf's tracepoints count its system calls
# over the run. System calls per call are steadier than CPU time on a
# shared machine: they say how well writes and reads are batched. Not a
# test: see docs/benchmarks.md. Needs perf with tracepoints (root).
set -e
EBB=$(readlink -f "$1"); RATE=$2; DUR=$3; CONNS=${4:-8}
T=$(mktemp -d /tmp/ebb-gateway-syscalls.XXXX)
trap 'kill $PID 2>/dev/null; rm -rf "$T"' EXIT
BENCH=$(dirname "$(readlink -f "$0")")
python3 -c "import sys; sys.path.insert(0, sys.argv[1]); from gateway_cost import gateway_config; \
print(gateway_config(1), end='')" "$BENCH" > "$T/gw.toml"
"$EBB" up "$T/gw.toml" > "$T/out" 2>/dev/null &
PID=$!
for _ in $(seq 300); do grep -q -- '-> ready' "$T/out" 2>/dev/null && break; sleep 0.1; done
RPC=$(grep '^gateway listening on' "$T/out" | awk '{print $NF}')
taskset -a -p -c 0 $PID > /dev/null
MSG='{"msg":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'
# One sender thread per LOAD_RATE_PER_THREAD offered, as bench/gateway_cost.py does.
PER_THREAD=$(python3 -c "import sys; sys.path.insert(0, sys.argv[1]); from gateway_cost import LOAD_RATE_PER_THREAD; \
print(LOAD_RATE_PER_THREAD)" "$BENCH")
THREADS=$(( (RATE + PER_THREAD - 1) / PER_THREAD ))
[ "$CONNS" -lt "$THREADS" ] && CONNS=$THREADS
load() {
  "$EBB" load --target "$RPC" --rate "$1" --duration "$2" --method Demo.echo --args "$MSG" \
    --deadline-ms 2000 --connections "$CONNS" --threads "$THREADS" --json
}
load 1000 1 > /dev/null
CPU0=$(awk '{print $14+$15}' /proc/$PID/stat)
EVENTS=syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_writev
EVENTS=$EVENTS,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait
perf stat -x, -o "$T/perf" -e "$EVENTS" -p $PID -- bash -c "$(declare -f load); \
  EBB='$EBB' RPC='$RPC' MSG='$MSG' CONNS=$CONNS THREADS=$THREADS load $RATE $DUR" > "$T/load.json"
CPU1=$(awk '{print $14+$15}' /proc/$PID/stat)
python3 - "$T" "$CPU0" "$CPU1" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
t, c0, c1, tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
r = json.load(open(f"{t}/load.json"))
ok = r["ok"]
counts = {}
for line in open(f"{t}/perf"):
    f = line.strip().split(",")
    if len(f) > 2 and f[2].startswith("syscalls:"):
        counts[f[2].split("sys_enter_")[1]] = int(f[0]) if f[0].isdigit() else 0
cpu_us = (c1 - c0) / tck / ok * 1e6 if ok else float("nan")
per = ", ".join(f"{k} {v / ok:.2f}" for k, v in counts.items() if v)
print(f"answered {ok} ({r['achieved_rate']:.0f}/s), overloaded {r['overloaded']}; "
      f"gateway CPU {cpu_us:.1f} us per answered call; system calls per call: {per}")
EOF
