#!/usr/bin/env python3
"""What scaling a VM node up gives it and what its spare vCPUs cost.

Each trial starts `ebb up` with one VM node (`max_capacity_per_node`
above 1, no autoscaler) and reads its QEMU's CPU time from
`/proc/PID/stat` over a window:

- busy: at capacity 1, then 2 (`POST /pool`), two `Demo.work` calls spin
  in the guest at once; the figure is the host cores QEMU used meanwhile.
  With `--compare BEFORE`, the same trial runs on that build too, in
  turn, so both see the same machine.
- idle (`--idle`): no calls; `max_capacity_per_node = 1` (one vCPU)
  against 4 (four vCPUs, one online) and against 4 resized to 4 (all
  online): what an offline vCPU costs an idle node against an online one.

Medians over trials are printed with the load average. Root only (VM
nodes). Not a test: run by hand, see docs/isolation.md.

  cargo build -p ebb-cli --bin ebb
  python3 bench/vm_cpus.py --ebb target/debug/ebb --compare BEFORE/ebb --trials 3
  python3 bench/vm_cpus.py --ebb target/debug/ebb --idle --trials 3
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

# Long enough that both calls spin through the whole window on a loaded
# machine; `work` spins on wall time.
WORK_US = 6_000_000
# The window starts once both calls run and ends before either does.
WINDOW_START_S = 1.5
BUSY_WINDOW_S = 3.0
# An idle node is measured after it settles, over a longer window.
IDLE_SETTLE_S = 10.0
IDLE_WINDOW_S = 30.0
# Bound on waiting for the node (a TCG boot on a loaded machine).
READY_POLLS = 600
POLL_S = 0.5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def config(max_capacity):
    return f"""[gateway]
rpc = "127.0.0.1:0"
http = "127.0.0.1:0"
[service]
name = "demo"
[pool]
kind = "vm"
initial = 1
min = 1
max = 1
memory_mb = 256
max_capacity_per_node = {max_capacity}
boot_timeout_ms = 300000
[admission]
default_deadline_ms = 60000
"""


def http(addr, method, path, body=None):
    req = urllib.request.Request(
        f"http://{addr}{path}",
        method=method,
        data=body.encode() if body else None,
        headers={"content-type": "application/json", "ebb-deadline-ms": "60000"},
    )
    with urllib.request.urlopen(req, timeout=70) as r:
        return json.loads(r.read() or b"null")


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def children(ppid):
    out = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == ppid:
            out.append(int(p))
    return out


def cores_over(pid, seconds):
    t0, w0 = cpu_ticks(pid), time.monotonic()
    time.sleep(seconds)
    t1, w1 = cpu_ticks(pid), time.monotonic()
    return (t1 - t0) / CLOCK_TICKS / (w1 - w0)


def load():
    return " ".join(open("/proc/loadavg").read().split()[:3])


class Up:
    """`ebb up` with one VM node, ready; its QEMU's pid."""

    def __init__(self, ebb, max_capacity):
        self.cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        self.cfg.write(config(max_capacity))
        self.cfg.close()
        self.proc = subprocess.Popen(
            [ebb, "up", self.cfg.name],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()
        self.addr = None
        for _ in range(READY_POLLS):
            if self._ready():
                break
            time.sleep(POLL_S)
        else:
            raise SystemExit(f"no VM node ready: {self.lines[-20:]}")
        self.qemu = next(
            p for p in children(self.proc.pid)
            if open(f"/proc/{p}/comm").read().startswith("qemu")
        )

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def _ready(self):
        self.addr = self.addr or next(
            (l.split()[-1] for l in self.lines if l.startswith("http listening on ")), None
        )
        if not self.addr:
            return False
        try:
            nodes = http(self.addr, "GET", "/status")["nodes"]
        except OSError:
            return False
        live = [n for n in nodes if n["state"] != "gone"]
        return len(live) == 1 and live[0]["state"] == "ready"

    def capacity(self, c):
        http(self.addr, "POST", "/pool", json.dumps({"target": 1, "capacity": c}))
        for _ in range(READY_POLLS):
            nodes = http(self.addr, "GET", "/status")["nodes"]
            if any(n["state"] == "ready" and n.get("capacity") == c for n in nodes):
                return
            time.sleep(POLL_S)
        raise SystemExit(f"the node never reached capacity {c}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=120)
        os.unlink(self.cfg.name)


def busy_trial(ebb):
    """Host cores QEMU uses with two calls spinning, at capacity 1 and 2."""
    up = Up(ebb, 2)
    out = {}
    for c in (1, 2):
        up.capacity(c)
        failed = []

        def work():
            try:
                http(up.addr, "POST", "/rpc/Demo/work", json.dumps({"micros": WORK_US}))
            except OSError as e:
                failed.append(e)

        calls = [threading.Thread(target=work) for _ in range(2)]
        for t in calls:
            t.start()
        time.sleep(WINDOW_START_S)
        out[c] = cores_over(up.qemu, BUSY_WINDOW_S)
        for t in calls:
            t.join()
        if failed:
            print(f"  {len(failed)} of the calls failed at capacity {c}: {failed}", flush=True)
    up.stop()
    return out


def idle_trial(ebb, max_capacity, resize_to):
    up = Up(ebb, max_capacity)
    if resize_to:
        up.capacity(resize_to)
    time.sleep(IDLE_SETTLE_S)
    cores = cores_over(up.qemu, IDLE_WINDOW_S)
    up.stop()
    return cores


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ebb", required=True, help="the build measured")
    ap.add_argument("--compare", help="a build before, measured in turn (busy only)")
    ap.add_argument("--idle", action="store_true", help="measure idle nodes instead")
    ap.add_argument("--trials", type=int, default=3)
    a = ap.parse_args()
    rows = {}
    for trial in range(1, a.trials + 1):
        if a.idle:
            for name, maxc, to in (("1 vCPU", 1, None), ("4 vCPUs, 1 online", 4, None),
                                   ("4 vCPUs, 4 online", 4, 4)):
                cores = idle_trial(a.ebb, maxc, to)
                rows.setdefault(name, []).append(cores)
                print(f"trial {trial}: idle, {name}: {100 * cores:.1f} % of a core (load {load()})",
                      flush=True)
            continue
        for label, ebb in (("after", a.ebb), ("before", a.compare)):
            if not ebb:
                continue
            for c, cores in busy_trial(ebb).items():
                rows.setdefault(f"{label}, capacity {c}", []).append(cores)
                print(f"trial {trial}: {label}, capacity {c}: {cores:.2f} cores (load {load()})",
                      flush=True)
    print("medians:")
    for name, xs in rows.items():
        unit = "% of a core" if a.idle else "cores"
        m = statistics.median(xs) * (100 if a.idle else 1)
        print(f"  {name}: {m:.2f} {unit} over {len(xs)} trials")


if __name__ == "__main__":
    main()
