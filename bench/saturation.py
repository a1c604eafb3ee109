#!/usr/bin/env python3
"""Admission past saturation: goodput with admission control on and off.

Runs one `ebb up` gateway per mode over the same kind of pool (process
nodes, `Demo.work` in block mode, one node `--slow-scale`x slower) and
drives each with open-loop `ebb load` at fractions of the nodes' capacity,
95% and above. Modes: `off` (`admission.enabled = false`: every request
is forwarded and waits its turn), `on` (the defaults: the work ahead as
the nodes report it, and the gateway's own delay), and `gateway` (on, but
the work ahead judged by the gateway's own timing of its calls). Modes
and loads are interleaved within each repetition, and before every run
the script waits until the gateway and its nodes are idle (calls whose
callers gave up still run on the nodes, and would slow the next run). The
table reports medians over repetitions: goodput (calls answered within
their deadline per second), refusals (`overloaded`) and deadline misses,
and the paired ratio of goodput on / off.

Not a test: run by hand, see docs/benchmarks.md.

  cargo build --release -p ebb-cli --bin ebb
  python3 bench/saturation.py --reps 3 --duration 6
"""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway import Children, check_pool_args, pool_args, ebb_gateway, load, median, wait_idle  # noqa: E402

MODES = {
    "off": "enabled = false",
    "on": "enabled = true",
    "gateway": 'enabled = true\nservice_time_from = "gateway"',
}


def gateway(children, tmp, mode, a):
    """`ebb up` over the pool with admission as `mode` says."""
    return up(children, tmp, mode, a, f"""[admission]
{MODES[mode]}
default_deadline_ms = {a.deadline_ms}
""")


def up(children, tmp, name, a, extra):
    """`ebb up` over `a.nodes` blocking process nodes, one `--slow-scale`x
    slower, with the TOML `extra` appended; returns its HTTP address (for
    /status and /metrics) and the one to load: its RPC address, or the
    HTTP one with `a.http`."""
    http, rpc = ebb_gateway(children, tmp, name, a.policy, a, work_mode="block", extra=extra)
    return http, (http if a.http else rpc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pool_args(ap, reps=3, duration=6.0, work_us=500, connections=256, deadline_ms=100)
    ap.add_argument("--loads", default="0.95,1.1,1.3", help="fractions of the nodes' capacity")
    ap.add_argument("--policy", default="p2c")
    ap.add_argument("--http", action="store_true", help="HTTP/JSON ingress (default: ebb RPC)")
    ap.add_argument("--modes", default="off,on", help=f"admission modes to compare, of {','.join(MODES)}")
    a = ap.parse_args()
    modes = [m for m in a.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            sys.exit(f"--modes: {m!r} is not one of {', '.join(MODES)}")
    check_pool_args(a)
    loads = [float(x) for x in a.loads.split(",") if x]
    work_s = a.work_us / 1e6
    capacity = (a.nodes - 1) / work_s + 1 / (work_s * a.slow_scale)

    children = Children()
    tmp = tempfile.mkdtemp(prefix="ebb-saturation-bench-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    try:
        gateways = {m: gateway(children, tmp, m, a) for m in modes}
        targets = {m: g[1] for m, g in gateways.items()}
        proto = "HTTP" if a.http else "RPC"
        print(f"{a.nodes} nodes (one {a.slow_scale}x slower), Demo.work {a.work_us} us (block), "
              f"capacity {capacity:.0f}/s, {proto}, deadline {a.deadline_ms} ms", file=sys.stderr)
        args = json.dumps({"micros": a.work_us})
        for m in modes:
            load(a.ebb, targets[m], capacity * 0.3, 1, "Demo.work", args, a.deadline_ms,
                 a.connections, 0, http=a.http)
        runs = []
        for rep in range(a.reps):
            for frac in loads:
                for m in modes:
                    wait_idle(gateways[m][0], f"gateway {m}")
                    r = load(a.ebb, targets[m], capacity * frac, a.duration, "Demo.work", args,
                             a.deadline_ms, a.connections, rep + 1, http=a.http)
                    r.update(mode=m, load=frac, rep=rep)
                    runs.append(r)
                    print(f"rep {rep} load {frac:.2f} {m:<8} ok {r['achieved_rate']:.0f}/s "
                          f"overloaded {r['overloaded']} deadline {r['deadline_exceeded']} "
                          f"p99 {r['p99_ms']:.1f} ms", file=sys.stderr)
        print(report(runs, loads, modes, capacity, a))
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"capacity": capacity, "args": vars(a), "runs": runs}, f, indent=1)
    finally:
        children.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def report(runs, loads, modes, capacity, a):
    lines = [
        f"{a.nodes} nodes, one {a.slow_scale}x slower; Demo.work {a.work_us} us (block); "
        f"capacity {capacity:.0f}/s; {'HTTP' if a.http else 'RPC'}; deadline {a.deadline_ms} ms; "
        f"medians of {a.reps} runs of {a.duration:g} s; load average "
        f"{open('/proc/loadavg').read().split()[0]}",
        "",
        "| offered | admission | goodput/s | refused/s | deadline missed/s | p50 ms | p99 ms | goodput / off, paired |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for frac in loads:
        for m in modes:
            rs = [r for r in runs if r["load"] == frac and r["mode"] == m]
            per_s = lambda k: median([r[k] / a.duration for r in rs])  # noqa: E731
            ratio = "-"
            if m != "off":
                pairs = []
                for r in rs:
                    g = [x for x in runs if x["mode"] == "off" and x["load"] == frac and x["rep"] == r["rep"]]
                    if g and g[0]["achieved_rate"] > 0:
                        pairs.append(r["achieved_rate"] / g[0]["achieved_rate"])
                if pairs:
                    ratio = f"{median(pairs):.2f} ({min(pairs):.2f}-{max(pairs):.2f})"
            lines.append(
                f"| {frac:.0%} ({capacity * frac:.0f}/s) | {m} | {median([r['achieved_rate'] for r in rs]):.0f} | "
                f"{per_s('overloaded'):.0f} | {per_s('deadline_exceeded'):.0f} | "
                f"{median([r['p50_ms'] for r in rs]):.1f} | {median([r['p99_ms'] for r in rs]):.1f} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
