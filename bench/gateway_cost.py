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

The RPC rows also run the floor of any hop: `bench/relay`, a byte relay
on one current-thread tokio runtime (the gateway's runtime with
`gateway.threads = 1`) that parses and decides nothing, pinned like the
proxies. What it adds over going direct is what one more hop costs on
this machine (wake-ups, reads, writes); what the gateway adds beyond it
is the gateway's own work. `--compare BUILD` runs a second `ebb` build's
gateway beside the first in the same repetitions, so a change is
measured against the build before it in one run.

`--busy-poll-us N[,M...]` adds rows that trade a core for latency: the
`--ebb` build's gateway with `gateway.busy_poll_us = N` (it polls instead
of sleeping until no request came or went for N us, then sleeps), one per
window, and
HAProxy `mode tcp` with `busy-polling` in its global section (it never
sleeps: it is stopped with SIGSTOP outside its own runs, so that it does
not take the pinned CPU from the other rows). Each row then also says the
proxy's CPU share during its p50 runs, and the report's header what every
proxy burned while idle.

Where the processes run decides much of what a hop adds. By default the
proxies are pinned to CPU 0 and the load generator and nodes go where the
scheduler puts them, so a call through a proxy usually wakes a CPU other
than its sender's twice more than going direct; on a VM whose idle CPUs
halt at once, those wake-ups outweigh any proxy's work.
`--cpu C --load-cpu C --node-cpu C` puts everything on one CPU: no wake-up
crosses CPUs and what a proxy adds is its own work and two context
switches, the hop's own cost.

Not a test: run by hand, see docs/benchmarks.md.

  cargo build --release -p ebb-cli --bin ebb
  (cd bench/relay && cargo build --release --locked)
  python3 bench/gateway_cost.py --reps 5
  python3 bench/gateway_cost.py --ebb AFTER --compare BEFORE --reps 5 --proto rpc
  python3 bench/gateway_cost.py --reps 5 --proto rpc --busy-poll-us 200,2000 --nice -20
  python3 bench/gateway_cost.py --reps 5 --proto rpc --nice -20 --cpu 1 --load-cpu 1 --node-cpu 1
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
from gateway import (Children, STARTUP_TIMEOUT_S, free_port, get, load, median, metrics, start_node,  # noqa: E402
                     wait_port)

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# The row of the floor relay (`bench/relay`), which the other RPC rows'
# added latency is also compared with.
FLOOR = "floor relay (tokio)"
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


def pinned(a):
    """Where the proxies run, for a report's header."""
    return "not pinned" if a.cpu < 0 else f"pinned to CPU {a.cpu}"


def pin(pid, cpu):
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=True,
                   stdout=subprocess.DEVNULL)


def gateway_config(threads, caller_bound=None, busy_poll_us=0, node_window=None):
    """The `ebb up` config of every gateway these benchmarks measure: one
    process node, `jsq`, admission on, no autoscaler. `caller_bound`: its
    `admission.max_in_flight_per_caller` (None: the default);
    `busy_poll_us`: its `gateway.busy_poll_us` (0: off, the default);
    `node_window`: its `pool.max_in_flight_per_node` (None: the default)."""
    return f"""[gateway]
rpc = "127.0.0.1:0"
http = "127.0.0.1:0"
seed = 1
threads = {threads}
{f"busy_poll_us = {busy_poll_us}" if busy_poll_us else ""}
[service]
name = "demo"
[pool]
kind = "process"
initial = 1
min = 1
max = 1
{"" if node_window is None else f"max_in_flight_per_node = {node_window}"}
[balance]
policy = "jsq"
[admission]
enabled = true
default_deadline_ms = 2000
{"" if caller_bound is None else f"max_in_flight_per_caller = {caller_bound}"}
[autoscale]
policy = "none"
"""


def ebb_up(children, tmp, ebb, name, threads, wrap=(), env=None, caller_bound=None, busy_poll_us=0):
    """`ebb up` with `gateway_config`; returns (process, rpc, http)."""
    cfg = os.path.join(tmp, f"{name}.toml")
    with open(cfg, "w") as f:
        f.write(gateway_config(threads, caller_bound, busy_poll_us))
    p = children.start([*wrap, ebb, "up", cfg], stdout=subprocess.PIPE, text=True,
                       env=env, stderr=subprocess.DEVNULL)
    return p, *up_addresses(p, name, wrap)


def up_addresses(p, name, wrap=()):
    """Reads a starting `ebb up`'s standard output until its node is ready;
    returns its (rpc, http) addresses and keeps draining the rest."""
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
    return rpc, http


def haproxy_one(children, tmp, node, mode, busy=False):
    """HAProxy with one thread in front of one node: `mode http` for the
    HTTP rows, `mode tcp` (bytes passed through, nothing parsed) as the
    floor of any proxy hop for the ebb RPC rows. `busy`: with
    `busy-polling` (its poller never sleeps)."""
    port = free_port()
    cfg = f"""global
  nbthread 1
{"  busy-polling" if busy else ""}
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
    path = os.path.join(tmp, f"haproxy-{mode}{'-busy' if busy else ''}.cfg")
    with open(path, "w") as f:
        f.write(cfg)
    p = children.start(["haproxy", "-db", "-f", path], stdout=subprocess.DEVNULL)
    wait_port(port, "haproxy")
    return p, f"127.0.0.1:{port}"


def node_of(http):
    """The RPC address of a one-node gateway's node, from its `/status`."""
    return json.loads(get(http, "/status"))["nodes"][0]["address"]


# Proxies that spin even when idle (HAProxy's `busy-polling`): stopped
# (SIGSTOP) except while they are measured, so that they do not take the
# CPU the others are pinned to.
PAUSED = set()


class measuring:
    """Runs the `with` body with `proc` running (resumed if it is one of
    PAUSED, stopped again after)."""

    def __init__(self, proc):
        self.proc = proc

    def __enter__(self):
        if self.proc is not None and self.proc.pid in PAUSED:
            os.kill(self.proc.pid, signal.SIGCONT)

    def __exit__(self, *_):
        if self.proc is not None and self.proc.pid in PAUSED:
            os.kill(self.proc.pid, signal.SIGSTOP)


def idle_cpu(a, proxies):
    """Each proxy's CPU share over `a.duration` s with no calls (the paused
    ones resumed for it): what it burns while idle."""
    for p in proxies:
        if p.pid in PAUSED:
            os.kill(p.pid, signal.SIGCONT)
    before = {p.pid: cpu_seconds(p.pid) for p in proxies}
    time.sleep(a.duration)
    shares = {p.pid: (cpu_seconds(p.pid) - before[p.pid]) / a.duration for p in proxies}
    for p in proxies:
        if p.pid in PAUSED:
            os.kill(p.pid, signal.SIGSTOP)
    return shares


def polls(ebb, tmp):
    """Whether the `ebb` build knows `gateway.busy_poll_us` (a build before
    it runs only its rows without busy polling)."""
    cfg = os.path.join(tmp, "busy-check.toml")
    with open(cfg, "w") as f:
        f.write(gateway_config(1, busy_poll_us=1))
    known = subprocess.run([ebb, "up", "--check", cfg], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL).returncode == 0
    if not known:
        print(f"{ebb}: no gateway.busy_poll_us; its gateway runs without busy polling only", file=sys.stderr)
    return known


def relay_one(children, relay, node):
    """`bench/relay` in front of one node's RPC port: the floor of a hop."""
    p = children.start([relay, "--listen", "127.0.0.1:0", "--upstream", node],
                       stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("relay listening on "):
        sys.exit(f"{relay} did not start: {line!r}")
    return p, line.split()[-1]


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


def descendants(pid):
    """`pid` and every process below it (the gateway's node)."""
    out = [pid]
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                for child in f.read().split():
                    out += descendants(int(child))
        except FileNotFoundError:
            continue
    return out


def sched_breakdown(a, paths, children, tmp):
    """Where a call's time goes, per process and thread, from the
    scheduler's own trace (`perf sched record`, root): one run per path at
    the p50 runs' rate, then for every thread that ran for it, its
    wake-ups per call, the median delay from being woken to running (on an
    idle virtual machine mostly the halted vCPU's wake-up; on a loaded one
    the wait for a CPU), and its time on a CPU per wake-up and per call.
    A hop adds the proxy's two wake-ups per call (the request's read, the
    reply's read): their delays and run times are what it adds."""
    if shutil.which("perf") is None or os.geteuid() != 0:
        sys.exit("--sched needs root and perf (Debian: linux-perf)")
    print(f"Scheduler trace, 64 B Demo.echo over ebb RPC at {a.latency_rate:.0f}/s for {a.duration:g} s per "
          f"path; load average {open('/proc/loadavg').read().split()[0]}")
    print()
    print("| path | process (thread) | wake-ups per call | sch delay median, us | sch delay p90, us "
          "| woken to running, us per call | run per wake-up median, us | run per call, us |")
    print("|---|---|---|---|---|---|---|---|")
    for proto, name, target, proc in paths:
        if proto != "rpc":
            continue
        data = os.path.join(tmp, "sched.data")
        # Every started process's pids: the node started first (behind
        # direct, the relay and HAProxy), a gateway's node under it.
        known = {pid: "other" for p in children.procs if p.poll() is None for pid in descendants(p.pid)}
        known[children.procs[0].pid] = "node"
        if proc is not None:
            known[proc.pid] = "proxy"
            for pid in descendants(proc.pid)[1:]:
                known[pid] = "node"
        rec = subprocess.Popen(["perf", "sched", "record", "-a", "-o", data], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        # The load generator is this process's child while the run lasts
        # (other `ebb load` processes on a shared machine are not).
        loaders, running = set(), threading.Event()
        running.set()

        def watch():
            while running.is_set():
                loaders.update(int(c) for t in os.listdir("/proc/self/task")
                               for c in open(f"/proc/self/task/{t}/children").read().split())
                time.sleep(0.05)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        with measuring(proc):
            r = run(a, target, a.latency_rate, a.duration, False, 1, a.connections)
        running.clear()
        watcher.join()
        rec.send_signal(signal.SIGINT)
        rec.wait()
        out = subprocess.run(["perf", "sched", "timehist", "-i", data], capture_output=True, text=True).stdout
        threads = {}
        for line in out.splitlines():
            f = line.split()
            if len(f) < 6 or not f[1].startswith("[") or "[" not in f[2]:
                continue
            comm, _, ids = f[2].rpartition("[")
            ids = ids.rstrip("]").split("/")
            try:
                tid = int(ids[0])
                pid = int(ids[-1])
                delay, ran = float(f[-2]) * 1000, float(f[-1]) * 1000
            except ValueError:
                continue
            threads.setdefault((pid, tid, comm), []).append((delay, ran))
        calls = max(r["ok"], 1)
        rows = []
        for (pid, tid, comm), ev in threads.items():
            role = known.get(pid)
            if role is None:
                # Its sender threads; not perf, also a child here.
                if pid not in loaders or not comm.startswith("ebb-load"):
                    continue
                role = "load generator"
            if role == "other":
                continue
            delays = sorted(d for d, _ in ev)
            runs = sorted(x for _, x in ev)
            rows.append((role, comm, tid, len(ev) / calls, delays[len(delays) // 2],
                         delays[int(len(delays) * 0.9)], sum(delays) / calls, runs[len(runs) // 2],
                         sum(runs) / calls))
        for role, comm, tid, per_call, d50, d90, wait, run50, run_call in sorted(rows, key=lambda x: (x[0], -x[3])):
            if per_call < 0.01:
                continue
            print(f"| {name} | {role} ({comm}) | {per_call:.2f} | {d50:.0f} | {d90:.0f} | {wait:.1f} | {run50:.1f} "
                  f"| {run_call:.1f} |", flush=True)
        os.remove(data)


# The system calls whose entries and exits `--legs` traces, and the
# scheduler's switches of the proxy's threads.
LEG_EVENTS = ",".join(
    [f"syscalls:sys_{e}_{c}" for c in ("recvfrom", "read", "sendto", "write", "writev", "epoll_wait",
                                       "futex") for e in ("enter", "exit")] + ["sched:sched_switch"])
# A read that found nothing: -EAGAIN as perf prints a syscall's return.
EAGAIN = 0xfffffffffffffff5
READS, WRITES = ("recvfrom", "read"), ("sendto", "write", "writev")


def socket_peers(pid):
    """{fd: remote port} of the TCP sockets `pid` holds now."""
    inodes = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes[link[8:-1]] = int(fd)
    peers = {}
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f)
                for line in f:
                    col = line.split()
                    if col[9] in inodes:
                        peers[inodes[col[9]]] = int(col[2].rsplit(":", 1)[1], 16)
        except FileNotFoundError:
            continue
    return peers


def parse_legs(text, node_fds):
    """From `perf script` of LEG_EVENTS: for each leg (a read that brought
    bytes and the first write after it on the same thread; a request leg
    when it writes to a socket in `node_fds`, else a reply leg), the time
    from the thread's wake-up (the `epoll_wait` or `futex` it returned
    from) to the read, from the read to the write, and from the write to
    the thread's next wait; and the counts of every system call, the reads
    that found nothing, and the threads' switches off a CPU."""
    legs = {"request": ([], [], []), "reply": ([], [], [])}
    counts, state = {}, {}
    for line in text.splitlines():
        head, _, rest = line.partition(": ")
        f = head.split()
        if len(f) < 4 or not rest:
            continue
        try:
            tid, t = int(f[-3]), float(f[-1]) * 1e6
        except ValueError:
            continue
        event, _, args = rest.strip().partition(": ")
        st = state.setdefault(tid, {})
        if event == "sched:sched_switch":
            if f"prev_pid={tid} " in args:
                counts["switches"] = counts.get("switches", 0) + 1
            continue
        kind, _, name = event.removeprefix("syscalls:sys_").partition("_")
        if kind == "enter":
            counts[name] = counts.get(name, 0) + 1
        if name in ("epoll_wait", "futex"):
            if kind == "exit":
                st["woke"] = t
            elif "wrote" in st:
                which, wrote = st.pop("wrote")
                legs[which][2].append(t - wrote)
        elif name in READS:
            if kind == "enter" and "woke" in st:
                st["to_read"] = t - st.pop("woke")
            elif kind == "exit":
                ret = int(args.strip(), 16)
                if ret == EAGAIN:
                    counts["reads that found nothing"] = counts.get("reads that found nothing", 0) + 1
                elif 0 < ret < EAGAIN:
                    st["read"] = t
        elif name in WRITES:
            if kind == "enter":
                fd = int(args.split("fd: ")[1].split(",")[0], 16)
                st["which"] = "request" if fd in node_fds else "reply"
                if "read" in st:
                    leg = legs[st["which"]]
                    leg[0].append(st.pop("to_read", float("nan")))
                    leg[1].append(t - st.pop("read"))
                    st["leg"] = True
            elif st.pop("leg", False):
                st["wrote"] = (st["which"], t)
    return legs, counts


def leg_breakdown(a, paths, children, tmp):
    """Where a proxy spends a call's time between its wake-ups, from its
    system calls (perf's syscall tracepoints, root): one run per RPC path
    at the p50 runs' rate. Of each leg (the request read from the caller
    and written to the node, the reply read from the node and written to
    the caller): the time from the proxy's wake-up to its read (the
    runtime's own turn), from the read to the write (the proxy's work on
    the call: what it adds to the latency beyond the wake-up), and from
    the write to its next wait (work after the write, which delays the
    next read only when the peer answers sooner). System calls and
    switches off a CPU per call say how many hand-offs a call costs."""
    if shutil.which("perf") is None or os.geteuid() != 0:
        sys.exit("--legs needs root and perf (Debian: linux-perf)")
    print(f"Legs of a call, 64 B Demo.echo over ebb RPC at {a.latency_rate:.0f}/s for {a.duration:g} s, "
          f"{a.connections} connection(s); proxies {pinned(a)}, {a.gateway_threads} gateway thread(s); "
          f"load average {open('/proc/loadavg').read().split()[0]}")
    print()
    print("| path | leg | wake-up to read, us (median) | read to write, us (median, p90) | write to next wait, "
          "us (median) | system calls per call | switches off a CPU per call |")
    print("|---|---|---|---|---|---|---|")
    for proto, name, target, proc in paths:
        if proto != "rpc" or proc is None:
            continue
        node_port = int(a.node_ports[name].rsplit(":", 1)[1])
        data = os.path.join(tmp, "legs.data")
        rec = subprocess.Popen(["perf", "record", "-q", "-o", data, "-e", LEG_EVENTS, "-p", str(proc.pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        peers = {}

        def snapshot():
            time.sleep(min(0.5, a.duration / 2))
            peers.update(socket_peers(proc.pid))
        watcher = threading.Thread(target=snapshot, daemon=True)
        watcher.start()
        with measuring(proc):
            r = run(a, target, a.latency_rate, a.duration, False, 1, a.connections)
        watcher.join()
        rec.send_signal(signal.SIGINT)
        rec.wait()
        text = subprocess.run(["perf", "script", "-i", data], capture_output=True, text=True).stdout
        os.remove(data)
        legs, counts = parse_legs(text, {fd for fd, port in peers.items() if port == node_port})
        calls = max(r["ok"], 1)
        per_call = ", ".join(f"{k} {v / calls:.2f}" for k, v in sorted(counts.items()) if k != "switches")
        for which, (to_read, work, after) in legs.items():
            if not work:
                continue

            def med(x):
                x = sorted(v for v in x if v == v)
                return f"{x[len(x) // 2]:.1f}" if x else "-"
            p90 = sorted(work)[int(len(work) * 0.9)]
            print(f"| {name} | {which} ({len(work)}) | {med(to_read)} | {med(work)}, {p90:.1f} | {med(after)} "
                  f"| {per_call if which == 'request' else ''} "
                  f"| {counts.get('switches', 0) / calls:.2f} |", flush=True)


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
    ap.add_argument("--cpu", type=int, default=0,
                    help="the CPU the proxies are pinned to; -1: not pinned (with --gateway-threads 2, the "
                         "gateway's workers spread over the CPUs as `ebb up` runs them by default)")
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
    ap.add_argument("--node-cpu", type=int,
                    help="pin every node (the direct one and each gateway's) to this CPU, so that with "
                         "--load-cpu on the same CPU the proxy has its CPU to itself (default: not pinned)")
    ap.add_argument("--load-threads", type=int,
                    help="sender threads of the load generator (`ebb load --threads`; default: one per "
                         f"{LOAD_RATE_PER_THREAD} calls/s offered)")
    ap.add_argument("--nice", type=lambda v: [int(x) for x in v.split(",") if x], default=[0],
                    help="niceness (-20..19; below 0 needs root) of the proxies, their nodes and the load "
                         "generator alike, so that on a shared machine they are not kept waiting by other "
                         "work; with --sweep comma-separated values, every row runs at each (default 0)")
    ap.add_argument("--relay", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                    "relay/target/release/relay"),
                    help="the floor relay's binary (cd bench/relay && cargo build --release --locked)")
    ap.add_argument("--compare", help="a second ebb binary: its gateway (and node) run beside --ebb's in "
                    "the same repetitions, as the build before or after a change")
    ap.add_argument("--sched", action="store_true",
                    help="only trace the scheduler (perf sched, root) during one p50 run per RPC path: "
                         "each process's wake-ups per call, wake-up delay and time on a CPU")
    ap.add_argument("--legs", action="store_true",
                    help="only trace each RPC proxy's system calls (perf, root) during one p50 run: per leg of "
                         "a call, the time from its wake-up to its read, from the read to its write and after; "
                         "system calls and switches per call (use --connections 1 so calls do not overlap)")
    ap.add_argument("--busy-poll-us", type=lambda v: [int(x) for x in v.split(",") if x], default=[],
                    help="comma-separated windows: also run the --ebb gateway with gateway.busy_poll_us = each, "
                         "and HAProxy (tcp mode) with busy-polling, as rows of their own (RPC only)")
    ap.add_argument("--json", help="write every run here")
    a = ap.parse_args()
    if any(not -20 <= n <= 19 for n in a.nice) or (min(a.nice) < 0 and os.geteuid() != 0):
        sys.exit(f"--nice {','.join(map(str, a.nice))}: give values from -20 to 19; below 0 only as root")
    if a.load_threads is not None and not 1 <= a.load_threads <= 64:
        sys.exit(f"--load-threads {a.load_threads}: give 1 to 64")
    for flag, path in (("--ebb", a.ebb), ("--compare", a.compare)):
        if path is not None and not os.access(path, os.X_OK):
            sys.exit(f"{flag} {path}: not an executable; build it with cargo build --release -p ebb-cli --bin ebb")
    rpc_rows = a.proto != "http" and not a.callgrind and not a.sweep
    if a.busy_poll_us and (not rpc_rows or a.gateway_threads != 1 or min(a.busy_poll_us) <= 0):
        sys.exit(f"--busy-poll-us {','.join(map(str, a.busy_poll_us))}: positive windows, only for the RPC rows (--proto rpc or both, no --sweep or "
                 "--callgrind) with --gateway-threads 1")
    if rpc_rows and not os.access(a.relay, os.X_OK):
        sys.exit(f"--relay {a.relay}: not an executable; build it with "
                 "(cd bench/relay && cargo build --release --locked)")
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
        # The same bounds on the --compare build, so a change that matters
        # only past the default bound is measured against the build before.
        bounded_compare = [(b, *ebb_up(children, tmp, os.path.abspath(a.compare), f"gateway-compare-{b}",
                                       a.gateway_threads, caller_bound=b))
                           for b in (a.caller_bounds if a.sweep and a.compare else [])]
        other = None
        if a.compare:
            other = ebb_up(children, tmp, os.path.abspath(a.compare), "gateway-compare", a.gateway_threads)
        # Per window: its row's name, the base of its added latency (its
        # own node) and its gateway.
        # With --compare, the other build's too, if it has busy polling.
        builds = [("", a.ebb), *([(f", {a.compare}", a.compare)]
                                 if a.compare and a.busy_poll_us and polls(a.compare, tmp) else [])]
        busy_gws = [(f"ebb gateway, busy-poll {us} us{which}", f"direct, the busy-poll {us} us{which} gateway's node",
                     ebb_up(children, tmp, os.path.abspath(ebb), f"gateway-busy-{us}-{i}", a.gateway_threads,
                            busy_poll_us=us))
                    for us in a.busy_poll_us for i, (which, ebb) in enumerate(builds)]
        busy_hp = None
        if a.busy_poll_us:
            busy_hp = haproxy_one(children, tmp, node_rpc, "tcp", busy=True)
            PAUSED.add(busy_hp[0].pid)
            os.kill(busy_hp[0].pid, signal.SIGSTOP)
        busy_hp_name = "haproxy (tcp mode), busy-polling"
        hp, hp_http = haproxy_one(children, tmp, node_http, "http")
        hpt, hp_tcp = haproxy_one(children, tmp, node_rpc, "tcp")
        rl, rl_rpc = relay_one(children, a.relay, node_rpc) if rpc_rows else (None, None)
        proxies = [p for p in (gw, hp, hpt, rl, other and other[0], *(g[0] for _, _, g in busy_gws), busy_hp and busy_hp[0],
                               *(b[1] for b in bounded + bounded_compare))
                   if p]
        for p in proxies:
            if a.cpu >= 0:
                pin(p.pid, a.cpu)
            if a.node_cpu is not None:
                for node in descendants(p.pid)[1:]:
                    pin(node, a.node_cpu)
        if a.node_cpu is not None:
            for p in children.procs:
                if p.poll() is None and p not in proxies:
                    pin(p.pid, a.node_cpu)
        # Each gateway runs its own process node: a gateway's added latency
        # is measured against calls straight to that node, in the same
        # repetition, so a difference between nodes is not counted as the
        # gateway's.
        a.bases = {"ebb gateway": "direct, the gateway's node"}
        own = [("rpc", "direct, the gateway's node", node_of(gw_http), None)]
        if other:
            a.bases[f"ebb gateway, {a.compare}"] = "direct, the --compare gateway's node"
            own.append(("rpc", "direct, the --compare gateway's node", node_of(other[2]), None))
        for name, base, g in busy_gws:
            a.bases[name] = base
            own.append(("rpc", base, node_of(g[2]), None))
        paths = [
            ("rpc", "direct", node_rpc, None),
            *own,
            *([("rpc", FLOOR, rl_rpc, rl)] if rl else []),
            ("rpc", "haproxy (tcp mode)", hp_tcp, hpt),
            *([("rpc", busy_hp_name, busy_hp[1], busy_hp[0])] if busy_hp else []),
            ("rpc", "ebb gateway", gw_rpc, gw),
            *(("rpc", name, g[1], g[0]) for name, _, g in busy_gws),
            *([("rpc", f"ebb gateway, {a.compare}", other[1], other[0])] if other else []),
            *(("rpc", f"ebb gateway, caller bound {b}", rpc, p) for b, p, rpc, _ in bounded),
            *(("rpc", f"ebb gateway, {a.compare}, caller bound {b}", rpc, p) for b, p, rpc, _ in bounded_compare),
            ("http", "direct", node_http, None),
            ("http", "haproxy", hp_http, hp),
            ("http", "ebb gateway", gw_http, gw),
            *([("http", f"ebb gateway, {a.compare}", other[2], other[0])] if other else []),
        ]
        paths = [p for p in paths if a.proto in ("both", p[0])]
        for proto, _, t, proc in paths:
            with measuring(proc):
                run(a, t, 500, 1, proto == "http", 0, a.http_connections if proto == "http" else a.connections)
        if not a.sweep:
            # One niceness for every row (the sweep runs each of them).
            set_nice(children, a.nice[0])
        if a.sched:
            sched_breakdown(a, paths, children, tmp)
            return
        if a.legs:
            # Which of each proxy's sockets lead to its node.
            a.node_ports = {FLOOR: node_rpc, "haproxy (tcp mode)": node_rpc, "ebb gateway": node_of(gw_http)}
            if other:
                a.node_ports[f"ebb gateway, {a.compare}"] = node_of(other[2])
            for name, _, g in busy_gws:
                a.node_ports[name] = node_of(g[2])
            if busy_hp:
                a.node_ports[busy_hp_name] = node_rpc
            leg_breakdown(a, paths, children, tmp)
            return
        if a.sweep:
            admin = {gw.pid: gw_http, **{p.pid: http for _, p, _, http in bounded + bounded_compare}}
            if other:
                admin[other[0].pid] = other[2]
            sweep(a, [p for p in paths if p[0] == "rpc" and p[3] is not None], admin, children)
            return
        named = [(name, proc) for proto, name, _, proc in paths if proc is not None]
        shares = idle_cpu(a, [proc for _, proc in named])
        a.idle = ", ".join(f"{name} {shares[proc.pid]:.2f}" for name, proc in dict(named).items()
                           if proc.pid in shares)
        rows = []
        for rep in range(a.reps):
            # Every other repetition runs the paths in reverse, so a drift
            # in the machine's load does not favour one path.
            for proto, name, t, proc in (paths if rep % 2 == 0 else paths[::-1]):
                waited = runqueue_wait_seconds(proc.pid) if proc is not None else None
                burned = cpu_seconds(proc.pid) if proc is not None else None
                with measuring(proc):
                    r = run(a, t, a.latency_rate, a.duration, proto == "http", rep + 1, a.connections)
                r.update(kind="latency", proto=proto, path=name, rep=rep)
                if proc is not None and r["ok"]:
                    r["runq_wait_us_per_call"] = (runqueue_wait_seconds(proc.pid) - waited) / r["ok"] * 1e6
                    r["cpu_share"] = (cpu_seconds(proc.pid) - burned) / a.duration
                rows.append(r)
                if proc is not None:
                    with measuring(proc):
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
        for pid in PAUSED:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
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
          f"proxies {pinned(a)}, one thread; load generator "
          f"{'not pinned' if a.load_cpu is None else f'pinned to CPU {a.load_cpu}'}; nodes "
          f"{'not pinned' if a.node_cpu is None else f'pinned to CPU {a.node_cpu}'}; "
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


def paired(rows, lat, proto, base):
    """Each of `lat`'s p50s minus `base`'s in the same repetition, in us."""
    out = []
    for r in lat:
        d = [x for x in rows if x["kind"] == "latency" and x["proto"] == proto
             and x["path"] == base and x["rep"] == r["rep"]]
        if d:
            out.append((r["p50_ms"] - d[0]["p50_ms"]) * 1000)
    return out


def report(rows, a):
    lines = [
        f"64 B Demo.echo; medians of {a.reps}; p50 at {a.latency_rate:.0f}/s, CPU at {a.cpu_rate:.0f}/s "
        f"for {a.duration:g} s; proxies {pinned(a)}, {a.gateway_threads} thread(s); nice {a.nice[0]}; "
        f"load average {open('/proc/loadavg').read().split()[0]}",
        *([f"CPU share of each proxy idle for {a.duration:g} s before the runs: {a.idle}"]
          if getattr(a, "idle", None) else []),
        "",
        "| protocol | path | p50 ms | p50 added vs direct, us (paired median) | added beyond the floor relay's, us (paired median) | proxy waiting for a CPU, us/call (p50 runs) | proxy CPU share (p50 runs) | proxy CPU us/call | calls per proxy CPU-second | CPU runs: answered/s, refused |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for proto in ("rpc", "http"):
        names = dict.fromkeys(r["path"] for r in rows if r["proto"] == proto)
        for name in names:
            lat = [r for r in rows if r["kind"] == "latency" and r["proto"] == proto and r["path"] == name]
            # The RPC rows have each gateway's own node to compare with.
            own = getattr(a, "bases", {}).get(name) if proto == "rpc" else None
            added = paired(rows, lat, proto, own or "direct")
            beyond = paired(rows, lat, proto, FLOOR)
            runs = [r for r in rows if r["kind"] == "cpu" and r["proto"] == proto and r["path"] == name]
            cpu = [r["cpu_us_per_call"] for r in runs]
            c = median(cpu)
            answered = (f"{median([r['achieved_rate'] for r in runs]):.0f}, "
                        f"{sum(r['sent'] - r['ok'] for r in runs)}") if runs else "-"
            waits = [r["runq_wait_us_per_call"] for r in lat if "runq_wait_us_per_call" in r]
            wait = f"{median(waits):.0f}" if waits else "-"
            burned = [r["cpu_share"] for r in lat if "cpu_share" in r]
            share = f"{median(burned):.2f}" if burned else "-"
            lines.append(f"| {proto} | {name} | {median([r['p50_ms'] for r in lat]):.3f} | "
                         f"{median(added):.0f} | {f'{median(beyond):.0f}' if beyond else '-'} | {wait} | {share} | {'-' if not cpu else f'{c:.1f}'} | "
                         f"{'-' if not cpu else f'{1e6 / c:.0f}'} | {answered} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
