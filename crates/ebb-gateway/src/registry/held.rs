//! The held FIFO: requests waiting for a node, handed over oldest first
//! as nodes free up or turn ready.
//!
//! A held request waits in one of two ways. A future (the HTTP ingress, a
//! retry) waits on a channel, bounded by its own timer. A call parked by
//! its owner ([`Waiter::Parked`], the RPC ingress's calls) has no task and
//! no timer of its own: the node handed to it is given to the
//! [`HeldSink`] once the registry's lock is released, and one timer for
//! all of them ([`Registry::expire_parked`]) answers those whose deadline
//! passes while held. So a held call costs what a forwarded one does, plus
//! its place in the FIFO and in the deadline heap.

use std::cmp::Reverse;
use std::sync::{Arc, Weak};

use ebb_core::{Instant, NodeId};
use ebb_policy::admission::{self, GatewayDelay, NodeCalls};
use ebb_policy::balance::{Choice, RequestInfo};
use tokio::sync::oneshot;

use super::{Inner, MAX_HELD_SKIPPED, Registry, Slot};

/// Heap entries of parked calls kept beyond twice those still held before
/// the heap is rebuilt from the held ones (the handed-out ones' entries
/// are dropped lazily).
const MAX_STALE_DEADLINES: usize = 64;

/// A call parked in the held FIFO: its owner's state, moved in whole
/// (only a call that must wait is boxed) and handed back to the
/// [`HeldSink`].
pub type ParkedCall = Box<dyn std::any::Any + Send>;

/// Where the calls parked in the held FIFO go: their owner, told outside
/// the registry's lock.
pub trait HeldSink: Send + Sync {
    /// The parked `call` was handed `slot` (counted in flight on its
    /// node): send it there.
    fn launch(&self, slot: Slot, call: ParkedCall);
    /// The parked `call`'s deadline passed while it was held: it was
    /// never sent.
    fn expired(&self, call: ParkedCall);
}

/// How a held request learns that a node was handed to it.
pub(super) enum Waiter {
    /// A future waiting on the receiver; its own timer bounds the wait.
    Task(oneshot::Sender<Slot>),
    /// A call parked whole ([`HeldSink`]).
    Parked(ParkedCall),
}

impl Waiter {
    /// Whether nobody waits any more (a future dropped). A parked call's
    /// owner always waits, until its deadline.
    pub(super) fn is_closed(&self) -> bool {
        match self {
            Waiter::Task(tx) => tx.is_closed(),
            Waiter::Parked(_) => false,
        }
    }
}

/// What a critical section of the registry left to do once its lock is
/// released: parked calls handed a node, and parked calls whose deadline
/// passed.
#[derive(Default)]
pub(super) struct Handoffs {
    pub(super) launched: Vec<(Slot, ParkedCall)>,
    pub(super) expired: Vec<ParkedCall>,
}

impl Handoffs {
    pub(super) fn is_empty(&self) -> bool {
        self.launched.is_empty() && self.expired.is_empty()
    }

    /// Tells `sink` (outside the registry's lock: a launch may end a call
    /// at once, which takes the lock again).
    pub(super) fn deliver(self, sink: Option<Arc<dyn HeldSink>>) {
        let Some(sink) = sink else {
            // Only a forwarder parks calls, and it set itself as the sink
            // first; with it gone, dropping a slot gives its count back.
            debug_assert!(self.is_empty(), "parked calls with no sink");
            return;
        };
        for (slot, call) in self.launched {
            sink.launch(slot, call);
        }
        for call in self.expired {
            sink.expired(call);
        }
    }
}

/// The parked calls' side of the held FIFO: their deadlines, earliest
/// first, and the one timer that answers them.
#[derive(Default)]
pub(super) struct Parked {
    /// (deadline, sequence number) of each parked call; entries of calls
    /// handed out meanwhile are dropped when they reach the top.
    pub(super) deadlines: std::collections::BinaryHeap<Reverse<(Instant, u64)>>,
    /// The deadline the timer sleeps until, if any.
    pub(super) armed: Option<Instant>,
    /// Wakes the timer for a deadline earlier than `armed`.
    pub(super) wake: Arc<tokio::sync::Notify>,
    pub(super) sink: Option<Weak<dyn HeldSink>>,
    /// Left for the lock's holder to deliver once released.
    pub(super) out: Handoffs,
}

pub(super) struct HeldRequest {
    /// Its place in the FIFO: increasing from front to back.
    pub(super) seq: u64,
    pub(super) waiter: Waiter,
    /// When it reached its dispatch decision and was held: the start of
    /// its wait in the FIFO, not its read at the ingress.
    pub(super) arrived: Instant,
    pub(super) bytes: usize,
    pub(super) deadline: Instant,
    /// Nodes this request must not go to again (it failed there).
    pub(super) excluded: Vec<NodeId>,
}

impl Inner {
    /// When the oldest live held request arrived; dead ones at the front
    /// (caller gone, deadline passed) are dropped on the way.
    pub(super) fn oldest_held(&mut self, now: Instant) -> Option<Instant> {
        while let Some(front) = self.held.front() {
            if front.waiter.is_closed() || front.deadline <= now {
                self.drop_held(0);
                continue;
            }
            return Some(front.arrived);
        }
        None
    }

    /// The gateway's own delay for a request read at `arrived` and
    /// decided at `now`. Whether the held FIFO waits for the gateway or for
    /// busy nodes ([`admission::dispatch_behind`]) is asked only when
    /// something is held: the nodes' reports are not read on the common
    /// path.
    pub(super) fn gateway_delay(&mut self, arrived: Instant, now: Instant) -> GatewayDelay {
        let oldest_held = self.oldest_held(now);
        let dispatch_behind = oldest_held.is_some() && self.dispatch_behind();
        GatewayDelay {
            arrived,
            oldest_held,
            dispatch_behind,
        }
    }

    /// Whether a ready node has answered calls the gateway still counts
    /// in flight there ([`admission::dispatch_behind`]), as its last read
    /// reply said.
    pub(super) fn dispatch_behind(&self) -> bool {
        let nodes = self
            .views
            .iter()
            .zip(&self.meta)
            .filter(|(v, _)| v.is_ready());
        admission::dispatch_behind(nodes.map(|(v, m)| NodeCalls {
            in_flight: v.in_flight,
            reported: m.client.as_ref().and_then(|c| c.reported_load()),
        }))
    }

    pub(super) fn remove_held(&mut self, k: usize) -> Option<HeldRequest> {
        let h = self.held.remove(k)?;
        self.held_bytes -= h.bytes;
        Some(h)
    }

    /// Removes a dead held request (deadline passed, caller gone): a
    /// parked call is answered once the lock is released.
    pub(super) fn drop_held(&mut self, k: usize) {
        if let Some(HeldRequest {
            waiter: Waiter::Parked(call),
            ..
        }) = self.remove_held(k)
        {
            self.parked.out.expired.push(call);
        }
    }

    /// Puts a request at the back of the FIFO. True if the held calls'
    /// timer must wake for its deadline (earlier than the one it sleeps
    /// until).
    pub(super) fn push_held(&mut self, mut h: HeldRequest) -> bool {
        h.seq = self.held_seq;
        self.held_seq += 1;
        self.held_bytes += h.bytes;
        let mut wake = false;
        if matches!(h.waiter, Waiter::Parked(_)) {
            let p = &mut self.parked;
            p.deadlines.push(Reverse((h.deadline, h.seq)));
            if p.armed.is_none_or(|at| h.deadline < at) {
                p.armed = Some(h.deadline);
                wake = true;
            }
            if p.deadlines.len() > 2 * self.held.len() + MAX_STALE_DEADLINES {
                let held = &self.held;
                p.deadlines
                    .retain(|Reverse((_, seq))| find_seq(held, *seq).is_some());
            }
        }
        self.held.push_back(h);
        wake
    }

    /// Answers the parked calls whose deadline passed by `now` (once the
    /// lock is released) and drops the heap's entries of calls handed out
    /// meanwhile: what is left on top is the next deadline to wake at.
    pub(super) fn expire_parked(&mut self, now: Instant) -> Option<Instant> {
        while let Some(&Reverse((deadline, seq))) = self.parked.deadlines.peek() {
            let found = find_seq(&self.held, seq);
            if found.is_some() && deadline > now {
                break;
            }
            self.parked.deadlines.pop();
            if let Some(k) = found {
                self.drop_held(k);
            }
        }
        let next = self.parked.deadlines.peek().map(|Reverse((d, _))| *d);
        self.parked.armed = next;
        next
    }

    /// Gives the oldest live held request that may go to `nodes[i]` to it
    /// (a pull). One that failed on this node keeps its place and the next
    /// is looked at (up to [`MAX_HELD_SKIPPED`]), so a request avoiding a
    /// lost node does not stall the queue behind it. True if one was
    /// handed over.
    pub(super) fn hand_oldest_to(&mut self, i: usize, me: &Registry, now: Instant) -> bool {
        if !self.may_take(i, &[]) {
            return false;
        }
        let id = self.meta[i].id;
        let mut k = 0;
        while k < self.held.len() && k <= MAX_HELD_SKIPPED {
            let h = &self.held[k];
            if h.waiter.is_closed() || h.deadline <= now {
                self.drop_held(k);
                continue;
            }
            if h.excluded.contains(&id) {
                k += 1;
                continue;
            }
            let Some(slot) = self.take(i, me, now) else {
                return false;
            };
            let Some(h) = self.remove_held(k) else {
                debug_assert!(false, "index {k} was just read");
                return false;
            };
            match h.waiter {
                Waiter::Task(tx) => {
                    if let Err(mut slot) = tx.send(slot) {
                        // The caller left between the check and the send;
                        // the lock is held here, so give the count back by
                        // hand.
                        slot.claim();
                        self.views[i].in_flight -= 1;
                        continue;
                    }
                }
                Waiter::Parked(call) => self.parked.out.launched.push((slot, call)),
            }
            return true;
        }
        false
    }

    /// Sends held requests wherever the balancer now places them, oldest
    /// first, until it says hold or no node has room. A head that may not
    /// go where the balancer placed it (it failed there, or the node is
    /// full) goes to another node with room; failing that, the placed node
    /// takes the oldest request it may have.
    pub(super) fn drain_held(&mut self, me: &Registry, now: Instant) {
        while let Some(front) = self.held.front() {
            let req = RequestInfo {
                deadline: Some(front.deadline),
            };
            let Choice::Node(i) = self.balancer.pick(&self.views, req, now, &mut self.rng) else {
                return;
            };
            let head_may = self.may_take(i, &front.excluded);
            let node = if head_may {
                Some(i)
            } else {
                let excluded = front.excluded.clone();
                self.other_node(&excluded, None)
            };
            let handed = match node {
                Some(n) => self.hand_oldest_to(n, me, now),
                None => false,
            };
            if handed || (node != Some(i) && self.hand_oldest_to(i, me, now)) {
                continue;
            }
            // Nothing could go anywhere; wait for the next event.
            return;
        }
    }
}

/// Where the request numbered `seq` stands in the FIFO (numbers increase
/// from front to back).
fn find_seq(held: &std::collections::VecDeque<HeldRequest>, seq: u64) -> Option<usize> {
    held.binary_search_by_key(&seq, |h| h.seq).ok()
}
