//! Admission judges the work ahead by what the nodes report (their load and
//! the service time they measured themselves), not by the gateway's own
//! timing of its calls, which includes its own queueing once its core is
//! saturated. In-process nodes whose reports the test sets.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use ebb_core::{Instant, Nanos, NodeId};
use ebb_gateway::registry::{Acquired, NewNode, Registry};
use ebb_node::provider::NodeKind;
use ebb_policy::admission::{AdmissionConfig, ServiceTimeSource};
use ebb_rpc::CallError;
use ebb_rpc::service::{BoxFuture, CallOptions, MethodInfo, Transport};

/// A node that reports `service_time` as measured by itself.
struct Reporting {
    service_time: Nanos,
}

impl Transport for Reporting {
    fn call(
        &self,
        _: &'static MethodInfo,
        _: Bytes,
        _: CallOptions,
    ) -> BoxFuture<'_, Result<Bytes, CallError>> {
        Box::pin(std::future::pending())
    }

    fn reported_load(&self) -> Option<u32> {
        Some(0)
    }

    fn reported_service_time(&self) -> Option<Nanos> {
        Some(self.service_time)
    }
}

const T0: Instant = Instant::EPOCH;
const NODES: u32 = 4;
/// Calls put on the pool before the request admission judges.
const AHEAD: usize = 40;

/// Four nodes reporting `node_says`; the gateway timed one call alone on
/// each at `gateway_saw` (what a saturated gateway measures); then 40 calls
/// are in flight. Returns what admission makes of a call with a 100 ms
/// deadline.
fn judge(node_says: Nanos, gateway_saw: Nanos, from: ServiceTimeSource) -> Acquired {
    let cfg = AdmissionConfig {
        service_time_from: from,
        ..AdmissionConfig::default()
    };
    let registry = Registry::new(ebb_policy::balance::parse("jsq").unwrap(), cfg, 5);
    for i in 1..=NODES {
        let id = NodeId(i);
        registry.add_booting(
            NewNode {
                id,
                kind: NodeKind::Thread,
                addr: SocketAddr::from(([127, 0, 0, 1], 1)),
                cost_per_sec_micros: 0,
                started_unix_ms: 0,
                expected_boot: Nanos::from_millis(10),
            },
            T0,
        );
        let node = Reporting {
            service_time: node_says,
        };
        assert!(registry.set_ready(id, Arc::new(node), T0));
    }
    registry.set_target(NODES as usize, Nanos::from_millis(10));
    let far = T0 + Nanos::from_secs(600);
    // One call alone on each node, timed by the gateway; the reply also
    // brought the node's own figure.
    for _ in 0..NODES {
        let Acquired::Now(mut slot) = registry.acquire(0, far, T0, &[], true, None) else {
            panic!("an idle node was not handed out");
        };
        slot.claim();
        registry.release(slot.node, Some(gateway_saw), true, T0);
    }
    let mut busy = Vec::new();
    for _ in 0..AHEAD {
        match registry.acquire(0, far, T0, &[], true, None) {
            Acquired::Now(mut slot) => {
                slot.claim();
                busy.push(slot);
            }
            _ => panic!("a call with ten minutes to spare was not sent"),
        }
    }
    let deadline = T0 + Nanos::from_millis(100);
    let verdict = registry.acquire(0, deadline, T0, &[], true, None);
    drop(busy);
    verdict
}

/// The gateway timed 20 ms per call (its own queueing included), the nodes
/// measured 1 ms: 40 calls over 4 nodes is 10 rounds, 11 ms by the nodes'
/// figure and 220 ms by the gateway's. The call is taken.
#[test]
fn fast_nodes_behind_a_saturated_gateway_get_the_call() {
    match judge(
        Nanos::from_millis(1),
        Nanos::from_millis(20),
        ServiceTimeSource::Nodes,
    ) {
        Acquired::Now(_) => {}
        Acquired::Refused { why, .. } => panic!("refused work the nodes can do: {why}"),
        Acquired::Held(_) => panic!("held with nodes free"),
    }
    // Judged by the gateway's own timing (`service_time_from = "gateway"`),
    // the same call is refused: what the nodes' reports avoid.
    match judge(
        Nanos::from_millis(1),
        Nanos::from_millis(20),
        ServiceTimeSource::Gateway,
    ) {
        Acquired::Refused { retry_after, .. } => {
            assert_eq!(retry_after, Nanos::from_millis(220));
        }
        _ => panic!("the gateway's own figure should refuse it"),
    }
}

/// The opposite: the gateway saw 1 ms calls, but the nodes say each takes
/// 20 ms of their time: 220 ms of work ahead for a 100 ms deadline.
#[test]
fn slow_nodes_refuse_at_once_however_fast_the_gateway_saw_them() {
    match judge(
        Nanos::from_millis(20),
        Nanos::from_millis(1),
        ServiceTimeSource::Nodes,
    ) {
        Acquired::Refused { why, retry_after } => {
            assert!(why.contains("deadline"), "{why}");
            assert_eq!(retry_after, Nanos::from_millis(220), "10 rounds + its own");
        }
        _ => panic!("a call that cannot meet its deadline was taken"),
    }
}
