#!/usr/bin/env python3
"""Page faults per call of one system's server process, counted by
`perf stat -e page-faults` on `rpc-bench serve` alone (the client is an
`rpc-bench instr-client` process of its own, not counted).

Each round runs the server twice, serving N1 and then N2 calls on one
connection; (faults of the long run - faults of the short run) / (N2 - N1)
is the faults per call, with start-up and shutdown cancelled out. Prints
every round and the median.

    python3 server-faults.py --systems ebb,tarpc --payload 16384 --concurrency 128 --rounds 3

Run from bench/rpc after `cargo build --release --locked`; needs `perf`.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

DEFAULT_BINARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "target/release/rpc-bench")
# Most rounds and calls accepted: each round is two server runs.
MAX_ROUNDS = 20
MAX_CALLS = 1_000_000


def faults(binary, system, payload, concurrency, calls):
    """Page faults of one server process that served `calls` calls."""
    with tempfile.NamedTemporaryFile(suffix=".perf", delete=False) as out:
        path = out.name
    try:
        server = subprocess.Popen(
            ["perf", "stat", "-x,", "-o", path, "-e", "page-faults",
             binary, "serve", "--system", system, "--flavour", "current", "--pin-cpu", "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = server.stdout.readline()
        if not line.startswith("listening "):
            sys.exit(f"the {system} server did not start: {line!r}")
        addr = line.split()[1]
        subprocess.run(
            [binary, "instr-client", "--system", system, "--addr", addr,
             "--payload", str(payload), "--concurrency", str(concurrency),
             "--calls", str(calls), "--connect-timeout-ms", "10000"],
            check=True, stdout=subprocess.DEVNULL)
        # End of input ends the server (see `rpc-bench serve`).
        server.stdin.close()
        server.wait()
        with open(path) as f:
            text = f.read()
    finally:
        os.unlink(path)
    m = re.search(r"^(\d+),[^,]*,page-faults", text, re.M)
    if not m:
        sys.exit(f"no page-faults count in perf's output: {text!r}")
    return int(m.group(1))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--systems", default="ebb,tarpc", help="comma separated: ebb, tarpc, tonic")
    p.add_argument("--payload", type=int, default=16384, help="payload bytes (1..=1048576)")
    p.add_argument("--concurrency", type=int, default=128, help="outstanding calls (1..=1024)")
    p.add_argument("--calls", default="2000,12000", help="calls of the short and the long run")
    p.add_argument("--rounds", type=int, default=3, help=f"rounds, interleaved over the systems (1..={MAX_ROUNDS})")
    p.add_argument("--binary", default=DEFAULT_BINARY, help="the rpc-bench executable")
    a = p.parse_args()
    systems = [s for s in a.systems.split(",") if s]
    bad = [s for s in systems if s not in ("ebb", "tarpc", "tonic")]
    if bad or not systems:
        p.error(f"--systems: {','.join(bad) or 'nothing'} is not accepted; give ebb, tarpc and/or tonic")
    if not 1 <= a.payload <= 1 << 20:
        p.error(f"--payload: {a.payload} is out of range; give 1..=1048576 bytes")
    if not 1 <= a.concurrency <= 1024:
        p.error(f"--concurrency: {a.concurrency} is out of range; give 1..=1024")
    if not 1 <= a.rounds <= MAX_ROUNDS:
        p.error(f"--rounds: {a.rounds} is out of range; give 1..={MAX_ROUNDS}")
    try:
        n1, n2 = (int(x) for x in a.calls.split(","))
    except ValueError:
        p.error(f"--calls: {a.calls!r} is not two counts such as 2000,12000")
    if not 0 < n1 < n2 <= MAX_CALLS:
        p.error(f"--calls: need 0 < short < long <= {MAX_CALLS}, got {n1},{n2}")
    if not os.access(a.binary, os.X_OK):
        p.error(f"--binary: {a.binary} is not executable; run `cargo build --release --locked` first")
    per_call = {s: [] for s in systems}
    for r in range(a.rounds):
        for s in systems:
            short = faults(a.binary, s, a.payload, a.concurrency, n1)
            long = faults(a.binary, s, a.payload, a.concurrency, n2)
            per_call[s].append((long - short) / (n2 - n1))
            print(f"round {r + 1} {s}: {short} faults ({n1} calls), {long} ({n2} calls): "
                  f"{per_call[s][-1]:.3f} per call", file=sys.stderr)
    print(f"| system | server page faults per call ({a.payload} B, {a.concurrency} outstanding, median of {a.rounds}) |")
    print("|---|---:|")
    for s in systems:
        print(f"| {s} | {statistics.median(per_call[s]):.3f} |")


if __name__ == "__main__":
    main()
