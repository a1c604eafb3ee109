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
  python3 bench/gateway_http_cost.py --syscalls BEFORE_BUILD AFTER_BUILD   # root, perf

With `--syscalls`, each path instead gets one run of `--duration` under
perf's system-call tracepoints, and the table gives its system calls per
answered call by kind: where the system time per call goes; the
`epoll_wait`s that only look for events (timeout 0) are also counted
apart.

With `--sweep RATES`, each path is offered each rate in turn, the
proxies on `--cpu`, their nodes and the load generator pinned to
`--other-cpu`: where answered/s stops following the offer while the
proxy's CPU share nears 1, that one core is saturated. If the load
generator (or the node beside it) saturates the other CPU first, the
table says so by its CPU share and the offer it did not keep up with.

  python3 bench/gateway_http_cost.py --sweep 10000,20000,30000 --duration 3 BUILD

With `--pin-others`, the nodes and the load generator are pinned to
`--other-cpu` in the CPU-per-call runs too. Without it the scheduler
places them: often on the proxy's own CPU, where each answer the proxy
writes wakes the load generator into preempting it, so a path's figure
also says where its peers happened to run (in one run HAProxy's node
shared its CPU while the gateway's node ran on the other).

  python3 bench/gateway_http_cost.py --reps 5 --pin-others BEFORE AFTER
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway import Children, load, start_node  # noqa: E402
from gateway_cost import MSG, descendants, ebb_up, haproxy_one, pin  # noqa: E402

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def user_system_seconds(pid):
    """User and system CPU of every thread of `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS_PER_S, int(fields[12]) / TICKS_PER_S


# The system calls a proxy moves a call's bytes and waits with.
SYSCALLS = ["read", "recvfrom", "write", "writev", "sendto", "sendmsg", "recvmsg", "epoll_wait",
            "epoll_ctl", "accept4", "setsockopt", "getsockopt", "clock_gettime", "futex"]


def syscalls(ebb, target, pid, a, tmp):
    """System calls of `pid` per answered call over one run at --rate."""
    out = os.path.join(tmp, f"perf-{pid}")
    events = ",".join(f"syscalls:sys_enter_{s}" for s in SYSCALLS)
    args = [ebb, "load", "--target", target, "--http", "--rate", f"{a.rate:.1f}", "--duration",
            str(a.duration), "--method", "Demo.echo", "--args", MSG, "--deadline-ms", "2000",
            "--connections", str(a.connections), "--threads", "1", "--seed", "1", "--json"]
    # The same tracepoint again, filtered: the `epoll_wait`s that only
    # look (timeout 0), a runtime's check for events before running
    # deferred tasks, apart from those it may sleep in.
    looks = ["-e", "syscalls:sys_enter_epoll_wait", "--filter", "timeout == 0"]
    r = subprocess.run(["perf", "stat", "-x,", "-o", out, "-e", events, *looks, "-p", str(pid), "--", *args],
                       capture_output=True, text=True, check=True)
    import json
    ok = max(json.loads(r.stdout)["ok"], 1)
    counts = {}
    with open(out) as f:
        for line in f:
            fields = line.strip().split(",")
            if len(fields) > 2 and fields[2].startswith("syscalls:"):
                name = fields[2].split("sys_enter_")[1]
                # The filtered count comes last, under the same name.
                name = "epoll_wait(timeout 0)" if name in counts and name == "epoll_wait" else name
                counts[name] = int(fields[0]) if fields[0].isdigit() else 0
    return ok, {k: v / ok for k, v in counts.items()}


def sweep(ebb, paths, nodes, a):
    """Answered/s, latency and CPU of each pinned proxy at each offered rate."""
    print(f"64 B Demo.echo over HTTP/JSON, {a.duration:g} s per rate, {a.connections} connections; "
          f"proxies pinned to CPU {a.cpu}, one thread; nodes and load generator pinned to CPU {a.other_cpu}; "
          f"load average {open('/proc/loadavg').read().split()[0]}")
    print()
    print("| offered/s | path | answered/s | p50 ms | p99 ms | proxy CPU share | CPU us per call "
          "| its node's CPU share | load generator CPU share |")
    print("|---|---|---|---|---|---|---|---|---|")
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {a.other_cpu})
    try:
        for rate in [float(x) for x in a.sweep.split(",") if x]:
            for name, target, p in paths:
                u0, s0 = user_system_seconds(p.pid)
                n0 = sum(sum(user_system_seconds(n)) for n in nodes[name])
                gen = os.times()
                threads = max(1, -(-int(rate) // a.rate_per_thread))
                r = load(ebb, target, rate, a.duration, "Demo.echo", MSG, 2000, max(a.connections, threads),
                         1, threads=threads)
                end = os.times()
                u1, s1 = user_system_seconds(p.pid)
                node_cpu = sum(sum(user_system_seconds(n)) for n in nodes[name]) - n0
                cpu = (u1 - u0) + (s1 - s0)
                gen_cpu = (end.children_user - gen.children_user) + (end.children_system - gen.children_system)
                per_call = cpu / r["ok"] * 1e6 if r["ok"] else float("nan")
                print(f"| {rate:.0f} | {name} | {r['achieved_rate']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                      f"{cpu / a.duration:.2f} | {per_call:.1f} | {node_cpu / a.duration:.2f} | "
                      f"{gen_cpu / a.duration:.2f} |", flush=True)
    finally:
        os.sched_setaffinity(0, saved)


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
    ap.add_argument("--sweep", help="comma-separated offered rates: where each pinned proxy saturates")
    ap.add_argument("--other-cpu", type=int, default=1,
                    help="with --sweep or --pin-others: the CPU the nodes and the load generator are pinned to")
    ap.add_argument("--pin-others", action="store_true",
                    help="pin the nodes and the load generator to --other-cpu in the CPU-per-call runs as well")
    ap.add_argument("--rate-per-thread", type=int, default=20000,
                    help="with --sweep: offered calls/s per sender thread of the load generator")
    ap.add_argument("--syscalls", action="store_true",
                    help="only count each path's system calls per call (one run each; root, perf)")
    a = ap.parse_args()
    for b in a.builds:
        if not os.access(b, os.X_OK):
            sys.exit(f"{b}: not an executable; build one with cargo build --release -p ebb-cli --bin ebb")
    ebb = a.builds[0]
    children = Children()
    tmp = tempfile.mkdtemp(prefix="ebb-gateway-http-cost-")
    try:
        _, node_http = start_node(children, ebb, 1, "block")
        node = children.procs[-1]
        hp, hp_http = haproxy_one(children, tmp, node_http, "http")
        paths = [("haproxy", hp_http, hp)]
        for i, b in enumerate(a.builds):
            gw, _, gw_http = ebb_up(children, tmp, os.path.abspath(b), f"gateway{i}", 1)
            paths.append((f"ebb gateway ({b})", gw_http, gw))
        for _, _, p in paths:
            pin(p.pid, a.cpu)
        # Each path's node: HAProxy's is the shared `ebb node`, a
        # gateway's the one its pool started.
        nodes = {name: [node.pid] if name == "haproxy" else descendants(p.pid)[1:] for name, _, p in paths}
        if a.sweep or a.pin_others:
            for pids in nodes.values():
                for pid in pids:
                    pin(pid, a.other_cpu)
        for _, target, _ in paths:
            load(ebb, target, 500, 1, "Demo.echo", MSG, 2000, a.connections, 0)
        if a.sweep:
            sweep(ebb, paths, nodes, a)
            return
        if a.pin_others:
            # The load generator inherits this process's CPUs.
            os.sched_setaffinity(0, {a.other_cpu})
        if a.syscalls:
            print("| path | answered | system calls per call |\n|---|---|---|")
            for name, target, p in paths:
                ok, per = syscalls(ebb, target, p.pid, a, tmp)
                kinds = ", ".join(f"{k} {v:.2f}" for k, v in per.items() if v >= 0.005)
                total = sum(v for k, v in per.items() if k != "epoll_wait(timeout 0)")
                print(f"| {name} | {ok} | {total:.2f}: {kinds} |")
            return
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
        + (f"nodes and load generator pinned to CPU {a.other_cpu}; " if a.pin_others else "")
        + f"load average {open('/proc/loadavg').read().split()[0]}",
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
