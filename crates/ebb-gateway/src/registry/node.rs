//! What the registry keeps about each node, and how `/status` shows it.

use std::net::SocketAddr;
use std::sync::Arc;

use ebb_core::{Instant, Nanos, NodeId};
use ebb_node::provider::NodeKind;
use ebb_policy::balance::ewma::PeakEwma;
use tokio::sync::watch;

use super::NodeClient;

/// A node's place in its life, as `/status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Life {
    Booting,
    Ready,
    Draining,
    Gone,
}

impl Life {
    pub fn as_str(self) -> &'static str {
        match self {
            Life::Booting => "booting",
            Life::Ready => "ready",
            Life::Draining => "draining",
            Life::Gone => "gone",
        }
    }
}

/// Everything the gateway keeps about one node beside its [`NodeView`].
#[derive(Clone)]
pub struct NodeMeta {
    pub id: NodeId,
    pub kind: NodeKind,
    pub addr: SocketAddr,
    pub life: Life,
    pub started_at: Instant,
    /// Wall-clock start, milliseconds since the Unix epoch (for `/status`).
    pub started_unix_ms: u64,
    /// Set once the handshake succeeded.
    pub(super) client: Option<NodeClient>,
    /// Flips to true when the node is gone; in-flight calls on a transport
    /// that cannot abandon them at once watch it.
    pub(super) gone: Arc<watch::Sender<bool>>,
    pub(super) ewma: PeakEwma,
    /// Ended with the reason, when gone.
    pub reason: Option<String>,
    /// Calls that failed in a way that suggests the node is dead.
    pub suspect: bool,
    /// The service time the node last reported measuring itself.
    pub(super) reported_service_time: Option<Nanos>,
    /// Blocking calls the node runs at once, as it last said (1 until it
    /// answers a resize).
    pub(super) capacity: u32,
}

/// A node just started, as the pool manager registers it.
pub struct NewNode {
    pub id: NodeId,
    pub kind: NodeKind,
    pub addr: SocketAddr,
    pub cost_per_sec_micros: u64,
    pub started_unix_ms: u64,
    /// How long this kind takes to boot, as last measured.
    pub expected_boot: Nanos,
}

/// A node as `/status` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeStatus {
    pub id: u32,
    pub kind: &'static str,
    pub address: String,
    pub state: Life,
    pub in_flight: u32,
    pub reported_queue: u32,
    /// The service time the node last reported measuring itself (busy time
    /// per completed call): what admission judges its capacity by.
    pub reported_service_time_ms: Option<f64>,
    /// Blocking calls it runs at once (its worker threads), as it last
    /// said: scale up raises it.
    pub capacity: u32,
    pub ewma_latency_ms: f64,
    pub cost_per_sec_micros: u64,
    pub started_at_unix_ms: u64,
    /// Out of rotation for failing too often (it is probed when that ends).
    pub ejected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
