//! A node declared gone with calls in flight on a real ebb RPC connection:
//! the node's transport ends them at once (`Registry::set_gone` abandons
//! its calls), so an at-most-once call ends `OutcomeUnknown` and an
//! idempotent one goes to another node, long before their deadlines.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::{FAR_DEADLINE, HOLD_METHODS, HoldGateway, hold_node, wait_for};
use ebb_core::NodeId;
use ebb_gateway::forward::GatewayError;

#[tokio::test]
async fn an_at_most_once_call_on_a_node_declared_gone_ends_outcome_unknown_at_once() {
    let a = hold_node("a").await;
    let gw = HoldGateway::new();
    gw.add(1, &a).await;
    let forwarder = Arc::clone(&gw.forwarder);
    let call = tokio::spawn(async move {
        forwarder
            .call(&HOLD_METHODS[0], Bytes::new(), FAR_DEADLINE)
            .await
    });
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
    let a = hold_node("a").await;
    let b = hold_node("b").await;
    let gw = HoldGateway::new();
    gw.add(1, &a).await;
    let forwarder = Arc::clone(&gw.forwarder);
    let call = tokio::spawn(async move {
        forwarder
            .call(&HOLD_METHODS[1], Bytes::new(), FAR_DEADLINE)
            .await
    });
    wait_for("node a runs the call", || {
        a.holding.load(Ordering::SeqCst) == 1
    })
    .await;
    gw.add(2, &b).await;
    gw.registry.set_gone(NodeId(1), "killed", gw.clock.now());
    assert_eq!(call.await.unwrap(), Ok(Bytes::from("b")));
    assert_eq!(gw.forwarder.registry().tick().retries, 1, "one retry");
}
