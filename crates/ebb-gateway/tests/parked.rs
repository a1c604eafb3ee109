//! Calls parked in the held FIFO (the RPC ingress's way to wait for a
//! node): no task or timer of their own, handed to the held sink oldest
//! first once the registry's lock is released, answered by the one timer
//! of the parked calls when their deadline passes there, and bounded like
//! any held request.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use common::{Silent, add_ready, claim_now, registry};
use ebb_core::{Instant, Nanos, NodeId};
use ebb_gateway::registry::{Acquired, HeldSink, ParkedCall, Registry, Slot};
use ebb_policy::admission::AdmissionConfig;

/// What the sink was told, in order: a call (its number) launched on a
/// node, or out of time.
#[derive(Debug, PartialEq, Eq)]
enum Told {
    Launched(u32, NodeId),
    Expired(u32),
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Told>>);

impl Recorder {
    fn take(&self) -> Vec<Told> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

impl HeldSink for Recorder {
    fn launch(&self, mut slot: Slot, call: ParkedCall) {
        // The call keeps the node: its count stays until the test releases.
        slot.claim();
        let n = *call.downcast::<u32>().unwrap();
        self.0.lock().unwrap().push(Told::Launched(n, slot.node));
    }

    fn expired(&self, call: ParkedCall) {
        let n = *call.downcast::<u32>().unwrap();
        self.0.lock().unwrap().push(Told::Expired(n));
    }
}

fn at_ms(ms: u64) -> Instant {
    Instant::EPOCH + Nanos::from_millis(ms)
}

/// Parks call `n` (deadline `deadline_ms`) arriving at `now_ms`; whether
/// the registry took the call (it boxed it) and what it answered.
fn park(registry: &Registry, n: u32, deadline_ms: u64, now_ms: u64) -> (bool, Acquired) {
    let mut call = Some(n);
    let mut make = || call.take().map(|n| Box::new(n) as ParkedCall);
    let now = at_ms(now_ms);
    let acquired = registry.acquire_parked(0, at_ms(deadline_ms), (now, now), &mut make);
    (call.is_none(), acquired)
}

/// Whether the parked calls' timer was woken (a permit is waiting).
fn woken(wake: &tokio::sync::Notify) -> bool {
    let notified = std::pin::pin!(wake.notified());
    let mut cx = Context::from_waker(Waker::noop());
    notified.poll(&mut cx) == Poll::Ready(())
}

/// One node with room for one call, busy. Calls parked behind it go to it
/// oldest first as its calls end; the one whose deadline passes first is
/// answered by the timer at that deadline, whatever its place; the timer is
/// woken only for a deadline earlier than the one it sleeps until, and the
/// entry of a call handed out meanwhile does not make it wake early.
#[test]
fn parked_calls_are_launched_oldest_first_and_expire_at_their_deadline() {
    let admission = AdmissionConfig {
        deadline_check: false,
        ..AdmissionConfig::default()
    };
    let registry = registry("jsq", admission, 5).with_max_in_flight_per_node(1);
    let sink = Arc::new(Recorder::default());
    let weak = Arc::downgrade(&sink);
    registry.set_held_sink(weak);
    let wake = registry.held_timer_wake();
    let node = NodeId(1);
    add_ready(&registry, node, Arc::new(Silent::idle()), at_ms(0));
    registry.set_target(1, Nanos::from_millis(10));
    let _busy = claim_now(registry.acquire_first(0, at_ms(60_000), at_ms(0), at_ms(0)));

    let (taken, a) = park(&registry, 1, 100, 1);
    assert!(taken && matches!(a, Acquired::Parked), "the node is full");
    assert!(woken(&wake), "the first deadline arms the timer");
    let (_, c) = park(&registry, 2, 60_000, 2);
    assert!(matches!(c, Acquired::Parked));
    assert!(!woken(&wake), "a later deadline does not wake the timer");
    let (_, b) = park(&registry, 3, 50, 3);
    assert!(matches!(b, Acquired::Parked));
    assert!(woken(&wake), "an earlier deadline wakes it");
    assert_eq!(registry.held().0, 3);

    // The timer looks before any deadline: nothing to answer, it sleeps
    // until the earliest (call 3's, the newest).
    assert_eq!(registry.expire_parked(at_ms(10)), Some(at_ms(50)));
    assert_eq!(sink.take(), []);
    // At call 3's deadline it is answered, out of its place in the FIFO.
    assert_eq!(registry.expire_parked(at_ms(50)), Some(at_ms(100)));
    assert_eq!(sink.take(), [Told::Expired(3)]);
    assert_eq!(registry.held().0, 2);

    // The busy call ends: the oldest parked call gets the node, through
    // the sink, after the registry's lock was released (the sink's own
    // lock is taken; a launch may take the registry's again).
    registry.release(node, Some(Nanos::from_millis(1)), 0, at_ms(60));
    assert_eq!(sink.take(), [Told::Launched(1, node)]);
    assert_eq!(registry.held().0, 1);
    // Call 1's heap entry is stale now: the timer skips to call 2's
    // deadline rather than wake for it.
    assert_eq!(registry.expire_parked(at_ms(60)), Some(at_ms(60_000)));
    assert_eq!(sink.take(), []);
    registry.release(node, Some(Nanos::from_millis(1)), 0, at_ms(70));
    assert_eq!(sink.take(), [Told::Launched(2, node)]);
    assert_eq!(registry.held(), (0, 0));
    assert_eq!(registry.expire_parked(at_ms(70)), None, "nothing left");
}

/// The held bound counts parked calls like any held request, and a call
/// refused at the bound is not taken from its owner (it answers it).
#[test]
fn parked_calls_count_toward_the_held_bound() {
    let admission = AdmissionConfig {
        deadline_check: false,
        max_held_requests: 2,
        ..AdmissionConfig::default()
    };
    let registry = registry("jsq", admission, 5).with_max_in_flight_per_node(1);
    let sink = Arc::new(Recorder::default());
    let weak = Arc::downgrade(&sink);
    registry.set_held_sink(weak);
    let node = NodeId(1);
    add_ready(&registry, node, Arc::new(Silent::idle()), at_ms(0));
    registry.set_target(1, Nanos::from_millis(10));
    let _busy = claim_now(registry.acquire_first(0, at_ms(60_000), at_ms(0), at_ms(0)));
    assert!(matches!(park(&registry, 1, 60_000, 1).1, Acquired::Parked));
    assert!(matches!(park(&registry, 2, 60_000, 1).1, Acquired::Parked));
    let (taken, refused) = park(&registry, 3, 60_000, 1);
    match refused {
        Acquired::Refused { why, .. } => assert_eq!(why.rule(), "held_queue_full", "{why}"),
        _ => panic!("a third call was taken past the bound of 2"),
    }
    assert!(!taken, "a refused call stays with its owner");
    assert_eq!(registry.held().0, 2);
    // A tick's upkeep past their deadlines answers both through the sink.
    registry.maintain(at_ms(60_000));
    assert_eq!(sink.take(), [Told::Expired(1), Told::Expired(2)]);
    assert_eq!(registry.held(), (0, 0));
}
