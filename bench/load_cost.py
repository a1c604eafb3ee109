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

With --callgrind, instead of the table above: user-space instructions per
sent call of each build's generator under valgrind's callgrind (which a
loaded machine does not disturb), at --callgrind-rate, as the difference
of a short and a long run over the difference in calls sent (so start-up
and shutdown cancel out), --reps times; a run where a call did not end ok
is marked, as its count is not comparable:

    python3 bench/load_cost.py --ebb BEFORE --ebb AFTER --http --callgrind --reps 2

--node-bin loads a user's node binary over RPC instead (the example
greeter's, for a service the generator calls through the node's JSON
adapter):

    python3 bench/load_cost.py --ebb BEFORE --ebb AFTER --callgrind \
        --node-bin target/release/greeter-node --method Greeter.hello --args '{"name":"x"}'

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
# Demo.echo of 64 bytes unless --method and --args say otherwise.
DEFAULT_METHOD = "Demo.echo"


def perf_load(a, ebb, target, rate, threads):
    cmd = ["perf", "stat", "-x", ",", "-e", "task-clock,context-switches,raw_syscalls:sys_enter"]
    cmd += load_cmd(a, ebb, target, rate, a.duration, threads)
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


def load_cmd(a, ebb, target, rate, duration, threads, deadline_ms=2000):
    cmd = [ebb, "load", "--target", target, "--rate", str(rate), "--duration", str(duration),
           "--method", a.method, "--args", a.args, "--deadline-ms", str(deadline_ms),
           "--connections", str(max(a.connections, threads)), "--max-outstanding", str(a.max_outstanding),
           "--json"]
    if a.http:
        cmd.insert(cmd.index("--json"), "--http")
    if threads != 1:
        cmd[cmd.index("--json"):cmd.index("--json")] = ["--threads", str(threads)]
    return cmd


def callgrind_load(a, ebb, target, duration, threads, tmp):
    """Instructions of one generator run under callgrind, and its report."""
    out = os.path.join(tmp, f"callgrind.{os.getpid()}.out")
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    # A long deadline: slowed down by callgrind, every call still ends ok,
    # so both runs count the same work per call.
    cmd += load_cmd(a, ebb, target, a.callgrind_rate, duration, threads, deadline_ms=60000)
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {run.stderr[-2000:]}")
    r = json.loads(run.stdout)
    instructions = None
    with open(out) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                instructions = int(line.split()[1])
    os.remove(out)
    return instructions, r


def callgrind_table(a, target):
    import tempfile
    print(f"user-space instructions per sent call (callgrind), {a.callgrind_rate}/s, "
          f"runs of {a.callgrind_short} s and {a.callgrind_long} s")
    print("| threads | build | rep | instructions per sent call | sent (short / long) | ok (short / long) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for threads in [int(x) for x in a.threads.split(",") if x]:
            for rep in range(a.reps):
                for ebb in a.ebb:
                    i_short, r_short = callgrind_load(a, ebb, target, a.callgrind_short, threads, tmp)
                    i_long, r_long = callgrind_load(a, ebb, target, a.callgrind_long, threads, tmp)
                    calls = max(r_long["sent"] - r_short["sent"], 1)
                    clean = r_short["ok"] == r_short["sent"] and r_long["ok"] == r_long["sent"]
                    print(f"| {threads} | {ebb} | {rep + 1} | {(i_long - i_short) / calls:,.0f}"
                          f"{'' if clean else ' (not all ok)'} "
                          f"| {r_short['sent']} / {r_long['sent']} | {r_short['ok']} / {r_long['ok']} |",
                          flush=True)


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
    ap.add_argument("--node-bin", help="a user's node binary to load over RPC instead of `ebb node` "
                    "(started with --listen ADDR --threads N); a service the generator was not built "
                    "with is called through the node's JSON adapter")
    ap.add_argument("--method", default=DEFAULT_METHOD)
    ap.add_argument("--args", default=MSG, help="the method's arguments, a JSON object")
    ap.add_argument("--callgrind", action="store_true",
                    help="count the generator's instructions per sent call under callgrind instead")
    ap.add_argument("--callgrind-rate", type=int, default=200)
    ap.add_argument("--callgrind-short", type=float, default=2.0, help="seconds")
    ap.add_argument("--callgrind-long", type=float, default=8.0, help="seconds")
    a = ap.parse_args()
    children = Children()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    try:
        port, http_port = free_port(), free_port()
        if a.node_bin:
            if a.http:
                sys.exit("--http loads `ebb node`'s HTTP address; a --node-bin serves RPC only")
            children.start(["taskset", "-c", a.node_cpu, a.node_bin, "--listen", f"127.0.0.1:{port}",
                            "--threads", str(a.node_threads)], stdout=subprocess.DEVNULL)
            wait_port(port, a.node_bin)
        else:
            children.start(["taskset", "-c", a.node_cpu, a.ebb[0], "node", "--listen", f"127.0.0.1:{port}",
                            "--http", f"127.0.0.1:{http_port}", "--threads", str(a.node_threads)],
                           stdout=subprocess.DEVNULL)
            wait_port(port, "ebb node")
            wait_port(http_port, "ebb node --http")
        target = f"127.0.0.1:{http_port if a.http else port}"
        if a.callgrind:
            callgrind_table(a, target)
            return
        # Warm-up: connections, the node's allocator.
        perf_load(a, a.ebb[0], target, 1000, 1)
        print(f"load average {open('/proc/loadavg').read().split()[0]}; "
              f"{'HTTP/JSON' if a.http else 'ebb RPC'} {a.method} to "
              f"{a.node_bin or 'a node'} on CPU {a.node_cpu} "
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
