//! At-most-once through a faulty network: an `ebb node` process behind the
//! `ebb chaos` proxy (run in-process here, so the test can count the faults
//! it injected: resets and black holes), many `Demo.incr` calls from the
//! client library, then the node's counter is compared with what the
//! callers were told, value by value.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ebb::rpc::CallError;
use ebb::rpc::service::CallOptions;
use ebb::rpc::transport::TcpClient;
use ebb_chaos::{ChaosConfig, Proxy};
use ebb_core::Nanos;
use ebb_demo::DemoClient;

const SEEDS: [u64; 2] = [11, 12];
const CALLERS: usize = 4;
const CALLS_PER_CALLER: usize = 40;
const CALL_TIMEOUT_MS: u64 = 1_000;

#[derive(Default)]
struct Tally {
    /// Values returned by calls that succeeded.
    values: Vec<u64>,
    /// Calls that ended without telling whether they ran.
    uncertain: usize,
    /// Of those, the ones the client knows never ran (nothing was sent).
    not_run: usize,
}

async fn caller(client: Arc<TcpClient>) -> Tally {
    let opts = CallOptions::default().with_timeout(Nanos::from_millis(CALL_TIMEOUT_MS));
    let demo = DemoClient::new(client).with_options(opts);
    let mut t = Tally::default();
    for _ in 0..CALLS_PER_CALLER {
        match demo.incr("k".to_owned()).await {
            Ok(Ok(v)) => t.values.push(v),
            Ok(Err(e)) => panic!("the store cannot be full with one key: {e}"),
            Err(
                e @ (CallError::OutcomeUnknown { .. }
                | CallError::DeadlineExceeded { .. }
                | CallError::ConnectionLost { .. }
                | CallError::ServerUnresponsive { .. }),
            ) => {
                t.uncertain += 1;
                if !e.may_have_run() {
                    t.not_run += 1;
                }
            }
            Err(other) => panic!("a network fault must not look like {other:?}"),
        }
    }
    t
}

fn run_seed(seed: u64) {
    let node = common::ebb(&["node", "--listen", "127.0.0.1:0"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let faults = ChaosConfig {
            reset_p: 0.03,
            drop_p: 0.01,
            delay: Nanos::ZERO,
        };
        let proxy = Proxy::bind("127.0.0.1:0", &node.addr, faults, seed)
            .await
            .unwrap();
        let proxy_addr = proxy.local_addr().unwrap().to_string();
        let stats = proxy.stats();
        tokio::spawn(proxy.run());
        let client = Arc::new(
            TcpClient::connect_with(&proxy_addr, common::quick_detection_client())
                .await
                .unwrap(),
        );
        let tasks: Vec<_> = (0..CALLERS)
            .map(|_| tokio::spawn(caller(Arc::clone(&client))))
            .collect();
        let mut values = Vec::new();
        let mut uncertain = 0;
        let mut not_run = 0;
        for t in tasks {
            let tally = t.await.unwrap();
            values.extend(tally.values);
            uncertain += tally.uncertain;
            not_run += tally.not_run;
        }
        let resets = stats.resets.load(Ordering::Relaxed);
        let blackholes = stats.blackholes.load(Ordering::Relaxed);

        // Ask the node directly, past the proxy: one more increment returns
        // the number of executions so far plus one.
        let direct = TcpClient::connect(&node.addr).await.unwrap();
        let executions = DemoClient::new(direct)
            .incr("k".to_owned())
            .await
            .unwrap()
            .unwrap()
            - 1;

        let successes = values.len() as u64;
        let ctx = format!(
            "seed {seed}: {successes} ok, {uncertain} uncertain ({not_run} never sent), \
             {executions} executions, {resets} resets, {blackholes} black holes"
        );
        assert!(resets + blackholes > 0, "no fault was injected; {ctx}");
        common::assert_at_most_once(&values, executions, uncertain - not_run, &ctx);
        assert_eq!(
            successes as usize + uncertain,
            CALLERS * CALLS_PER_CALLER,
            "{ctx}"
        );
        eprintln!("{ctx}");
    });
}

#[test]
fn incr_runs_at_most_once_through_resets_and_black_holes() {
    for seed in SEEDS {
        run_seed(seed);
    }
}
