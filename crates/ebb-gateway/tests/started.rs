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
use common::{
    HoldingNode, add_connected, add_ready, deferred, forwarder, holding_node, registry, wait_for,
};
use ebb_core::{Nanos, NodeId};
use ebb_gateway::clock::Clock;
use ebb_gateway::forward::Forwarder;
use ebb_gateway::registry::Registry;
use ebb_policy::admission::AdmissionConfig;
use ebb_rpc::service::{LocalTransport, MethodInfo};
use ebb_rpc::wire::Outcome;

static METHODS: [MethodInfo; 2] = [
    MethodInfo {
        service: "Hold",
        id: 0,
        name: "hold",
        idempotent: false,
        blocking: false,
        params: &[],
        returns: "String",
    },
    MethodInfo {
        service: "Hold",
        id: 1,
        name: "hold_idempotent",
        idempotent: true,
        blocking: false,
        params: &[],
        returns: "String",
    },
];

/// Far beyond the test's run: a call that ends did not end by its deadline.
const DEADLINE: Nanos = Nanos::from_secs(120);

/// Node "a" holds every call forever; any other answers with its name.
async fn node(name: &'static str) -> HoldingNode {
    holding_node(name, &METHODS, |name, _| name == "a").await
}

struct Gateway {
    registry: Registry,
    clock: Clock,
    forwarder: Arc<Forwarder>,
}

fn gateway() -> Gateway {
    let registry = registry("jsq", AdmissionConfig::default(), 1);
    let clock = Clock::new();
    let forwarder = forwarder(&registry, clock);
    Gateway {
        registry,
        clock,
        forwarder,
    }
}

impl Gateway {
    async fn add(&self, id: u32, node: &HoldingNode) {
        add_connected(&self.registry, NodeId(id), node.addr, self.clock).await;
    }

    fn in_flight(&self) -> u32 {
        self.registry.status(self.clock.now())[0].in_flight
    }
}

#[tokio::test]
async fn a_started_call_is_answered_by_its_node_and_gives_the_node_back() {
    let b = node("b").await;
    let gw = gateway();
    gw.add(1, &b).await;
    let (reply, mut answers) = deferred(&METHODS[0]);
    gw.forwarder
        .start(&METHODS[0], Bytes::new(), DEADLINE, reply);
    let (outcome, payload) = answers.recv().await.unwrap();
    assert_eq!((outcome, payload), (Outcome::Ok, Bytes::from("b")));
    assert_eq!(gw.in_flight(), 0, "the node's in-flight count given back");
    let counters = gw.registry.tick();
    assert_eq!((counters.arrivals, counters.completions), (1, 1));
}

#[tokio::test]
async fn a_started_at_most_once_call_on_a_node_declared_gone_ends_outcome_unknown_at_once() {
    let a = node("a").await;
    let gw = gateway();
    gw.add(1, &a).await;
    let (reply, mut answers) = deferred(&METHODS[0]);
    gw.forwarder
        .start(&METHODS[0], Bytes::new(), DEADLINE, reply);
    wait_for("node a runs the call", || {
        a.holding.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(gw.in_flight(), 1);
    gw.registry.set_gone(NodeId(1), "killed", gw.clock.now());
    let (outcome, _) = answers.recv().await.unwrap();
    assert_eq!(outcome, Outcome::OutcomeUnknown, "ended by the node's loss");
    assert_eq!(a.holding.load(Ordering::SeqCst), 1, "it ran once");
    assert_eq!(gw.registry.tick().retries, 0, "never sent elsewhere");
}

#[tokio::test]
async fn a_started_idempotent_call_on_a_node_declared_gone_goes_to_another_node() {
    let a = node("a").await;
    let b = node("b").await;
    let gw = gateway();
    gw.add(1, &a).await;
    let (reply, mut answers) = deferred(&METHODS[1]);
    gw.forwarder
        .start(&METHODS[1], Bytes::new(), DEADLINE, reply);
    wait_for("node a runs the call", || {
        a.holding.load(Ordering::SeqCst) == 1
    })
    .await;
    gw.add(2, &b).await;
    gw.registry.set_gone(NodeId(1), "killed", gw.clock.now());
    // The retry runs on the async path, in a task of its own.
    let (outcome, payload) = answers.recv().await.unwrap();
    assert_eq!((outcome, payload), (Outcome::Ok, Bytes::from("b")));
    assert_eq!(gw.registry.tick().retries, 1, "one retry");
    assert_eq!(gw.in_flight(), 0, "node b given back");
}

#[tokio::test]
async fn a_started_call_over_a_transport_without_sinks_is_awaited_instead() {
    let gw = gateway();
    let client = Arc::new(LocalTransport::new(common::Plain));
    add_ready(&gw.registry, NodeId(1), client, gw.clock.now());
    let (reply, mut answers) = deferred(&common::PLAIN_METHODS[0]);
    gw.forwarder
        .start(&common::PLAIN_METHODS[0], Bytes::new(), DEADLINE, reply);
    let (outcome, _) = answers.recv().await.unwrap();
    assert_eq!(outcome, Outcome::Ok);
    assert_eq!(gw.in_flight(), 0);
}

#[tokio::test]
async fn a_started_call_with_no_node_is_refused_unrun() {
    let gw = gateway();
    let (reply, mut answers) = deferred(&METHODS[0]);
    gw.forwarder
        .start(&METHODS[0], Bytes::new(), DEADLINE, reply);
    let (outcome, _) = answers.recv().await.unwrap();
    assert!(
        matches!(outcome, Outcome::Overloaded { .. }),
        "refused at once, not held: {outcome:?}"
    );
}
