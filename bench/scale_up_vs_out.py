#!/usr/bin/env python3
"""Scale up against scale out in the running system: how long new capacity
takes to serve after the decision.

Each trial starts `ebb up` with one process node of capacity 1 (`[pool]
max = 2`, `max_capacity_per_node = 2`, no autoscaler), fills that capacity
with one long `Demo.work` call, then at t0 asks for one more unit of
capacity by hand:

- up:  `POST /pool {"target": 1, "capacity": 2}`: the node gets a second
       worker thread (a `Resize` over the connection the gateway holds);
- out: `POST /pool {"target": 2}`: a second node is started (a process:
       exec, bind, ready line, the gateway's handshake).

From t0 on, a short `Demo.work` call (1 ms) is sent over HTTP every
`--probe-ms`; calls sent before the new capacity serves wait behind the
long call (on the node's queue for up, on the first node for out). The
figure is the time from t0 to the first answer of a short call: the
decision to the first call served by the new capacity, the POST's own
round trip included in both. Trials alternate up and out, each on a fresh
`ebb up`, so both see the same machine; medians and their ratio are
reported with the load average.

Not a test: run by hand, see docs/autoscaling.md.

  cargo build --release -p ebb-cli --bin ebb
  python3 bench/scale_up_vs_out.py --ebb target/release/ebb --trials 7
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway import Children, get, median  # noqa: E402
from gateway_cost import up_addresses  # noqa: E402

# Longer than a process node's start on a loaded machine, so every short
# call before the new capacity waits behind it.
LONG_WORK_US = 3_000_000
SHORT_WORK_US = 1_000
# Bound on probes per trial: the new capacity must serve within this many.
MAX_PROBES = 2_000

CONFIG = """[gateway]
rpc = "127.0.0.1:0"
http = "127.0.0.1:0"
[service]
name = "demo"
[pool]
kind = "process"
initial = 1
min = 1
max = 2
max_capacity_per_node = 2
[admission]
enabled = false
default_deadline_ms = 30000
"""


def post(http_addr, path, body, timeout=30):
    """POSTs JSON; returns (status, seconds at the answer)."""
    host, port = http_addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"content-type": "application/json"})
        r = conn.getresponse()
        r.read()
        return r.status, time.monotonic()
    finally:
        conn.close()


def work(http_addr, micros):
    return post(http_addr, "/rpc/Demo/work", json.dumps({"micros": micros}))


def wait_status(http_addr, pred, what, limit_s=30):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        s = json.loads(get(http_addr, "/status"))
        if pred(s):
            return s
        time.sleep(0.005)
    sys.exit(f"never saw {what}")


def trial(a, mode, tmp):
    children = Children()
    try:
        path = os.path.join(tmp, f"scale-{mode}.toml")
        with open(path, "w") as f:
            f.write(CONFIG)
        p = children.start([a.ebb, "up", path], stdout=subprocess.PIPE, text=True)
        _, http_addr = up_addresses(p, mode)
        live = lambda s: [n for n in s["nodes"] if n["state"] != "gone"]  # noqa: E731
        wait_status(http_addr, lambda s: len(live(s)) == 1 and live(s)[0]["state"] == "ready",
                    "one ready node")
        long_call = threading.Thread(target=work, args=(http_addr, LONG_WORK_US))
        long_call.start()
        wait_status(http_addr, lambda s: live(s)[0]["in_flight"] == 1, "the long call on the node")
        # The node's only worker takes the call as it arrives; leave it the
        # time to.
        time.sleep(0.05)
        body = {"up": {"target": 1, "capacity": 2}, "out": {"target": 2}}[mode]
        answers = []
        lock = threading.Lock()
        served = threading.Event()

        def probe():
            status, at = work(http_addr, SHORT_WORK_US)
            if status == 200:
                with lock:
                    answers.append(at)
                served.set()

        probes = []

        def prober():
            # From t0, beside the POST: a call sent while the POST is on its
            # way waits for the new capacity like any other.
            for i in range(MAX_PROBES):
                if served.is_set():
                    break
                t = threading.Thread(target=probe)
                t.start()
                probes.append(t)
                next_at = t0 + (i + 1) * a.probe_ms / 1000
                time.sleep(max(0.0, next_at - time.monotonic()))

        t0 = time.monotonic()
        sender = threading.Thread(target=prober)
        sender.start()
        status, posted = post(http_addr, "/pool", json.dumps(body))
        if status != 200:
            sys.exit(f"{mode}: POST /pool answered {status}")
        served.wait(timeout=30)
        sender.join()
        with lock:
            first = min(answers) - t0 if answers else None
        for t in probes:
            t.join()
        long_call.join()
        return first, posted - t0, len(probes)
    finally:
        children.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ebb", default="target/release/ebb")
    ap.add_argument("--trials", type=int, default=7, help="trials of each, interleaved")
    ap.add_argument("--probe-ms", type=float, default=2.0, help="pause between short calls")
    a = ap.parse_args()
    times = {"up": [], "out": []}
    posts = {"up": [], "out": []}
    load_before = open("/proc/loadavg").read().split()[:3]
    with tempfile.TemporaryDirectory(prefix="ebb-scale-") as tmp:
        for i in range(a.trials):
            for mode in ("up", "out") if i % 2 == 0 else ("out", "up"):
                first, posted, probes = trial(a, mode, tmp)
                if first is None:
                    sys.exit(f"{mode}: no short call was served")
                times[mode].append(first)
                posts[mode].append(posted)
                print(f"trial {i + 1} {mode:>3}: first call served {first * 1000:8.2f} ms "
                      f"after the decision (POST /pool answered at {posted * 1000:.2f} ms, "
                      f"{probes} probes sent)", flush=True)
    load_after = open("/proc/loadavg").read().split()[:3]
    up, out = median(times["up"]), median(times["out"])
    print(json.dumps({
        "trials": a.trials,
        "up_median_ms": round(up * 1000, 2),
        "out_median_ms": round(out * 1000, 2),
        "out_over_up": round(out / up, 1),
        "post_median_ms": {m: round(median(posts[m]) * 1000, 2) for m in posts},
        "after_post_median_ms": {
            m: round(median([t - p for t, p in zip(times[m], posts[m])]) * 1000, 2)
            for m in posts
        },
        "up_ms": [round(t * 1000, 2) for t in times["up"]],
        "out_ms": [round(t * 1000, 2) for t in times["out"]],
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }, indent=2))


if __name__ == "__main__":
    main()
