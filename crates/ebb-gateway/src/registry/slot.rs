//! A node handed to one request, and what asking for one can give back.

use std::sync::Arc;

use ebb_core::{Instant, Nanos, NodeId};
use ebb_policy::admission::Refusal;
use tokio::sync::{oneshot, watch};

use super::{NodeClient, Registry};

/// A node handed to one request: where to send it and how to learn that
/// the node died meanwhile.
pub struct Slot {
    pub node: NodeId,
    pub client: NodeClient,
    /// The node's `gone` flag: read once after the call is started, and
    /// watched (a receiver subscribed) only by a call on a transport that
    /// cannot end its calls at once. A receiver per call would cost every
    /// call a subscription and, when it is dropped as the last one, a
    /// wake-up of the sender's waiters.
    pub gone: Arc<watch::Sender<bool>>,
    /// Calls the gateway already had in flight on the node when this one
    /// was handed out: 0 means the latency is a clean service-time sample,
    /// n means about n + 1 services (the ones ahead, then this one).
    pub ahead: u32,
    /// Until the request claims the slot, dropping it gives the node's
    /// in-flight count back (a held request whose caller left just as a
    /// node was handed to it).
    pub(super) unclaimed: Option<(Registry, Instant)>,
}

impl Slot {
    /// The request takes the slot over: from now on it releases the node.
    pub fn claim(&mut self) {
        self.unclaimed = None;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((registry, at)) = self.unclaimed.take() {
            registry.release(self.node, None, 0, at);
        }
    }
}

/// How a call sent through a [`Slot`] ended, as [`Registry::finish`]
/// takes it.
pub struct Ended {
    /// Set when the node answered (not cut short by its death).
    pub latency: Option<Nanos>,
    /// The calls that were ahead of it on the node ([`Slot::ahead`]).
    pub ahead: u32,
    /// `Some(ok)` when the outcome says something about the node's health.
    pub health: Option<bool>,
    /// The request's time from arrival to answer, when this end answers
    /// it: counted here rather than by a lock of its own.
    pub response: Option<Nanos>,
}

/// What [`Registry::acquire`] gives back.
pub enum Acquired {
    Now(Slot),
    /// Held in the FIFO; a node will be handed over through the receiver.
    Held(oneshot::Receiver<Slot>),
    /// Parked in the FIFO ([`Registry::acquire_parked`]): the held sink
    /// will be handed the node, or told the deadline passed.
    Parked,
    Refused {
        why: Refusal,
        retry_after: Nanos,
    },
}
