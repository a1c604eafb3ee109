//! Hedged idempotent calls: a second copy after the recent calls' 95th
//! percentile, never for an at-most-once call, and the loser's node kept
//! busy until its own reply.

use super::*;

/// Nodes a and b, answering, behind a hedging forwarder (a second copy
/// after the 95th percentile of the last 16 calls, once 4 are measured);
/// four quick answers (a, b, a, b under round-robin) have set the delay.
pub(crate) async fn hedging_pool() -> Pool {
    let mut p = pool(
        vec![node("a", Act::Answer), node("b", Act::Answer)],
        RetryBudgetConfig::default(),
    );
    let hedging = Forwarder::new(
        p.registry.clone(),
        p.clock,
        Metrics::new(),
        RetryBudgetConfig::default(),
    )
    .with_hedging(ebb_policy::hedge::HedgeConfig {
        percentile: 95.0,
        min_samples: 4,
        window: 16,
    });
    p.forwarder = Arc::new(hedging);
    for _ in 0..4 {
        let r = p.call(&IDEMPOTENT, SECOND).await;
        assert!(r.is_ok(), "{r:?}");
    }
    p
}

/// With hedging on, an idempotent call stuck on a slow node gets a second
/// copy on another node once it is slower than the recent calls' 95th
/// percentile, and that copy's answer wins; an at-most-once call on the
/// same node is never hedged.
#[tokio::test]
async fn a_slow_idempotent_call_is_hedged_and_an_at_most_once_one_never() {
    let p = hedging_pool().await;
    assert_eq!(calls(&p), [2, 2]);
    *p.nodes[0].act.lock().unwrap() = Act::Hang;
    let r = p.call(&IDEMPOTENT, TEN_SECONDS).await;
    assert_eq!(r, Ok(Bytes::from("b")), "the hedge on b answered");
    assert_eq!(calls(&p), [3, 3], "a got the call, b its hedge");
    let hedges = |p: &Pool| {
        let text = p.forwarder.metrics().render(&[], (0, 0), 2).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("ebb_gateway_hedges_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap()
    };
    assert_eq!(hedges(&p), 1);
    let r = p.call(&AT_MOST_ONCE, Nanos::from_millis(300)).await;
    assert!(
        matches!(r, Err(GatewayError::DeadlineExceeded { sent: true, .. })),
        "{r:?}"
    );
    assert_eq!(calls(&p), [4, 3], "b never saw the at-most-once call");
    assert_eq!(hedges(&p), 1, "no hedge for an at-most-once call");
}

/// A hedge's losing copy still runs on its node after the other copy
/// answered: that node keeps the call in flight (so the balancer and
/// admission see it busy) until the loser's own reply comes, then frees it.
#[tokio::test]
async fn a_hedge_losers_node_keeps_the_call_in_flight_until_its_reply() {
    let p = hedging_pool().await;
    let in_flight = |p: &Pool, id: u32| {
        let nodes = p.registry.status(p.clock.now());
        nodes.iter().find(|n| n.id == id).unwrap().in_flight
    };
    // a is slow: it answers only when the test opens its gate.
    *p.nodes[0].act.lock().unwrap() = Act::Gated;
    let r = p.call(&IDEMPOTENT, TEN_SECONDS).await;
    assert_eq!(r, Ok(Bytes::from("b")), "the hedge on b answered");
    assert_eq!(calls(&p), [3, 3], "a got the call, b its hedge");
    assert_eq!(
        (in_flight(&p, 1), in_flight(&p, 2)),
        (1, 0),
        "the loser's copy still runs on a, and is counted there"
    );
    p.nodes[0].gate.send_replace(true);
    wait_for("the loser's reply frees node a", || in_flight(&p, 1) == 0).await;
    assert_eq!(in_flight(&p, 2), 0);
}
