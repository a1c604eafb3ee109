//! An `ebb node` killed with SIGKILL under load and restarted on the same
//! address: calls in flight end `OutcomeUnknown` or succeed on the new
//! incarnation, and no call runs twice (`Demo.incr` values show it).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ebb::rpc::CallError;
use ebb::rpc::service::CallOptions;
use ebb::rpc::transport::TcpClient;
use ebb_core::Nanos;
use ebb_demo::DemoClient;

const CALLERS: usize = 32;
/// Calls each caller makes once it has seen the kill, so every caller is
/// still calling when the node dies, however long the test thread waits
/// for a CPU before it kills.
const CALLS_AFTER_KILL: usize = 20;
/// Bound on the calls a caller makes before it sees the kill.
const MAX_CALLS_BEFORE_KILL: usize = 1_000_000;
/// Successful calls before the kill, so the first incarnation did work.
const OK_BEFORE_KILL: u64 = 200;
/// Bound on the wait for them (polled 1 ms apart).
const MAX_WAIT_POLLS: u32 = 60_000;
/// Long enough for a reconnect to the restarted node under a loaded machine.
const CALL_TIMEOUT_MS: u64 = 60_000;

#[derive(Default)]
struct Tally {
    values: Vec<u64>,
    unknown: usize,
    calls: usize,
}

/// Calls `Demo.incr` until it has seen `killed`, then `CALLS_AFTER_KILL`
/// more: no caller can finish before the kill.
async fn caller(client: Arc<TcpClient>, ok: Arc<AtomicU64>, killed: Arc<AtomicBool>) -> Tally {
    let demo = DemoClient::new(client)
        .with_options(CallOptions::default().with_timeout(Nanos::from_millis(CALL_TIMEOUT_MS)));
    let mut t = Tally::default();
    let mut after_kill = 0;
    while after_kill < CALLS_AFTER_KILL {
        assert!(
            t.calls < MAX_CALLS_BEFORE_KILL,
            "the test thread never killed the node"
        );
        if killed.load(Ordering::Acquire) {
            after_kill += 1;
        }
        t.calls += 1;
        match demo.incr("k".to_owned()).await {
            Ok(Ok(v)) => {
                t.values.push(v);
                ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(CallError::OutcomeUnknown { .. }) => t.unknown += 1,
            other => panic!("a call ended neither ok nor OutcomeUnknown: {other:?}"),
        }
    }
    t
}

/// Runs of the whole kill-and-restart, at most, until one of them has a call
/// in flight at the kill. A run has none only when the kill lands just after
/// every outstanding call was answered and before the callers' next
/// requests left the client (those then go to the new incarnation and
/// succeed): rare, but a loaded machine makes it possible.
const MAX_RUNS: usize = 5;

#[test]
fn a_sigkilled_node_restarted_on_its_address_runs_no_call_twice() {
    for run in 1..=MAX_RUNS {
        let unknown = kill_and_restart_under_load();
        if unknown > 0 {
            return;
        }
        eprintln!("run {run}: no call was in flight at the kill; running again");
    }
    panic!("no call was in flight across the kill in {MAX_RUNS} runs");
}

/// One kill-and-restart under load, checking every call's outcome; returns
/// how many calls ended `OutcomeUnknown`.
fn kill_and_restart_under_load() -> usize {
    let mut first = common::ebb(&["node", "--listen", "127.0.0.1:0"]);
    let addr = first.addr.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client = Arc::new(rt.block_on(TcpClient::connect(&addr)).unwrap());
    let ok = Arc::new(AtomicU64::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            rt.spawn(caller(
                Arc::clone(&client),
                Arc::clone(&ok),
                Arc::clone(&killed),
            ))
        })
        .collect();

    let mut polls = 0;
    while ok.load(Ordering::Relaxed) < OK_BEFORE_KILL {
        polls += 1;
        assert!(
            polls < MAX_WAIT_POLLS,
            "the first node never served {OK_BEFORE_KILL} calls"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    first.kill(); // SIGKILL, and reaped
    let ok_at_kill = ok.load(Ordering::Relaxed);
    killed.store(true, Ordering::Release);
    let second = common::ebb(&["node", "--listen", &addr]);
    assert_eq!(second.addr, addr, "restarted on the same address");

    let mut values = Vec::new();
    let mut unknown = 0;
    let mut calls = 0;
    for t in tasks {
        let tally = rt.block_on(t).unwrap();
        values.extend(tally.values);
        unknown += tally.unknown;
        calls += tally.calls;
    }
    // One more increment on the new incarnation: its executions so far + 1.
    let executions_after = rt
        .block_on(DemoClient::new(Arc::clone(&client)).incr("k".to_owned()))
        .unwrap()
        .unwrap()
        - 1;

    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    for v in &values {
        *seen.entry(*v).or_default() += 1;
    }
    let ctx = format!(
        "{} ok ({ok_at_kill} before the kill), {unknown} OutcomeUnknown, {executions_after} executions after the restart",
        values.len()
    );
    assert_eq!(values.len() + unknown, calls, "{ctx}");
    assert!(
        executions_after > 0,
        "the new incarnation served nothing; {ctx}"
    );
    // The counter restarts at 0 with the node: each value comes at most
    // once from each incarnation, and the new one's 1..=n all came back.
    assert!(
        seen.values().all(|&n| n <= 2),
        "a value came back three times: a call ran twice; {ctx}"
    );
    assert!(
        (1..=executions_after).all(|v| seen.contains_key(&v)),
        "a new-incarnation execution got no reply; {ctx}"
    );
    assert!(
        seen.range(executions_after + 1..).all(|(_, &n)| n == 1),
        "a first-incarnation value came back twice: a call ran twice; {ctx}"
    );
    // Every reply counted before the kill came from the first incarnation.
    let from_first = values.len() as u64 - executions_after;
    assert!(from_first >= ok_at_kill, "{ctx}");
    eprintln!("{ctx}");
    unknown
}
