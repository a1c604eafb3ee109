//! The gateway's view of a node includes the load the node reports in its
//! replies: real ebb RPC nodes on loopback, one of them kept busy by a
//! caller the gateway knows nothing about.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::{HoldingNode, add_connected, holding_node, registry, wait_for};
use ebb_core::{Nanos, NodeId};
use ebb_gateway::clock::Clock;
use ebb_policy::admission::AdmissionConfig;
use ebb_rpc::service::{CallOptions, MethodInfo, Transport};
use ebb_rpc::transport::TcpClient;

static METHODS: [MethodInfo; 2] = [
    MethodInfo {
        service: "Busy",
        id: 0,
        name: "hold",
        idempotent: false,
        blocking: false,
        params: &[],
        returns: "()",
    },
    MethodInfo {
        service: "Busy",
        id: 1,
        name: "quick",
        idempotent: false,
        blocking: false,
        params: &[],
        returns: "String",
    },
];

/// `hold` never ends; `quick` answers with the node's name.
async fn node(name: &'static str) -> HoldingNode {
    holding_node(name, &METHODS, |_, method_id| method_id == 0).await
}

#[tokio::test]
async fn a_busy_nodes_reported_load_shows_and_steers_work_away() {
    let busy = node("busy").await;
    let idle = node("idle").await;
    // Someone else keeps the first node busy.
    let other = TcpClient::connect(&busy.addr.to_string()).await.unwrap();
    let stuck = tokio::spawn(async move {
        let options = CallOptions::default().with_timeout(Nanos::from_secs(60));
        other.call(&METHODS[0], Bytes::new(), options).await
    });
    wait_for("the busy node holds a call", || {
        busy.holding.load(Ordering::SeqCst) == 1
    })
    .await;

    let registry = registry("jsq:reported", AdmissionConfig::default(), 1);
    let clock = Clock::new();
    for (i, n) in [&busy, &idle].into_iter().enumerate() {
        add_connected(&registry, NodeId(i as u32 + 1), n.addr, clock).await;
    }
    let forwarder = common::forwarder(&registry, clock);
    let reported = |id: u32| {
        registry
            .status(clock.now())
            .into_iter()
            .find(|s| s.id == id)
            .unwrap()
            .reported_queue
    };
    assert_eq!(reported(1), 0, "nothing reported before any reply");

    // Both nodes look idle to the gateway, so the first call goes to the
    // first of them; its reply says the node is busy.
    let second = Nanos::from_secs(5);
    let first = forwarder.call(&METHODS[1], Bytes::new(), second).await;
    assert_eq!(first, Ok(Bytes::from("busy")));
    assert_eq!(reported(1), 1, "the busy node's report is in /status");
    let service = registry
        .status(clock.now())
        .into_iter()
        .find(|s| s.id == 1)
        .unwrap()
        .reported_service_time_ms;
    assert!(
        service.is_some_and(|ms| ms > 0.0),
        "the node's own service time came with its reply: {service:?}"
    );

    // Now the busy node's own report outweighs the tie: work goes to the
    // idle one, every time.
    for _ in 0..4 {
        let r = forwarder.call(&METHODS[1], Bytes::new(), second).await;
        assert_eq!(r, Ok(Bytes::from("idle")));
    }
    assert_eq!(reported(2), 0);
    stuck.abort();
}
