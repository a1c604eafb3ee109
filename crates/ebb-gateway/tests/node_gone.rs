//! A node declared gone with calls in flight on a real ebb RPC connection:
//! the node's transport ends them at once (`Registry::set_gone` abandons
//! its calls), so an at-most-once call ends `OutcomeUnknown` and an
//! idempotent one goes to another node, long before their deadlines.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::{HoldingNode, add_connected, forwarder, holding_node, registry, wait_for};
use ebb_core::{Nanos, NodeId};
use ebb_gateway::clock::Clock;
use ebb_gateway::forward::{Forwarder, GatewayError};
use ebb_gateway::registry::Registry;
use ebb_policy::admission::AdmissionConfig;
use ebb_rpc::service::MethodInfo;

static METHODS: [MethodInfo; 2] = [
    MethodInfo {
        service: "Hold",
        id: 0,
        name: "hold",
        idempotent: false,
        blocking: false,
        params: &[],
        returns: "()",
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
    /// Makes `node` ready behind the gateway, over a real connection.
    async fn add(&self, id: u32, node: &HoldingNode) {
        add_connected(&self.registry, NodeId(id), node.addr, self.clock).await;
    }
}

#[tokio::test]
async fn an_at_most_once_call_on_a_node_declared_gone_ends_outcome_unknown_at_once() {
    let a = node("a").await;
    let gw = gateway();
    gw.add(1, &a).await;
    let forwarder = Arc::clone(&gw.forwarder);
    let call =
        tokio::spawn(async move { forwarder.call(&METHODS[0], Bytes::new(), DEADLINE).await });
    // The node runs it: the call was sent and may have run.
    wait_for("node a runs the call", || {
        a.holding.load(Ordering::SeqCst) == 1
    })
    .await;
    gw.registry.set_gone(NodeId(1), "killed", gw.clock.now());
    let outcome = call.await.unwrap();
    assert_eq!(
        outcome,
        Err(GatewayError::OutcomeUnknown { node: NodeId(1) }),
        "ended by the node's loss, not by its deadline"
    );
    assert_eq!(a.holding.load(Ordering::SeqCst), 1, "it ran once");
}

#[tokio::test]
async fn an_idempotent_call_on_a_node_declared_gone_goes_to_another_node() {
    let a = node("a").await;
    let b = node("b").await;
    let gw = gateway();
    gw.add(1, &a).await;
    let forwarder = Arc::clone(&gw.forwarder);
    let call =
        tokio::spawn(async move { forwarder.call(&METHODS[1], Bytes::new(), DEADLINE).await });
    wait_for("node a runs the call", || {
        a.holding.load(Ordering::SeqCst) == 1
    })
    .await;
    gw.add(2, &b).await;
    gw.registry.set_gone(NodeId(1), "killed", gw.clock.now());
    assert_eq!(call.await.unwrap(), Ok(Bytes::from("b")));
    assert_eq!(gw.forwarder.registry().tick().retries, 1, "one retry");
}
