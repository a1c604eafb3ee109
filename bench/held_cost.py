#!/usr/bin/env python3
"""What a held call costs the gateway, against a call forwarded at once.

A call that arrives when its node is at its bound of calls in flight
(`pool.max_in_flight_per_node`) waits in the gateway's held FIFO and is
sent when a call there ends. This runs one gateway (`ebb up`, one process
node, `jsq`, one runtime thread pinned to one CPU) twice per build and
repetition, at the same offered rate of 64-byte `Demo.echo` calls over ebb
RPC:

- forwarded: the default bound, so (nearly) every call goes at once;
- held: a bound of `--window` calls, so most calls wait in the FIFO first
  (how many did: `ebb_gateway_held_total`, where the build exports it).

and reports the gateway process's user+system CPU per answered call in
each, and their ratio. With `--compare BEFORE` a second build runs beside
`--ebb` in the same repetitions (rows interleaved), so a change is judged
in one run on a shared machine. `--callgrind` instead counts the
gateway's instructions per call in both modes (valgrind, counters zeroed
after a warm-up).

Not a test: run by hand, see docs/benchmarks.md.

  cargo build --release -p ebb-cli --bin ebb
  python3 bench/held_cost.py --ebb AFTER --compare BEFORE --reps 5
  python3 bench/held_cost.py --ebb AFTER --compare BEFORE --callgrind
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway import Children, load, median, metrics  # noqa: E402
from gateway_cost import cpu_seconds, gateway_config, pin, up_addresses  # noqa: E402

MSG = json.dumps({"msg": "x" * 64})


def call_of(a):
    """The method and arguments each call sends: a 64 B echo, or with
    `--work-us` a `Demo.work` that holds the node that long, so that with a
    bound of one call per node most calls find it busy (about the node's
    utilization: rate x work)."""
    if a.work_us:
        return "Demo.work", json.dumps({"micros": a.work_us})
    return "Demo.echo", MSG
# Each call's deadline, as `gateway_config`'s admission default.
DEADLINE_MS = 2000
# The default bound of calls in flight per node (an ebb node's bound per
# connection): with it, no call of this load waits.
FORWARD_WINDOW = None


def up(children, tmp, ebb, name, window, wrap=()):
    """`ebb up` with `gateway_config` on one gateway thread, `window` its
    bound of calls in flight per node; returns (process, rpc, http)."""
    path = os.path.join(tmp, f"{name}.toml")
    with open(path, "w") as f:
        f.write(gateway_config(1, node_window=window))
    p = children.start([*wrap, os.path.abspath(ebb), "up", path], stdout=subprocess.PIPE, text=True,
                       stderr=subprocess.DEVNULL)
    return p, *up_addresses(p, name, wrap)


def held_total(http):
    """Calls that waited in the held FIFO so far; None where the build does
    not export the count."""
    return metrics(http).get("ebb_gateway_held_total")


def measure(a, ebb, proc, rpc, http, rate, duration, seed):
    held_before = held_total(http)
    before = cpu_seconds(proc.pid)
    r = load(ebb, rpc, rate, duration, *call_of(a), DEADLINE_MS, a.connections, seed, http=False)
    r["cpu_s"] = cpu_seconds(proc.pid) - before
    r["cpu_us_per_call"] = r["cpu_s"] / r["ok"] * 1e6 if r["ok"] else float("nan")
    held_after = held_total(http)
    r["held"] = None if held_before is None else held_after - held_before
    return r


def callgrind_one(a, children, tmp, ebb, name, window):
    out = os.path.join(tmp, f"{name}.callgrind")
    wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    p, rpc, http = up(children, tmp, ebb, name, window, wrap=wrap)
    load(ebb, rpc, 200, 2, "Demo.echo", MSG, DEADLINE_MS, a.connections, 0, http=False)
    held_before = held_total(http)
    subprocess.run(["callgrind_control", "--zero", str(p.pid)], check=True, stdout=subprocess.DEVNULL)
    r = load(ebb, rpc, a.callgrind_rate, a.callgrind_calls / a.callgrind_rate, *call_of(a),
             DEADLINE_MS, a.connections, 1, http=False)
    subprocess.run(["callgrind_control", "--dump", str(p.pid)], check=True, stdout=subprocess.DEVNULL)
    held_after = held_total(http)
    dumps = [os.path.join(tmp, d) for d in os.listdir(tmp) if d.startswith(f"{name}.callgrind")]
    ir = None
    with open(max(dumps, key=os.path.getmtime)) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                ir = int(line.split()[1])
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)
    held = None if held_before is None else held_after - held_before
    return {"ok": r["ok"], "ir": ir, "ir_per_call": ir / r["ok"] if ir and r["ok"] else float("nan"),
            "held": held, "sent": r["sent"], "overloaded": r["overloaded"],
            "deadline_exceeded": r["deadline_exceeded"]}


def held_share(rows):
    held = [r["held"] for r in rows if r.get("held") is not None]
    ok = sum(r["ok"] for r in rows if r.get("held") is not None)
    return f"{sum(held) / ok:.0%}" if held and ok else "n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ebb", default="target/release/ebb")
    ap.add_argument("--compare", help="a second ebb binary, run beside --ebb in the same repetitions")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    ap.add_argument("--rate", type=float, default=5000.0, help="offered calls per second")
    ap.add_argument("--window", type=int, default=1,
                    help="the held runs' pool.max_in_flight_per_node (1: a call waits whenever another is out)")
    ap.add_argument("--connections", type=int, default=8, help="RPC connections of the load generator")
    ap.add_argument("--work-us", type=int, default=0,
                    help="call Demo.work for this many microseconds instead of a 64 B Demo.echo (0)")
    ap.add_argument("--cpu", type=int, default=0, help="the CPU the gateway is pinned to")
    ap.add_argument("--callgrind", action="store_true", help="count instructions per call instead")
    ap.add_argument("--callgrind-calls", type=int, default=2000)
    ap.add_argument("--callgrind-rate", type=float, default=250.0)
    ap.add_argument("--json", help="write every run here")
    a = ap.parse_args()
    builds = {"after": a.ebb} if a.compare is None else {"after": a.ebb, "before": a.compare}
    for flag, path in (("--ebb", a.ebb), ("--compare", a.compare)):
        if path is not None and not os.access(path, os.X_OK):
            sys.exit(f"{flag} {path}: not an executable; build it with cargo build --release -p ebb-cli --bin ebb")
    if a.window < 1:
        sys.exit(f"--window {a.window}: give 1 or more")
    modes = {"forwarded": FORWARD_WINDOW, "held": a.window}
    children = Children()
    tmp = tempfile.mkdtemp(prefix="ebb-held-cost-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    rows = []
    try:
        if a.callgrind:
            for b, ebb in builds.items():
                for m, window in modes.items():
                    r = callgrind_one(a, children, tmp, ebb, f"{b}-{m}", window)
                    r.update(build=b, mode=m)
                    rows.append(r)
                    print(f"{b:<7} {m:<10} {r['ir_per_call']:.0f} instructions/call, held {r['held']}, "
                          f"ok {r['ok']} of {r['sent']}, overloaded {r['overloaded']}, "
                          f"deadline exceeded {r['deadline_exceeded']}", file=sys.stderr)
            print(f"\nInstructions per answered call (callgrind, {a.callgrind_calls} calls at "
                  f"{a.callgrind_rate:g}/s, held runs: max_in_flight_per_node = {a.window})\n")
            print("| build | forwarded | held | held / forwarded | calls held |")
            print("|---|---|---|---|---|")
            for b in builds:
                f = next(r for r in rows if r["build"] == b and r["mode"] == "forwarded")
                h = next(r for r in rows if r["build"] == b and r["mode"] == "held")
                print(f"| {b} | {f['ir_per_call']:.0f} | {h['ir_per_call']:.0f} | "
                      f"{h['ir_per_call'] / f['ir_per_call']:.2f} | {held_share([h])} |")
        else:
            gateways = {}
            for b, ebb in builds.items():
                for m, window in modes.items():
                    p, rpc, http = up(children, tmp, ebb, f"{b}-{m}", window)
                    pin(p.pid, a.cpu)
                    gateways[(b, m)] = (ebb, p, rpc, http)
                    # Warm-up: connections, allocator, metric families.
                    load(ebb, rpc, a.rate / 4, 1, "Demo.echo", MSG, DEADLINE_MS, a.connections, 0, http=False)
            for rep in range(a.reps):
                for (b, m), (ebb, p, rpc, http) in gateways.items():
                    r = measure(a, ebb, p, rpc, http, a.rate, a.duration, rep + 1)
                    r.update(build=b, mode=m, rep=rep)
                    rows.append(r)
                    print(f"rep {rep} {b:<7} {m:<10} {r['cpu_us_per_call']:.1f} us CPU/call, ok {r['ok']}, "
                          f"overloaded {r['overloaded']}, held {r['held']}, p50 {r['p50_ms']:.3f} ms",
                          file=sys.stderr)
            print(f"\nGateway CPU per answered call (user+system, one pinned runtime thread), 64 B Demo.echo "
                  f"over ebb RPC at {a.rate:g}/s, medians of {a.reps} runs of {a.duration:g} s; held runs: "
                  f"max_in_flight_per_node = {a.window}; load average "
                  f"{open('/proc/loadavg').read().split()[0]}\n")
            print("| build | forwarded us/call | held us/call | held / forwarded (paired, min-max) | "
                  "calls held | refused in held runs |")
            print("|---|---|---|---|---|---|")
            for b in builds:
                f = [r for r in rows if r["build"] == b and r["mode"] == "forwarded"]
                h = [r for r in rows if r["build"] == b and r["mode"] == "held"]
                ratios = [hr["cpu_us_per_call"] / fr["cpu_us_per_call"]
                          for fr in f for hr in h if hr["rep"] == fr["rep"]]
                print(f"| {b} | {median([r['cpu_us_per_call'] for r in f]):.1f} | "
                      f"{median([r['cpu_us_per_call'] for r in h]):.1f} | {median(ratios):.2f} "
                      f"({min(ratios):.2f}-{max(ratios):.2f}) | {held_share(h)} | "
                      f"{sum(r['sent'] - r['ok'] for r in h)} |")
        if a.json:
            with open(a.json, "w") as out:
                json.dump({"args": vars(a), "rows": rows}, out, indent=1)
    finally:
        children.stop()


if __name__ == "__main__":
    main()
