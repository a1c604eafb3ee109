//! The gateway's side of the manager thread: setting the target by hand
//! and shutting down, over a channel the manager also hears its own
//! handshakes on.
//!
//! `POST /pool` reaches `set_target` once per request, so the channel it
//! feeds is bounded by coalescing: at most one `Wake` waits at a time
//! (`wake_pending`), however many targets were set while the manager was
//! busy starting a node. The manager clears the flag before it reads the
//! target, so the last target set is always acted on.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// A `Wake` is queued and not yet taken by the manager.
    pub(super) wake_pending: Arc<AtomicBool>,
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
        if !self.wake_pending.swap(true, Ordering::SeqCst) {
            self.tx
                .send(Command::Wake)
                .map_err(|_| PoolError::Stopped)?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> (PoolHandle, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel();
        let cfg = PoolConfig {
            min: 1,
            max: 8,
            ..PoolConfig::default()
        };
        let h = PoolHandle {
            tx,
            target: Arc::new(AtomicUsize::new(1)),
            wake_pending: Arc::new(AtomicBool::new(false)),
            cfg,
            thread: None,
            kind: NodeKind::Thread,
        };
        (h, rx)
    }

    fn wakes(rx: &mpsc::Receiver<Command>) -> usize {
        rx.try_iter().filter(|c| matches!(c, Command::Wake)).count()
    }

    /// Many targets set while the manager is busy queue one `Wake`, not
    /// one each; once the manager took it, the next target queues another,
    /// and the target read is always the last one set.
    #[test]
    fn targets_set_while_the_manager_is_busy_queue_one_wake() {
        let (h, rx) = handle();
        for i in 0..10_000 {
            h.set_target(1 + i % 8).expect("within bounds");
        }
        h.set_target(5).expect("within bounds");
        assert_eq!(wakes(&rx), 1, "one wake for 10 001 targets");
        assert_eq!(h.target(), 5);
        // The manager takes the wake: it clears the flag, then reads.
        h.wake_pending.store(false, Ordering::SeqCst);
        h.set_target(3).expect("within bounds");
        assert_eq!(
            wakes(&rx),
            1,
            "a target after the wake was taken wakes again"
        );
        assert_eq!(h.target(), 3);
        assert_eq!(
            h.set_target(9),
            Err(PoolError::OutOfBounds {
                target: 9,
                min: 1,
                max: 8
            })
        );
        assert_eq!(wakes(&rx), 0, "a refused target wakes nobody");
    }
}
