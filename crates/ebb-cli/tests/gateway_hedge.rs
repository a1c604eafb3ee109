//! Hedging through a real gateway: `ebb up` over two process nodes, one of
//! them fifty times slower (`ebb node --work-scale 50`). Idempotent calls
//! that the slow node holds past the hedge delay get a second copy on the
//! fast node, which answers first: hedges fire and win, and every call is
//! answered. An at-most-once call is never hedged.
#![allow(clippy::unwrap_used)]

mod gateway_common;

use gateway_common::{Up, metric};

/// Calls sent at most, waiting for hedges to have fired and won.
const MAX_CALLS: usize = 400;
/// Calls sent at least, so the hedge delay is measured (`min_samples`).
const MIN_CALLS: usize = 40;

#[test]
fn a_slow_nodes_idempotent_calls_are_hedged_and_the_hedges_win() {
    let guard = tempfile::Builder::new()
        .prefix("ebb-hedge-")
        .tempdir()
        .unwrap();
    let dir = guard.path();
    let marker = dir.join("slow");
    let script = dir.join("node.sh");
    let ebb = env!("CARGO_BIN_EXE_ebb");
    // The first node to start (an atomic mkdir decides) is the slow one.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif mkdir {m} 2>/dev/null; then\n  exec {ebb} node --work-mode block --work-scale 50 \"$@\"\nfi\nexec {ebb} node --work-mode block \"$@\"\n",
            m = marker.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .unwrap();
    let config = format!(
        r#"
[gateway]
rpc = "127.0.0.1:0"
http = "127.0.0.1:0"
seed = 1
[service]
name = "demo"
command = ["{script}"]
[pool]
kind = "process"
initial = 2
min = 2
max = 2
[balance]
policy = "rr"
[hedge]
enabled = true
percentile = 25.0
min_samples = 20
window = 64
[retry]
budget_ratio = 1.0
[autoscale]
policy = "none"
"#,
        script = script.display()
    );
    let up = Up::start("hedge", &config);
    up.wait_ready(2);
    // 2 ms of (blocked) work: the fast node answers in about that, the
    // slow one in 100 ms. Round-robin sends every other call to the slow
    // one; once 20 latencies are in, a call slower than their 25th
    // percentile gets a copy on the other node.
    let work = r#"{"micros": 2000}"#;
    let deadline = [("ebb-deadline-ms", "10000")];
    let mut sent = 0;
    while sent < MAX_CALLS {
        let (code, body, _) = up.post("/rpc/Demo/work", work, &deadline);
        assert_eq!(code, 200, "call {sent}: {body}");
        sent += 1;
        if sent >= MIN_CALLS && metric(up.http, "ebb_gateway_hedge_wins_total") >= 5 {
            break;
        }
    }
    let hedges = metric(up.http, "ebb_gateway_hedges_total");
    let wins = metric(up.http, "ebb_gateway_hedge_wins_total");
    assert!(
        wins >= 5 && hedges >= wins,
        "after {sent} calls: {hedges} hedges, {wins} won"
    );
    // An at-most-once call is never hedged, however slow its node.
    let before = metric(up.http, "ebb_gateway_hedges_total");
    for _ in 0..4 {
        let (code, body, _) = up.post("/rpc/Demo/incr", r#"{"key": "h"}"#, &deadline);
        assert!(code == 200 && body["Ok"].is_u64(), "{code} {body}");
    }
    assert_eq!(metric(up.http, "ebb_gateway_hedges_total"), before);
    up.stop();
}
