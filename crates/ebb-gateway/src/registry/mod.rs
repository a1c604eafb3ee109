//! The node registry and the dispatcher's state: which nodes exist, in what
//! state, what each has in flight, and the requests held for want of a node.
//!
//! The pool manager writes node states; callers on the request path read
//! them through [`Registry::acquire`] and [`Registry::release`]. Everything
//! sits behind one mutex held for a few hundred nanoseconds per request, so
//! the balancer sees one consistent [`NodeView`] slice. The balancer is
//! whatever `ebb_policy::balance::parse` made of the configured spec: this
//! module moves requests, it decides nothing.

mod held;
mod inner;
mod node;
mod request;
mod slot;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use ebb_core::{Instant, Nanos, NodeId, Rng};
use ebb_policy::admission::AdmissionConfig;
use ebb_policy::balance::ewma::PeakEwma;
use ebb_policy::balance::{Balancer, NodeState, NodeView};
use ebb_policy::outlier::{OutlierConfig, Outliers};
use ebb_policy::retry::{RetryBudget, RetryBudgetConfig};
use ebb_rpc::service::Transport;
use tokio::sync::watch;

use crate::signals::Counters;
use held::{HeldRequest, Parked, Waiter};

pub use held::{HeldSink, ParkedCall};
pub use node::{Life, NewNode, NodeMeta, NodeStatus};
pub use slot::{Acquired, Ended, Slot};

/// How the gateway reaches one node: the `TcpClient` the handshake opened,
/// or any other transport (tests use in-process ones).
pub type NodeClient = Arc<dyn Transport>;

/// Gone nodes kept for `/status`, newest last.
pub const MAX_GONE_KEPT: usize = 32;
/// Time constant of the per-node peak-EWMA latency.
pub const LATENCY_TAU: Nanos = Nanos::from_secs(1);
/// Weight of a new sample in the service-time average (1/16).
const SERVICE_TIME_WEIGHT: f64 = 1.0 / 16.0;
/// Calls the gateway has in flight on one node at most, when not set: the
/// bound an ebb node's server puts on one connection (the gateway's
/// connection to it). Past it the node would refuse the call unrun, and
/// the retry would spend the retry budget; the gateway holds it instead.
pub const DEFAULT_MAX_IN_FLIGHT_PER_NODE: u32 = ebb_rpc::semantics::MAX_IN_FLIGHT_PER_CONN as u32;
/// Held requests a node pulling work looks past when they may not go to
/// it (they failed there), before it gives up until the next event.
pub const MAX_HELD_SKIPPED: usize = 64;

/// Why a gone node's calls ended, as their callers are told.
pub fn gone_cause(node: NodeId) -> String {
    format!("node {node} is gone")
}

struct Inner {
    views: Vec<NodeView>,
    meta: Vec<NodeMeta>,
    gone: VecDeque<NodeMeta>,
    balancer: Box<dyn Balancer + Send>,
    rng: Rng,
    held: VecDeque<HeldRequest>,
    held_bytes: usize,
    /// The next held request's place number ([`HeldRequest::seq`]).
    held_seq: u64,
    /// The calls parked in `held`: their deadlines, their timer, their
    /// sink.
    parked: Parked,
    admission: AdmissionConfig,
    /// Mean service time as the gateway times its calls: each latency
    /// divided by the calls it found ahead on its node, plus one.
    service_time: f64,
    counters: Counters,
    expected_boot: Nanos,
    /// The pool's target size: with no node up but some wanted, capacity
    /// is on its way.
    target: usize,
    /// Which nodes fail too often to get work for now.
    outliers: Outliers,
    /// Calls in flight on one node at most; more wait in the held FIFO.
    max_in_flight_per_node: u32,
    /// Retries (and hedges) allowed against recent requests: a new
    /// request's deposit is made under the lock its first `acquire` takes
    /// anyway, rather than under a lock of its own.
    budget: RetryBudget,
}

/// Shared by the pool manager, the ingress paths and the admin API.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
}

impl Registry {
    pub fn new(
        balancer: Box<dyn Balancer + Send>,
        admission: AdmissionConfig,
        seed: u64,
    ) -> Registry {
        Registry {
            inner: Arc::new(Mutex::new(Inner {
                views: Vec::new(),
                meta: Vec::new(),
                gone: VecDeque::new(),
                balancer,
                rng: Rng::seeded(seed),
                held: VecDeque::new(),
                held_bytes: 0,
                held_seq: 0,
                parked: Parked::default(),
                admission,
                service_time: 0.0,
                counters: Counters::default(),
                expected_boot: Nanos::ZERO,
                target: 0,
                outliers: Outliers::new(OutlierConfig::default()),
                max_in_flight_per_node: DEFAULT_MAX_IN_FLIGHT_PER_NODE,
                budget: RetryBudget::new(RetryBudgetConfig::default()),
            })),
        }
    }

    /// Ejects nodes whose calls keep failing as `cfg` says.
    pub fn with_outliers(self, cfg: OutlierConfig) -> Registry {
        self.lock().outliers = Outliers::new(cfg);
        self
    }

    /// Holds calls at the gateway beyond `limit` in flight on one node (at
    /// least 1): the bound the nodes put on the gateway's connection.
    pub fn with_max_in_flight_per_node(self, limit: u32) -> Registry {
        self.lock().max_in_flight_per_node = limit.max(1);
        self
    }

    /// Bounds retries and hedges by `cfg` from now on (an empty budget).
    pub fn set_retry_budget(&self, cfg: RetryBudgetConfig) {
        self.lock().budget = RetryBudget::new(cfg);
    }

    /// A call on `node` came back from it: `ok` if it was answered, false
    /// if the node failed it (the method panicked, the reply was broken).
    /// Enough failures in a row take the node out of rotation for a while.
    pub fn report(&self, node: NodeId, ok: bool, now: Instant) -> Option<Instant> {
        self.lock().report(node, ok, now)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves `Inner` consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` under the lock, then tells the held sink what `f` left
    /// it: parked calls handed a node, parked calls out of time. Used by
    /// every critical section that moves the held FIFO.
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let (r, out, sink) = {
            let mut g = self.lock();
            let r = f(&mut g);
            if g.parked.out.is_empty() {
                return r;
            }
            let out = std::mem::take(&mut g.parked.out);
            let sink = g.parked.sink.as_ref().and_then(Weak::upgrade);
            (r, out, sink)
        };
        out.deliver(sink);
        r
    }

    /// Where calls parked in the held FIFO ([`Registry::acquire_parked`])
    /// are launched and answered.
    pub fn set_held_sink(&self, sink: Weak<dyn HeldSink>) {
        self.lock().parked.sink = Some(sink);
    }

    /// What wakes the parked calls' timer ([`Registry::expire_parked`])
    /// for a deadline earlier than the one it sleeps until.
    pub fn held_timer_wake(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.lock().parked.wake)
    }

    /// Answers the parked calls whose deadline passed by `now`, through
    /// the sink; the next deadline to call again at, if any is held.
    pub fn expire_parked(&self, now: Instant) -> Option<Instant> {
        self.with(|inner| inner.expire_parked(now))
    }

    pub fn policy_name(&self) -> String {
        self.lock().balancer.name()
    }

    // ---- the pool manager's side ----

    /// A node was started; it takes no work until [`Registry::set_ready`].
    pub fn add_booting(&self, node: NewNode, now: Instant) {
        let NewNode {
            id,
            kind,
            addr,
            cost_per_sec_micros,
            started_unix_ms,
            expected_boot,
        } = node;
        let mut g = self.lock();
        g.expected_boot = expected_boot;
        let mut view = NodeView::ready(id.0);
        view.state = NodeState::Booting;
        view.cost_per_sec_micros = cost_per_sec_micros;
        g.views.push(view);
        g.meta.push(NodeMeta {
            id,
            kind,
            addr,
            life: Life::Booting,
            started_at: now,
            started_unix_ms,
            client: None,
            gone: Arc::new(watch::channel(false).0),
            ewma: PeakEwma::default(),
            reason: None,
            suspect: false,
            reported_service_time: None,
            capacity: 1,
        });
        let inner = &mut *g;
        inner.balancer.on_nodes_changed(&inner.views);
    }

    /// Node `id`'s address, learnt while it booted (a container's): the
    /// one `/status` shows from now on.
    pub fn set_addr(&self, id: NodeId, addr: std::net::SocketAddr) {
        let mut g = self.lock();
        if let Some(i) = g.index(id) {
            g.meta[i].addr = addr;
        }
    }

    /// The handshake succeeded: the node takes work from now on.
    pub fn set_ready(&self, id: NodeId, client: NodeClient, now: Instant) -> bool {
        self.with(|inner| inner.set_ready(id, client, self, now))
    }
}

impl Inner {
    fn set_ready(&mut self, id: NodeId, client: NodeClient, me: &Registry, now: Instant) -> bool {
        let Some(i) = self.index(id) else {
            return false;
        };
        if self.meta[i].life != Life::Booting {
            return false;
        }
        self.meta[i].client = Some(client);
        self.meta[i].life = Life::Ready;
        self.views[i].state = NodeState::Ready;
        let inner = self;
        inner.balancer.on_nodes_changed(&inner.views);
        // A node that turns ready is idle: it may pull held work.
        if inner.balancer.on_idle(&inner.views, i, now) {
            inner.hand_oldest_to(i, me, now);
        }
        inner.drain_held(me, now);
        true
    }
}

impl Registry {
    /// Stops sending the node new work; it finishes what it has.
    pub fn set_draining(&self, id: NodeId) -> bool {
        let mut g = self.lock();
        let Some(i) = g.index(id) else { return false };
        if !matches!(g.meta[i].life, Life::Booting | Life::Ready) {
            return false;
        }
        g.meta[i].life = Life::Draining;
        g.views[i].state = NodeState::Draining;
        let inner = &mut *g;
        inner.balancer.on_nodes_changed(&inner.views);
        true
    }

    /// The node ended: its in-flight calls learn it at once. Its
    /// transport ends the calls it holds (saying which never left); a
    /// call started on it as this happened sees the `gone` flag, set
    /// first, and abandons them itself (`Forwarder::attempt`).
    pub fn set_gone(&self, id: NodeId, reason: &str, now: Instant) -> Option<Life> {
        let (was, client) = self.with(|g| {
            let i = g.index(id)?;
            g.views.remove(i);
            let mut meta = g.meta.remove(i);
            let was = meta.life;
            meta.life = Life::Gone;
            meta.reason = Some(reason.to_owned());
            let client = meta.client.take();
            let _ = meta.gone.send(true);
            g.outliers.forget(id);
            if g.gone.len() == MAX_GONE_KEPT {
                g.gone.pop_front();
            }
            g.gone.push_back(meta);
            g.balancer.on_nodes_changed(&g.views);
            g.drain_held(self, now);
            Some((was, client))
        })?;
        // Outside the lock: the transport hands each caller its outcome.
        if let Some(client) = client {
            client.abandon_calls(&gone_cause(id));
        }
        Some(was)
    }

    /// The pool manager's current target and measured boot time.
    pub fn set_target(&self, target: usize, expected_boot: Nanos) {
        let mut g = self.lock();
        g.target = target;
        g.expected_boot = expected_boot;
    }

    /// Nodes that are draining and have nothing left in flight.
    pub fn drained(&self) -> Vec<NodeId> {
        let g = self.lock();
        g.meta
            .iter()
            .zip(&g.views)
            .filter(|(m, v)| m.life == Life::Draining && v.in_flight == 0)
            .map(|(m, _)| m.id)
            .collect()
    }

    /// Nodes whose calls failed in a way that says they are dead.
    pub fn suspects(&self) -> Vec<NodeId> {
        let g = self.lock();
        g.meta.iter().filter(|m| m.suspect).map(|m| m.id).collect()
    }

    /// Nodes by life state, as the pool manager reconciles them.
    pub fn lives(&self) -> Vec<(NodeId, Life, u32)> {
        let g = self.lock();
        g.meta
            .iter()
            .zip(&g.views)
            .map(|(m, v)| (m.id, m.life, v.in_flight))
            .collect()
    }

    /// Nodes with their life and the capacity in force on each.
    pub fn capacities(&self) -> Vec<(NodeId, Life, u32)> {
        let g = self.lock();
        g.meta.iter().map(|m| (m.id, m.life, m.capacity)).collect()
    }

    /// The capacity in force on the ready nodes, as an autoscaler reads
    /// it: the smallest (1 with none ready), so a node that cannot grow
    /// keeps the policy from counting capacity it does not have.
    pub fn capacity_in_force(&self) -> u32 {
        let g = self.lock();
        g.meta
            .iter()
            .filter(|m| m.life == Life::Ready)
            .map(|m| m.capacity)
            .min()
            .unwrap_or(1)
    }

    /// Node `id` now runs `capacity` blocking calls at once; returns the
    /// capacity before if it changed. Admission counts it from now on.
    pub fn set_capacity(&self, id: NodeId, capacity: u32) -> Option<u32> {
        let capacity = capacity.max(1);
        let mut g = self.lock();
        let i = g.index(id)?;
        let before = std::mem::replace(&mut g.meta[i].capacity, capacity);
        (before != capacity).then_some(before)
    }

    /// Drops held requests whose deadline has passed (their callers have
    /// given up) and probes ejected nodes whose time is up. The pool
    /// manager calls it every tick.
    pub fn maintain(&self, now: Instant) {
        self.with(|inner| inner.maintain(self, now));
    }
}

impl Inner {
    fn maintain(&mut self, me: &Registry, now: Instant) {
        let inner = self;
        let mut freed = 0;
        let expired = &mut inner.parked.out.expired;
        // Kept in order, the dead ones taken out whole (a parked call is
        // answered once the lock is released): one pass.
        let before = inner.held.len();
        for h in std::mem::take(&mut inner.held) {
            if h.deadline > now && !h.waiter.is_closed() {
                inner.held.push_back(h);
                continue;
            }
            freed += h.bytes;
            if let Waiter::Parked(call) = h.waiter {
                expired.push(call);
            }
        }
        debug_assert!(inner.held.len() <= before);
        inner.held_bytes -= freed;
        let mut returned = false;
        for i in 0..inner.views.len() {
            // Idle nodes report through their pongs.
            inner.refresh_reported(i);
            let m = &inner.meta[i];
            if m.life == Life::Ready
                && inner.views[i].state == NodeState::Draining
                && !inner.outliers.is_ejected(m.id, now)
            {
                inner.views[i].state = NodeState::Ready;
                returned = true;
            }
        }
        if returned {
            inner.balancer.on_nodes_changed(&inner.views);
            inner.drain_held(me, now);
        }
    }
}

impl Registry {
    /// The counters since the last call, with the current state.
    pub fn tick(&self) -> Counters {
        let mut g = self.lock();
        let inner = &mut *g;
        let mut c = std::mem::take(&mut inner.counters);
        c.held = inner.held.len();
        c.in_flight = inner.views.iter().map(|v| v.in_flight as usize).sum();
        c.service_time = Nanos(inner.service_time as u64);
        debug_assert!(inner.views.len() == inner.meta.len());
        c
    }

    // ---- reading ----

    pub fn status(&self, now: Instant) -> Vec<NodeStatus> {
        let g = self.lock();
        let live = g.meta.iter().zip(g.views.iter().map(Some));
        let gone = g.gone.iter().zip(std::iter::repeat(None));
        live.chain(gone)
            .map(|(m, v)| NodeStatus {
                id: m.id.0,
                kind: m.kind.as_str(),
                address: m.addr.to_string(),
                state: m.life,
                in_flight: v.map_or(0, |v| v.in_flight),
                reported_queue: v.map_or(0, |v| v.reported_queue),
                reported_service_time_ms: m
                    .reported_service_time
                    .map(|s| s.as_nanos() as f64 / 1e6),
                capacity: m.capacity,
                ewma_latency_ms: m.ewma.estimate(now, LATENCY_TAU) / 1e6,
                cost_per_sec_micros: v.map_or(0, |v| v.cost_per_sec_micros),
                started_at_unix_ms: m.started_unix_ms,
                ejected: g.outliers.is_ejected(m.id, now),
                reason: m.reason.clone(),
            })
            .collect()
    }

    /// Booting nodes and when each was started.
    pub fn booting_since(&self) -> Vec<(NodeId, Instant)> {
        let g = self.lock();
        g.meta
            .iter()
            .filter(|m| m.life == Life::Booting)
            .map(|m| (m.id, m.started_at))
            .collect()
    }

    pub fn held(&self) -> (usize, usize) {
        let g = self.lock();
        (g.held.len(), g.held_bytes)
    }

    /// Whether the pool is at rest: `target` nodes, all ready, none with a
    /// call in flight, nothing held (what lets the pool manager tick less
    /// often). One lock, no allocation.
    pub fn quiet(&self, target: usize) -> bool {
        let g = self.lock();
        g.held.is_empty()
            && g.meta.len() == target
            && g.meta.iter().all(|m| m.life == Life::Ready)
            && g.views.iter().all(|v| v.in_flight == 0)
    }
}
