//! Where a call goes after its node failed it: a refusal or a call never
//! sent runs elsewhere, a broken connection ends an at-most-once call
//! (it may have run) and retries an idempotent one within the budget.

use super::*;

#[tokio::test]
async fn an_at_most_once_call_refused_unrun_goes_to_the_next_node() {
    let p = two(Act::Refuse, Act::Answer);
    let r = p.call(&AT_MOST_ONCE, SECOND).await;
    assert_eq!(r, Ok(Bytes::from("b")));
    assert_eq!(calls(&p), [1, 1]);
}

#[tokio::test]
async fn an_at_most_once_call_whose_connection_broke_is_never_resent() {
    let p = two(Act::LoseConnection, Act::Answer);
    let r = p.call(&AT_MOST_ONCE, SECOND).await;
    assert_eq!(r, Err(GatewayError::OutcomeUnknown { node: NodeId(1) }));
    assert_eq!(calls(&p), [1, 0], "node b never saw it");
    assert_eq!(
        p.registry.suspects(),
        [NodeId(1)],
        "node a is reported dead"
    );
}

#[tokio::test]
async fn an_idempotent_call_whose_connection_broke_runs_elsewhere() {
    let p = two(Act::LoseConnection, Act::Answer);
    let r = p.call(&IDEMPOTENT, SECOND).await;
    assert_eq!(r, Ok(Bytes::from("b")));
    assert_eq!(calls(&p), [1, 1]);
}

#[tokio::test]
async fn a_spent_retry_budget_stops_the_retry() {
    let p = pool(
        vec![node("a", Act::LoseConnection), node("b", Act::Answer)],
        no_retry_budget(),
    );
    let r = p.call(&IDEMPOTENT, SECOND).await;
    match r {
        Err(GatewayError::NodeLost { node, why }) => {
            assert_eq!(node, NodeId(1));
            assert!(why.contains("budget"), "{why}");
        }
        other => panic!("expected NodeLost, got {other:?}"),
    }
    assert_eq!(calls(&p), [1, 0]);
}

#[tokio::test]
async fn an_at_most_once_call_never_sent_goes_to_the_next_node() {
    let p = two(Act::NeverSent, Act::Answer);
    let r = p.call(&AT_MOST_ONCE, SECOND).await;
    assert_eq!(r, Ok(Bytes::from("b")));
    assert_eq!(calls(&p), [1, 1]);
    assert_eq!(p.registry.suspects(), [NodeId(1)], "node a is unreachable");
}
