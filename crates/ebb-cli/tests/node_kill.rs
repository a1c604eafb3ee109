//! An `ebb node` killed with SIGKILL under load and restarted on the same
//! address: calls in flight end `OutcomeUnknown` or succeed on the new
//! incarnation, and no call runs twice (`Demo.incr` values show it).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ebb::rpc::CallError;
use ebb::rpc::service::CallOptions;
use ebb::rpc::transport::TcpClient;
use ebb_core::Nanos;
use ebb_demo::DemoClient;

const CALLERS: usize = 32;
const CALLS_PER_CALLER: usize = 40;
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
}

async fn caller(client: Arc<TcpClient>, ok: Arc<AtomicU64>) -> Tally {
    let demo = DemoClient::new(client)
        .with_options(CallOptions::default().with_timeout(Nanos::from_millis(CALL_TIMEOUT_MS)));
    let mut t = Tally::default();
    for _ in 0..CALLS_PER_CALLER {
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

#[test]
fn a_sigkilled_node_restarted_on_its_address_runs_no_call_twice() {
    let mut first = common::ebb(&["node", "--listen", "127.0.0.1:0"]);
    let addr = first.addr.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client = Arc::new(rt.block_on(TcpClient::connect(&addr)).unwrap());
    let ok = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| rt.spawn(caller(Arc::clone(&client), Arc::clone(&ok))))
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
    let second = common::ebb(&["node", "--listen", &addr]);
    assert_eq!(second.addr, addr, "restarted on the same address");

    let mut values = Vec::new();
    let mut unknown = 0;
    for t in tasks {
        let tally = rt.block_on(t).unwrap();
        values.extend(tally.values);
        unknown += tally.unknown;
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
    assert_eq!(values.len() + unknown, CALLERS * CALLS_PER_CALLER, "{ctx}");
    assert!(unknown > 0, "no call was in flight across the kill; {ctx}");
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
}
