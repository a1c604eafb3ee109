//! The held FIFO: requests waiting for a node, handed over oldest first
//! as nodes free up or turn ready.

use ebb_core::{Instant, NodeId};
use ebb_policy::admission::{self, GatewayDelay, NodeCalls};
use ebb_policy::balance::{Choice, RequestInfo};
use tokio::sync::oneshot;

use super::{Inner, MAX_HELD_SKIPPED, Registry, Slot};

pub(super) struct HeldRequest {
    pub(super) tx: oneshot::Sender<Slot>,
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
            if front.tx.is_closed() || front.deadline <= now {
                self.remove_held(0);
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
            if h.tx.is_closed() || h.deadline <= now {
                self.remove_held(k);
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
            if let Err(mut slot) = h.tx.send(slot) {
                // The caller left between the check and the send; the lock
                // is held here, so give the count back by hand.
                slot.claim();
                self.views[i].in_flight -= 1;
                continue;
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
