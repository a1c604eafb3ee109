#!/usr/bin/env bash
# Container start time, side by side: ebb's container vs runc vs crun vs a
# bare unshare with the same namespaces, each running /bin/true on the same
# busybox rootfs. Rounds are interleaved (every tool once per round, in
# order) so a load change on a shared machine hits all tools alike; the
# figure reported is the median over rounds of each round's median.
#
# Usage (as root, Debian: apt-get install hyperfine runc crun busybox-static):
#   cargo build --release -p ebb-cli && bench/sandbox.sh [ROUNDS] [RUNS_PER_ROUND]
#
# crun refuses hybrid cgroup hosts whose v2 mount has any controller
# ("cgroups in hybrid mode not supported, drop all controllers from
# cgroupv2"); the whole benchmark therefore runs in a private mount
# namespace with /sys/fs/cgroup/unified unmounted. Every tool still gets its
# cgroup v1 groups.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
RUNS=${2:-30}
EBB=${EBB:-$PWD/target/release/ebb}

if [ "${EBB_BENCH_INNER:-}" != 1 ]; then
  for t in hyperfine runc crun unshare busybox python3; do
    command -v "$t" >/dev/null || { echo "bench/sandbox.sh: $t is missing" >&2; exit 1; }
  done
  [ -x "$EBB" ] || { echo "bench/sandbox.sh: $EBB missing; cargo build --release -p ebb-cli" >&2; exit 1; }
  EBB_BENCH_INNER=1 exec unshare -m --propagation private "$0" "$@"
fi
umount /sys/fs/cgroup/unified 2>/dev/null || true

work=$(mktemp -d /tmp/ebb-bench-sandbox.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,proc,dev,tmp,sys}
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for a in true sh; do ln -s busybox "$rootfs/bin/$a"; done
(cd "$work" && runc spec)
python3 - "$work/config.json" "$rootfs" <<'PY'
import json, sys
path, rootfs = sys.argv[1], sys.argv[2]
c = json.load(open(path))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
c["root"] = {"path": rootfs, "readonly": True}
json.dump(c, open(path, "w"), indent=1)
PY

echo "load before: $(uptime)"
for r in $(seq "$ROUNDS"); do
  hyperfine -N --style none --warmup 3 --runs "$RUNS" --export-json "$work/round$r.json" \
    -n ebb "$EBB sandbox run --net none --rootfs $rootfs -- /bin/true" \
    -n ebb-veth "$EBB sandbox run --net veth --rootfs $rootfs -- /bin/true" \
    -n runc "runc run -b $work ebb-bench-runc" \
    -n crun "crun run -b $work ebb-bench-crun" \
    -n unshare "unshare -fpmuin -R $rootfs /bin/true" >/dev/null
done
echo "load after: $(uptime)"
echo "ebb node ready (start to first accepted TCP connection, busybox httpd over veth):"
"$EBB" sandbox bench-ready --runs 20

python3 - "$work" "$ROUNDS" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
per = {}
for r in range(1, rounds + 1):
    for res in json.load(open(f"{work}/round{r}.json"))["results"]:
        per.setdefault(res["command"], []).append(res["median"])
med = {k: statistics.median(v) for k, v in per.items()}
print(f"\n{'tool':10} {'median ms':>10} {'vs ebb':>8}   (median of {rounds} round medians)")
for k, v in med.items():
    print(f"{k:10} {v*1e3:10.2f} {v/med['ebb']:8.2f}x")
print(f"\nebb / runc = {med['ebb']/med['runc']:.3f}   ebb / crun = {med['ebb']/med['crun']:.3f}")
PY
