//! Node failures and pool changes behind the gateway, with real processes:
//! a node killed with SIGKILL mid-load, scale-in by hand under load, and
//! overload refused at once.
#![allow(clippy::unwrap_used)]

mod gateway_common;

use std::sync::Arc;

use ebb::demo::DemoClient;
use ebb::rpc::CallError;
use ebb::rpc::semantics::ClientConfig;
use ebb::rpc::service::CallOptions;
use ebb::rpc::transport::{TcpClient, TcpClientConfig};
use ebb_core::Nanos;
use gateway_common::{Up, gone_nodes, live_nodes};
use serde_json::Value;

fn config(nodes: usize, max: usize, policy: &str, deadline_ms: u64) -> String {
    format!(
        "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nseed = 3\n\
         [service]\nname = \"demo\"\n\
         [pool]\nkind = \"process\"\ninitial = {nodes}\nmin = 1\nmax = {max}\n\
         [balance]\npolicy = \"{policy}\"\n\
         [admission]\nenabled = true\ndefault_deadline_ms = {deadline_ms}\n"
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A client that does not resend on a live connection within a test's
/// span: a resent idempotent call is a second, independent execution,
/// which would blur what the test counts.
fn patient() -> TcpClientConfig {
    let d = TcpClientConfig::default();
    TcpClientConfig {
        session: ClientConfig {
            retransmit_after: Nanos::from_secs(60),
            max_retransmit_interval: Nanos::from_secs(60),
            ..d.session
        },
    }
}

fn in_flight(status: &Value) -> u64 {
    live_nodes(status)
        .iter()
        .map(|n| n["in_flight"].as_u64().unwrap())
        .sum()
}

/// Idempotent calls blocking the only node, at-most-once calls queued
/// behind them, then SIGKILL: every idempotent call succeeds on the
/// replacement, every at-most-once call either ran (value 1) or ends
/// `OutcomeUnknown`, and an uncertain one was not run again elsewhere.
#[test]
fn a_killed_node_fails_only_its_at_most_once_calls() {
    const BLOCKERS: usize = 1;
    const INCRS: usize = 8;
    /// Long enough that the kill lands while the blocker spins, short of
    /// the heartbeat silence that would mark the spinning node dead (a
    /// node's runtime answers no ping while a method holds its thread).
    const BLOCK_MICROS: u64 = 2_000_000;
    let up = Up::start("kill", &config(1, 2, "rr", 30_000));
    let first = up.wait_ready(1);
    let victim = live_nodes(&first)[0]["id"].as_u64().unwrap();
    let rt = runtime();
    let client = rt.block_on(async {
        Arc::new(
            TcpClient::connect_with(&up.rpc.to_string(), patient())
                .await
                .unwrap(),
        )
    });
    let opts = CallOptions::default().with_timeout(Nanos::from_secs(30));
    let demo = DemoClient::new(Arc::clone(&client)).with_options(opts);
    let blockers: Vec<_> = (0..BLOCKERS)
        .map(|_| {
            let d = demo.clone();
            rt.spawn(async move { d.work(BLOCK_MICROS).await })
        })
        .collect();
    up.wait_until("the blockers in flight", |s| {
        in_flight(s) == BLOCKERS as u64
    });
    let incrs: Vec<_> = (0..INCRS)
        .map(|i| {
            let d = demo.clone();
            rt.spawn(async move { d.incr(format!("kill-{i}")).await })
        })
        .collect();
    up.wait_until("every call in flight", |s| {
        in_flight(s) == (BLOCKERS + INCRS) as u64
    });
    let pids = up.node_pids();
    assert_eq!(pids.len(), 1, "one node process: {pids:?}");
    // SAFETY: kill has no memory preconditions; the pid is a node of ours.
    assert_eq!(unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) }, 0);

    let mut unknown = Vec::new();
    let mut ran = 0;
    for (i, h) in incrs.into_iter().enumerate() {
        match rt.block_on(h).unwrap() {
            Ok(Ok(v)) => {
                assert_eq!(v, 1, "kill-{i} ran more than once");
                ran += 1;
            }
            Err(CallError::OutcomeUnknown { .. }) => unknown.push(i),
            other => panic!(
                "kill-{i}: an at-most-once call must end Ok or OutcomeUnknown, got {other:?}"
            ),
        }
    }
    for h in blockers {
        let r = rt.block_on(h).unwrap();
        if r != Ok(BLOCK_MICROS) {
            let (_, m, _) = gateway_common::http(up.http, "GET", "/metrics", "", &[]);
            panic!(
                "an idempotent call must succeed on another node: {r:?}; {}; {}",
                up.status(),
                m.as_str().unwrap_or_default()
            );
        }
    }
    assert!(
        !unknown.is_empty(),
        "the kill landed after every incr ran ({ran} ran): the rare path did not run"
    );
    let after = up.wait_until("the pool back at its target", |s| {
        let live = live_nodes(s);
        live.len() == 1 && live[0]["state"] == "ready" && live[0]["id"] != victim
    });
    let gone = gone_nodes(&after);
    assert!(
        gone.iter()
            .any(|n| n["id"] == victim && n["reason"].as_str().unwrap_or("").contains("SIGKILL")),
        "{after}"
    );
    // The replacement never saw the uncertain calls: had the gateway sent
    // one there too, its counter would now be 2.
    rt.block_on(async {
        for i in &unknown {
            let v = demo.incr(format!("kill-{i}")).await.unwrap().unwrap();
            assert_eq!(
                v, 1,
                "kill-{i} ended OutcomeUnknown yet ran again on the new node"
            );
        }
    });
    let (_, metrics, _) = gateway_common::http(up.http, "GET", "/metrics", "", &[]);
    let text = metrics.as_str().unwrap();
    assert!(text.contains("ebb_gateway_retries_total"), "{text}");
    let retries: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("ebb_gateway_retries_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert_eq!(
        retries, BLOCKERS as u64,
        "each blocker retried once, no incr retried"
    );
    drop(client);
    up.stop();
}
