//! The gateway's side of the manager thread: setting the target by hand
//! and shutting down, over a channel the manager also hears its own
//! handshakes on.
//!
//! `POST /pool` reaches `set_target` once per request, so the channel it
//! feeds is bounded by coalescing: at most one `Wake` waits at a time
//! (`wake_pending`), however many targets were set while the manager was
//! busy starting a node. The manager clears the flag before it reads the
//! target, so the last target set is always acted on.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
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
    /// A node answered a resize (or did not, in time).
    Resized(NodeId, super::capacity::Resizing),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    #[error("target {target} is outside the pool's bounds min = {min}, max = {max}")]
    OutOfBounds {
        target: usize,
        min: usize,
        max: usize,
    },
    #[error(
        "capacity {capacity} is outside 1..={max} (pool.max_capacity_per_node; 1 = scale out only)"
    )]
    CapacityOutOfBounds { capacity: u32, max: u32 },
    #[error("the pool manager has stopped")]
    Stopped,
}

/// Talks to the pool manager thread.
pub struct PoolHandle {
    pub(super) tx: mpsc::Sender<Command>,
    pub(super) target: Arc<AtomicUsize>,
    /// The capacity every ready node is to have (set by hand or by the
    /// autoscaler; the manager resizes the nodes to it).
    pub(super) capacity: Arc<AtomicU32>,
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

    /// The capacity per node aimed at; what is in force is each node's.
    pub fn capacity(&self) -> u32 {
        self.capacity.load(Ordering::SeqCst)
    }

    /// Sets every node's capacity by hand, within
    /// `1..=max_capacity_per_node`; the manager resizes the ready nodes at
    /// once (an autoscaler that decides capacities overrides it at its next
    /// decision, as it does a hand-set target).
    pub fn set_capacity(&self, capacity: u32) -> Result<u32, PoolError> {
        self.check_capacity(capacity)?;
        self.capacity.store(capacity, Ordering::SeqCst);
        self.wake()?;
        Ok(capacity)
    }

    /// Sets the target and, if given, the capacity, both checked before
    /// either changes.
    pub fn set_pool(&self, target: usize, capacity: Option<u32>) -> Result<usize, PoolError> {
        if let Some(c) = capacity {
            self.check_capacity(c)?;
        }
        self.check_target(target)?;
        if let Some(c) = capacity {
            self.capacity.store(c, Ordering::SeqCst);
        }
        self.set_target(target)
    }

    fn check_capacity(&self, capacity: u32) -> Result<(), PoolError> {
        let max = self.cfg.max_capacity_per_node;
        if capacity == 0 || capacity > max {
            return Err(PoolError::CapacityOutOfBounds { capacity, max });
        }
        Ok(())
    }

    fn check_target(&self, target: usize) -> Result<(), PoolError> {
        let (min, max) = (self.cfg.min, self.cfg.max);
        if target < min || target > max {
            return Err(PoolError::OutOfBounds { target, min, max });
        }
        Ok(())
    }

    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    pub fn kind(&self) -> NodeKind {
        self.kind
    }

    /// Sets the pool size by hand; the next tick starts or drains nodes.
    pub fn set_target(&self, target: usize) -> Result<usize, PoolError> {
        self.check_target(target)?;
        self.target.store(target, Ordering::SeqCst);
        self.wake()?;
        Ok(target)
    }

    /// Queues a `Wake` unless one waits already.
    fn wake(&self) -> Result<(), PoolError> {
        if !self.wake_pending.swap(true, Ordering::SeqCst) {
            self.tx
                .send(Command::Wake)
                .map_err(|_| PoolError::Stopped)?;
        }
        Ok(())
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
            capacity: Arc::new(AtomicU32::new(1)),
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
