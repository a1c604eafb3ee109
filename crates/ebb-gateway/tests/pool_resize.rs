//! Scale up survives a slow node: a node whose first `Resize` (the one at
//! its handshake) goes unanswered past the gateway's timeout is still taken
//! as one that resizes, asked again at a later tick, and ends at the pool's
//! capacity.
//!
//! The slow node is a real thread node behind a relay that withholds the
//! first `Resize` frame it carries and passes everything else: the node
//! never sees that one, so it is never answered, whatever the machine's
//! speed. The relay counts what it withheld and passed, so the test shows
//! the timeout path ran.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::Plain;
use ebb_core::{Nanos, NodeId};
use ebb_gateway::pool::PoolConfig;
use ebb_gateway::{GatewayConfig, Life};
use ebb_node::provider::{NodeEvent, NodeKind, NodeProvider, ProviderError, StartedNode};
use ebb_node::thread::ThreadProvider;

/// Bound on waiting for the node to reach the pool's capacity: far past
/// the resize timeout and the pause before asking again, so only a node
/// that is never asked again waits it out.
const RESIZED_TIMEOUT: Duration = Duration::from_secs(60);
/// The capacity the pool is set to.
const CAPACITY: u32 = 3;
/// `kind` of a `Resize` frame (`docs/wire.md`).
const KIND_RESIZE: u8 = 8;
/// `kind` of a `Resized` frame.
const KIND_RESIZED: u8 = 9;
/// Bytes of a frame's length prefix; the kind is the second byte after it.
const PREFIX_BYTES: usize = 4;

/// What the relay did with the frames it carried.
#[derive(Default)]
struct Relayed {
    resizes_withheld: AtomicUsize,
    resizes_passed: AtomicUsize,
    resized_answers: AtomicUsize,
}

/// Copies frames from `from` to `to`, one at a time; `pass` says whether
/// a frame of a kind goes through.
fn relay_frames(mut from: TcpStream, mut to: TcpStream, pass: impl Fn(u8) -> bool) {
    let mut prefix = [0u8; PREFIX_BYTES];
    while from.read_exact(&mut prefix).is_ok() {
        let len = u32::from_le_bytes(prefix) as usize;
        let mut body = vec![0u8; len];
        if from.read_exact(&mut body).is_err() {
            break;
        }
        let kind = body.get(1).copied().unwrap_or(0);
        if pass(kind) && (to.write_all(&prefix).is_err() || to.write_all(&body).is_err()) {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Listens on loopback and relays each connection to `node`, withholding
/// the first `Resize` any of them carries.
fn relay(node: SocketAddr, relayed: Arc<Relayed>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for gateway in listener.incoming() {
            let Ok(gateway) = gateway else { return };
            let Ok(upstream) = TcpStream::connect(node) else {
                return;
            };
            let (g, u) = (gateway.try_clone().unwrap(), upstream.try_clone().unwrap());
            let up = Arc::clone(&relayed);
            std::thread::spawn(move || {
                relay_frames(g, u, |kind| {
                    if kind != KIND_RESIZE {
                        return true;
                    }
                    let first = up
                        .resizes_withheld
                        .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok();
                    if !first {
                        up.resizes_passed.fetch_add(1, Ordering::SeqCst);
                    }
                    !first
                });
            });
            let down = Arc::clone(&relayed);
            std::thread::spawn(move || {
                relay_frames(upstream, gateway, |kind| {
                    if kind == KIND_RESIZED {
                        down.resized_answers.fetch_add(1, Ordering::SeqCst);
                    }
                    true
                });
            });
        }
    });
    Ok(addr)
}

/// Thread nodes reached through the relay.
struct ThroughRelay {
    real: ThreadProvider<fn() -> Plain>,
    relayed: Arc<Relayed>,
}

impl NodeProvider for ThroughRelay {
    fn kind(&self) -> NodeKind {
        NodeKind::Thread
    }

    fn expected_start(&self) -> Nanos {
        self.real.expected_start()
    }

    fn start(&mut self, id: NodeId) -> Result<StartedNode, ProviderError> {
        let started = self.real.start(id)?;
        let addr = relay(started.addr, Arc::clone(&self.relayed))?;
        Ok(StartedNode { addr, ..started })
    }

    fn stop(&mut self, id: NodeId) -> Result<(), ProviderError> {
        self.real.stop(id)
    }

    fn poll_events(&mut self) -> Vec<NodeEvent> {
        self.real.poll_events()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_first_resize_went_unanswered_still_reaches_the_pools_capacity() {
    let relayed = Arc::new(Relayed::default());
    let provider = ThroughRelay {
        real: ThreadProvider::new((|| Plain) as fn() -> Plain),
        relayed: Arc::clone(&relayed),
    };
    let cfg = GatewayConfig {
        pool: PoolConfig {
            initial: 1,
            min: 1,
            max: 1,
            max_capacity_per_node: CAPACITY,
            ..PoolConfig::default()
        },
        ..GatewayConfig::default()
    };
    let (gateway, rx) = common::start_watched(cfg, Box::new(provider), |_| true).await;
    // Whether the handshake's resize asked for this or for 1, it is the one
    // withheld: only a later resize can bring the node to this capacity.
    gateway.shared().set_capacity(CAPACITY).unwrap();
    let changes = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        loop {
            let Ok(c) = rx.recv_timeout(RESIZED_TIMEOUT) else {
                return Err(seen);
            };
            let done = c.capacity.is_some_and(|(_, to)| to == CAPACITY);
            seen.push(c);
            if done {
                return Ok(seen);
            }
        }
    })
    .await
    .unwrap();
    let withheld = relayed.resizes_withheld.load(Ordering::SeqCst);
    let passed = relayed.resizes_passed.load(Ordering::SeqCst);
    let answers = relayed.resized_answers.load(Ordering::SeqCst);
    let changes = changes.unwrap_or_else(|seen| {
        panic!(
            "the node never reached capacity {CAPACITY} ({withheld} resize withheld, \
             {passed} passed, {answers} answered); changes: {seen:?}"
        )
    });
    assert_eq!(withheld, 1, "the first resize was withheld: {changes:?}");
    assert!(
        passed >= 1 && answers >= 1,
        "a later resize reached the node and was answered ({passed} passed, {answers} answers)"
    );
    let ready_at = changes
        .iter()
        .position(|c| c.to == Life::Ready && c.capacity.is_none());
    assert!(
        ready_at.is_some(),
        "the node became ready first: {changes:?}"
    );
    let status = gateway.shared().status();
    let node = &status["nodes"].as_array().unwrap()[0];
    assert_eq!(
        (node["state"].as_str(), node["capacity"].as_u64()),
        (Some("ready"), Some(u64::from(CAPACITY))),
        "{status}"
    );
    gateway.shutdown().await;
}
