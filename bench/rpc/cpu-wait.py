#!/usr/bin/env python3
"""Time each process waited for a CPU, per call, beside the time it ran:
whether a cell's calls/s measures the code or the machine's scheduler.

The kernel counts, per thread, the nanoseconds it ran and the nanoseconds
it was runnable but waited on a run queue (`/proc/PID/task/*/schedstat`,
fields 1 and 2). Each round starts one system's `rpc-bench serve` (pinned
to CPU 0) and an `rpc-bench instr-client` (pinned to CPU 1) making a fixed
number of calls, reads both processes' counters before and after, and
prints, per call: the wall time, each side's time on a CPU, and each
side's time waiting for one. Systems alternate inside each round.

    python3 cpu-wait.py --systems ebb,tarpc --payloads 64,16384 --concurrency 1 --rounds 5

Run from bench/rpc after `cargo build --release --locked`; Linux only.
"""

import argparse
import glob
import os
import statistics
import subprocess
import sys
import time

DEFAULT_BINARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "target/release/rpc-bench")
MAX_ROUNDS = 20
MAX_CALLS = 1_000_000
# How often the client's counters are read while it runs (it exits at the
# end, taking its counters with it): the last reading misses at most this.
POLL_SECS = 0.005


def thread_schedstats(pid):
    """{thread id: (ns on a CPU, ns waiting for one)} of a process."""
    threads = {}
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                fields = f.read().split()
        except OSError:
            continue  # a thread that ended between the listing and the read
        threads[path.split("/")[4]] = (int(fields[0]), int(fields[1]))
    return threads


def schedstat(pid):
    """(ns on a CPU, ns waiting for one) summed over a process's threads."""
    threads = thread_schedstats(pid).values()
    return sum(t[0] for t in threads), sum(t[1] for t in threads)


def one_run(binary, system, flavour, payload, concurrency, calls):
    server = subprocess.Popen(
        [binary, "serve", "--system", system, "--flavour", flavour, "--pin-cpu", "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if not line.startswith("listening "):
            sys.exit(f"the {system} server did not start: {line!r}")
        addr = line.split()[1]
        s0 = schedstat(server.pid)
        t0 = time.monotonic()
        client = subprocess.Popen(
            ["taskset", "-c", "1", binary, "instr-client", "--system", system, "--addr", addr,
             "--flavour", flavour, "--payload", str(payload), "--concurrency", str(concurrency),
             "--calls", str(calls), "--connect-timeout-ms", "10000"],
            stdout=subprocess.DEVNULL)
        # Each thread's last reading: a runtime's worker thread can end
        # (taking its counters) before the process does.
        seen = {}
        while client.poll() is None:
            seen.update(thread_schedstats(client.pid))
            time.sleep(POLL_SECS)
        c = (sum(t[0] for t in seen.values()), sum(t[1] for t in seen.values()))
        wall = time.monotonic() - t0
        s1 = schedstat(server.pid)
        if client.returncode != 0:
            sys.exit(f"the {system} client failed with status {client.returncode}")
    finally:
        server.stdin.close()
        server.wait()
    us = lambda ns: ns / 1e3 / calls
    return {
        "calls_per_sec": calls / wall,
        "wall_us": wall * 1e6 / calls,
        "client_ran_us": us(c[0]),
        "client_waited_us": us(c[1]),
        "server_ran_us": us(s1[0] - s0[0]),
        "server_waited_us": us(s1[1] - s0[1]),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--systems", default="ebb,tarpc", help="comma separated: ebb, tarpc, tonic")
    p.add_argument("--payloads", default="64,16384", help="payload bytes, comma separated (each 1..=1048576)")
    p.add_argument("--concurrency", type=int, default=1, help="outstanding calls (1..=1024)")
    p.add_argument("--flavour", default="current", help='"current" or "multiN", both sides')
    p.add_argument("--calls", type=int, default=20000, help=f"calls per run (1..={MAX_CALLS})")
    p.add_argument("--rounds", type=int, default=5, help=f"rounds, systems interleaved (1..={MAX_ROUNDS})")
    p.add_argument("--binary", default=DEFAULT_BINARY, help="the rpc-bench executable")
    a = p.parse_args()
    systems = [s for s in a.systems.split(",") if s]
    bad = [s for s in systems if s not in ("ebb", "tarpc", "tonic")]
    if bad or not systems:
        p.error(f"--systems: {','.join(bad) or 'nothing'} is not accepted; give ebb, tarpc and/or tonic")
    try:
        payloads = [int(x) for x in a.payloads.split(",")]
    except ValueError:
        p.error(f"--payloads: {a.payloads!r} is not comma-separated byte counts such as 64,16384")
    if not all(1 <= x <= 1 << 20 for x in payloads):
        p.error(f"--payloads: {a.payloads} has a size out of range; give 1..=1048576 bytes each")
    if not 1 <= a.concurrency <= 1024:
        p.error(f"--concurrency: {a.concurrency} is out of range; give 1..=1024")
    if not 1 <= a.calls <= MAX_CALLS:
        p.error(f"--calls: {a.calls} is out of range; give 1..={MAX_CALLS}")
    if not 1 <= a.rounds <= MAX_ROUNDS:
        p.error(f"--rounds: {a.rounds} is out of range; give 1..={MAX_ROUNDS}")
    if not os.access(a.binary, os.X_OK):
        p.error(f"--binary: {a.binary} is not executable; run `cargo build --release --locked` first")
    runs = {(s, x): [] for s in systems for x in payloads}
    for r in range(a.rounds):
        for x in payloads:
            for s in systems:
                m = one_run(a.binary, s, a.flavour, x, a.concurrency, a.calls)
                runs[(s, x)].append(m)
                print(f"round {r + 1} {s} {x} B: " + " ".join(f"{k} {v:.1f}" for k, v in m.items()),
                      file=sys.stderr)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"{a.flavour}, {a.concurrency} outstanding, {a.calls} calls per run, medians of {a.rounds} "
          f"rounds (range); load average after: {load}")
    print()
    print("| payload | system | calls/s | wall µs/call | client on CPU | client waiting for a CPU "
          "| server on CPU | server waiting for a CPU |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for x in payloads:
        for s in systems:
            ms = runs[(s, x)]
            def cell(k, fmt="{:.1f}"):
                v = [m[k] for m in ms]
                return f"{fmt.format(statistics.median(v))} ({fmt.format(min(v))}–{fmt.format(max(v))})"
            print(f"| {x} B | {s} | {cell('calls_per_sec', '{:.0f}')} | {cell('wall_us')} | "
                  f"{cell('client_ran_us')} | {cell('client_waited_us')} | {cell('server_ran_us')} | "
                  f"{cell('server_waited_us')} |")


if __name__ == "__main__":
    main()
