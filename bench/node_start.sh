#!/usr/bin/env bash
# Process-node start time and memory: spawn `ebb node` N times, time from
# spawn to the "node listening on ADDR" line and to the first successful
# call, and read the node's resident memory after that call.
# Usage: cargo build --release -p ebb && bench/node_start.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
ebb=./target/release/ebb
n=${1:-20}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
ready=(); served=(); rss=()
for _ in $(seq 1 "$n"); do
  t0=$(date +%s%N)
  "$ebb" node --listen 127.0.0.1:0 >"$log" 2>&1 &
  pid=$!
  addr=
  for _ in $(seq 1 2000); do
    addr=$(grep -o 'listening on [^ ]*' "$log" | awk '{print $3}') && [ -n "$addr" ] && break
  done
  t1=$(date +%s%N)
  "$ebb" call --addr "$addr" Demo.echo '{"msg":"x"}' >/dev/null
  t2=$(date +%s%N)
  rss+=("$(awk '/VmRSS/ {print $2}' /proc/$pid/status)")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  ready+=("$(( (t1 - t0) / 1000 ))"); served+=("$(( (t2 - t0) / 1000 ))")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "process node, $n starts: listening median $(median "${ready[@]}") us;" \
  "first call answered median $(median "${served[@]}") us (includes starting ebb call);" \
  "VmRSS median $(median "${rss[@]}") KiB"
