#!/usr/bin/env bash
# The tour of what ebb does today, end to end on this machine:
# a node serving the demo service, exact-once-or-told calls through a faulty
# network, the balancing simulator against queueing theory, and (as root) the
# same binary inside a container.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -q
ebb=./target/release/ebb
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Start a process that prints "... listening on ADDR" and set $addr to the
# address. Called directly, not in $(...): a subshell's pids+=() would be
# lost, and the exit trap would leave the process running.
start() {
  local log=$1; shift
  : >"$log"   # exists before the first look, however late the process starts
  "$@" >"$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    if addr=$(grep -o 'listening on [^ ]*' "$log" | awk '{print $3}') && [ -n "$addr" ]; then
      return 0
    fi
    sleep 0.05
  done
  echo "no address from: $*" >&2; cat "$log" >&2; return 1
}

echo "== a node serving the demo service"
start "$work/node.log" "$ebb" node --listen 127.0.0.1:0
node=$addr
echo "node at $node"
$ebb call --addr "$node" Demo.incr '{"key":"a"}'
$ebb call --addr "$node" Demo.incr '{"key":"a"}'
$ebb call --addr "$node" Demo.echo '{"msg":"hello"}'

echo "== the same calls through a proxy that resets 10% of chunks"
start "$work/chaos.log" "$ebb" chaos --listen 127.0.0.1:0 --upstream "$node" --reset 0.1 --seed 1
proxy=$addr
for _ in 1 2 3; do
  $ebb call --addr "$proxy" Demo.incr '{"key":"a"}' || echo "(the failure above says whether the call may have run)"
done

echo "== the balancers, simulated on 100 nodes at 90% load (times in mean service times)"
$ebb sim --balance random,rr,p2c,jsq,central --nodes 100 --load 0.9 --requests 1000000 --seed 1

if [ "$(id -u)" = 0 ] && [ -x /bin/busybox ]; then
  echo "== a container: own PID namespace and hostname, 64 MiB memory limit"
  $ebb sandbox run --kind container --memory-mb 64 -- sh -c 'echo "inside: pid $$, host $(hostname)"; ps'
else
  echo "== containers skipped: need root and busybox-static (see docs/isolation.md)"
fi
