//! Admission judges the work ahead by what the nodes report (their load and
//! the service time they measured themselves), not by the gateway's own
//! timing of its calls, which includes its own queueing once its core is
//! saturated. In-process nodes whose reports the test sets.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{add_ready, claim_now, registry};
use ebb_core::{Instant, Nanos, NodeId};
use ebb_gateway::registry::{Acquired, Registry};
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
    let registry = registry("jsq", cfg, 5);
    for i in 1..=NODES {
        let node = Reporting {
            service_time: node_says,
        };
        add_ready(&registry, NodeId(i), Arc::new(node), T0);
    }
    registry.set_target(NODES as usize, Nanos::from_millis(10));
    let far = T0 + Nanos::from_secs(600);
    // One call alone on each node, timed by the gateway; the reply also
    // brought the node's own figure.
    for _ in 0..NODES {
        let slot = claim_now(registry.acquire(0, far, T0, &[], true, None));
        registry.release(slot.node, Some(gateway_saw), 0, T0);
    }
    let mut busy = Vec::new();
    for _ in 0..AHEAD {
        // A call with ten minutes to spare is sent at once.
        busy.push(claim_now(registry.acquire(0, far, T0, &[], true, None)));
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
            assert_eq!(why.rule(), "deadline", "{why}");
            assert_eq!(retry_after, Nanos::from_millis(220), "10 rounds + its own");
        }
        _ => panic!("a call that cannot meet its deadline was taken"),
    }
}

/// One node, one call at a time, the given admission: the node is handed
/// out once and the slot returned, busy, so later requests are held.
fn one_busy_node(cfg: AdmissionConfig) -> (Registry, ebb_gateway::registry::Slot) {
    let registry = registry("jsq", cfg, 9).with_max_in_flight_per_node(1);
    let node = Reporting {
        service_time: Nanos::from_millis(1),
    };
    add_ready(&registry, NodeId(1), Arc::new(node), T0);
    registry.set_target(1, Nanos::from_millis(10));
    let slot = claim_now(registry.acquire(0, T0 + Nanos::from_secs(600), T0, &[], true, None));
    (registry, slot)
}

fn at_ms(ms: u64) -> Instant {
    T0 + Nanos::from_millis(ms)
}

/// Requests held in the gateway longer than `max_gateway_delay` make it
/// refuse new ones at once, with `Overloaded` and a retry hint, however
/// far their deadlines are; the refusal ends when the old one is gone.
/// With admission off the same request is held.
#[test]
fn a_request_held_past_the_delay_bound_makes_new_ones_refused_at_once() {
    let cfg = AdmissionConfig {
        max_gateway_delay: Nanos::from_millis(20),
        ..AdmissionConfig::default()
    };
    let far = T0 + Nanos::from_secs(600);
    let (registry, busy) = one_busy_node(cfg);
    let Acquired::Held(first) = registry.acquire(0, far, at_ms(0), &[], true, None) else {
        panic!("the node is busy: the request should be held");
    };
    let Acquired::Held(second) = registry.acquire(0, far, at_ms(10), &[], true, None) else {
        panic!("10 ms behind is within the bound: held");
    };
    match registry.acquire(0, far, at_ms(25), &[], true, None) {
        Acquired::Refused { why, retry_after } => {
            assert_eq!(why.rule(), "gateway_behind", "{why}");
            assert!(why.to_string().contains("in the gateway"), "{why}");
            assert_eq!(
                retry_after,
                Nanos::from_millis(25),
                "the oldest waited 25 ms"
            );
        }
        _ => panic!("the oldest held request waited 25 ms > 20 ms: refuse"),
    }
    assert_eq!(registry.held().0, 2, "the refused one was not held");
    // The node frees up: the oldest goes to it; the one behind waited
    // 16 ms at 26 ms, within the bound, so a new request is held again.
    drop(busy);
    registry.release(NodeId(1), Some(Nanos::from_millis(1)), 0, at_ms(26));
    let mut first = first;
    let handed = first.try_recv();
    assert!(handed.is_ok(), "the oldest held request got the node");
    let Acquired::Held(_third) = registry.acquire(0, far, at_ms(26), &[], true, None) else {
        panic!("16 ms behind is within the bound: held");
    };
    drop((second, handed));

    // Admission off: nothing is refused for the gateway's delay.
    let off = AdmissionConfig {
        deadline_check: false,
        ..cfg
    };
    let (registry, _busy) = one_busy_node(off);
    let _held = registry.acquire(0, far, at_ms(0), &[], true, None);
    assert!(matches!(
        registry.acquire(0, far, at_ms(500), &[], true, None),
        Acquired::Held(_)
    ));
}

/// The gateway's own service-time figure (`service_time_from = "gateway"`,
/// and the autoscaler's signal) learns from every call, not only from
/// calls that had their node to themselves, which under load are none: a
/// call that found n ahead counts its latency over n + 1.
#[test]
fn the_gateways_service_time_moves_under_load() {
    let (registry, busy) = one_busy_node(AdmissionConfig::default());
    drop(busy);
    // Alone: 10 ms per call.
    registry.release(NodeId(1), Some(Nanos::from_millis(10)), 0, at_ms(10));
    assert_eq!(registry.tick().service_time, Nanos::from_millis(10));
    // Then only calls with three ahead, each 8 ms after it was sent: 2 ms
    // of service each.
    let far = T0 + Nanos::from_secs(600);
    for i in 0..200 {
        let slot = claim_now(registry.acquire(0, far, at_ms(20 + i), &[], true, None));
        registry.release(slot.node, Some(Nanos::from_millis(8)), 3, at_ms(20 + i));
    }
    let s = registry.tick().service_time;
    assert!(
        s < Nanos::from_millis(3) && s >= Nanos::from_millis(2),
        "the figure stayed at the unloaded one: {s}"
    );
}
