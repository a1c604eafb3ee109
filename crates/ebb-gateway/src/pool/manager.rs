//! The manager thread's loop and the node lifecycle it drives: provider
//! events in, dead and late nodes out, drained nodes stopped, a pause
//! between ticks that grows while the pool is quiet.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use ebb_core::{Instant, Nanos, NodeId};
use ebb_node::provider::{NodeEvent, NodeProvider};
use ebb_rpc::transport::Credentials;

use super::handle::Command;
use super::{MAX_IDLE_TICK_MS, MAX_START_BACKOFF_MS, NodeChange, OnChange, PoolConfig, Scaler};
use crate::clock::Clock;
use crate::decisions::DecisionLog;
use crate::metrics::Metrics;
use crate::registry::{Life, Registry};
use crate::service::ServiceCell;

/// The pause before the next tick: `tick` while there is work, else twice
/// the last one, up to `MAX_IDLE_TICK_MS` (never below `tick`).
pub(super) fn next_wait(last: Duration, tick: Duration, busy: bool) -> Duration {
    let idle_max = tick.max(Duration::from_millis(MAX_IDLE_TICK_MS));
    if busy {
        tick
    } else {
        last.saturating_mul(2).clamp(tick, idle_max)
    }
}

/// Everything the manager thread owns.
pub(super) struct Manager {
    pub(super) provider: Box<dyn NodeProvider>,
    pub(super) registry: Registry,
    pub(super) clock: Clock,
    pub(super) rt: tokio::runtime::Handle,
    pub(super) cfg: PoolConfig,
    pub(super) target: Arc<AtomicUsize>,
    /// The capacity every ready node is to have (shared with the handle).
    pub(super) capacity: Arc<AtomicU32>,
    /// Nodes taken as ones that resize, with the connection to ask them
    /// on; a node that does not resize is not here and keeps capacity 1.
    pub(super) resizable: HashMap<NodeId, super::capacity::Resizable>,
    /// Of those, the ones with a resize on the runtime (one per node).
    pub(super) resizing: HashSet<NodeId>,
    /// Shared with the handle: cleared here when a `Wake` is taken, before
    /// the target is read, so a target set after that sends a new one.
    pub(super) wake_pending: Arc<AtomicBool>,
    pub(super) autoscaler: Option<Scaler>,
    pub(super) on_change: OnChange,
    pub(super) service: ServiceCell,
    pub(super) decisions: DecisionLog,
    pub(super) metrics: Metrics,
    pub(super) node_credentials: Credentials,
    pub(super) next_id: u32,
    /// Nodes the provider said are ready but that did not answer the
    /// handshake yet.
    pub(super) awaiting_handshake: HashMap<NodeId, SocketAddr>,
    /// Of those, the ones whose handshake is running on the runtime (at
    /// most `MAX_CONCURRENT_HANDSHAKES`).
    pub(super) handshaking: HashSet<NodeId>,
    /// Where a running handshake reports its end (this manager's own
    /// command channel, so the report wakes it).
    pub(super) reports: mpsc::Sender<Command>,
    pub(super) addrs: HashMap<NodeId, SocketAddr>,
    pub(super) stopping: HashSet<NodeId>,
    pub(super) next_start_at: Instant,
    pub(super) backoff: Nanos,
    pub(super) last_tick: Instant,
}

impl Manager {
    pub(super) fn run(mut self, rx: mpsc::Receiver<Command>) {
        let tick = Duration::from_millis(self.cfg.tick_ms.max(1));
        let mut shutdown_since: Option<Instant> = None;
        let mut wait = tick;
        loop {
            let woken = match rx.recv_timeout(wait) {
                Err(mpsc::RecvTimeoutError::Timeout) => false,
                Ok(Command::Wake) => {
                    self.wake_pending.store(false, Ordering::SeqCst);
                    true
                }
                Ok(Command::Handshake(id, done)) => {
                    self.handshake_done(id, done);
                    true
                }
                Ok(Command::Resized(id, done)) => {
                    self.resize_done(id, done);
                    true
                }
                // The manager holds a sender itself (`reports`), so only
                // the handle's `Shutdown` ends it.
                Ok(Command::Shutdown) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    shutdown_since.get_or_insert(self.clock.now());
                    true
                }
            };
            let now = self.clock.now();
            let changed = self.events(now);
            self.handshakes();
            let died = self.remove_dead(now);
            self.stop_drained();
            self.registry.maintain(now);
            if let Some(since) = shutdown_since {
                self.registry.set_target(0, self.provider.expected_start());
                for (id, life, _) in self.registry.lives() {
                    if matches!(life, Life::Booting | Life::Ready) {
                        self.drain(id, "shutting down");
                    }
                }
                let grace = Nanos::from_millis(self.cfg.shutdown_grace_ms);
                if self.registry.lives().is_empty() || now.saturating_since(since) >= grace {
                    break;
                }
                continue;
            }
            self.autoscale(now);
            self.reconcile(now);
            self.resize_nodes(now);
            let quiet = self.awaiting_handshake.is_empty()
                && self.handshaking.is_empty()
                && self.resizing.is_empty()
                && self.stopping.is_empty()
                && self.registry.quiet(self.target.load(Ordering::SeqCst));
            wait = next_wait(wait, tick, woken || changed || died || !quiet);
        }
        for (id, life, _) in self.registry.lives() {
            self.change(
                id,
                Some(life),
                Life::Gone,
                Some("stopped at shutdown".into()),
            );
            self.registry
                .set_gone(id, "stopped at shutdown", self.clock.now());
        }
        // Dropping the provider stops whatever is left.
    }

    pub(super) fn change(&self, id: NodeId, from: Option<Life>, to: Life, reason: Option<String>) {
        self.announce(id, from, to, reason, None);
    }

    /// Tells the owner (`ebb up`'s line per change) about node `id`: a
    /// state change, or with `capacity` (before, after) a resize.
    pub(super) fn announce(
        &self,
        id: NodeId,
        from: Option<Life>,
        to: Life,
        reason: Option<String>,
        capacity: Option<(u32, u32)>,
    ) {
        let Some(&addr) = self.addrs.get(&id) else {
            return;
        };
        (self.on_change)(&NodeChange {
            id,
            kind: self.provider.kind(),
            addr,
            from,
            to,
            reason,
            capacity,
        });
    }

    /// Whether the provider reported anything.
    pub(super) fn events(&mut self, now: Instant) -> bool {
        let events = self.provider.poll_events();
        let any = !events.is_empty();
        for ev in events {
            match ev {
                NodeEvent::Ready(id) => {
                    let Some(known) = self.addrs.get_mut(&id) else {
                        continue;
                    };
                    // A provider that learns an address while its node
                    // boots (a container's) knows it by now.
                    if let Some(addr) = self.provider.addr(id) {
                        *known = addr;
                        self.registry.set_addr(id, addr);
                    }
                    self.awaiting_handshake.insert(id, *known);
                }
                NodeEvent::Gone(id, reason) => self.gone(id, &reason, now),
            }
        }
        any
    }

    pub(super) fn gone(&mut self, id: NodeId, reason: &str, now: Instant) {
        self.awaiting_handshake.remove(&id);
        let reason = if self.stopping.remove(&id) {
            format!("stopped after draining: {reason}")
        } else {
            reason.to_owned()
        };
        if let Some(was) = self.registry.set_gone(id, &reason, now) {
            if was == Life::Booting {
                self.back_off(now);
            }
            self.change(id, Some(was), Life::Gone, Some(reason));
        }
        self.addrs.remove(&id);
    }

    pub(super) fn back_off(&mut self, now: Instant) {
        self.next_start_at = now + self.backoff;
        let max = Nanos::from_millis(MAX_START_BACKOFF_MS);
        self.backoff = Nanos(self.backoff.as_nanos().saturating_mul(2)).min(max);
    }

    /// Nodes whose calls say they are dead, and nodes that never became
    /// ready, are stopped and gone at once.
    /// Whether any node was removed.
    pub(super) fn remove_dead(&mut self, now: Instant) -> bool {
        let suspects = self.registry.suspects();
        let removed = !suspects.is_empty();
        for id in suspects {
            let _ = self.provider.stop(id);
            self.gone(id, "stopped answering", now);
        }
        let timeout = Nanos::from_millis(self.cfg.boot_timeout_ms);
        let late: Vec<NodeId> = self
            .registry
            .booting_since()
            .into_iter()
            .filter(|&(_, started)| now.saturating_since(started) > timeout)
            .map(|(id, _)| id)
            .collect();
        if late.is_empty() {
            return removed;
        }
        let why = format!(
            "not ready within pool.boot_timeout_ms = {} ms (raise it in the config's [pool] section)",
            self.cfg.boot_timeout_ms
        );
        for id in late {
            let _ = self.provider.stop(id);
            self.gone(id, &why, now);
        }
        true
    }

    pub(super) fn drain(&mut self, id: NodeId, why: &str) {
        let before = self
            .registry
            .lives()
            .into_iter()
            .find(|(n, _, _)| *n == id)
            .map(|(_, l, _)| l);
        if self.registry.set_draining(id) {
            self.awaiting_handshake.remove(&id);
            self.change(id, before, Life::Draining, Some(why.to_owned()));
        }
    }

    pub(super) fn stop_drained(&mut self) {
        for id in self.registry.drained() {
            if self.stopping.insert(id) {
                if let Err(e) = self.provider.stop(id) {
                    // Unknown to the provider: it is gone already.
                    let now = self.clock.now();
                    self.gone(id, &e.to_string(), now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A quiet pool's pause doubles from the tick up to `MAX_IDLE_TICK_MS`
    /// and stays there; any work brings the tick back at once; a tick
    /// configured above the idle bound is kept as it is.
    #[test]
    fn a_quiet_pool_ticks_less_often_and_work_restores_the_tick() {
        let tick = Duration::from_millis(10);
        let mut wait = tick;
        let mut seen = Vec::new();
        for _ in 0..6 {
            wait = next_wait(wait, tick, false);
            seen.push(wait.as_millis());
        }
        assert_eq!(seen, [20, 40, 80, 100, 100, 100]);
        assert_eq!(next_wait(wait, tick, true), tick);
        let slow = Duration::from_millis(500);
        assert_eq!(next_wait(slow, slow, false), slow);
    }
}
