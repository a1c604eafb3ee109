//! Scale up: each ready node's capacity (the blocking calls it runs at
//! once, its worker threads) brought to the pool's, over the connection the
//! gateway already holds to it.
//!
//! A node is asked first at its handshake, before any call goes to it: a
//! node built before `Resize` closes the connection on it, which then costs
//! no call. Only two answers take a node for one that does not resize, and
//! for good: it says so (capacity 0), or the connection closed on a resize
//! before the node ever answered one (it predates `Resize`). It then keeps
//! capacity 1, and its calls go on as before. Any other failure (a timeout
//! on a slow node, a connection lost after the node had answered) leaves it
//! resizable and asked again later, after a pause that doubles with each
//! unanswered resize in a row ([`retry_after`]). Every resize is a task on
//! the gateway's runtime, like a handshake, reporting back through the
//! manager's command channel, so neither the request path nor the tick
//! waits for a node, and at most one per node runs at a time.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ebb_core::{Instant, Nanos, NodeId};
use ebb_rpc::CallError;
use ebb_rpc::transport::TcpClient;

use super::handle::Command;
use super::manager::Manager;
use super::{MAX_CAPACITY_PER_NODE, MAX_RESIZE_RETRY_MS, RESIZE_RETRY_MS, RESIZE_TIMEOUT_MS};
use crate::registry::Life;

/// How a resize asked of a node ended: the capacity it took, `None` if it
/// does not resize.
pub(crate) type Resizing = Result<Option<NonZeroU32>, CallError>;

/// What a resize's end says about the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// It runs at this capacity now.
    Took(NonZeroU32),
    /// It does not resize, and never will: asked no more.
    DoesNotResize,
    /// Nothing learned (no answer in time, a connection lost after the node
    /// had answered before): asked again later.
    AskAgain,
}

/// Judges a resize's end; `answered_before`: the node answered a resize
/// earlier, so a lost connection is not the sign of a node that predates
/// `Resize`.
pub(super) fn verdict(done: &Resizing, answered_before: bool) -> Verdict {
    match done {
        Ok(Some(took)) => Verdict::Took(*took),
        Ok(None) => Verdict::DoesNotResize,
        Err(CallError::ConnectionLost { sent: true, .. }) if !answered_before => {
            Verdict::DoesNotResize
        }
        Err(_) => Verdict::AskAgain,
    }
}

/// The pause before asking again a node whose last `unanswered` resizes in
/// a row (at least one) went unanswered: [`RESIZE_RETRY_MS`] doubled for
/// each after the first, at most [`MAX_RESIZE_RETRY_MS`].
pub(super) fn retry_after(unanswered: u32) -> Nanos {
    let doublings = unanswered.saturating_sub(1).min(u64::BITS - 1);
    let ms = RESIZE_RETRY_MS
        .saturating_mul(1 << doublings)
        .min(MAX_RESIZE_RETRY_MS);
    Nanos::from_millis(ms)
}

/// A node taken as one that resizes: the connection to ask it on, and
/// when it may be asked again.
pub(super) struct Resizable {
    client: Arc<TcpClient>,
    /// It answered a resize with a capacity at least once.
    answered: bool,
    /// Resizes in a row that ended without an answer.
    unanswered: u32,
    /// Not asked again before this.
    retry_at: Option<Instant>,
}

impl Resizable {
    pub(super) fn new(client: Arc<TcpClient>) -> Resizable {
        Resizable {
            client,
            answered: false,
            unanswered: 0,
            retry_at: None,
        }
    }
}

/// `capacity` as a resize asks it: at least 1, at most the bound.
pub(super) fn asked(capacity: u32) -> NonZeroU32 {
    NonZeroU32::new(capacity.clamp(1, MAX_CAPACITY_PER_NODE)).unwrap_or(NonZeroU32::MIN)
}

/// Asks `client`'s node for `capacity`, within [`RESIZE_TIMEOUT_MS`].
pub(super) async fn resize(client: &TcpClient, capacity: NonZeroU32) -> Resizing {
    client
        .resize(capacity, Nanos::from_millis(RESIZE_TIMEOUT_MS))
        .await
}

impl Manager {
    /// Starts a resize of every ready node that resizes and whose capacity
    /// is not the pool's, unless one is running for it or its pause after
    /// an unanswered one lasts; forgets nodes that have gone.
    pub(super) fn resize_nodes(&mut self, now: Instant) {
        if self.resizable.is_empty() {
            return;
        }
        let wanted = asked(self.capacity.load(Ordering::SeqCst));
        let nodes = self.registry.capacities();
        self.resizable.retain(|id, _| {
            nodes
                .iter()
                .any(|(n, life, _)| n == id && *life != Life::Gone)
        });
        for (id, life, capacity) in nodes {
            if life != Life::Ready || capacity == wanted.get() || self.resizing.contains(&id) {
                continue;
            }
            let Some(node) = self.resizable.get(&id) else {
                continue;
            };
            if node.retry_at.is_some_and(|at| now < at) {
                continue;
            }
            let client = Arc::clone(&node.client);
            self.resizing.insert(id);
            let reports = self.reports.clone();
            self.rt.spawn(async move {
                let done = resize(&client, wanted).await;
                // The manager has ended (shutdown): nothing to report to.
                let _ = reports.send(Command::Resized(id, done));
            });
        }
        debug_assert!(self.resizing.len() <= super::MAX_POOL_SIZE);
    }

    /// A resize ended (at the handshake too): the capacity the node took is
    /// the one in force; a node that does not resize is asked no more and
    /// counts as 1; one that did not answer is asked again after a pause.
    pub(super) fn resize_done(&mut self, id: NodeId, done: Resizing) {
        self.resizing.remove(&id);
        let now = self.clock.now();
        let Some(node) = self.resizable.get_mut(&id) else {
            return;
        };
        match verdict(&done, node.answered) {
            Verdict::Took(took) => {
                node.answered = true;
                node.unanswered = 0;
                node.retry_at = None;
                self.set_capacity(id, took.get());
            }
            Verdict::DoesNotResize => {
                self.resizable.remove(&id);
                self.set_capacity(id, 1);
            }
            Verdict::AskAgain => {
                node.unanswered = node.unanswered.saturating_add(1);
                node.retry_at = Some(now + retry_after(node.unanswered));
            }
        }
    }

    /// Records `capacity` in force on node `id`, has the provider match
    /// the node's resources to it (a container's CPU quota), and says so if
    /// it changed.
    pub(super) fn set_capacity(&mut self, id: NodeId, capacity: u32) {
        let Some(before) = self.registry.set_capacity(id, capacity) else {
            return;
        };
        // The node serves at its new capacity either way; a quota left as
        // it was only bounds it lower, and the line says why.
        let reason = self
            .provider
            .resize(id, capacity)
            .err()
            .map(|e| format!("its resources were left as they were: {e}"));
        self.announce(
            id,
            Some(Life::Ready),
            Life::Ready,
            reason,
            Some((before, capacity)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost() -> CallError {
        CallError::ConnectionLost {
            sent: true,
            cause: "closed".into(),
        }
    }

    /// Only "it says so" and "the connection closed on the first resize it
    /// was ever asked" mean a node does not resize; a timeout, or a lost
    /// connection to a node that answered before, leaves it resizable.
    #[test]
    fn only_a_refusal_or_a_node_that_predates_resize_is_given_up() {
        let three = NonZeroU32::new(3).expect("3 is not zero");
        assert_eq!(verdict(&Ok(Some(three)), false), Verdict::Took(three));
        assert_eq!(verdict(&Ok(None), true), Verdict::DoesNotResize);
        assert_eq!(verdict(&Err(lost()), false), Verdict::DoesNotResize);
        assert_eq!(verdict(&Err(lost()), true), Verdict::AskAgain);
        let timeout = CallError::DeadlineExceeded {
            elapsed: Nanos::from_millis(RESIZE_TIMEOUT_MS),
            sent: true,
        };
        assert_eq!(verdict(&Err(timeout.clone()), false), Verdict::AskAgain);
        assert_eq!(verdict(&Err(timeout), true), Verdict::AskAgain);
        let full = CallError::TooManyOutstanding { limit: 4 };
        assert_eq!(verdict(&Err(full), false), Verdict::AskAgain);
    }

    /// The pause doubles from `RESIZE_RETRY_MS` and stays at the bound,
    /// however many resizes went unanswered.
    #[test]
    fn the_pause_before_asking_again_doubles_up_to_its_bound() {
        let ms: Vec<u64> = (1..=8)
            .map(|n| retry_after(n).as_nanos() / 1_000_000)
            .collect();
        assert_eq!(
            ms,
            [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
        assert_eq!(
            retry_after(u32::MAX),
            Nanos::from_millis(MAX_RESIZE_RETRY_MS)
        );
        assert_eq!(retry_after(0), Nanos::from_millis(RESIZE_RETRY_MS));
    }
}
