#!/usr/bin/env python3
"""What one forwarded call costs the gateway: CPU time, instructions, and
the latency it adds over going straight to one node.

Wall-clock latency on a shared machine is noisy; the CPU time a process
spends per call is not (much). So besides the p50 added to a 64-byte echo,
this measures, for the ebb gateway and for HAProxy in front of the very
same node:

- CPU per call: the proxy process's user+system time (/proc/PID/stat)
  over an open-loop run, divided by the calls answered. Its inverse is
  the throughput one core of that proxy sustains, in calls per CPU-second.
  The proxy is pinned to one CPU (`taskset`) with one thread (the
  gateway's `gateway.threads = 1`, HAProxy `nbthread 1`); its node is not.
- Waiting for a CPU per call: how long the proxy's threads sat runnable
  but not running during the p50 runs (/proc/PID/task/TID/schedstat),
  divided by the calls. On a shared machine this is the part of the
  latency a proxy adds that is the machine's load, not the proxy's work.
- Instructions per call (`--callgrind`): the gateway under valgrind's
  callgrind, counters zeroed after a warm-up and dumped after a fixed
  number of calls (no hardware counters are needed).

Not a test: run by hand, see docs/benchmarks.md.

  cargo build --release -p ebb-cli --bin ebb
  python3 bench/gateway_cost.py --reps 5
  python3 bench/gateway_cost.py --reps 1 --callgrind
  python3 bench/gateway_cost.py --reps 5 --proto http   # the HTTP/JSON rows only
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway import Children, STARTUP_TIMEOUT_S, free_port, load, median, metrics, start_node, wait_port  # noqa: E402

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
MSG = json.dumps({"msg": "x" * 64})
# Offered calls per second one `ebb load` sender thread is given unless
# --load-threads says otherwise: one thread keeps a schedule of some tens
# of thousands per second (docs/benchmarks.md, the load generator's cost).
LOAD_RATE_PER_THREAD = 40_000


def load_threads(a, rate):
    """Sender threads of `ebb load` at `rate`: --load-threads, or one per
    LOAD_RATE_PER_THREAD offered."""
    if a.load_threads:
        return a.load_threads
    return max(1, -(-int(rate) // LOAD_RATE_PER_THREAD))


def cpu_seconds(pid):
    """User + system CPU of every thread of `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5), counted after the command name.
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def runqueue_wait_seconds(pid):
    """Time the threads of `pid` spent runnable but waiting for a CPU so
    far (the second field of /proc/PID/task/TID/schedstat, in ns): on a
    shared machine, the part of a proxy's added latency that is not the
    proxy's own work."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return total / 1e9


def pin(pid, cpu):
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=True,
                   stdout=subprocess.DEVNULL)


def ebb_up(children, tmp, ebb, name, threads, wrap=(), env=None, caller_bound=None):
    """`ebb up` with one process node; returns (process, rpc, http).
    `caller_bound`: its `admission.max_in_flight_per_caller` (None: the
    default)."""
    cfg = os.path.join(tmp, f"{name}.toml")
    with open(cfg, "w") as f:
        f.write(f"""[gateway]
rpc = "127.0.0.1:0"
http = "127.0.0.1:0"
seed = 1
threads = {threads}
[service]
name = "demo"
[pool]
kind = "process"
initial = 1
min = 1
max = 1
[balance]
policy = "jsq"
[admission]
enabled = true
default_deadline_ms = 2000
{"" if caller_bound is None else f"max_in_flight_per_caller = {caller_bound}"}
[autoscale]
policy = "none"
""")
    p = children.start([*wrap, ebb, "up", cfg], stdout=subprocess.PIPE, text=True,
                       env=env, stderr=subprocess.DEVNULL)
    rpc = http = None
    ready = False
    deadline = time.monotonic() + STARTUP_TIMEOUT_S * (10 if wrap else 1)
    while not (rpc and http and ready) and time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            sys.exit(f"{name}: ebb up exited before its node was ready")
        if line.startswith("gateway listening on "):
            rpc = line.split()[-1]
        if line.startswith("http listening on "):
            http = line.split()[-1]
        if "-> ready" in line:
            ready = True
    if not ready:
        sys.exit(f"{name}: no node ready")
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
    return p, rpc, http


def haproxy_one(children, tmp, node, mode):
    """HAProxy with one thread in front of one node: `mode http` for the
    HTTP rows, `mode tcp` (bytes passed through, nothing parsed) as the
    floor of any proxy hop for the ebb RPC rows."""
    port = free_port()
    cfg = f"""global
  nbthread 1
  maxconn 8000
defaults
  mode {mode}
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  server n0 {node}
"""
    path = os.path.join(tmp, f"haproxy-{mode}.cfg")
    with open(path, "w") as f:
        f.write(cfg)
    p = children.start(["haproxy", "-db", "-f", path], stdout=subprocess.DEVNULL)
    wait_port(port, "haproxy")
    return p, f"127.0.0.1:{port}"


def run(a, target, rate, duration, http, seed, connections):
    threads = load_threads(a, rate)
    # At least one connection per sender thread.
    connections = max(connections, threads)
    if a.load_cpu is None:
        return load(a.ebb, target, rate, duration, "Demo.echo", MSG, 2000, connections, seed, http=http,
                    threads=threads)
    # The load generator inherits this process's CPU set.
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {a.load_cpu})
    try:
        return load(a.ebb, target, rate, duration, "Demo.echo", MSG, 2000, connections, seed, http=http,
                    threads=threads)
    finally:
        os.sched_setaffinity(0, saved)


def cost_run(a, proc, target, http, seed):
    before = cpu_seconds(proc.pid)
    r = run(a, target, a.cpu_rate, a.duration, http, seed, a.http_connections if http else a.connections)
    cpu = cpu_seconds(proc.pid) - before
    r["cpu_s"] = cpu
    r["cpu_us_per_call"] = cpu / r["ok"] * 1e6 if r["ok"] else float("nan")
    return r


def callgrind(a, children, tmp):
    out = os.path.join(tmp, "callgrind.out")
    wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    p, rpc, http = ebb_up(children, tmp, os.path.abspath(a.ebb), "callgrind", a.gateway_threads, wrap=wrap)
    # With --proto http the calls come over HTTP/JSON, else over ebb RPC.
    over_http = a.proto == "http"
    target = http if over_http else rpc
    # Warm up: connections, allocator, metric families.
    run(a, target, 200, 2, over_http, 0, 8)
    subprocess.run(["callgrind_control", "--zero", str(p.pid)], check=True, stdout=subprocess.DEVNULL)
    r = run(a, target, a.callgrind_rate, a.callgrind_calls / a.callgrind_rate, over_http, 1, 8)
    subprocess.run(["callgrind_control", "--dump", str(p.pid)], check=True, stdout=subprocess.DEVNULL)
    dumps = [f for f in os.listdir(tmp) if f.startswith("callgrind.out")]
    ir = None
    # The newest dump (the one after the zeroing) holds the run's count;
    # the final dump at exit is not written yet.
    last = max((os.path.join(tmp, d) for d in dumps), key=os.path.getmtime)
    with open(last) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                ir = int(line.split()[1])
    if a.annotate:
        shutil.copy(last, a.annotate + ".callgrind")
        with open(a.annotate, "w") as out:
            subprocess.run(["callgrind_annotate", "--inclusive=yes", last], stdout=out)
    return r["ok"], ir


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ebb", default="target/release/ebb")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    ap.add_argument("--latency-rate", type=float, default=1000.0, help="rate of the p50 runs")
    ap.add_argument("--cpu-rate", type=float, default=10000.0, help="rate of the CPU-per-call runs")
    ap.add_argument("--connections", type=int, default=8, help="RPC connections of the load generator")
    ap.add_argument("--http-connections", type=int, default=64,
                    help="HTTP connections of the CPU runs (one request at a time on each)")
    ap.add_argument("--cpu", type=int, default=0, help="the CPU the proxies are pinned to")
    ap.add_argument("--gateway-threads", type=int, default=1,
                    help="the gateway's gateway.threads (1: one current-thread runtime)")
    ap.add_argument("--callgrind", action="store_true", help="only count the gateway's instructions per call")
    ap.add_argument("--proto", choices=["rpc", "http", "both"], default="both",
                    help="which ingress to measure (with --callgrind: rpc unless http)")
    ap.add_argument("--callgrind-calls", type=int, default=2000)
    ap.add_argument("--callgrind-rate", type=float, default=250.0)
    ap.add_argument("--annotate", help="with --callgrind: write callgrind_annotate's output here "
                    "(and the profile itself beside it, as FILE.callgrind)")
    ap.add_argument("--sweep", help="comma-separated offered rates: only the CPU runs of the RPC "
                    "paths, one per rate, to find where one core of each saturates")
    ap.add_argument("--caller-bounds", type=lambda v: [int(x) for x in v.split(",") if x], default=[],
                    help="with --sweep: also sweep a gateway with each of these "
                         "admission.max_in_flight_per_caller values (comma-separated), beside the default one")
    ap.add_argument("--load-cpu", type=int, help="pin the load generator to this CPU (default: not pinned)")
    ap.add_argument("--load-threads", type=int,
                    help="sender threads of the load generator (`ebb load --threads`; default: one per "
                         f"{LOAD_RATE_PER_THREAD} calls/s offered)")
    ap.add_argument("--nice", type=lambda v: [int(x) for x in v.split(",") if x], default=[0],
                    help="with --sweep: comma-separated niceness values (-20..19; below 0 needs root); every row "
                         "runs at each, the proxies, their nodes and the load generator alike (default 0)")
    ap.add_argument("--json", help="write every run here")
    a = ap.parse_args()
    if any(not -20 <= n <= 19 for n in a.nice) or (min(a.nice) < 0 and os.geteuid() != 0):
        sys.exit(f"--nice {','.join(map(str, a.nice))}: give values from -20 to 19; below 0 only as root")
    if a.load_threads is not None and not 1 <= a.load_threads <= 64:
        sys.exit(f"--load-threads {a.load_threads}: give 1 to 64")
    if not os.access(a.ebb, os.X_OK):
        sys.exit(f"--ebb {a.ebb}: not an executable; build it with cargo build --release -p ebb-cli --bin ebb")
    children = Children()
    tmp = tempfile.mkdtemp(prefix="ebb-gateway-cost-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    try:
        if a.callgrind:
            calls, ir = callgrind(a, children, tmp)
            print(f"gateway under callgrind: {calls} calls, {ir} instructions, "
                  f"{ir / calls:.0f} instructions per forwarded call")
            return
        node_rpc, node_http = start_node(children, a.ebb, 1, "block")
        gw, gw_rpc, gw_http = ebb_up(children, tmp, os.path.abspath(a.ebb), "gateway", a.gateway_threads)
        # Gateways whose per-caller bound differs, for the sweep only.
        bounded = [(b, *ebb_up(children, tmp, os.path.abspath(a.ebb), f"gateway-{b}", a.gateway_threads,
                               caller_bound=b))
                   for b in (a.caller_bounds if a.sweep else [])]
        hp, hp_http = haproxy_one(children, tmp, node_http, "http")
        hpt, hp_tcp = haproxy_one(children, tmp, node_rpc, "tcp")
        for p in (gw, hp, hpt, *(b[1] for b in bounded)):
            pin(p.pid, a.cpu)
        paths = [
            ("rpc", "direct", node_rpc, None),
            ("rpc", "haproxy (tcp mode)", hp_tcp, hpt),
            ("rpc", "ebb gateway", gw_rpc, gw),
            *(("rpc", f"ebb gateway, caller bound {b}", rpc, p) for b, p, rpc, _ in bounded),
            ("http", "direct", node_http, None),
            ("http", "haproxy", hp_http, hp),
            ("http", "ebb gateway", gw_http, gw),
        ]
        paths = [p for p in paths if a.proto in ("both", p[0])]
        for proto, _, t, _ in paths:
            run(a, t, 500, 1, proto == "http", 0, a.http_connections if proto == "http" else a.connections)
        if a.sweep:
            admin = {gw.pid: gw_http, **{p.pid: http for _, p, _, http in bounded}}
            sweep(a, [p for p in paths if p[0] == "rpc" and p[3] is not None], admin, children)
            return
        rows = []
        for rep in range(a.reps):
            for proto, name, t, proc in paths:
                waited = runqueue_wait_seconds(proc.pid) if proc is not None else None
                r = run(a, t, a.latency_rate, a.duration, proto == "http", rep + 1, a.connections)
                r.update(kind="latency", proto=proto, path=name, rep=rep)
                if proc is not None and r["ok"]:
                    r["runq_wait_us_per_call"] = (runqueue_wait_seconds(proc.pid) - waited) / r["ok"] * 1e6
                rows.append(r)
                if proc is not None:
                    c = cost_run(a, proc, t, proto == "http", rep + 1)
                    c.update(kind="cpu", proto=proto, path=name, rep=rep)
                    rows.append(c)
                    print(f"rep {rep} {proto} {name}: p50 {r['p50_ms']:.3f} ms; "
                          f"{c['cpu_us_per_call']:.1f} us CPU per call at {c['achieved_rate']:.0f}/s",
                          file=sys.stderr)
        print(report(rows, a))
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"args": vars(a), "rows": rows}, f, indent=1)
    finally:
        children.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def sweep(a, paths, admin, children):
    """CPU per call of each pinned proxy as the offered rate grows: once
    its one core is saturated, answered/s stops following the offer.

    It also says why what was offered was not answered: for the ebb
    gateway, who refused it (the `/metrics` counters over the run: the
    admission rules, and the RPC ingress's per-caller bound of calls in
    flight); the load generator's own counts (`overloaded` includes its
    client's window of calls per connection, `not sent` its bound of
    requests outstanding); and how much CPU the proxy got, how long it sat
    runnable waiting for one, and the load generator's CPU. On a shared
    machine a proxy pinned to one CPU gets only its share of that CPU:
    answered/s then says how loaded the machine was, not what a core does.
    `--nice` runs every row at each given niceness (of the proxies, their
    nodes and the load generator) in the same sweep."""
    print(f"64 B Demo.echo over ebb RPC, {a.duration:g} s per rate, {a.connections} connections; "
          f"proxies pinned to CPU {a.cpu}, one thread; load generator "
          f"{'not pinned' if a.load_cpu is None else f'pinned to CPU {a.load_cpu}'}; "
          f"load average {open('/proc/loadavg').read().split()[0]}")
    print()
    print("| offered/s | path | nice | answered/s | overloaded / deadline / not sent (load generator) "
          "| refused by (gateway /metrics) | CPU us per answered call | calls per CPU-second "
          "| proxy CPU share | proxy runnable, waiting for a CPU (s per s) | load generator CPU share |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for rate in [float(x) for x in a.sweep.split(",") if x]:
        for _, name, t, proc in paths:
            for nice in a.nice:
                set_nice(children, nice)
                saved = a.cpu_rate
                a.cpu_rate = rate
                http = admin.get(proc.pid)
                before = metrics(http) if http else None
                waited = runqueue_wait_seconds(proc.pid)
                gen = os.times()
                r = cost_run(a, proc, t, False, 1)
                end = os.times()
                gen_cpu = (end.children_user - gen.children_user) + (end.children_system - gen.children_system)
                waited = runqueue_wait_seconds(proc.pid) - waited
                a.cpu_rate = saved
                refused_by = "-"
                if http:
                    after = metrics(http)
                    by = {k: after.get(k, 0) - before.get(k, 0) for k in after if refusal_series(k)}
                    refused_by = ", ".join(f"{refusal_series(k)} {v:.0f}" for k, v in sorted(by.items()) if v) or "none"
                print(f"| {rate:.0f} | {name} | {nice} | {r['achieved_rate']:.0f} | "
                      f"{r['overloaded']} / {r['deadline_exceeded']} / {r.get('not_sent', 0)} | "
                      f"{refused_by} | {r['cpu_us_per_call']:.1f} | {1e6 / r['cpu_us_per_call']:.0f} | "
                      f"{r['cpu_s'] / a.duration:.2f} | {waited / a.duration:.2f} | "
                      f"{gen_cpu / a.duration:.2f} |", flush=True)
                if r.get("generator_behind"):
                    # Its own delay counts in the row's figures: say so.
                    print(f"|   | the load generator fell behind ({r['threads']} sender threads): send lag p99 "
                          f"{r['send_lag_p99_ms']:.2f} ms, max {r['send_lag_max_ms']:.2f} ms |", flush=True)
    set_nice(children, 0)


def set_nice(children, nice):
    """Every thread of every started process and of their descendants
    (the gateway's node), and this process (so the load generator it
    starts inherits it), at `nice`."""
    def threads(pid):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            return
        for tid in tids:
            yield int(tid)
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    for child in f.read().split():
                        yield from threads(child)
            except FileNotFoundError:
                continue
    for p in children.procs:
        if p.poll() is None:
            for tid in threads(p.pid):
                try:
                    os.setpriority(os.PRIO_PROCESS, tid, nice)
                except ProcessLookupError:
                    continue
    os.setpriority(os.PRIO_PROCESS, 0, nice)


def refusal_series(key):
    """The short name of a `/metrics` series that counts refused calls, or
    None: `rule=...` of the admission refusals, `caller bound` for the
    RPC ingress's per-caller bound in flight."""
    if key.startswith("ebb_gateway_admission_refusals_total{"):
        return "admission " + key.split('rule="', 1)[1].split('"', 1)[0]
    if key.startswith("ebb_gateway_caller_refusals_total{") and 'ingress="rpc"' in key:
        return "caller bound"
    return None


def report(rows, a):
    lines = [
        f"64 B Demo.echo; medians of {a.reps}; p50 at {a.latency_rate:.0f}/s, CPU at {a.cpu_rate:.0f}/s "
        f"for {a.duration:g} s; proxies pinned to CPU {a.cpu}, one thread; "
        f"load average {open('/proc/loadavg').read().split()[0]}",
        "",
        "| protocol | path | p50 ms | p50 added vs direct, us (paired median) | proxy waiting for a CPU, us/call (p50 runs) | proxy CPU us/call | calls per proxy CPU-second | CPU runs: answered/s, refused |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for proto in ("rpc", "http"):
        names = dict.fromkeys(r["path"] for r in rows if r["proto"] == proto)
        for name in names:
            lat = [r for r in rows if r["kind"] == "latency" and r["proto"] == proto and r["path"] == name]
            added = []
            for r in lat:
                d = [x for x in rows if x["kind"] == "latency" and x["proto"] == proto
                     and x["path"] == "direct" and x["rep"] == r["rep"]]
                if d:
                    added.append((r["p50_ms"] - d[0]["p50_ms"]) * 1000)
            runs = [r for r in rows if r["kind"] == "cpu" and r["proto"] == proto and r["path"] == name]
            cpu = [r["cpu_us_per_call"] for r in runs]
            c = median(cpu)
            answered = (f"{median([r['achieved_rate'] for r in runs]):.0f}, "
                        f"{sum(r['sent'] - r['ok'] for r in runs)}") if runs else "-"
            waits = [r["runq_wait_us_per_call"] for r in lat if "runq_wait_us_per_call" in r]
            wait = f"{median(waits):.0f}" if waits else "-"
            lines.append(f"| {proto} | {name} | {median([r['p50_ms'] for r in lat]):.3f} | "
                         f"{median(added):.0f} | {wait} | {'-' if not cpu else f'{c:.1f}'} | "
                         f"{'-' if not cpu else f'{1e6 / c:.0f}'} | {answered} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
