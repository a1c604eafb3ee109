#!/usr/bin/env python3
"""What `ebb load` itself costs per sent call, and how late it sends.

Starts one `ebb node` (pinned to --node-cpu, one thread) and, for each
build given and each offered rate, runs `ebb load` against it under
`perf stat` (task-clock, context switches, system calls), builds
interleaved rate by rate so the machine's load hits them alike. Prints a
markdown table: CPU µs per sent call (task-clock / sent), context switches
and system calls per sent call, what was sent and answered, and the
generator's own send lag (builds that report it).

    python3 bench/load_cost.py --ebb BEFORE --ebb AFTER --rates 10000,30000,60000 \
        --threads 1 --load-cpu 1 --reps 2
    python3 bench/load_cost.py --ebb BEFORE --ebb AFTER --http --rates 2000,5000 \
        --threads 1,2 --reps 3

With --http the generator speaks HTTP/JSON to the node's HTTP address
(`ebb node --http`) instead of ebb RPC.

A build that does not know an option given here fails its run; run
older builds with the options they have.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway import Children, free_port, wait_port  # noqa: E402

MSG = json.dumps({"msg": "x" * 64})


def perf_load(a, ebb, target, rate, threads):
    cmd = ["perf", "stat", "-x", ",", "-e", "task-clock,context-switches,raw_syscalls:sys_enter",
           ebb, "load", "--target", target, "--rate", str(rate), "--duration", str(a.duration),
           "--method", "Demo.echo", "--args", MSG, "--deadline-ms", "2000",
           "--connections", str(max(a.connections, threads)), "--max-outstanding", str(a.max_outstanding),
           "--json"]
    if a.http:
        cmd.insert(cmd.index("--json"), "--http")
    if threads != 1:
        cmd[cmd.index("--json"):cmd.index("--json")] = ["--threads", str(threads)]
    if a.load_cpu is not None:
        cmd = ["taskset", "-c", a.load_cpu] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {out.stderr}")
    r = json.loads(out.stdout)
    counters = {}
    for line in out.stderr.splitlines():
        f = line.split(",")
        if len(f) > 2 and re.match(r"^[0-9.]+$", f[0]):
            counters[f[2]] = float(f[0])
    r["task_clock_ms"] = counters.get("task-clock", float("nan"))
    r["cs"] = counters.get("context-switches", float("nan"))
    r["syscalls"] = counters.get("raw_syscalls:sys_enter", float("nan"))
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ebb", action="append", required=True, help="a build to measure (repeatable)")
    ap.add_argument("--rates", default="10000,30000,60000")
    ap.add_argument("--threads", default="1", help="comma-separated `ebb load --threads` values")
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--max-outstanding", type=int, default=10000)
    ap.add_argument("--node-cpu", default="0", help="CPU list the node is pinned to")
    ap.add_argument("--node-threads", type=int, default=1)
    ap.add_argument("--load-cpu", help="CPU list the load generator is pinned to (default: not pinned)")
    ap.add_argument("--http", action="store_true",
                    help="load the node's HTTP/JSON address (POST /rpc/Demo/echo) instead of its RPC one")
    a = ap.parse_args()
    children = Children()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    try:
        port, http_port = free_port(), free_port()
        children.start(["taskset", "-c", a.node_cpu, a.ebb[0], "node", "--listen", f"127.0.0.1:{port}",
                        "--http", f"127.0.0.1:{http_port}", "--threads", str(a.node_threads)],
                       stdout=subprocess.DEVNULL)
        wait_port(port, "ebb node")
        wait_port(http_port, "ebb node --http")
        target = f"127.0.0.1:{http_port if a.http else port}"
        # Warm-up: connections, the node's allocator.
        perf_load(a, a.ebb[0], target, 1000, 1)
        print(f"load average {open('/proc/loadavg').read().split()[0]}; "
              f"{'HTTP/JSON' if a.http else 'ebb RPC'} to a node on CPU {a.node_cpu} "
              f"({a.node_threads} thread); load generator "
              f"{'not pinned' if a.load_cpu is None else f'on CPU {a.load_cpu}'}")
        print("| offered/s | threads | build | rep | CPU µs per sent call | context switches per call "
              "| syscalls per call | sent | not sent | ok/s | p50 ms | send lag p99 / max ms |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for rate in [int(x) for x in a.rates.split(",") if x]:
            for threads in [int(x) for x in a.threads.split(",") if x]:
                for rep in range(a.reps):
                    for ebb in a.ebb:
                        r = perf_load(a, ebb, target, rate, threads)
                        sent = max(r["sent"], 1)
                        lag = (f"{r['send_lag_p99_ms']:.2f} / {r['send_lag_max_ms']:.2f}"
                               if "send_lag_p99_ms" in r else "—")
                        print(f"| {rate} | {threads} | {ebb} "
                              f"| {rep + 1} | {r['task_clock_ms'] * 1000 / sent:.2f} | {r['cs'] / sent:.3f} "
                              f"| {r['syscalls'] / sent:.2f} | {r['sent']} | {r['not_sent']} "
                              f"| {r['achieved_rate']:.0f} | {r['p50_ms']:.3f} | {lag} |", flush=True)
                        time.sleep(0.5)
    finally:
        children.stop()


if __name__ == "__main__":
    main()
