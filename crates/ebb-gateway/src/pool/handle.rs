//! The gateway's side of the manager thread: setting the target by hand
//! and shutting down, over a channel the manager also hears its own
//! handshakes on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use ebb_core::NodeId;
use ebb_node::provider::NodeKind;

use super::PoolConfig;
use super::handshake::Handshake;

pub(super) enum Command {
    /// The target changed: act now rather than at the next tick.
    Wake,
    Shutdown,
    /// A node's handshake ended on the runtime: act on it now.
    Handshake(NodeId, Handshake),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    #[error("target {target} is outside the pool's bounds min = {min}, max = {max}")]
    OutOfBounds {
        target: usize,
        min: usize,
        max: usize,
    },
    #[error("the pool manager has stopped")]
    Stopped,
}

/// Talks to the pool manager thread.
pub struct PoolHandle {
    pub(super) tx: mpsc::Sender<Command>,
    pub(super) target: Arc<AtomicUsize>,
    pub(super) cfg: PoolConfig,
    pub(super) thread: Option<JoinHandle<()>>,
    pub(super) kind: NodeKind,
}

impl PoolHandle {
    pub fn target(&self) -> usize {
        self.target.load(Ordering::SeqCst)
    }

    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    pub fn kind(&self) -> NodeKind {
        self.kind
    }

    /// Sets the pool size by hand; the next tick starts or drains nodes.
    pub fn set_target(&self, target: usize) -> Result<usize, PoolError> {
        let (min, max) = (self.cfg.min, self.cfg.max);
        if target < min || target > max {
            return Err(PoolError::OutOfBounds { target, min, max });
        }
        self.target.store(target, Ordering::SeqCst);
        self.tx
            .send(Command::Wake)
            .map_err(|_| PoolError::Stopped)?;
        Ok(target)
    }

    /// Drains every node, waits for them to end (bounded by the shutdown
    /// grace), and stops the provider. Blocks the calling thread.
    pub fn shutdown(&mut self) {
        let _ = self.tx.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PoolHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
