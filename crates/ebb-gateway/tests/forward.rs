//! The gateway's call semantics without sockets: the registry and the
//! forwarder in front of in-process nodes that answer, refuse, lose the
//! connection or hang, as the test scripts them.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{add_booting, forwarder_with_budget, registry, wait_for};
use ebb_core::{Nanos, NodeId};
use ebb_gateway::clock::Clock;
use ebb_gateway::forward::{Forwarder, GatewayError};
use ebb_gateway::metrics::Metrics;
use ebb_gateway::registry::{Life, Registry};
use ebb_policy::admission::AdmissionConfig;
use ebb_policy::outlier::OutlierConfig;
use ebb_policy::retry::RetryBudgetConfig;
use ebb_rpc::CallError;
use ebb_rpc::service::{BoxFuture, CallOptions, MethodInfo, Transport};

static AT_MOST_ONCE: MethodInfo = MethodInfo {
    service: "T",
    id: 0,
    name: "amo",
    idempotent: false,
    blocking: false,
    params: &[],
    returns: "()",
};
static IDEMPOTENT: MethodInfo = MethodInfo {
    service: "T",
    id: 1,
    name: "idem",
    idempotent: true,
    blocking: false,
    params: &[],
    returns: "()",
};

/// What a scripted node does with a call.
#[derive(Clone, Copy, Debug)]
enum Act {
    Answer,
    Refuse,
    LoseConnection,
    /// The connection could not carry the call: it was never sent.
    NeverSent,
    /// The method panics on the node.
    Panic,
    /// Never answers (the node is stuck or dead) before the deadline, and
    /// its transport cannot tell whether the call left.
    Hang,
    /// Waits unsent (its connection is down) until the caller abandons
    /// the node's calls, then says it never left.
    Queued,
    /// Refuses this call unrun (the node is at its in-flight bound), then
    /// answers every later one.
    RefuseOnce,
    /// Answers once the test opens the node's gate.
    Gated,
}

struct Node {
    act: Mutex<Act>,
    calls: AtomicUsize,
    name: &'static str,
    abandoned: tokio::sync::watch::Sender<bool>,
    gate: tokio::sync::watch::Sender<bool>,
}

impl Transport for Node {
    fn call(
        &self,
        _method: &'static MethodInfo,
        _args: Bytes,
        options: CallOptions,
    ) -> BoxFuture<'_, Result<Bytes, CallError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let act = {
            let mut act = self.act.lock().unwrap();
            let now = *act;
            if matches!(now, Act::RefuseOnce) {
                *act = Act::Answer;
            }
            now
        };
        Box::pin(async move {
            match act {
                Act::Answer => Ok(Bytes::from(self.name)),
                Act::Gated => {
                    let mut gate = self.gate.subscribe();
                    let _ = gate.wait_for(|open| *open).await;
                    Ok(Bytes::from(self.name))
                }
                Act::Refuse | Act::RefuseOnce => Err(CallError::Refused {
                    reason: ebb_rpc::wire::Refusal::InFlight,
                    message: "full".into(),
                }),
                Act::LoseConnection => Err(CallError::ConnectionLost {
                    sent: true,
                    cause: "reset".into(),
                }),
                Act::NeverSent => Err(CallError::ConnectionLost {
                    sent: false,
                    cause: "connection refused".into(),
                }),
                Act::Panic => Err(CallError::Panicked {
                    message: "boom".into(),
                }),
                // Like a real client, it ends by the call's deadline.
                Act::Hang => {
                    tokio::time::sleep(std::time::Duration::from(options.timeout)).await;
                    Err(CallError::DeadlineExceeded {
                        elapsed: options.timeout,
                        sent: true,
                    })
                }
                Act::Queued => {
                    let mut abandoned = self.abandoned.subscribe();
                    let _ = abandoned.wait_for(|a| *a).await;
                    Err(CallError::ConnectionLost {
                        sent: false,
                        cause: "abandoned before it was sent".into(),
                    })
                }
            }
        })
    }

    fn abandon_calls(&self, _cause: &str) {
        self.abandoned.send_replace(true);
    }
}

struct Pool {
    registry: Registry,
    forwarder: Arc<Forwarder>,
    clock: Clock,
    nodes: Vec<Arc<Node>>,
}

fn node(name: &'static str, act: Act) -> Arc<Node> {
    Arc::new(Node {
        act: Mutex::new(act),
        calls: AtomicUsize::new(0),
        name,
        abandoned: tokio::sync::watch::channel(false).0,
        gate: tokio::sync::watch::channel(false).0,
    })
}

/// Ready nodes behind round-robin, in the order given.
fn pool(nodes: Vec<Arc<Node>>, budget: RetryBudgetConfig) -> Pool {
    let registry = registry("rr", AdmissionConfig::default(), 1);
    let clock = Clock::new();
    for (i, n) in nodes.iter().enumerate() {
        let id = NodeId(i as u32 + 1);
        add_booting(&registry, id, clock.now());
        assert!(registry.set_ready(id, n.clone(), clock.now()));
    }
    registry.set_target(nodes.len(), Nanos::from_millis(10));
    let forwarder = forwarder_with_budget(&registry, clock, budget);
    Pool {
        registry,
        forwarder,
        clock,
        nodes,
    }
}

fn calls(p: &Pool) -> Vec<usize> {
    p.nodes
        .iter()
        .map(|n| n.calls.load(Ordering::SeqCst))
        .collect()
}

const SECOND: Nanos = Nanos::from_secs(1);
const TEN_SECONDS: Nanos = Nanos::from_secs(10);

#[tokio::test]
async fn an_at_most_once_call_refused_unrun_goes_to_the_next_node() {
    let p = pool(
        vec![node("a", Act::Refuse), node("b", Act::Answer)],
        RetryBudgetConfig::default(),
    );
    let r = p.forwarder.call(&AT_MOST_ONCE, Bytes::new(), SECOND).await;
    assert_eq!(r, Ok(Bytes::from("b")));
    assert_eq!(calls(&p), [1, 1]);
}

#[tokio::test]
async fn an_at_most_once_call_whose_connection_broke_is_never_resent() {
    let p = pool(
        vec![node("a", Act::LoseConnection), node("b", Act::Answer)],
        RetryBudgetConfig::default(),
    );
    let r = p.forwarder.call(&AT_MOST_ONCE, Bytes::new(), SECOND).await;
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
    let p = pool(
        vec![node("a", Act::LoseConnection), node("b", Act::Answer)],
        RetryBudgetConfig::default(),
    );
    let r = p.forwarder.call(&IDEMPOTENT, Bytes::new(), SECOND).await;
    assert_eq!(r, Ok(Bytes::from("b")));
    assert_eq!(calls(&p), [1, 1]);
}

#[tokio::test]
async fn a_spent_retry_budget_stops_the_retry() {
    let none = RetryBudgetConfig {
        ratio: 0.0,
        floor_per_sec: 0,
        window: SECOND,
    };
    let p = pool(
        vec![node("a", Act::LoseConnection), node("b", Act::Answer)],
        none,
    );
    let r = p.forwarder.call(&IDEMPOTENT, Bytes::new(), SECOND).await;
    match r {
        Err(GatewayError::NodeLost { node, why }) => {
            assert_eq!(node, NodeId(1));
            assert!(why.contains("budget"), "{why}");
        }
        other => panic!("expected NodeLost, got {other:?}"),
    }
    assert_eq!(calls(&p), [1, 0]);
}

/// Node a hangs with both calls on it and is then declared gone: the
/// at-most-once call ends `OutcomeUnknown` at once, the idempotent one runs
/// on node b.
#[tokio::test]
async fn a_node_gone_mid_call_ends_its_calls_by_their_kind() {
    let p = pool(
        vec![node("a", Act::Hang), node("b", Act::Hang)],
        RetryBudgetConfig::default(),
    );
    // Round-robin: the first call goes to a, the second to b; then a third
    // to a. Make b answer from now on.
    let f = p.forwarder.clone();
    let amo = tokio::spawn(async move { f.call(&AT_MOST_ONCE, Bytes::new(), TEN_SECONDS).await });
    wait_for("node a has the call", || calls(&p)[0] == 1).await;
    *p.nodes[1].act.lock().unwrap() = Act::Answer;
    let f = p.forwarder.clone();
    let filler = f.call(&IDEMPOTENT, Bytes::new(), SECOND).await;
    assert_eq!(filler, Ok(Bytes::from("b")));
    let f = p.forwarder.clone();
    let idem = tokio::spawn(async move { f.call(&IDEMPOTENT, Bytes::new(), TEN_SECONDS).await });
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

/// With no ready node a request is held, and the node that turns ready
/// takes it; a held request whose deadline passes was never sent.
#[tokio::test]
async fn held_requests_go_to_the_first_ready_node_or_time_out_unsent() {
    let registry = registry("p2c", AdmissionConfig::default(), 1);
    let clock = Clock::new();
    add_booting(&registry, NodeId(1), clock.now());
    registry.set_target(1, Nanos::from_millis(10));
    let forwarder = common::forwarder(&registry, clock);
    let f = forwarder.clone();
    let held = tokio::spawn(async move { f.call(&AT_MOST_ONCE, Bytes::new(), TEN_SECONDS).await });
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
    let f = forwarder.clone();
    let _busy = tokio::spawn(async move { f.call(&IDEMPOTENT, Bytes::new(), TEN_SECONDS).await });
    wait_for("node a has the call", || {
        a.calls.load(Ordering::SeqCst) == 1
    })
    .await;
    let f = forwarder.clone();
    let _held = tokio::spawn(async move { f.call(&IDEMPOTENT, Bytes::new(), TEN_SECONDS).await });
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

#[tokio::test]
async fn an_at_most_once_call_never_sent_goes_to_the_next_node() {
    let p = pool(
        vec![node("a", Act::NeverSent), node("b", Act::Answer)],
        RetryBudgetConfig::default(),
    );
    let r = p.forwarder.call(&AT_MOST_ONCE, Bytes::new(), SECOND).await;
    assert_eq!(r, Ok(Bytes::from("b")));
    assert_eq!(calls(&p), [1, 1]);
    assert_eq!(p.registry.suspects(), [NodeId(1)], "node a is unreachable");
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
        let _ = p.forwarder.call(&IDEMPOTENT, Bytes::new(), SECOND).await;
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
        let r = p.forwarder.call(&IDEMPOTENT, Bytes::new(), SECOND).await;
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
        let _ = p.forwarder.call(&IDEMPOTENT, Bytes::new(), SECOND).await;
    }
    assert_eq!(calls(&p)[0], 3, "probed once");
    assert_eq!(
        ejected(&registry.status(p.clock.now())),
        [1],
        "one more failure ejects it again"
    );
}

/// Node a's connection is down, so an at-most-once call waits on it,
/// unsent, when a is declared gone: a's transport says the call never
/// left, and it runs on node b, with no retry budget needed (nothing ran).
#[tokio::test]
async fn an_at_most_once_call_unsent_when_its_node_is_gone_runs_elsewhere() {
    let none = RetryBudgetConfig {
        ratio: 0.0,
        floor_per_sec: 0,
        window: SECOND,
    };
    let p = pool(vec![node("a", Act::Queued), node("b", Act::Answer)], none);
    let f = p.forwarder.clone();
    let amo = tokio::spawn(async move { f.call(&AT_MOST_ONCE, Bytes::new(), TEN_SECONDS).await });
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
    let f = p.forwarder.clone();
    let amo = tokio::spawn(async move {
        f.call(&AT_MOST_ONCE, Bytes::new(), Nanos::from_millis(300))
            .await
    });
    wait_for("node a has the call", || calls(&p)[0] == 1).await;
    p.registry.set_gone(NodeId(1), "killed", p.clock.now());
    let r = amo.await.unwrap();
    let e = r.expect_err("no node is left");
    assert!(!e.may_have_run(), "{e:?}");
}

/// Nodes a and b, answering, behind a hedging forwarder (a second copy
/// after the 95th percentile of the last 16 calls, once 4 are measured);
/// four quick answers (a, b, a, b under round-robin) have set the delay.
async fn hedging_pool() -> Pool {
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
        let r = p.forwarder.call(&IDEMPOTENT, Bytes::new(), SECOND).await;
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
    let r = p
        .forwarder
        .call(&IDEMPOTENT, Bytes::new(), TEN_SECONDS)
        .await;
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
    let r = p
        .forwarder
        .call(&AT_MOST_ONCE, Bytes::new(), Nanos::from_millis(300))
        .await;
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
    let r = p
        .forwarder
        .call(&IDEMPOTENT, Bytes::new(), TEN_SECONDS)
        .await;
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

/// The only node refuses a call unrun while another call keeps it busy:
/// the call waits in the held queue, not excluded from that node, and is
/// sent to it again as soon as a call there finishes.
#[tokio::test]
async fn a_call_refused_by_the_only_busy_node_goes_back_to_it_when_a_call_ends() {
    let p = pool(vec![node("a", Act::Gated)], RetryBudgetConfig::default());
    let f = p.forwarder.clone();
    let busy = tokio::spawn(async move { f.call(&AT_MOST_ONCE, Bytes::new(), TEN_SECONDS).await });
    wait_for("the node has the first call", || calls(&p) == [1]).await;
    *p.nodes[0].act.lock().unwrap() = Act::RefuseOnce;
    let f = p.forwarder.clone();
    let refused =
        tokio::spawn(async move { f.call(&AT_MOST_ONCE, Bytes::new(), TEN_SECONDS).await });
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
    let r = p
        .forwarder
        .call(&AT_MOST_ONCE, Bytes::new(), TEN_SECONDS)
        .await;
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
    let r = p
        .forwarder
        .call(&AT_MOST_ONCE, Bytes::new(), TEN_SECONDS)
        .await;
    let e = r.expect_err("the node never takes it");
    assert!(
        matches!(e, GatewayError::Node(CallError::Refused { .. })),
        "{e:?}"
    );
    assert!(!e.may_have_run());
    assert_eq!(calls(&p), [ebb_gateway::forward::MAX_ATTEMPTS]);
}
