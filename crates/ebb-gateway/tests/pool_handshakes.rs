//! The pool manager shakes hands with its nodes concurrently, off its own
//! thread: a node that accepts the connection but never describes itself
//! holds up neither the other nodes' handshakes nor the manager's tick.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::Plain;
use ebb_core::{Nanos, NodeId};
use ebb_gateway::pool::PoolConfig;
use ebb_gateway::{GatewayConfig, Life};
use ebb_node::provider::{NodeEvent, NodeKind, NodeProvider, ProviderError, StartedNode};
use ebb_node::thread::ThreadProvider;

/// Bound on waiting for the healthy node to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// What the stalled node's handshake may take: far beyond
/// `READY_TIMEOUT`, so a manager that waited for it in its tick could not
/// make the healthy node ready in time.
const STALLED_DESCRIBE_MS: u64 = 600_000;

/// Node 1 is a listener nobody accepts on: the kernel completes the
/// gateway's connection, and the handshake then waits for a description
/// that never comes. Every later node is a real thread node, reported
/// ready only once node 1 has been reported, so node 1's handshake is
/// always the first to start.
struct OneStalled {
    stalled: TcpListener,
    real: ThreadProvider<fn() -> Plain>,
    stalled_ready: bool,
    /// Node 1 was asked to stop: it is reported gone next.
    stalled_stopping: bool,
}

impl NodeProvider for OneStalled {
    fn kind(&self) -> NodeKind {
        NodeKind::Thread
    }

    fn expected_start(&self) -> Nanos {
        self.real.expected_start()
    }

    fn start(&mut self, id: NodeId) -> Result<StartedNode, ProviderError> {
        if id == NodeId(1) {
            return Ok(StartedNode {
                id,
                kind: NodeKind::Thread,
                addr: self.stalled.local_addr()?,
            });
        }
        self.real.start(id)
    }

    fn stop(&mut self, id: NodeId) -> Result<(), ProviderError> {
        if id == NodeId(1) {
            self.stalled_stopping = true;
            return Ok(());
        }
        self.real.stop(id)
    }

    fn poll_events(&mut self) -> Vec<NodeEvent> {
        if !self.stalled_ready {
            self.stalled_ready = true;
            return vec![NodeEvent::Ready(NodeId(1))];
        }
        let mut events = self.real.poll_events();
        if std::mem::take(&mut self.stalled_stopping) {
            events.push(NodeEvent::Gone(NodeId(1), "stopped".into()));
        }
        events
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_describes_itself_holds_up_no_other_node() {
    let stalled = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let provider = OneStalled {
        stalled,
        real: ThreadProvider::new((|| Plain) as fn() -> Plain),
        stalled_ready: false,
        stalled_stopping: false,
    };
    let cfg = GatewayConfig {
        pool: PoolConfig {
            initial: 2,
            min: 2,
            max: 2,
            describe_timeout_ms: STALLED_DESCRIBE_MS,
            ..PoolConfig::default()
        },
        ..GatewayConfig::default()
    };
    let (gateway, rx) = common::start_watched(cfg, Box::new(provider), |_| true).await;
    let ready = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        loop {
            let c = rx
                .recv_timeout(READY_TIMEOUT)
                .unwrap_or_else(|_| panic!("node 2 never became ready; changes: {seen:?}"));
            if c.to == Life::Ready {
                return (c, seen);
            }
            seen.push(c);
        }
    })
    .await
    .unwrap();
    let (change, before) = ready;
    assert_eq!(change.id, NodeId(2), "{change:?}, after {before:?}");
    let status = gateway.shared().status();
    let node1 = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == 1)
        .unwrap_or_else(|| panic!("no node 1 in {status}"));
    assert_eq!(
        node1["state"], "booting",
        "node 1's handshake is still waiting for its description: {status}"
    );
    gateway.shutdown().await;
}
