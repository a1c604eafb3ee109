#!/usr/bin/env python3
"""Hedging idempotent calls: p99 with `[hedge]` on and off, in one run.

Two `ebb up` gateways over the same kind of pool (process nodes, `Demo.work`
in block mode, one node `--slow-scale`x slower), one hedging idempotent
calls after the given percentile of recent latencies, one not; open-loop
`ebb load` on both at the same rate, interleaved within each repetition.
The table reports medians over repetitions, the paired ratio of p99
hedged / not hedged, and the hedges sent and won per run as the hedging
gateway's /metrics count them. Before every run the script waits until
the gateway and its nodes are idle.

Not a test: run by hand, see docs/benchmarks.md.

  cargo build --release -p ebb-cli --bin ebb
  python3 bench/hedge.py --reps 5 --duration 5
"""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway import Children, check_pool_args, pool_args, load, median, metrics, wait_idle  # noqa: E402
from saturation import up  # noqa: E402

MODES = ["off", "on"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pool_args(ap, reps=5, duration=5.0, work_us=2000, connections=256, deadline_ms=2000)
    ap.add_argument("--load", type=float, default=0.5, help="fraction of the nodes' capacity")
    ap.add_argument("--percentile", type=float, default=95.0, help="hedge after this percentile")
    ap.add_argument("--policy", default="p2c")
    a = ap.parse_args()
    a.http = False
    check_pool_args(a)
    work_s = a.work_us / 1e6
    capacity = (a.nodes - 1) / work_s + 1 / (work_s * a.slow_scale)
    rate = capacity * a.load

    children = Children()
    tmp = tempfile.mkdtemp(prefix="ebb-hedge-bench-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    try:
        gateways = {
            "off": up(children, tmp, "off", a, ""),
            "on": up(children, tmp, "on", a, f"""[hedge]
enabled = true
percentile = {a.percentile}
"""),
        }
        targets = {m: g[1] for m, g in gateways.items()}

        def hedge_counts(m):
            x = metrics(gateways[m][0])
            return x.get("ebb_gateway_hedges_total", 0), x.get("ebb_gateway_hedge_wins_total", 0)
        print(f"{a.nodes} nodes (one {a.slow_scale}x slower), Demo.work {a.work_us} us (block), "
              f"capacity {capacity:.0f}/s, rate {rate:.0f}/s, RPC", file=sys.stderr)
        args = json.dumps({"micros": a.work_us})
        for m in MODES:
            # Warm-up, long enough for the hedge delay to be measured.
            load(a.ebb, targets[m], rate, 2, "Demo.work", args, a.deadline_ms, a.connections, 0, http=False)
        runs = []
        for rep in range(a.reps):
            for m in MODES:
                wait_idle(gateways[m][0], f"gateway hedge {m}")
                before = hedge_counts(m)
                r = load(a.ebb, targets[m], rate, a.duration, "Demo.work", args, a.deadline_ms,
                         a.connections, rep + 1, http=False)
                after = hedge_counts(m)
                r.update(hedge=m, rep=rep, hedges=after[0] - before[0], hedge_wins=after[1] - before[1])
                runs.append(r)
                print(f"rep {rep} hedge {m:<3} p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} "
                      f"p99.9 {r['p999_ms']:.2f} ms ok {r['achieved_rate']:.0f}/s failed {r['sent'] - r['ok']} "
                      f"hedges {r['hedges']:.0f} won {r['hedge_wins']:.0f}",
                      file=sys.stderr)
        lines = [
            f"{a.nodes} nodes, one {a.slow_scale}x slower; Demo.work {a.work_us} us (block); "
            f"{rate:.0f}/s ({a.load:.0%} of {capacity:.0f}/s); balance {a.policy}; hedge after p{a.percentile:g}; "
            f"medians of {a.reps} runs of {a.duration:g} s; load average {open('/proc/loadavg').read().split()[0]}",
            "",
            "| hedge | p50 ms | p90 ms | p99 ms | p99.9 ms | ok/s | failed | hedges sent / won per run | p99 on / off, paired |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for m in MODES:
            rs = [r for r in runs if r["hedge"] == m]
            ratio = "-"
            if m == "on":
                pairs = []
                for r in rs:
                    off = [x for x in runs if x["hedge"] == "off" and x["rep"] == r["rep"]]
                    if off and off[0]["p99_ms"] > 0:
                        pairs.append(r["p99_ms"] / off[0]["p99_ms"])
                if pairs:
                    ratio = f"{median(pairs):.2f} ({min(pairs):.2f}-{max(pairs):.2f})"
            lines.append(
                f"| {m} | {median([r['p50_ms'] for r in rs]):.2f} | {median([r['p90_ms'] for r in rs]):.2f} | "
                f"{median([r['p99_ms'] for r in rs]):.2f} | {median([r['p999_ms'] for r in rs]):.2f} | "
                f"{median([r['achieved_rate'] for r in rs]):.0f} | {sum(r['sent'] - r['ok'] for r in rs)} | "
                f"{median([r['hedges'] for r in rs]):.0f} / {median([r['hedge_wins'] for r in rs]):.0f} | {ratio} |")
        print("\n".join(lines))
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"capacity": capacity, "args": vars(a), "runs": runs}, f, indent=1)
    finally:
        children.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
