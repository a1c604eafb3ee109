//! `ebb load --http` against a real gateway (`ebb up`, one process node,
//! the central queue holding one request): every answer the gateway gives
//! lands in its class. Answered calls are `ok`; with the node frozen, the
//! requests past the held one are refused at once (503 `overloaded`, with
//! `Retry-After`), the one on the node ends `outcome_unknown` when the
//! node is killed (502 `node_lost`, `may_have_run: true`), and a call on a
//! frozen node is `deadline_exceeded`.
#![allow(clippy::unwrap_used)]

mod gateway_common;

use std::process::{Child, Command, Stdio};

use gateway_common::{Up, live_nodes};
use serde_json::Value;

/// Arrivals at once (a trace of timestamps: each its own connection).
const BURST: usize = 6;

fn config() -> String {
    "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nseed = 3\n\
     [service]\nname = \"demo\"\n\
     [pool]\nkind = \"process\"\ninitial = 1\nmin = 1\nmax = 1\n\
     [balance]\npolicy = \"central\"\n\
     [admission]\nenabled = false\ndefault_deadline_ms = 30000\nmax_held_requests = 1\n"
        .to_owned()
}

/// A trace file of `n` arrivals (at least two) 10 ms into the run, all at
/// once but the last, 1 ms later (a trace spans a positive time).
fn burst_trace(name: &str, n: usize) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("ebb-load-gw-{name}-{}.txt", std::process::id()));
    std::fs::write(&path, format!("{}0.011\n", "0.01\n".repeat(n - 1))).unwrap();
    path
}

/// `ebb load --http --json` against the gateway over `connections`
/// connections, started (not waited for).
fn load(up: &Up, connections: usize, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["load", "--http", "--json", "--target", &up.http.to_string()])
        .args(["--connections", &connections.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn report(child: Child) -> Value {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ebb load failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn n(r: &Value, field: &str) -> u64 {
    r[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {r}"))
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill has no memory preconditions; the pid is a node of ours.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

fn one_node_pid(up: &Up) -> u32 {
    let pids = up.node_pids();
    assert_eq!(pids.len(), 1, "one node process: {pids:?}");
    pids[0]
}

#[test]
fn every_gateway_answer_lands_in_its_class() {
    let up = Up::start("load-gateway", &config());
    let first = up.wait_ready(1);
    let victim = live_nodes(&first)[0]["id"].clone();

    // A healthy pool, one request at a time (so none waits behind another
    // and the held bound refuses none): everything answered, on the one
    // connection of the start. The deadline is the config's default, far
    // past any stall of a loaded machine (`ebb load`'s own default, a
    // second, is not).
    let r = report(load(
        &up,
        1,
        &[
            "--rate",
            "200",
            "--duration",
            "0.5",
            "--method",
            "Demo.echo",
            "--deadline-ms",
            "30000",
        ],
    ));
    assert!(n(&r, "sent") > 0, "{r}");
    assert_eq!(n(&r, "ok"), n(&r, "sent"), "{r}");
    assert_eq!((n(&r, "connections"), n(&r, "reconnects")), (1, 0), "{r}");

    // The node frozen: the first call reaches it and stays there, the next
    // is held, the rest are refused at once. Then the node is killed.
    let pid = one_node_pid(&up);
    signal(pid, libc::SIGSTOP);
    let trace = burst_trace("burst", BURST);
    let running = load(
        &up,
        8,
        &[
            "--trace",
            trace.to_str().unwrap(),
            "--duration",
            "1",
            "--method",
            "Demo.incr",
            "--args",
            r#"{"key":"load-gw"}"#,
            "--deadline-ms",
            "30000",
        ],
    );
    up.wait_until("one call on the frozen node and one held", |s| {
        live_nodes(s)[0]["in_flight"] == 1 && s["held"] == 1
    });
    signal(pid, libc::SIGKILL);
    let r = report(running);
    let _ = std::fs::remove_file(&trace);
    assert_eq!(n(&r, "sent"), BURST as u64, "{r}");
    assert_eq!(
        n(&r, "overloaded"),
        BURST as u64 - 2,
        "refused at once: {r}"
    );
    assert_eq!(
        n(&r, "outcome_unknown"),
        1,
        "the call on the killed node: {r}"
    );
    assert_eq!(n(&r, "ok"), 1, "the held call, run on the replacement: {r}");
    assert_eq!(n(&r, "other_errors") + n(&r, "deadline_exceeded"), 0, "{r}");

    // A call on a frozen node past its deadline.
    up.wait_until("the replacement ready", |s| {
        let live = live_nodes(s);
        live.len() == 1 && live[0]["state"] == "ready" && live[0]["id"] != victim
    });
    let pid = one_node_pid(&up);
    signal(pid, libc::SIGSTOP);
    // A trace holds at least two arrivals: two calls, two connections.
    let trace = burst_trace("late", 2);
    let r = report(load(
        &up,
        8,
        &[
            "--trace",
            trace.to_str().unwrap(),
            "--duration",
            "1",
            "--method",
            "Demo.echo",
            "--deadline-ms",
            "300",
        ],
    ));
    let _ = std::fs::remove_file(&trace);
    signal(pid, libc::SIGCONT);
    assert_eq!(n(&r, "sent"), 2, "{r}");
    assert_eq!(n(&r, "deadline_exceeded"), 2, "{r}");
    up.stop();
}
