//! The handshake with a node that says it is ready: connect (the
//! connection its calls will use), `Describe`, and where the pool scales
//! up, a first `Resize` to the pool's capacity (before any call goes to the
//! node, see `capacity.rs`), on the gateway's runtime so a slow node holds
//! up neither the manager's tick nor other nodes.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use ebb_core::{Nanos, NodeId};
use ebb_rpc::transport::{Credentials, TcpClient, TcpClientConfig};

use super::capacity;
use super::handle::Command;
use super::manager::Manager;
use super::{MAX_CONCURRENT_HANDSHAKES, START_BACKOFF_MS};
use crate::registry::Life;

/// How a handshake with a node that said it is ready ended.
pub(super) enum Handshake {
    /// Connected (the connection its calls will use) and described, with
    /// how the first resize ended if the node was asked (judged as any
    /// later one is, `capacity.rs`).
    Described(
        TcpClient,
        ebb_rpc::service::ServiceDescription,
        Option<capacity::Resizing>,
    ),
    /// The node refuses what the gateway presents: it would refuse every
    /// call, so trying again cannot help.
    Unauthorized(String),
    /// Not reachable or no description in time: tried again later.
    Failed,
}

/// Connects to a node and asks what it serves.
pub(super) async fn handshake(
    addr: SocketAddr,
    credentials: Credentials,
    describe: Nanos,
    capacity: Option<NonZeroU32>,
) -> Handshake {
    let connected =
        TcpClient::connect_as(&addr.to_string(), TcpClientConfig::default(), credentials).await;
    let Ok(client) = connected else {
        return Handshake::Failed;
    };
    match client.describe(describe).await {
        Ok(d) => {
            // The node serves whatever the answer: at capacity 1 until one
            // says otherwise.
            let resized = match capacity {
                Some(c) => Some(capacity::resize(&client, c).await),
                None => None,
            };
            Handshake::Described(client, d, resized)
        }
        Err(ebb_rpc::CallError::Refused {
            reason: ebb_rpc::wire::Refusal::Unauthorized,
            message,
        }) => Handshake::Unauthorized(message),
        Err(_) => Handshake::Failed,
    }
}

impl Manager {
    /// Starts a handshake (connect, then `Describe`) on the runtime with
    /// each node that says it is ready and has none running, up to
    /// `MAX_CONCURRENT_HANDSHAKES` at once; [`Manager::handshake_done`]
    /// acts on each as it ends. The connection is the one its calls will
    /// use, so a node that cannot be reached never gets work.
    pub(super) fn handshakes(&mut self) {
        let room = MAX_CONCURRENT_HANDSHAKES.saturating_sub(self.handshaking.len());
        let start: Vec<(NodeId, SocketAddr)> = self
            .awaiting_handshake
            .iter()
            .filter(|(id, _)| !self.handshaking.contains(id))
            .map(|(&id, &addr)| (id, addr))
            .take(room)
            .collect();
        let describe = Nanos::from_millis(self.cfg.describe_timeout_ms);
        // Nodes are asked to resize only where the pool scales up.
        let capacity = (self.cfg.max_capacity_per_node > 1)
            .then(|| capacity::asked(self.capacity.load(std::sync::atomic::Ordering::SeqCst)));
        for (id, addr) in start {
            self.handshaking.insert(id);
            let reports = self.reports.clone();
            let credentials = self.node_credentials.clone();
            self.rt.spawn(async move {
                let done = handshake(addr, credentials, describe, capacity).await;
                // The manager has ended (shutdown): the connection closes.
                let _ = reports.send(Command::Handshake(id, done));
            });
        }
        debug_assert!(self.handshaking.len() <= MAX_CONCURRENT_HANDSHAKES);
    }

    /// A handshake ended: the node becomes ready, is stopped (it refused
    /// the gateway's credentials, or its service does not fit the pool's),
    /// or waits for another try. A node that went away or began draining
    /// meanwhile is left alone, its connection dropped.
    pub(super) fn handshake_done(&mut self, id: NodeId, done: Handshake) {
        self.handshaking.remove(&id);
        if !self.awaiting_handshake.contains_key(&id) {
            return;
        }
        let now = self.clock.now();
        let (client, description, resized) = match done {
            Handshake::Described(client, description, resized) => (client, description, resized),
            Handshake::Unauthorized(message) => {
                self.awaiting_handshake.remove(&id);
                let _ = self.provider.stop(id);
                self.back_off(now);
                self.gone(
                    id,
                    &format!("refused the gateway's credentials: {message}"),
                    now,
                );
                return;
            }
            Handshake::Failed => return,
        };
        self.awaiting_handshake.remove(&id);
        if let Err(why) = self.service.admit(description) {
            let _ = self.provider.stop(id);
            self.back_off(now);
            self.gone(id, &format!("refused at the handshake: {why}"), now);
            return;
        }
        let client = Arc::new(client);
        if self.registry.set_ready(id, Arc::clone(&client) as _, now) {
            self.backoff = Nanos::from_millis(START_BACKOFF_MS);
            self.change(id, Some(Life::Booting), Life::Ready, None);
            if let Some(resized) = resized {
                self.resizable.insert(id, capacity::Resizable::new(client));
                self.resize_done(id, resized);
            }
        }
    }
}
