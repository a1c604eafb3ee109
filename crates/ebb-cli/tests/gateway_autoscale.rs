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
    // Under the same load, so the autoscaler still wants the maximum.
    let (_, metrics, _) = gateway_common::http(up.http, "GET", "/metrics", "", &[]);
    stop.store(true, Ordering::SeqCst);
    for c in callers {
        let failures = rt.block_on(c).unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    let scaler = status["policies"]["autoscaler"].as_str().unwrap();
    assert!(scaler.starts_with("kpa"), "{status}");
    // Each decision is on /status with its signals and reasoning, and
    // counted on /metrics.
    let scaling = &status["scaling"];
    let up_total = scaling["up"].as_u64().unwrap();
    assert!(
        up_total >= 1,
        "the pool grew, so some decision went up: {scaling}"
    );
    let recent = scaling["recent"].as_array().unwrap();
    assert!(
        !recent.is_empty() && recent.len() <= ebb_gateway::decisions::MAX_RECENT_DECISIONS,
        "{scaling}"
    );
    let last = recent.last().unwrap();
    assert_eq!(last["applied_nodes"], MAX_NODES, "{last}");
    assert!(
        last["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{last}"
    );
    // The decisions carry the load they saw. Not necessarily the last: a
    // caller process descheduled for a tick (200 ms) on a loaded machine
    // sends nothing in it, and that tick's arrivals are rightly 0.
    assert!(
        recent
            .iter()
            .any(|d| d["signals"]["arrivals_per_sec"].as_f64().unwrap() > 0.0),
        "{scaling}"
    );
    assert!(last["signals"]["ready"].as_u64().is_some(), "{last}");
    for d in recent.iter().filter(|d| d["direction"] == "up") {
        assert!(
            d["applied_nodes"].as_u64() > d["current_nodes"].as_u64(),
            "{d}"
        );
    }
    let text = metrics.as_str().unwrap();
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    assert!(
        value("ebb_gateway_autoscaler_decisions_total{direction=\"up\"} ") >= up_total,
        "{text}"
    );
    assert_eq!(
        value("ebb_gateway_autoscaler_desired_nodes "),
        MAX_NODES as u64,
        "{text}"
    );
    drop(client);
    up.stop();
}
