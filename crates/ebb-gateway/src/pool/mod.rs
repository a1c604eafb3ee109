//! The pool manager: one thread that owns the [`NodeProvider`] and keeps
//! the pool at its target.
//!
//! Every tick it takes the provider's events (ready, gone), shakes hands
//! with nodes that say they are ready (a connection the calls will use),
//! removes nodes that died or stopped answering at once, stops drained
//! nodes, asks the autoscaler for a target, and starts or drains nodes
//! until the live ones (booting + ready) match it. Scale-in drains: the
//! node gets nothing new, finishes what it has, then is stopped, so
//! removing a node fails no request.
//!
//! It runs on its own thread because providers do real work (spawning a
//! process, a container's runner, QEMU) and must not stall the request
//! path. A start returns once the node is launched, not once it is up: a
//! container's address, like any node's readiness, comes later through
//! the provider's events, so a slow boot holds up no other node.

mod capacity;
mod config;
mod handle;
mod handshake;
mod manager;
mod scale;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize};
use std::sync::{Arc, mpsc};

use ebb_core::{Nanos, NodeId};
use ebb_node::provider::{NodeKind, NodeProvider};
use ebb_rpc::transport::Credentials;

use crate::clock::Clock;
use crate::decisions::DecisionLog;
use crate::metrics::Metrics;
use crate::registry::{Life, Registry};
use crate::service::ServiceCell;
use manager::Manager;

pub use config::{
    DESCRIBE_TIMEOUT_MS, MAX_CAPACITY_PER_NODE, MAX_CONCURRENT_HANDSHAKES, MAX_IDLE_TICK_MS,
    MAX_POOL_SIZE, MAX_RESIZE_RETRY_MS, MAX_START_BACKOFF_MS, MAX_STARTS_PER_TICK, PoolConfig,
    RESIZE_RETRY_MS, RESIZE_TIMEOUT_MS, START_BACKOFF_MS,
};
pub use handle::{PoolError, PoolHandle};
pub use scale::Scaler;

/// One node's change of state, or of capacity, as `ebb up` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeChange {
    pub id: NodeId,
    pub kind: NodeKind,
    pub addr: SocketAddr,
    pub from: Option<Life>,
    pub to: Life,
    pub reason: Option<String>,
    /// A ready node's capacity changed (scale up or down in place), from
    /// the first to the second; its life did not (`from` is `to`).
    pub capacity: Option<(u32, u32)>,
}

impl std::fmt::Display for NodeChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node {} ({} {}): ",
            self.id,
            self.kind.as_str(),
            self.addr
        )?;
        if let Some((from, to)) = self.capacity {
            write!(f, "capacity {from} -> {to}")?;
            if let Some(r) = &self.reason {
                write!(f, " ({r})")?;
            }
            return Ok(());
        }
        if let Some(from) = self.from {
            write!(f, "{} -> ", from.as_str())?;
        }
        write!(f, "{}", self.to.as_str())?;
        if let Some(r) = &self.reason {
            write!(f, " ({r})")?;
        }
        Ok(())
    }
}

pub type OnChange = Arc<dyn Fn(&NodeChange) + Send + Sync>;

/// What the manager tells the rest of the gateway: node changes, and the
/// pool's service (which it admits nodes against, and learns from the
/// first node when the gateway was not built with it).
pub struct Hooks {
    pub on_change: OnChange,
    pub service: ServiceCell,
    /// Where each autoscaler decision is recorded, with its signals.
    pub decisions: DecisionLog,
    pub metrics: Metrics,
    /// What the gateway presents to its nodes (a bearer token, TLS): the
    /// nodes of a pool may require them like any server.
    pub node_credentials: Credentials,
}

/// Starts the manager thread. `rt` hosts the node connections.
pub fn spawn(
    provider: Box<dyn NodeProvider>,
    registry: Registry,
    clock: Clock,
    rt: tokio::runtime::Handle,
    cfg: PoolConfig,
    autoscaler: Option<Scaler>,
    hooks: Hooks,
) -> std::io::Result<PoolHandle> {
    let Hooks {
        on_change,
        service,
        decisions,
        metrics,
        node_credentials,
    } = hooks;
    let initial = cfg.initial.clamp(cfg.min, cfg.max.min(MAX_POOL_SIZE));
    let target = Arc::new(AtomicUsize::new(initial));
    let capacity = Arc::new(AtomicU32::new(1));
    let wake_pending = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let kind = provider.kind();
    registry.set_target(initial, provider.expected_start());
    let now = clock.now();
    let manager = Manager {
        provider,
        registry,
        clock,
        rt,
        cfg,
        target: Arc::clone(&target),
        capacity: Arc::clone(&capacity),
        resizable: HashMap::new(),
        resizing: HashSet::new(),
        wake_pending: Arc::clone(&wake_pending),
        autoscaler,
        on_change,
        service,
        decisions,
        metrics,
        node_credentials,
        next_id: 1,
        awaiting_handshake: HashMap::new(),
        handshaking: HashSet::new(),
        reports: tx.clone(),
        addrs: HashMap::new(),
        stopping: HashSet::new(),
        next_start_at: now,
        backoff: Nanos::from_millis(START_BACKOFF_MS),
        last_tick: now,
    };
    let thread = std::thread::Builder::new()
        .name("ebb-pool".into())
        .spawn(move || manager.run(rx))?;
    Ok(PoolHandle {
        tx,
        target,
        capacity,
        wake_pending,
        cfg,
        thread: Some(thread),
        kind,
    })
}
