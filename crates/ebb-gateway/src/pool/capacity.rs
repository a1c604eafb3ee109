//! Scale up: each ready node's capacity (the blocking calls it runs at
//! once, its worker threads) brought to the pool's, over the connection the
//! gateway already holds to it.
//!
//! A node is asked first at its handshake, before any call goes to it: a
//! node built before `Resize` closes the connection on it, which then costs
//! no call. Only a node that answered with a capacity is asked again; one
//! that did not (it does not resize, or predates it) keeps capacity 1, and
//! its calls go on as before. Every resize is a task on the gateway's
//! runtime, like a handshake, reporting back through the manager's command
//! channel, so neither the request path nor the tick waits for a node, and
//! at most one per node runs at a time.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ebb_core::{Nanos, NodeId};
use ebb_rpc::CallError;
use ebb_rpc::transport::TcpClient;

use super::handle::Command;
use super::manager::Manager;
use super::{MAX_CAPACITY_PER_NODE, RESIZE_TIMEOUT_MS};
use crate::registry::Life;

/// How a resize asked of a node ended: the capacity it took, `None` if it
/// does not resize.
pub(crate) type Resizing = Result<Option<NonZeroU32>, CallError>;

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
    /// is not the pool's, unless one is running for it; forgets nodes that
    /// have gone.
    pub(super) fn resize_nodes(&mut self) {
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
            let Some(client) = self.resizable.get(&id).map(Arc::clone) else {
                continue;
            };
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

    /// A resize ended: the capacity the node took is the one in force. A
    /// node that says it does not resize is asked no more and counts as 1;
    /// one that did not answer is asked again at a later tick.
    pub(super) fn resize_done(&mut self, id: NodeId, done: Resizing) {
        self.resizing.remove(&id);
        match done {
            Ok(Some(took)) => self.set_capacity(id, took.get()),
            Ok(None) => {
                self.resizable.remove(&id);
                self.set_capacity(id, 1);
            }
            Err(_) => {}
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
