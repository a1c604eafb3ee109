//! Admission judges the work ahead by what the nodes report (their load and
//! the service time they measured themselves), not by the gateway's own
//! timing of its calls, which includes its own queueing once its core is
//! saturated. In-process nodes whose reports the test sets.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::{Silent, add_ready, claim_now, registry};
use ebb_core::{Instant, Nanos, NodeId};
use ebb_gateway::registry::{Acquired, Registry};
use ebb_policy::admission::{AdmissionConfig, Refusal, ServiceTimeSource};

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
        let node = Silent::reporting(0, node_says);
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
        Acquired::Held(_) | Acquired::Parked => panic!("held with nodes free"),
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

/// Calls the node of [`busy_node`] takes at once.
const BOUND: u32 = 2;

/// One node taking [`BOUND`] calls at a time, the given admission, the node
/// handed out to its bound and the slots returned, busy, so later requests
/// are held. The node says it executes `executing` calls.
fn busy_node(cfg: AdmissionConfig, executing: u32) -> (Registry, Vec<ebb_gateway::registry::Slot>) {
    let (registry, slots, _) = busy_node_reporting(cfg, executing);
    (registry, slots)
}

/// [`busy_node`], and the count of calls the node says it executes, which
/// the test may change.
fn busy_node_reporting(
    cfg: AdmissionConfig,
    executing: u32,
) -> (Registry, Vec<ebb_gateway::registry::Slot>, Arc<AtomicU32>) {
    let registry = registry("jsq", cfg, 9).with_max_in_flight_per_node(BOUND);
    let node = Silent::reporting(executing, Nanos::from_millis(1));
    let reported = Arc::clone(&node.executing);
    add_ready(&registry, NodeId(1), Arc::new(node), T0);
    registry.set_target(1, Nanos::from_millis(10));
    let far = T0 + Nanos::from_secs(600);
    // One call answered: its reply brought the node's figures.
    let slot = claim_now(registry.acquire(0, far, T0, &[], true, None));
    registry.release(slot.node, Some(Nanos::from_millis(1)), 0, T0);
    let slots = (0..BOUND)
        .map(|_| claim_now(registry.acquire(0, far, T0, &[], true, None)))
        .collect();
    (registry, slots, reported)
}

fn at_ms(ms: u64) -> Instant {
    T0 + Nanos::from_millis(ms)
}

/// Requests held in the gateway longer than `max_gateway_delay` while
/// dispatch is behind (the node, busy when they were held, now says it
/// executes none of the calls the gateway counts there: their replies are
/// unread) make it refuse new ones at once, with `Overloaded` and a retry
/// hint, however far their deadlines are; the refusal for their age ends
/// when the old one is gone, and while dispatch stays behind a new request
/// is refused rather than held. With admission off the same request is
/// held.
#[test]
fn a_request_held_past_the_delay_bound_makes_new_ones_refused_at_once() {
    let cfg = AdmissionConfig {
        max_gateway_delay: Nanos::from_millis(20),
        ..AdmissionConfig::default()
    };
    let far = T0 + Nanos::from_secs(600);
    let (registry, mut busy, executing) = busy_node_reporting(cfg, BOUND);
    let Acquired::Held(first) = registry.acquire(0, far, at_ms(0), &[], true, None) else {
        panic!("the node is full: the request should be held");
    };
    let Acquired::Held(second) = registry.acquire(0, far, at_ms(10), &[], true, None) else {
        panic!("10 ms behind is within the bound: held");
    };
    // The node has answered its calls; the gateway has not read them.
    executing.store(0, Ordering::SeqCst);
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
    // A call ends: the oldest goes to the node; the one behind waited
    // 16 ms at 26 ms, within the bound, but the node's room still waits
    // on unread answers: a new request is refused, not held.
    drop(busy.pop());
    registry.release(NodeId(1), Some(Nanos::from_millis(1)), 0, at_ms(26));
    let mut first = first;
    let handed = first.try_recv();
    assert!(handed.is_ok(), "the oldest held request got the node");
    match registry.acquire(0, far, at_ms(26), &[], true, None) {
        Acquired::Refused { why, .. } => {
            assert_eq!(why, Refusal::DispatchBehind);
            assert_eq!(why.rule(), "gateway_behind");
        }
        _ => panic!("held for room the gateway has not read back"),
    }
    assert_eq!(registry.held().0, 1, "only the second is held");
    // The node is busy by its own account again: held.
    executing.store(BOUND, Ordering::SeqCst);
    let Acquired::Held(_third) = registry.acquire(0, far, at_ms(26), &[], true, None) else {
        panic!("16 ms behind is within the bound: held");
    };
    drop((second, handed));

    // Admission off: nothing is refused for the gateway's delay.
    let off = AdmissionConfig {
        deadline_check: false,
        ..cfg
    };
    let (registry, _busy) = busy_node(off, 0);
    let _held = registry.acquire(0, far, at_ms(0), &[], true, None);
    assert!(matches!(
        registry.acquire(0, far, at_ms(500), &[], true, None),
        Acquired::Held(_)
    ));
}

/// The same held wait before a node that says it executes every call the
/// gateway sent is the node's, not the gateway's: a new request with time
/// to spare is held, and one whose deadline the work ahead cannot meet is
/// refused as `deadline`, never `gateway_behind`.
#[test]
fn a_request_held_for_a_busy_node_is_judged_by_the_work_ahead() {
    let cfg = AdmissionConfig {
        max_gateway_delay: Nanos::from_millis(20),
        ..AdmissionConfig::default()
    };
    let far = T0 + Nanos::from_secs(600);
    let (registry, _busy) = busy_node(cfg, BOUND);
    let Acquired::Held(_first) = registry.acquire(0, far, at_ms(0), &[], true, None) else {
        panic!("the node is full: the request should be held");
    };
    let Acquired::Held(_second) = registry.acquire(0, far, at_ms(25), &[], true, None) else {
        panic!("held 25 ms for a busy node is not the gateway's delay: held");
    };
    // Two held and two running ahead at 1 ms each: 5 ms with its own.
    match registry.acquire(0, at_ms(29), at_ms(25), &[], true, None) {
        Acquired::Refused { why, .. } => assert_eq!(why.rule(), "deadline", "{why}"),
        _ => panic!("4 ms left for 5 ms of work ahead: refuse"),
    }
    assert_eq!(registry.held().0, 2);
}
