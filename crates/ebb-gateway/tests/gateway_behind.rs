//! The gateway's own delay, end to end through the forwarder: a request
//! the ingress read long before its dispatch decision is refused as
//! `gateway_behind`; a request held because every node is busy is judged
//! by the work ahead (`deadline`), not named the gateway's fault; and held
//! requests do count once a node has answered calls the gateway has not
//! read. Time is set, not waited for: reads are placed in the past on the
//! gateway's clock, and the held request is held at an instant the test
//! names (the registry takes `now`).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use common::{FAR_DEADLINE, Silent, add_ready, claim_now, deferred, forwarder, registry};
use ebb_core::{Nanos, NodeId};
use ebb_gateway::clock::Clock;
use ebb_gateway::forward::{Arrival, Forwarder, GatewayError};
use ebb_gateway::registry::{Acquired, Registry, Slot};
use ebb_gateway::service::Encoding;
use ebb_policy::admission::{AdmissionConfig, Refusal};
use ebb_rpc::service::{CallContext, MethodInfo};
use ebb_rpc::wire::Outcome;
use tokio::sync::oneshot;

static METHOD: MethodInfo = MethodInfo {
    service: "G",
    id: 0,
    name: "held",
    idempotent: false,
    blocking: false,
    params: &[],
    returns: "()",
};

/// Calls the node takes at once, as its bound on the gateway's connection.
const BOUND: u32 = 2;
/// The gateway's bound on its own delay: far above how long a test thread
/// may be kept from running between reading a request and deciding on it,
/// so a request read "now" is never late.
const MAX_GATEWAY_DELAY: Nanos = Nanos::from_secs(1);
/// How long before its decision the late request was read.
const LATE: std::time::Duration = std::time::Duration::from_secs(5);

/// One ready node taking [`BOUND`] calls, the forwarder over it, and a
/// clock that began a minute ago, so that instants [`LATE`] before its
/// `now` exist.
struct Gateway {
    registry: Registry,
    clock: Clock,
    forwarder: Arc<Forwarder>,
    executing: Arc<AtomicU32>,
}

impl Gateway {
    fn new() -> Gateway {
        let admission = AdmissionConfig {
            max_gateway_delay: MAX_GATEWAY_DELAY,
            ..AdmissionConfig::default()
        };
        let registry = registry("jsq", admission, 7).with_max_in_flight_per_node(BOUND);
        let began = std::time::Instant::now()
            .checked_sub(std::time::Duration::from_secs(60))
            .expect("the monotonic clock has run for a minute since boot");
        let clock = Clock::since(began);
        // Its calls never end; it reports 100 ms of service per call and
        // the calls the test says it executes.
        let node = Silent::reporting(0, Nanos::from_millis(100));
        let executing = Arc::clone(&node.executing);
        let now = clock.now();
        add_ready(&registry, NodeId(1), Arc::new(node), now);
        // One call answered: its reply brought the node's figures.
        let slot = claim_now(registry.acquire(0, now + FAR_DEADLINE, now, &[], true, None));
        registry.release(slot.node, Some(Nanos::from_millis(100)), 0, now);
        let forwarder = forwarder(&registry, clock);
        Gateway {
            registry,
            clock,
            forwarder,
            executing,
        }
    }

    /// Fills the node to its bound with calls that never end; the node
    /// says it executes `executing` of them.
    fn fill(&self, executing: u32) -> Vec<Slot> {
        self.executing.store(executing, Ordering::SeqCst);
        let far = self.clock.now() + FAR_DEADLINE;
        (0..BOUND)
            .map(|_| {
                claim_now(
                    self.registry
                        .acquire(0, far, self.clock.now(), &[], true, None),
                )
            })
            .collect()
    }

    /// A request held since [`LATE`] ago (the node is full), kept alive by
    /// the returned receiver.
    fn held_since_late(&self) -> oneshot::Receiver<Slot> {
        let since = self.clock.now().saturating_sub(Nanos::from(LATE));
        match self
            .registry
            .acquire(0, since + FAR_DEADLINE, since, &[], true, None)
        {
            Acquired::Held(rx) => rx,
            _ => panic!("the full node's request was not held"),
        }
    }

    /// How many requests the rule named `rule` refused, from `/metrics`.
    fn refused(&self, rule: &str) -> u64 {
        let text = self.forwarder.metrics().render(&[], (0, 0), 0).unwrap();
        let name = format!("ebb_gateway_admission_refusals_total{{rule=\"{rule}\"}} ");
        let line = text.lines().find(|l| l.starts_with(&name));
        let count = line.and_then(|l| l[name.len()..].trim().parse().ok());
        count.unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    fn in_flight(&self) -> u32 {
        self.registry.status(self.clock.now())[0].in_flight
    }
}

/// Starts a new request with a far deadline, read by the ingress at
/// `read_at`, and checks that it is answered `Overloaded` at once.
async fn refused_at_once(gw: &Gateway, read_at: std::time::Instant) {
    let (reply, mut answers) = deferred(&METHOD);
    let cx = CallContext::new(FAR_DEADLINE).received_at(read_at);
    gw.forwarder.start(&METHOD, Bytes::new(), cx, reply);
    let (outcome, why) = answers.recv().await.unwrap();
    assert!(
        matches!(outcome, Outcome::Overloaded { .. }),
        "{outcome:?}: {why:?}"
    );
}

/// An instant [`LATE`] ago on the monotonic clock: when the server read a
/// frame that waited since.
fn read_late() -> std::time::Instant {
    std::time::Instant::now()
        .checked_sub(LATE)
        .expect("the monotonic clock has run longer than LATE")
}

/// A frame read 5 s before its dispatch (what a saturated ingress does
/// to the frames behind the first of a read) is refused as the gateway's
/// own delay, on the RPC path (the server's read instant in the call's
/// context) and on the async path (the HTTP ingress's arrival); a frame
/// read just now on the same gateway is forwarded.
#[tokio::test]
async fn a_request_read_early_and_dispatched_late_is_refused_as_gateway_behind() {
    let gw = Gateway::new();
    refused_at_once(&gw, read_late()).await;
    assert_eq!(gw.refused("gateway_behind"), 1);
    assert_eq!(gw.in_flight(), 0, "a refused request reached the node");

    let arrived = gw.clock.at(read_late());
    let postcard = Encoding::Postcard;
    let call = gw.forwarder.call_encoded(
        &METHOD,
        Bytes::new(),
        postcard,
        FAR_DEADLINE,
        Some(Arrival::whole(arrived)),
    );
    match call.await {
        Err(GatewayError::Overloaded {
            why: Refusal::GatewayBehind { delay, limit },
            ..
        }) => assert!(
            delay > limit && delay >= Nanos::from(LATE),
            "{delay} {limit}"
        ),
        other => panic!("a request read 5 s ago was not refused as behind: {other:?}"),
    }
    assert_eq!(gw.refused("gateway_behind"), 2);

    // Read just now: forwarded (the node holds it).
    let (reply, _answers) = deferred(&METHOD);
    let cx = CallContext::new(FAR_DEADLINE).received_at(std::time::Instant::now());
    gw.forwarder.start(&METHOD, Bytes::new(), cx, reply);
    common::wait_for("the fresh request reaches the node", || gw.in_flight() == 1).await;
    assert_eq!(gw.refused("gateway_behind"), 2);
}

/// A request held 5 s because the node is busy (it says it executes
/// every call the gateway sent) is the nodes' wait: a new request is not
/// refused as `gateway_behind` for it, and the work ahead decides: a far
/// deadline is taken (held), a 150 ms one is refused as `deadline` (three
/// calls ahead of 100 ms each). Once the node has answered calls the
/// gateway still counts (it says it executes none), the same held wait is
/// the gateway's own delay.
#[tokio::test]
async fn a_node_bound_held_wait_is_judged_by_the_work_ahead_not_as_gateway_behind() {
    let gw = Gateway::new();
    let _busy = gw.fill(BOUND);
    let _held = gw.held_since_late();

    let (reply, mut far_answer) = deferred(&METHOD);
    let cx = CallContext::new(FAR_DEADLINE).received_at(std::time::Instant::now());
    gw.forwarder.start(&METHOD, Bytes::new(), cx, reply);
    let (reply, mut tight_answer) = deferred(&METHOD);
    let tight = Nanos::from_millis(150);
    let cx = CallContext::new(tight).received_at(std::time::Instant::now());
    gw.forwarder.start(&METHOD, Bytes::new(), cx, reply);
    let (outcome, why) = tight_answer.recv().await.unwrap();
    assert!(
        matches!(outcome, Outcome::Overloaded { .. }),
        "{outcome:?}: {why:?}"
    );
    assert_eq!(gw.refused("deadline"), 1, "the work ahead refused it");
    assert_eq!(
        gw.refused("gateway_behind"),
        0,
        "a node-bound wait was named the gateway's"
    );
    assert!(
        far_answer.try_recv().is_err(),
        "the far request was answered: it should be held for the node"
    );
    assert_eq!(
        gw.registry.held(),
        (2, 0),
        "the far request joined the held FIFO"
    );

    // The node has answered both calls; the gateway has read neither reply.
    gw.executing.store(0, Ordering::SeqCst);
    refused_at_once(&gw, std::time::Instant::now()).await;
    assert_eq!(
        gw.refused("gateway_behind"),
        1,
        "dispatch behind: the held wait counts"
    );
    assert_eq!(gw.refused("deadline"), 1);
}

/// A node full in the gateway's count that says it executes none of those
/// calls has answered them; the gateway has not read the replies. A new
/// request is then refused at once rather than held (it would wait for
/// the gateway itself, and holding costs a saturated gateway more than a
/// refusal): nothing joins the held FIFO, the refusal is counted as
/// `gateway_behind`. The same request finds the FIFO open while the node
/// says it executes what the gateway counts, and a retry (admitted once
/// already) is held either way.
#[tokio::test]
async fn a_new_request_is_refused_not_held_while_the_nodes_room_waits_on_unread_answers() {
    let gw = Gateway::new();
    let _answered_unread = gw.fill(0);

    refused_at_once(&gw, std::time::Instant::now()).await;
    assert_eq!(gw.refused("gateway_behind"), 1);
    assert_eq!(gw.registry.held(), (0, 0), "the refused request was held");

    let now = gw.clock.now();
    match gw
        .registry
        .acquire(0, now + FAR_DEADLINE, now, &[], true, None)
    {
        Acquired::Refused {
            why: Refusal::DispatchBehind,
            ..
        } => {}
        _ => panic!("a new request was not refused as dispatch behind"),
    }
    // A retry is held: it was admitted once.
    let retry = gw
        .registry
        .acquire(0, now + FAR_DEADLINE, now, &[NodeId(9)], false, None);
    assert!(matches!(retry, Acquired::Held(_)), "the retry was not held");
    drop(retry);

    // The node says it executes every call: the wait is the node's.
    gw.executing.store(BOUND, Ordering::SeqCst);
    let now = gw.clock.now();
    let held = gw
        .registry
        .acquire(0, now + FAR_DEADLINE, now, &[], true, None);
    assert!(
        matches!(held, Acquired::Held(_)),
        "a request waiting for a busy node was not held"
    );
    assert_eq!(gw.registry.held().0, 1);
}

/// An HTTP request whose head was handed over 5 s ago and whose body
/// came in only now (a client sending it slowly) waited for its client,
/// not for the gateway: it is not refused as `gateway_behind`, and it is
/// forwarded. Its deadline still counts from the head: with 3 s to wait
/// it is answered `deadline_exceeded`, unsent, and the node never sees it.
#[tokio::test]
async fn a_slow_body_is_the_clients_wait_but_the_deadline_counts_from_the_head() {
    let gw = Gateway::new();
    let postcard = Encoding::Postcard;
    let head = gw.clock.at(read_late());
    let slow_body = Arrival {
        at: head,
        complete: gw.clock.now(),
    };
    let forwarder = Arc::clone(&gw.forwarder);
    let forwarded = tokio::spawn(async move {
        forwarder
            .call_encoded(
                &METHOD,
                Bytes::new(),
                postcard,
                FAR_DEADLINE,
                Some(slow_body),
            )
            .await
    });
    common::wait_for("the slow-bodied request reaches the node", || {
        gw.in_flight() == 1
    })
    .await;
    assert!(!forwarded.is_finished(), "the forwarded call was answered");
    assert_eq!(gw.refused("gateway_behind"), 0);

    let three_s = Nanos::from_secs(3);
    let call = gw
        .forwarder
        .call_encoded(&METHOD, Bytes::new(), postcard, three_s, Some(slow_body));
    match call.await {
        Err(GatewayError::DeadlineExceeded { after, sent }) => {
            assert_eq!((after, sent), (three_s, false));
        }
        other => panic!("a deadline 3 s from a head read 5 s ago did not pass: {other:?}"),
    }
    assert_eq!(gw.in_flight(), 1, "the late request reached the node");
    assert_eq!(gw.refused("gateway_behind"), 0);
}
