//! The requests of the async path's calls (the HTTP ingress's) that start
//! in one turn of the runtime leave for their node together.
//!
//! Each HTTP request comes on a connection of its own, so unlike an RPC
//! client's frames (one read of the socket, many calls: `WriteBatch`)
//! nothing groups them: written as each call starts, every request to a
//! node cost a system call, and a write on a socket is most of what a
//! call costs the gateway's CPU (the kernel delivers the bytes and wakes
//! the node within it). Here the first call of a turn holds its node
//! client's writes ([`Transport::hold_writes`]) and wakes the releaser,
//! a task that runs after the tasks already woken (the other connections
//! whose requests came in with this one) and writes what they held, once
//! per node. A lone call waits for one task's turn, not for a timer.
//!
//! Invariant: every hold is followed by a wake-up of a live releaser, so
//! nothing is held past the runtime's next turn.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ebb_rpc::service::Transport;
use tokio::sync::Notify;

use crate::registry::NodeClient;

/// The node clients held since the releaser last ran, and its wake-up.
#[derive(Default)]
pub(super) struct TurnWrites {
    /// At most one entry per node (a client is held once a turn), so
    /// bounded by the pool's size.
    held: Mutex<Vec<NodeClient>>,
    release: Notify,
    /// A releaser task runs; cleared when it ends (its runtime shut
    /// down), so that the next hold starts one on the runtime it runs on.
    releaser: Arc<AtomicBool>,
}

impl TurnWrites {
    /// Holds `client`'s writes until the releaser runs. Without a tokio
    /// runtime to run a releaser on, what was held is written at once.
    pub(super) fn hold(self: &Arc<Self>, client: &NodeClient) {
        let first = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            if held.iter().any(|c| Arc::ptr_eq(c, client)) {
                return;
            }
            client.hold_writes();
            held.push(Arc::clone(client));
            held.len() == 1
        };
        if first {
            self.start_releaser();
            self.release.notify_one();
        }
    }

    /// Starts the releaser unless one runs.
    fn start_releaser(self: &Arc<Self>) {
        if self
            .releaser
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let running = Running(Arc::clone(&self.releaser));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(running);
            return self.release_all();
        };
        let this = Arc::clone(self);
        runtime.spawn(async move {
            let _running = running;
            loop {
                this.release.notified().await;
                this.release_all();
            }
        });
    }

    /// Writes what every held client holds, and holds nothing more.
    fn release_all(&self) {
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(PoisonError::into_inner));
        for client in held {
            client.release_writes();
        }
    }
}

/// Clears the releaser's flag when its task ends, however it ends (its
/// runtime dropping it included).
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use bytes::Bytes;
    use ebb_rpc::CallError;
    use ebb_rpc::service::{BoxFuture, CallOptions, MethodInfo};

    use super::*;

    /// Counts holds and releases; carries no calls.
    #[derive(Default)]
    struct Counting {
        holds: AtomicUsize,
        releases: AtomicUsize,
    }

    impl Transport for Counting {
        fn call(
            &self,
            _: &'static MethodInfo,
            _: Bytes,
            _: CallOptions,
        ) -> BoxFuture<'_, Result<Bytes, CallError>> {
            Box::pin(std::future::pending())
        }

        fn hold_writes(&self) {
            self.holds.fetch_add(1, Ordering::SeqCst);
        }

        fn release_writes(&self) {
            self.releases.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counts(c: &Counting) -> (usize, usize) {
        (
            c.holds.load(Ordering::SeqCst),
            c.releases.load(Ordering::SeqCst),
        )
    }

    /// Calls started in one turn hold each node's writes once; the
    /// releaser, run after them, writes each node's once, and the next
    /// turn holds anew. A lone call is released too.
    #[tokio::test(flavor = "current_thread")]
    async fn one_turn_one_release_per_node() {
        let writes = Arc::new(TurnWrites::default());
        let a = Arc::new(Counting::default());
        let b = Arc::new(Counting::default());
        let (na, nb): (NodeClient, NodeClient) = (a.clone(), b.clone());
        writes.hold(&na);
        writes.hold(&na);
        writes.hold(&nb);
        assert_eq!((counts(&a), counts(&b)), ((1, 0), (1, 0)));
        // The releaser runs once the current task lets it; a bounded
        // number of turns, not a timer.
        for _ in 0..8 {
            if counts(&a).1 == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!((counts(&a), counts(&b)), ((1, 1), (1, 1)));
        writes.hold(&na);
        for _ in 0..8 {
            if counts(&a).1 == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!((counts(&a), counts(&b)), ((2, 2), (1, 1)));
    }

    /// A releaser whose runtime shut down is replaced on the next runtime:
    /// a hold there is released as well.
    #[test]
    fn a_new_runtime_gets_a_new_releaser() {
        let writes = Arc::new(TurnWrites::default());
        let a = Arc::new(Counting::default());
        let na: NodeClient = a.clone();
        for round in 1..=2 {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a current-thread runtime builds");
            rt.block_on(async {
                writes.hold(&na);
                for _ in 0..8 {
                    if counts(&a).1 == round {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            });
            assert_eq!(counts(&a), (round, round), "round {round}");
        }
        // Outside a runtime what is held is written at once.
        writes.hold(&na);
        assert_eq!(counts(&a), (3, 3));
    }
}
