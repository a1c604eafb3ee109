#!/usr/bin/env python3
"""Balancing benchmark: HTTP load balancers in front of the same ebb nodes.

Starts N `ebb node --http` nodes (one of them `--work-scale`x slower), puts
HAProxy (balance leastconn, balance random(2)) and nginx (least_conn) in
front of the very same nodes, and drives each with open-loop `ebb load`
(Poisson arrivals, latency from the scheduled send time) at fractions of
the pool's capacity. Systems and loads are interleaved within each
repetition; the table reports medians over repetitions and ratios to
HAProxy leastconn. Also: the latency a proxy adds for a 64-byte echo
(through each proxy vs straight to one node).

Not a test: run by hand (as root or not), see docs/benchmarks.md.

  cargo build --release -p ebb-cli --bin ebb
  python3 bench/gateway.py --reps 5 --duration 10 --json /tmp/gateway-bench.json
  python3 bench/gateway.py --ebb AFTER --compare BEFORE --reps 5 --duration 6

`ebb-<policy>` systems run the ebb gateway (`ebb up`) with that balancer
over its own process nodes, shaped like the proxies' nodes. With
`--compare BEFORE`, each also runs a second time as `ebb-<policy> (before)`
on that build's gateway and nodes, in the same repetitions.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SYSTEMS = ["haproxy-leastconn", "haproxy-random2", "nginx-leastconn", "ebb-p2c", "ebb-ewma"]
# `ebb-<policy>`: the ebb gateway (`ebb up`) with that balancing policy.
BASELINE = "haproxy-leastconn"
# Suffix of an ebb system run on the `--compare` build.
BEFORE = " (before)"
# Bounds so a broken child cannot hang the run.
STARTUP_TIMEOUT_S = 30
MAX_NODES = 32


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what):
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on 127.0.0.1:{port} within {STARTUP_TIMEOUT_S} s")


class Children:
    """Every process started, stopped on exit (also on Ctrl-C)."""

    def __init__(self):
        self.procs = []

    def start(self, args, **kw):
        p = subprocess.Popen(args, **kw)
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start_node(children, ebb, scale, mode):
    p = children.start(
        [ebb, "node", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
         "--work-scale", str(scale), "--work-mode", mode, "--threads", "1"],
        stdout=subprocess.PIPE, text=True)
    rpc = http = None
    for _ in range(10):
        line = p.stdout.readline()
        if not line:
            break
        if line.startswith("node listening on "):
            rpc = line.split()[-1]
        if line.startswith("http listening on "):
            http = line.split()[-1]
            break
    if not (rpc and http):
        sys.exit(f"ebb node --work-scale {scale} printed no addresses")
    return rpc, http


def haproxy(children, tmp, name, balance, nodes, threads):
    port = free_port()
    servers = "\n".join(f"  server n{i} {addr}" for i, addr in enumerate(nodes))
    cfg = f"""global
  nbthread {threads}
  maxconn 8000
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  balance {balance}
{servers}
"""
    path = os.path.join(tmp, f"{name}.cfg")
    with open(path, "w") as f:
        f.write(cfg)
    children.start(["haproxy", "-db", "-f", path], stdout=subprocess.DEVNULL)
    wait_port(port, name)
    return f"127.0.0.1:{port}"


def nginx(children, tmp, name, nodes, threads):
    port = free_port()
    prefix = os.path.join(tmp, name)
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    servers = "\n".join(f"    server {addr};" for addr in nodes)
    cfg = f"""worker_processes {threads};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 8000; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  upstream nodes {{
    least_conn;
{servers}
    keepalive 1024;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://nodes;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as f:
        f.write(cfg)
    children.start(["nginx", "-p", prefix, "-c", path], stdout=subprocess.DEVNULL)
    wait_port(port, name)
    return f"127.0.0.1:{port}"


def ebb_gateway(children, tmp, name, policy, a, work_mode=None, extra=None, ebb=None):
    """`ebb up` with a static pool of process nodes shaped like the others:
    the same node flags, and exactly one node (the first to start: an atomic
    mkdir decides) `--slow-scale`x slower. The gateway starts its own nodes,
    so they are not the very processes the proxies front, but the same
    program with the same flags. `work_mode` overrides `a.work_mode`, and
    `extra` (TOML) replaces the admission section; `ebb` another build
    than `a.ebb`."""
    ebb = os.path.abspath(ebb or a.ebb)
    work_mode = work_mode or a.work_mode
    if extra is None:
        extra = f"""[admission]
enabled = true
default_deadline_ms = {a.deadline_ms}
"""
    marker = os.path.join(tmp, f"{name}-slow")
    node = os.path.join(tmp, f"{name}-node.sh")
    with open(node, "w") as f:
        f.write(f"""#!/bin/sh
if mkdir {marker} 2>/dev/null; then
  exec {ebb} node --threads 1 --work-mode {work_mode} --work-scale {a.slow_scale} "$@"
fi
exec {ebb} node --threads 1 --work-mode {work_mode} "$@"
""")
    os.chmod(node, 0o755)
    cfg = os.path.join(tmp, f"{name}.toml")
    with open(cfg, "w") as f:
        f.write(f"""[gateway]
rpc = "127.0.0.1:0"
http = "127.0.0.1:0"
seed = 1
[service]
name = "demo"
command = ["{node}"]
[pool]
kind = "process"
initial = {a.nodes}
min = {a.nodes}
max = {a.nodes}
[balance]
policy = "{policy}"
[autoscale]
policy = "none"
{extra}""")
    p = children.start([ebb, "up", cfg], stdout=subprocess.PIPE, text=True)
    http, rpc, ready = None, None, 0
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while (http is None or ready < a.nodes) and time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            sys.exit(f"{name}: ebb up {cfg} exited before its nodes were ready")
        if line.startswith("http listening on "):
            http = line.split()[-1]
        if line.startswith("gateway listening on "):
            rpc = line.split()[-1]
        if "-> ready" in line:
            ready += 1
    if http is None or ready < a.nodes:
        sys.exit(f"{name}: {ready} of {a.nodes} nodes ready after {STARTUP_TIMEOUT_S} s")
    # Keep draining its output so a full pipe never stalls the gateway.
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
    return http, rpc


def load(ebb, target, rate, duration, method, args, deadline_ms, connections, seed, http=True, threads=1):
    out = subprocess.run(
        [ebb, "load", "--target", target, *(["--http"] if http else []), "--rate", f"{rate:.1f}",
         "--duration", str(duration), "--method", method, "--args", args,
         "--deadline-ms", str(deadline_ms), "--connections", str(connections),
         "--threads", str(threads), "--seed", str(seed), "--json"],
        capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"ebb load against {target} failed: {out.stderr}")
    return json.loads(out.stdout)


IDLE_TIMEOUT_S = 120


def get(http, path):
    """GET http://HTTP/PATH; the body as text."""
    import urllib.request
    with urllib.request.urlopen(f"http://{http}{path}", timeout=10) as r:
        return r.read().decode()


def metrics(http):
    """The gateway's /metrics as {series: value} (labels kept in the key)."""
    out = {}
    for line in get(http, "/metrics").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


def wait_idle(http, what):
    """Until the gateway has nothing in flight or held and every node
    reports nothing executing: what one run left queued (calls whose
    callers gave up still run on the nodes) must not slow the next."""
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    while time.monotonic() < deadline:
        s = json.loads(get(http, "/status"))
        live = [n for n in s["nodes"] if n["state"] != "gone"]
        if s["held"] == 0 and all(n["in_flight"] == 0 and n["reported_queue"] == 0 for n in live):
            return
        time.sleep(0.2)
    sys.exit(f"{what}: still busy {IDLE_TIMEOUT_S} s after the load stopped")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def pool_args(ap, reps, duration, work_us, connections, deadline_ms):
    """The arguments every gateway bench shares: the binary, the runs, the
    pool of nodes (one of them `--slow-scale` times slower) and the load
    generator's connections and deadline. Defaults differ by bench."""
    ap.add_argument("--ebb", default="target/release/ebb")
    ap.add_argument("--reps", type=int, default=reps)
    ap.add_argument("--duration", type=float, default=duration, help="seconds per measurement")
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--slow-scale", type=int, default=5, help="one node's work factor (how many times slower it is)")
    ap.add_argument("--work-us", type=int, default=work_us, help="Demo.work micros per request")
    ap.add_argument("--connections", type=int, default=connections)
    ap.add_argument("--deadline-ms", type=int, default=deadline_ms)
    ap.add_argument("--json", help="write every run (and the medians) here as JSON")


def check_pool_args(a):
    """Refuses what `pool_args` took but cannot run, naming the flag."""
    if not 1 <= a.nodes <= MAX_NODES:
        sys.exit(f"--nodes {a.nodes}: give 1 to {MAX_NODES}")
    if not os.access(a.ebb, os.X_OK):
        sys.exit(f"--ebb {a.ebb}: not an executable; build it with cargo build --release -p ebb-cli --bin ebb")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pool_args(ap, reps=3, duration=8.0, work_us=2000, connections=512, deadline_ms=2000)
    ap.add_argument("--work-mode", default="block", choices=["block", "spin"])
    ap.add_argument("--loads", default="0.5,0.8,0.95", help="fractions of capacity")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="proxy threads (nbthread, worker_processes); default: the cores, as many as the gateway's runtime has")
    ap.add_argument("--echo-rate", type=float, default=1000.0, help="rate of the 64 B overhead runs; 0 skips them")
    ap.add_argument("--compare", help="a second ebb build: each ebb-<policy> system also runs on it, as "
                    "'ebb-<policy> (before)', in the same repetitions")
    a = ap.parse_args()
    check_pool_args(a)
    if a.compare is not None and not os.access(a.compare, os.X_OK):
        sys.exit(f"--compare {a.compare}: not an executable ebb binary")
    systems = [s for s in a.systems.split(",") if s]
    for s in systems:
        if s not in SYSTEMS and not s.startswith("ebb-"):
            sys.exit(f"--systems: unknown {s!r}; known: {', '.join(SYSTEMS)}, or ebb-<any balancer spec>")
    if a.compare:
        systems += [f"{s}{BEFORE}" for s in systems if s.startswith("ebb-")]
    for tool in ("haproxy", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (Debian: apt-get install haproxy nginx)")
    loads = [float(x) for x in a.loads.split(",") if x]  # empty: only the echo runs

    children = Children()
    tmp = tempfile.mkdtemp(prefix="ebb-gateway-bench-")
    # `kill` stops the children too (SIGINT may be ignored in a background job).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    try:
        nodes = []
        for i in range(a.nodes):
            scale = a.slow_scale if i == a.nodes - 1 else 1
            nodes.append(start_node(children, a.ebb, scale, a.work_mode))
        http_nodes = [h for _, h in nodes]
        # Each node is one FIFO server: capacity is the sum of service rates.
        work_s = a.work_us / 1e6
        capacity = sum(1 / (work_s * (a.slow_scale if i == a.nodes - 1 else 1)) for i in range(a.nodes))
        targets = {}
        rpc_targets = {"direct (one node)": nodes[0][0]}
        for s in systems:
            if s == "haproxy-leastconn":
                targets[s] = haproxy(children, tmp, s, "leastconn", http_nodes, a.threads)
            elif s == "haproxy-random2":
                targets[s] = haproxy(children, tmp, s, "random(2)", http_nodes, a.threads)
            elif s == "nginx-leastconn":
                targets[s] = nginx(children, tmp, s, http_nodes, a.threads)
            elif s.endswith(BEFORE):
                policy = s[len("ebb-"):-len(BEFORE)]
                name = s[:-len(BEFORE)] + "-before"
                targets[s], rpc_targets[s] = ebb_gateway(children, tmp, name, policy, a, ebb=a.compare)
            elif s.startswith("ebb-"):
                targets[s], rpc_targets[s] = ebb_gateway(children, tmp, s, s[len("ebb-"):], a)
        print(f"{a.nodes} nodes (last {a.slow_scale}x slower), Demo.work {a.work_us} us ({a.work_mode}), "
              f"capacity {capacity:.0f}/s; systems: {', '.join(systems)}", file=sys.stderr)

        work_args = json.dumps({"micros": a.work_us})
        runs = []
        # Warm-up: connections opened, caches filled; not recorded.
        for s in systems:
            load(a.ebb, targets[s], capacity * 0.3, 1, "Demo.work", work_args, a.deadline_ms, a.connections, 0)
        for rep in range(a.reps):
            for frac in loads:
                for s in systems:
                    r = load(a.ebb, targets[s], capacity * frac, a.duration, "Demo.work", work_args,
                             a.deadline_ms, a.connections, rep + 1)
                    r.update(system=s, load=frac, rep=rep)
                    runs.append(r)
                    print(f"rep {rep} load {frac:.2f} {s:<18} p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} "
                          f"p99.9 {r['p999_ms']:.2f} ms, ok {r['achieved_rate']:.0f}/s, "
                          f"failed {r['sent'] - r['ok']}", file=sys.stderr)

        echo = []
        if a.echo_rate > 0:
            msg = json.dumps({"msg": "x" * 64})
            echo_targets = {"direct (one node)": http_nodes[0], **targets}
            for rep in range(a.reps):
                for s, t in echo_targets.items():
                    r = load(a.ebb, t, a.echo_rate, a.duration, "Demo.echo", msg, a.deadline_ms,
                             64, rep + 1)
                    r.update(system=s, rep=rep, protocol="http")
                    echo.append(r)
                # Native ebb RPC: straight to a node vs through the gateway.
                if len(rpc_targets) > 1:
                    for s, t in rpc_targets.items():
                        r = load(a.ebb, t, a.echo_rate, a.duration, "Demo.echo", msg, a.deadline_ms,
                                 8, rep + 1, http=False)
                        r.update(system=s, rep=rep, protocol="rpc")
                        echo.append(r)

        print(report(runs, echo, systems, loads, capacity, a))
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"capacity": capacity, "args": vars(a), "runs": runs, "echo": echo}, f, indent=1)
    finally:
        children.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def paired_ratios(runs, system, frac, field):
    """`field` of `system` over the baseline's in the same repetition: the
    two ran back to back, so machine noise hits both alike."""
    out = []
    for r in runs:
        if r["system"] != system or r["load"] != frac:
            continue
        base = [b for b in runs if b["system"] == BASELINE and b["load"] == frac and b["rep"] == r["rep"]]
        if base and base[0][field] > 0:
            out.append(r[field] / base[0][field])
    return out


def report(runs, echo, systems, loads, capacity, a):
    lines = [
        f"{a.nodes} nodes, one {a.slow_scale}x slower; Demo.work {a.work_us} us; capacity {capacity:.0f}/s; "
        f"medians of {a.reps} runs of {a.duration:g} s; proxy threads {a.threads}; "
        f"load average {open('/proc/loadavg').read().split()[0]}",
        "",
        "| load | system | p50 ms | p99 ms | p99.9 ms | ok/s | failed | p99 / haproxy-leastconn, paired (min-max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for frac in loads:
        for s in systems:
            rs = [r for r in runs if r["load"] == frac and r["system"] == s]
            ratios = paired_ratios(runs, s, frac, "p99_ms")
            ratio = f"{median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})" if ratios else "-"
            lines.append(
                f"| {frac:.0%} | {s} | {median([r['p50_ms'] for r in rs]):.2f} | "
                f"{median([r['p99_ms'] for r in rs]):.2f} | "
                f"{median([r['p999_ms'] for r in rs]):.2f} | {median([r['achieved_rate'] for r in rs]):.0f} | "
                f"{sum(r['sent'] - r['ok'] for r in rs)} | {ratio} |")
    for proto in ("http", "rpc"):
        rows = [r for r in echo if r.get("protocol", "http") == proto]
        if not rows:
            continue
        lines += ["", f"64 B echo at {a.echo_rate:.0f}/s over {proto}, medians of {a.reps}:", "",
                  "| path | p50 ms | p99 ms | p50 added vs direct, us (paired median) |", "|---|---|---|---|"]
        for s in dict.fromkeys(r["system"] for r in rows):
            rs = [r for r in rows if r["system"] == s]
            added = []
            for r in rs:
                d = [x for x in rows if x["system"] == "direct (one node)" and x["rep"] == r["rep"]]
                if d:
                    added.append((r["p50_ms"] - d[0]["p50_ms"]) * 1000)
            lines.append(f"| {s} | {median([r['p50_ms'] for r in rs]):.3f} | "
                         f"{median([r['p99_ms'] for r in rs]):.3f} | {median(added):.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
