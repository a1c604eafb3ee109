#!/usr/bin/env python3
"""CPU per HTTP/JSON call of one or more ebb builds' gateways and of HAProxy
(`mode http`), in one run, interleaved, as ratios to HAProxy.

bench/gateway_cost.py measures one build against HAProxy; comparing two
builds there means two runs, minutes apart, on a machine whose load moves
HAProxy's own cost by a third between them. Here every build's gateway and
HAProxy run side by side in front of the same `ebb node --http`, each
pinned to the same CPU with one thread, and every repetition loads each of
them in turn for the same seconds at the same rate: each repetition gives
a ratio to HAProxy measured minutes, not hours, apart, and the table gives
their medians, with CPU split into user and system time.

Not a test: run by hand, see docs/benchmarks.md.

  cargo build --release -p ebb-cli --bin ebb
  python3 bench/gateway_http_cost.py --reps 7 BEFORE_BUILD AFTER_BUILD
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway import Children, load, start_node  # noqa: E402
from gateway_cost import MSG, ebb_up, haproxy_one, pin  # noqa: E402

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def user_system_seconds(pid):
    """User and system CPU of every thread of `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS_PER_S, int(fields[12]) / TICKS_PER_S


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("builds", nargs="+", help="ebb executables whose gateways to measure; "
                    "the first also runs the node and the load generator")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rate", type=float, default=10000.0, help="offered calls per second")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    ap.add_argument("--connections", type=int, default=64,
                    help="HTTP keep-alive connections of the load generator")
    ap.add_argument("--cpu", type=int, default=0, help="the CPU the proxies are pinned to")
    a = ap.parse_args()
    for b in a.builds:
        if not os.access(b, os.X_OK):
            sys.exit(f"{b}: not an executable; build one with cargo build --release -p ebb-cli --bin ebb")
    ebb = a.builds[0]
    children = Children()
    tmp = tempfile.mkdtemp(prefix="ebb-gateway-http-cost-")
    try:
        _, node_http = start_node(children, ebb, 1, "block")
        hp, hp_http = haproxy_one(children, tmp, node_http, "http")
        paths = [("haproxy", hp_http, hp)]
        for i, b in enumerate(a.builds):
            gw, _, gw_http = ebb_up(children, tmp, os.path.abspath(b), f"gateway{i}", 1)
            paths.append((f"ebb gateway ({b})", gw_http, gw))
        for _, _, p in paths:
            pin(p.pid, a.cpu)
        for _, target, _ in paths:
            load(ebb, target, 500, 1, "Demo.echo", MSG, 2000, a.connections, 0)
        runs = {name: [] for name, _, _ in paths}
        for rep in range(a.reps):
            for name, target, p in paths:
                u0, s0 = user_system_seconds(p.pid)
                r = load(ebb, target, a.rate, a.duration, "Demo.echo", MSG, 2000, a.connections, rep + 1)
                u1, s1 = user_system_seconds(p.pid)
                ok = max(r["ok"], 1)
                runs[name].append(((u1 - u0) / ok * 1e6, (s1 - s0) / ok * 1e6, r["ok"], r["sent"]))
                print(f"rep {rep} {name}: {runs[name][-1][0] + runs[name][-1][1]:.1f} us CPU per call, "
                      f"{r['ok']} of {r['sent']} answered", file=sys.stderr)
        print(report(runs, a))
    finally:
        children.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def report(runs, a):
    hp = [u + s for u, s, _, _ in runs["haproxy"]]
    lines = [
        f"64 B Demo.echo over HTTP/JSON at {a.rate:.0f}/s for {a.duration:g} s per measurement, "
        f"{a.connections} connections, medians of {a.reps}; proxies pinned to CPU {a.cpu}, one thread; "
        f"load average {open('/proc/loadavg').read().split()[0]}",
        "",
        "| path | user us/call | system us/call | CPU us/call | / HAProxy (median of per-repetition ratios) | answered |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in runs.items():
        total = [u + s for u, s, _, _ in rows]
        ratios = [t / h for t, h in zip(total, hp)]
        lines.append(
            f"| {name} | {statistics.median(u for u, _, _, _ in rows):.1f} | "
            f"{statistics.median(s for _, s, _, _ in rows):.1f} | {statistics.median(total):.1f} | "
            f"{statistics.median(ratios):.2f} | {sum(r[2] for r in rows)} of {sum(r[3] for r in rows)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
