//! Nodes that die or keep failing: their calls end by their kind, unsent
//! ones run elsewhere, and a failing node is ejected, then probed.

use super::*;

/// Node a hangs with both calls on it and is then declared gone: the
/// at-most-once call ends `OutcomeUnknown` at once, the idempotent one runs
/// on node b.
#[tokio::test]
async fn a_node_gone_mid_call_ends_its_calls_by_their_kind() {
    let p = two(Act::Hang, Act::Hang);
    // Round-robin: the first call goes to a, the second to b; then a third
    // to a. Make b answer from now on.
    let amo = spawn_call(&p.forwarder, &AT_MOST_ONCE, TEN_SECONDS);
    wait_for("node a has the call", || calls(&p)[0] == 1).await;
    *p.nodes[1].act.lock().unwrap() = Act::Answer;
    let filler = p.call(&IDEMPOTENT, SECOND).await;
    assert_eq!(filler, Ok(Bytes::from("b")));
    let idem = spawn_call(&p.forwarder, &IDEMPOTENT, TEN_SECONDS);
    wait_for("node a has both calls", || calls(&p)[0] == 2).await;
    assert_eq!(
        p.registry.set_gone(NodeId(1), "killed", p.clock.now()),
        Some(Life::Ready)
    );
    assert_eq!(
        amo.await.unwrap(),
        Err(GatewayError::OutcomeUnknown { node: NodeId(1) })
    );
    assert_eq!(idem.await.unwrap(), Ok(Bytes::from("b")));
    assert_eq!(calls(&p), [2, 2]);
}

/// Node a's connection is down, so an at-most-once call waits on it,
/// unsent, when a is declared gone: a's transport says the call never
/// left, and it runs on node b, with no retry budget needed (nothing ran).
#[tokio::test]
async fn an_at_most_once_call_unsent_when_its_node_is_gone_runs_elsewhere() {
    let p = pool(
        vec![node("a", Act::Queued), node("b", Act::Answer)],
        no_retry_budget(),
    );
    let amo = spawn_call(&p.forwarder, &AT_MOST_ONCE, TEN_SECONDS);
    wait_for("node a has the call", || calls(&p)[0] == 1).await;
    assert_eq!(
        p.registry.set_gone(NodeId(1), "killed", p.clock.now()),
        Some(Life::Ready)
    );
    assert_eq!(amo.await.unwrap(), Ok(Bytes::from("b")));
    assert!(*p.nodes[0].abandoned.borrow(), "a's calls were abandoned");
    assert_eq!(calls(&p), [1, 1]);
}

/// The same call with no other node to go to ends saying it did not run.
#[tokio::test]
async fn an_unsent_call_with_nowhere_else_to_go_did_not_run() {
    let p = pool(vec![node("a", Act::Queued)], RetryBudgetConfig::default());
    let amo = spawn_call(&p.forwarder, &AT_MOST_ONCE, Nanos::from_millis(300));
    wait_for("node a has the call", || calls(&p)[0] == 1).await;
    p.registry.set_gone(NodeId(1), "killed", p.clock.now());
    let r = amo.await.unwrap();
    let e = r.expect_err("no node is left");
    assert!(!e.may_have_run(), "{e:?}");
}

/// A node whose calls keep failing is taken out of rotation: the others get
/// the work; when its time is up it is probed and, failing again, ejected
/// at once.
#[tokio::test]
async fn a_node_that_keeps_failing_is_ejected_then_probed() {
    let p = pool(
        vec![node("bad", Act::Panic), node("good", Act::Answer)],
        RetryBudgetConfig::default(),
    );
    let registry = p.registry.clone().with_outliers(OutlierConfig {
        consecutive_failures: 2,
        base_ejection: Nanos::from_millis(300),
        max_ejected_fraction: 0.5,
    });
    // Round-robin alternates: bad, good, bad (second failure: ejected).
    for _ in 0..3 {
        let _ = p.call(&IDEMPOTENT, SECOND).await;
    }
    assert_eq!(calls(&p), [2, 1]);
    let ejected = |s: &[ebb_gateway::registry::NodeStatus]| {
        s.iter()
            .filter(|n| n.ejected)
            .map(|n| n.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ejected(&registry.status(p.clock.now())), [1]);
    for _ in 0..4 {
        let r = p.call(&IDEMPOTENT, SECOND).await;
        assert_eq!(r, Ok(Bytes::from("good")), "only the good node gets work");
    }
    assert_eq!(calls(&p), [2, 5]);
    // When the ejection ends, the next tick puts it back for a probe.
    wait_for("the ejection ends", || {
        registry.maintain(p.clock.now());
        ejected(&registry.status(p.clock.now())).is_empty()
    })
    .await;
    for _ in 0..2 {
        let _ = p.call(&IDEMPOTENT, SECOND).await;
    }
    assert_eq!(calls(&p)[0], 3, "probed once");
    assert_eq!(
        ejected(&registry.status(p.clock.now())),
        [1],
        "one more failure ejects it again"
    );
}
