//! The interface every node kind implements.

use ebb_core::{Nanos, NodeId};
use std::net::SocketAddr;

/// How a node is isolated from its neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeKind {
    Thread,
    Process,
    Container,
    Vm,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Thread => "thread",
            NodeKind::Process => "process",
            NodeKind::Container => "container",
            NodeKind::Vm => "vm",
        }
    }
}

/// Where a started node can be reached, once it is ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartedNode {
    pub id: NodeId,
    pub kind: NodeKind,
    /// Its address; where it is learnt only while the node boots (a
    /// container's, from its runner), the port on the unspecified address
    /// until [`NodeProvider::addr`] says more.
    pub addr: SocketAddr,
}

/// A change a provider reports about a node it started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    /// The node accepts calls at its address.
    Ready(NodeId),
    /// The node ended (exited, crashed, was stopped); its reason in words.
    Gone(NodeId, String),
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("node kind {kind} is not available on this machine: {reason}")]
    Unavailable { kind: &'static str, reason: String },
    #[error("starting a {kind} node failed: {reason}")]
    Start { kind: &'static str, reason: String },
    #[error("no node {0} is known to this provider")]
    UnknownNode(NodeId),
    #[error("resizing node {id} failed: {reason}")]
    Resize { id: NodeId, reason: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Starts and stops nodes of one kind.
///
/// `start` returns as soon as the node is launched; readiness arrives later
/// through `poll_events`, so a slow boot never blocks the control loop.
pub trait NodeProvider: Send {
    fn kind(&self) -> NodeKind;

    /// Time from `start` to `Ready` as measured on this machine for this
    /// kind (the autoscaler plans with it). Providers update it as they
    /// observe boots, and report a faster figure once a snapshot exists.
    fn expected_start(&self) -> Nanos;

    fn start(&mut self, id: NodeId) -> Result<StartedNode, ProviderError>;

    /// Where node `id` is reached, for a provider that learns it only while
    /// the node boots (a container's address comes from its runner once the
    /// network is up): known by the time the node is reported `Ready`.
    /// `None`: the address `start` returned holds.
    fn addr(&self, id: NodeId) -> Option<SocketAddr> {
        let _ = id;
        None
    }

    /// Asks the node to stop; `Gone` follows through `poll_events`.
    fn stop(&mut self, id: NodeId) -> Result<(), ProviderError>;

    /// Drains the events that happened since the last call.
    fn poll_events(&mut self) -> Vec<NodeEvent>;

    /// Scale up: node `id` now runs `capacity` blocking calls at once (the
    /// gateway resized its worker threads). A provider that bounds a node's
    /// resources grows or shrinks them to match (a container's CPU quota
    /// becomes `capacity` × its `cpus`); the others have nothing to do.
    fn resize(&mut self, id: NodeId, capacity: u32) -> Result<(), ProviderError> {
        let _ = (id, capacity);
        Ok(())
    }
}
