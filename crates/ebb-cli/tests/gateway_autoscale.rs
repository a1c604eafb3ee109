//! The autoscaler seam end to end: `ebb up` with an `ebb-policy` scaling
//! policy grows the pool under load, within its bounds, failing nothing.
#![allow(clippy::unwrap_used)]

mod gateway_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ebb::rpc::service::CallOptions;
use ebb::rpc::transport::TcpClient;
use ebb_core::Nanos;
use ebb_demo::DemoClient;
use gateway_common::{Up, live_nodes};

/// Callers each keeping one `Demo.sleep` in flight: a concurrency of this
/// many against a KPA target of one per node.
const CALLERS: usize = 6;
const MAX_NODES: usize = 3;

#[test]
fn a_scaling_policy_grows_the_pool_under_load() {
    let up = Up::start(
        "autoscale",
        &format!(
            "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
             [service]\nname = \"demo\"\n\
             [pool]\nkind = \"process\"\ninitial = 1\nmin = 1\nmax = {MAX_NODES}\n\
             [admission]\ndefault_deadline_ms = 10000\n\
             [autoscale]\npolicy = \"kpa:target=1\"\ntick_ms = 200\n"
        ),
    );
    up.wait_ready(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client =
        rt.block_on(async { Arc::new(TcpClient::connect(&up.rpc.to_string()).await.unwrap()) });
    let opts = CallOptions::default().with_timeout(Nanos::from_secs(10));
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let demo = DemoClient::new(Arc::clone(&client)).with_options(opts);
            let stop = Arc::clone(&stop);
            rt.spawn(async move {
                let mut failures = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    if let Err(e) = demo.sleep(100).await {
                        failures.push(e);
                    }
                }
                failures
            })
        })
        .collect();
    let status = up.wait_until("the pool grown to its maximum", |s| {
        let live = live_nodes(s);
        s["pool"]["target"] == MAX_NODES
            && live.len() == MAX_NODES
            && live.iter().all(|n| n["state"] == "ready")
    });
    stop.store(true, Ordering::SeqCst);
    for c in callers {
        let failures = rt.block_on(c).unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    let scaler = status["policies"]["autoscaler"].as_str().unwrap();
    assert!(scaler.starts_with("kpa"), "{status}");
    drop(client);
    up.stop();
}
