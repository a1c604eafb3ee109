//! The held FIFO: a node pulling work is not stalled by a request that may
//! not go to it, and calls beyond a node's bound in flight wait at the
//! gateway instead of being refused by the node.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::{Silent, add_ready, claim_now, registry, wait_for};
use ebb_core::{Instant, Nanos, NodeId};
use ebb_gateway::clock::Clock;
use ebb_gateway::forward::Forwarder;
use ebb_gateway::registry::{Acquired, Registry, Slot};
use ebb_policy::admission::AdmissionConfig;
use ebb_rpc::semantics::server::ServerConfig;
use ebb_rpc::service::{BoxFuture, CallContext, DispatchError, MethodInfo, ServiceDispatch};
use ebb_rpc::transport::{Server, TcpClient};
use ebb_rpc::wire::Outcome;
use tokio::sync::oneshot;

static METHOD: MethodInfo = MethodInfo {
    service: "G",
    id: 0,
    name: "gated",
    idempotent: false,
    blocking: false,
    params: &[],
    returns: "()",
};

fn far(now: Instant) -> Instant {
    now + Nanos::from_secs(600)
}

fn held(a: Acquired) -> oneshot::Receiver<Slot> {
    match a {
        Acquired::Held(rx) => rx,
        _ => panic!("expected the request to be held"),
    }
}

/// Two nodes with room for one call each, both busy; the oldest held
/// request failed on node 1 (it avoids it), the next may go anywhere.
/// Returns the registry and the two held receivers.
fn two_full_nodes(policy: &str) -> (Registry, oneshot::Receiver<Slot>, oneshot::Receiver<Slot>) {
    let registry = registry(policy, AdmissionConfig::default(), 7).with_max_in_flight_per_node(1);
    let t0 = Instant::EPOCH;
    let (a, b) = (NodeId(1), NodeId(2));
    add_ready(&registry, a, Arc::new(Silent::idle()), t0);
    add_ready(&registry, b, Arc::new(Silent::idle()), t0);
    registry.set_target(2, Nanos::from_millis(10));
    let first = claim_now(registry.acquire(0, far(t0), t0, &[], true, None));
    let second = claim_now(registry.acquire(0, far(t0), t0, &[], true, None));
    let mut busy = [first.node, second.node];
    busy.sort();
    assert_eq!(busy, [a, b], "one call on each node");
    let avoiding = held(registry.acquire(0, far(t0), t0, &[a], false, None));
    let any = held(registry.acquire(0, far(t0), t0, &[], true, None));
    assert_eq!(registry.held().0, 2, "both full: both requests held");
    (registry, avoiding, any)
}

/// A node that turns idle pulls the oldest request it may take: the one
/// behind a request that avoids it, not nothing.
#[test]
fn a_pull_skips_a_held_request_that_avoids_the_node() {
    for policy in ["central", "p2c", "jsq"] {
        let (registry, mut avoiding, mut any) = two_full_nodes(policy);
        let t1 = Instant::EPOCH + Nanos::from_millis(1);
        // Node 1's call ends: it may not take the oldest held request.
        registry.release(NodeId(1), Some(Nanos::from_millis(1)), 0, t1);
        let got = any.try_recv().unwrap_or_else(|e| {
            panic!("{policy}: the second request stalled behind the first: {e:?}")
        });
        assert_eq!(got.node, NodeId(1), "{policy}");
        assert!(avoiding.try_recv().is_err(), "{policy}: it avoids node 1");
        assert_eq!(registry.held().0, 1, "{policy}");
        // Node 2's call ends: the avoiding request goes there.
        registry.release(NodeId(2), Some(Nanos::from_millis(1)), 0, t1);
        let got = avoiding.try_recv().unwrap();
        assert_eq!(got.node, NodeId(2), "{policy}");
        assert_eq!(registry.held(), (0, 0), "{policy}");
    }
}

/// `gated` waits until the test opens the gate; counts the calls that ran.
struct Gated {
    gate: tokio::sync::watch::Sender<bool>,
    ran: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
}

impl ServiceDispatch for Gated {
    fn name(&self) -> &'static str {
        "G"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        std::slice::from_ref(&METHOD)
    }
    fn dispatch(&self, _: u16, _: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        let mut gate = self.gate.subscribe();
        Box::pin(async move {
            self.running.fetch_add(1, Ordering::SeqCst);
            let _ = gate.wait_for(|open| *open).await;
            self.ran.fetch_add(1, Ordering::SeqCst);
            Ok(Bytes::new())
        })
    }
}

/// A node's server with `bound` calls per connection at most, behind a
/// gateway that holds calls beyond `gateway_limit` on it.
struct Setup {
    forwarder: Arc<Forwarder>,
    registry: Registry,
    gate: tokio::sync::watch::Sender<bool>,
    ran: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
}

async fn setup(bound: usize, gateway_limit: u32) -> Setup {
    let gate = tokio::sync::watch::channel(false).0;
    let ran = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let service = Gated {
        gate: gate.clone(),
        ran: Arc::clone(&ran),
        running: Arc::clone(&running),
    };
    let config = ServerConfig {
        max_in_flight_per_conn: bound,
        ..ServerConfig::default()
    };
    let server = Server::bind_with("127.0.0.1:0", service, config)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run());
    let registry = registry("p2c", untimed(), 3).with_max_in_flight_per_node(gateway_limit);
    let clock = Clock::new();
    let client = TcpClient::connect(&addr.to_string()).await.unwrap();
    add_ready(&registry, NodeId(1), Arc::new(client), clock.now());
    registry.set_target(1, Nanos::from_millis(10));
    let forwarder = common::forwarder(&registry, clock);
    Setup {
        forwarder,
        registry,
        gate,
        ran,
        running,
    }
}

/// Admission that judges no time; its queue bounds stay. The gate keeps
/// the node's calls for as long as the test runs, so the held requests
/// age, and with the deadline check on, a held request older than
/// `max_gateway_delay` (20 ms by default) reads as the gateway falling
/// behind: the calls of the burst that reach the gateway later than that
/// (a loaded machine) would be refused, never held.
fn untimed() -> AdmissionConfig {
    AdmissionConfig {
        deadline_check: false,
        ..AdmissionConfig::default()
    }
}

const BOUND: usize = 4;
const CALLS: usize = 64;

fn fire(s: &Setup) -> Vec<tokio::task::JoinHandle<Result<Bytes, ebb_gateway::GatewayError>>> {
    (0..CALLS)
        .map(|_| {
            let f = Arc::clone(&s.forwarder);
            tokio::spawn(async move { f.call(&METHOD, Bytes::new(), Nanos::from_secs(60)).await })
        })
        .collect()
}

/// Many more concurrent calls than the node's bound: the gateway keeps
/// the bound, the rest wait in its held FIFO, the node refuses nothing and
/// the retry budget is not touched.
#[tokio::test]
async fn calls_beyond_a_nodes_bound_wait_at_the_gateway() {
    let s = setup(BOUND, BOUND as u32).await;
    let calls = fire(&s);
    wait_for("the node runs its bound and the rest are held", || {
        s.running.load(Ordering::SeqCst) == BOUND && s.registry.held().0 == CALLS - BOUND
    })
    .await;
    s.gate.send_replace(true);
    for c in calls {
        c.await.unwrap().expect("every call is answered");
    }
    assert_eq!(s.ran.load(Ordering::SeqCst), CALLS, "each ran once");
    let counters = s.registry.tick();
    assert_eq!(counters.retries, 0, "no refusal was retried");
    assert_eq!(counters.refusals, 0);
}

/// The same load with the gateway unaware of the bound: the node refuses
/// calls and the gateway spends retries on them (what the bound avoids).
#[tokio::test]
async fn without_the_bound_the_node_refuses_and_retries_are_spent() {
    let s = setup(BOUND, ebb_gateway::registry::DEFAULT_MAX_IN_FLIGHT_PER_NODE).await;
    let calls = fire(&s);
    wait_for("some calls were refused by the node and retried", || {
        s.registry.tick().retries > 0
    })
    .await;
    s.gate.send_replace(true);
    for c in calls {
        let _ = c.await.unwrap();
    }
}

/// Starts one call the RPC ingress's way (`Forwarder::start`) with
/// `timeout`; its answer arrives on what is returned.
fn start(s: &Setup, timeout: Nanos) -> tokio::sync::mpsc::UnboundedReceiver<(Outcome, Bytes)> {
    let (reply, answers) = common::deferred(&METHOD);
    let cx = CallContext::new(timeout);
    s.forwarder.start(&METHOD, Bytes::new(), cx, reply);
    answers
}

/// The RPC ingress's calls beyond the node's bound are parked in the held
/// FIFO (no task of their own) and, as the node frees, launched there:
/// every one is answered, each ran once.
#[tokio::test]
async fn started_calls_beyond_a_nodes_bound_are_parked_then_launched() {
    let s = setup(BOUND, 1).await;
    let answers: Vec<_> = (0..CALLS)
        .map(|_| start(&s, Nanos::from_secs(60)))
        .collect();
    wait_for("one call runs, the rest are parked", || {
        s.running.load(Ordering::SeqCst) == 1 && s.registry.held().0 == CALLS - 1
    })
    .await;
    s.gate.send_replace(true);
    for mut a in answers {
        let (outcome, why) = a.recv().await.unwrap();
        assert_eq!(outcome, Outcome::Ok, "{why:?}");
    }
    assert_eq!(s.ran.load(Ordering::SeqCst), CALLS, "each ran once");
    assert_eq!(s.registry.held(), (0, 0));
    let counters = s.registry.tick();
    assert_eq!((counters.retries, counters.refusals), (0, 0));
}

/// A parked call whose deadline passes while the node stays busy is
/// answered at once, as never sent, by the parked calls' one timer, though
/// it was parked behind a call with a later deadline (the timer was woken
/// for it); the other stays held and the node never saw it.
#[tokio::test]
async fn a_parked_call_out_of_time_is_answered_unsent_by_the_timer() {
    let s = setup(BOUND, 1).await;
    let _running = start(&s, Nanos::from_secs(60));
    wait_for("the node runs the first call", || {
        s.running.load(Ordering::SeqCst) == 1
    })
    .await;
    let _far = start(&s, Nanos::from_secs(60));
    let mut near = start(&s, Nanos::from_millis(50));
    let (outcome, why) = near.recv().await.unwrap();
    assert!(
        matches!(outcome, Outcome::Refused(_)),
        "{outcome:?}: {why:?}"
    );
    let why = String::from_utf8_lossy(&why);
    assert!(why.contains("deadline"), "{why}");
    assert_eq!(s.registry.held().0, 1, "the far call is still held");
    assert_eq!(s.running.load(Ordering::SeqCst), 1, "nothing else was sent");
    s.gate.send_replace(true);
}
