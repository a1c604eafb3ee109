//! Calls started the RPC ingress's way (`Forwarder::start`): answered
//! through a deferred reply by whoever learns the node's outcome, with the
//! same semantics as an awaited call: the node's answer, `OutcomeUnknown`
//! for an at-most-once call whose node is lost, a retry elsewhere for an
//! idempotent one, and the node's in-flight count given back every time.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::{HOLD_METHODS, HoldGateway, add_ready, hold_node, wait_for};
use ebb_core::NodeId;
use ebb_rpc::service::LocalTransport;
use ebb_rpc::wire::Outcome;

#[tokio::test]
async fn a_started_call_is_answered_by_its_node_and_gives_the_node_back() {
    let b = hold_node("b").await;
    let gw = HoldGateway::new();
    gw.add(1, &b).await;
    let mut answers = gw.start(&HOLD_METHODS[0]);
    let (outcome, payload) = answers.recv().await.unwrap();
    assert_eq!((outcome, payload), (Outcome::Ok, Bytes::from("b")));
    assert_eq!(gw.in_flight(), 0, "the node's in-flight count given back");
    let counters = gw.registry.tick();
    assert_eq!((counters.arrivals, counters.completions), (1, 1));
    // Counted with the attempt's end, under the same lock: once.
    assert_eq!(counters.latencies.len(), 1, "one response time");
}

#[tokio::test]
async fn a_started_at_most_once_call_on_a_node_declared_gone_ends_outcome_unknown_at_once() {
    let a = hold_node("a").await;
    let gw = HoldGateway::new();
    gw.add(1, &a).await;
    let mut answers = gw.start(&HOLD_METHODS[0]);
    wait_for("node a runs the call", || {
        a.holding.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(gw.in_flight(), 1);
    gw.registry.set_gone(NodeId(1), "killed", gw.clock.now());
    let (outcome, _) = answers.recv().await.unwrap();
    assert_eq!(outcome, Outcome::OutcomeUnknown, "ended by the node's loss");
    assert_eq!(a.holding.load(Ordering::SeqCst), 1, "it ran once");
    let counters = gw.registry.tick();
    assert_eq!(counters.retries, 0, "never sent elsewhere");
    // A failure's answer is counted apart from the attempt's end: once.
    assert_eq!(counters.latencies.len(), 1, "one response time");
}

#[tokio::test]
async fn a_started_idempotent_call_on_a_node_declared_gone_goes_to_another_node() {
    let a = hold_node("a").await;
    let b = hold_node("b").await;
    let gw = HoldGateway::new();
    gw.add(1, &a).await;
    let mut answers = gw.start(&HOLD_METHODS[1]);
    wait_for("node a runs the call", || {
        a.holding.load(Ordering::SeqCst) == 1
    })
    .await;
    gw.add(2, &b).await;
    gw.registry.set_gone(NodeId(1), "killed", gw.clock.now());
    // The retry runs on the async path, in a task of its own.
    let (outcome, payload) = answers.recv().await.unwrap();
    assert_eq!((outcome, payload), (Outcome::Ok, Bytes::from("b")));
    let counters = gw.registry.tick();
    assert_eq!(counters.retries, 1, "one retry");
    assert_eq!(
        counters.latencies.len(),
        1,
        "one response time, two attempts"
    );
    assert_eq!(gw.in_flight(), 0, "node b given back");
}

#[tokio::test]
async fn a_started_call_over_a_transport_without_sinks_is_awaited_instead() {
    let gw = HoldGateway::new();
    let client = Arc::new(LocalTransport::new(common::Plain));
    add_ready(&gw.registry, NodeId(1), client, gw.clock.now());
    let mut answers = gw.start(&common::PLAIN_METHODS[0]);
    let (outcome, _) = answers.recv().await.unwrap();
    assert_eq!(outcome, Outcome::Ok);
    assert_eq!(gw.in_flight(), 0);
}

#[tokio::test]
async fn a_started_call_with_no_node_is_refused_unrun() {
    let gw = HoldGateway::new();
    let mut answers = gw.start(&HOLD_METHODS[0]);
    let (outcome, _) = answers.recv().await.unwrap();
    assert!(
        matches!(outcome, Outcome::Overloaded { .. }),
        "refused at once, not held: {outcome:?}"
    );
}
