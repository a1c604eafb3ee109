//! The held queue: requests wait there for a ready node or for room on
//! one, bounded in count, and a refusal by the only node sends the call
//! back to it rather than failing it.

use super::*;

/// With no ready node a request is held, and the node that turns ready
/// takes it; a held request whose deadline passes was never sent.
#[tokio::test]
async fn held_requests_go_to_the_first_ready_node_or_time_out_unsent() {
    let registry = registry("p2c", AdmissionConfig::default(), 1);
    let clock = Clock::new();
    add_booting(&registry, NodeId(1), clock.now());
    registry.set_target(1, Nanos::from_millis(10));
    let forwarder = common::forwarder(&registry, clock);
    let held = spawn_call(&forwarder, &AT_MOST_ONCE, TEN_SECONDS);
    wait_for("the request is held", || registry.held().0 == 1).await;
    let n = node("late", Act::Answer);
    assert!(registry.set_ready(NodeId(1), n.clone(), clock.now()));
    assert_eq!(held.await.unwrap(), Ok(Bytes::from("late")));
    assert_eq!(registry.held(), (0, 0));

    // Now drain the only node: a new request waits, then times out unsent.
    assert!(registry.set_draining(NodeId(1)));
    let r = forwarder
        .call(&AT_MOST_ONCE, Bytes::new(), Nanos::from_millis(30))
        .await;
    assert!(
        matches!(r, Err(GatewayError::DeadlineExceeded { sent: false, .. })),
        "{r:?}"
    );
    assert_eq!(
        n.calls.load(Ordering::SeqCst),
        1,
        "a draining node gets nothing new"
    );
    assert_eq!(registry.drained(), [NodeId(1)]);
}

#[tokio::test]
async fn the_held_queue_bound_refuses_at_once() {
    let registry = registry(
        "central",
        AdmissionConfig {
            deadline_check: false,
            max_held_requests: 1,
            max_held_bytes: 1 << 20,
            ..AdmissionConfig::default()
        },
        1,
    );
    let clock = Clock::new();
    add_booting(&registry, NodeId(1), clock.now());
    registry.set_target(1, Nanos::from_millis(10));
    let a = node("a", Act::Hang);
    assert!(registry.set_ready(NodeId(1), a.clone(), clock.now()));
    let forwarder = common::forwarder(&registry, clock);
    let _busy = spawn_call(&forwarder, &IDEMPOTENT, TEN_SECONDS);
    wait_for("node a has the call", || {
        a.calls.load(Ordering::SeqCst) == 1
    })
    .await;
    let _held = spawn_call(&forwarder, &IDEMPOTENT, TEN_SECONDS);
    wait_for("the request is held", || registry.held().0 == 1).await;
    let r = forwarder.call(&IDEMPOTENT, Bytes::new(), SECOND).await;
    assert!(matches!(r, Err(GatewayError::Overloaded { .. })), "{r:?}");
    assert_eq!(a.calls.load(Ordering::SeqCst), 1);
}

/// A held request whose caller leaves just as a node is handed to it gives
/// the node's in-flight count back.
#[tokio::test]
async fn a_slot_handed_to_a_departed_caller_is_given_back() {
    let registry = registry("rr", AdmissionConfig::default(), 1);
    let clock = Clock::new();
    add_booting(&registry, NodeId(1), clock.now());
    registry.set_target(1, Nanos::from_millis(10));
    let deadline = clock.now() + TEN_SECONDS;
    let rx = match registry.acquire(0, deadline, clock.now(), &[], true, None) {
        ebb_gateway::registry::Acquired::Held(rx) => rx,
        _ => panic!("no node is ready: the request must be held"),
    };
    assert!(registry.set_ready(NodeId(1), node("a", Act::Answer), clock.now()));
    assert_eq!(
        registry.lives(),
        [(NodeId(1), Life::Ready, 1)],
        "handed over"
    );
    drop(rx);
    assert_eq!(
        registry.lives(),
        [(NodeId(1), Life::Ready, 0)],
        "given back"
    );
}

/// The only node refuses a call unrun while another call keeps it busy:
/// the call waits in the held queue, not excluded from that node, and is
/// sent to it again as soon as a call there finishes.
#[tokio::test]
async fn a_call_refused_by_the_only_busy_node_goes_back_to_it_when_a_call_ends() {
    let p = pool(vec![node("a", Act::Gated)], RetryBudgetConfig::default());
    let busy = spawn_call(&p.forwarder, &AT_MOST_ONCE, TEN_SECONDS);
    wait_for("the node has the first call", || calls(&p) == [1]).await;
    *p.nodes[0].act.lock().unwrap() = Act::RefuseOnce;
    let refused = spawn_call(&p.forwarder, &AT_MOST_ONCE, TEN_SECONDS);
    // Refused once, then held for room on the node (the rare path ran).
    wait_for("the second call was refused once and held", || {
        calls(&p) == [2] && p.registry.held().0 == 1
    })
    .await;
    p.nodes[0].gate.send_replace(true);
    assert_eq!(busy.await.unwrap(), Ok(Bytes::from("a")));
    assert_eq!(refused.await.unwrap(), Ok(Bytes::from("a")));
    assert_eq!(calls(&p), [3], "refused once, then run on the same node");
    assert_eq!(p.registry.held(), (0, 0));
}

/// The only node refuses a call with nothing else in flight there: no call
/// will end to make room, so the call is sent to it again at once.
#[tokio::test]
async fn a_call_refused_by_the_only_idle_node_is_resent_at_once() {
    let p = pool(
        vec![node("a", Act::RefuseOnce)],
        RetryBudgetConfig::default(),
    );
    let r = p.call(&AT_MOST_ONCE, TEN_SECONDS).await;
    assert_eq!(r, Ok(Bytes::from("a")));
    assert_eq!(calls(&p), [2]);
    assert_eq!(p.registry.held(), (0, 0));
}

/// A node that keeps refusing gets the call at most `MAX_ATTEMPTS` times;
/// then the caller gets the node's typed refusal (nothing ran), not a
/// wait until its deadline.
#[tokio::test]
async fn a_call_the_only_node_keeps_refusing_ends_with_its_refusal() {
    let p = pool(vec![node("a", Act::Refuse)], RetryBudgetConfig::default());
    let r = p.call(&AT_MOST_ONCE, TEN_SECONDS).await;
    let e = r.expect_err("the node never takes it");
    assert!(
        matches!(e, GatewayError::Node(CallError::Refused { .. })),
        "{e:?}"
    );
    assert!(!e.may_have_run());
    assert_eq!(calls(&p), [ebb_gateway::forward::MAX_ATTEMPTS]);
}
