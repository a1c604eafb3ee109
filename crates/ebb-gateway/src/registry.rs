//! The node registry and the dispatcher's state: which nodes exist, in what
//! state, what each has in flight, and the requests held for want of a node.
//!
//! The pool manager writes node states; callers on the request path read
//! them through [`Registry::acquire`] and [`Registry::release`]. Everything
//! sits behind one mutex held for a few hundred nanoseconds per request, so
//! the balancer sees one consistent [`NodeView`] slice. The balancer is
//! whatever `ebb_policy::balance::parse` made of the configured spec: this
//! module moves requests, it decides nothing.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ebb_core::{Instant, Nanos, NodeId, Rng};
use ebb_node::provider::NodeKind;
use ebb_policy::admission::{
    self, AdmissionConfig, Admit, GatewayDelay, Load, NodeLoad, Refusal, ServiceTimeSource,
};
use ebb_policy::balance::ewma::PeakEwma;
use ebb_policy::balance::{Balancer, Choice, NodeState, NodeView, RequestInfo};
use ebb_policy::outlier::{OutlierConfig, Outliers, Verdict};
use ebb_rpc::service::Transport;
use tokio::sync::{oneshot, watch};

use crate::signals::Counters;

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
    client: Option<NodeClient>,
    /// Flips to true when the node is gone; in-flight calls on a transport
    /// that cannot abandon them at once watch it.
    gone: Arc<watch::Sender<bool>>,
    ewma: PeakEwma,
    /// Ended with the reason, when gone.
    pub reason: Option<String>,
    /// Calls that failed in a way that suggests the node is dead.
    pub suspect: bool,
    /// The service time the node last reported measuring itself.
    reported_service_time: Option<Nanos>,
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

/// A node handed to one request: where to send it and how to learn that
/// the node died meanwhile.
pub struct Slot {
    pub node: NodeId,
    pub client: NodeClient,
    pub gone: watch::Receiver<bool>,
    /// Calls the gateway already had in flight on the node when this one
    /// was handed out: 0 means the latency is a clean service-time sample,
    /// n means about n + 1 services (the ones ahead, then this one).
    pub ahead: u32,
    /// Until the request claims the slot, dropping it gives the node's
    /// in-flight count back (a held request whose caller left just as a
    /// node was handed to it).
    unclaimed: Option<(Registry, Instant)>,
}

impl Slot {
    /// The request takes the slot over: from now on it releases the node.
    pub fn claim(&mut self) {
        self.unclaimed = None;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((registry, at)) = self.unclaimed.take() {
            registry.release(self.node, None, 0, at);
        }
    }
}

/// What [`Registry::acquire`] gives back.
pub enum Acquired {
    Now(Slot),
    /// Held in the FIFO; a node will be handed over through the receiver.
    Held(oneshot::Receiver<Slot>),
    Refused {
        why: Refusal,
        retry_after: Nanos,
    },
}

struct HeldRequest {
    tx: oneshot::Sender<Slot>,
    /// When it reached its dispatch decision and was held.
    arrived: Instant,
    bytes: usize,
    deadline: Instant,
    /// Nodes this request must not go to again (it failed there).
    excluded: Vec<NodeId>,
}

struct Inner {
    views: Vec<NodeView>,
    meta: Vec<NodeMeta>,
    gone: VecDeque<NodeMeta>,
    balancer: Box<dyn Balancer + Send>,
    rng: Rng,
    held: VecDeque<HeldRequest>,
    held_bytes: usize,
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
}

/// Shared by the pool manager, the ingress paths and the admin API.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
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
    pub ewma_latency_ms: f64,
    pub cost_per_sec_micros: u64,
    pub started_at_unix_ms: u64,
    /// Out of rotation for failing too often (it is probed when that ends).
    pub ejected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
                admission,
                service_time: 0.0,
                counters: Counters::default(),
                expected_boot: Nanos::ZERO,
                target: 0,
                outliers: Outliers::new(OutlierConfig::default()),
                max_in_flight_per_node: DEFAULT_MAX_IN_FLIGHT_PER_NODE,
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
        });
        let inner = &mut *g;
        inner.balancer.on_nodes_changed(&inner.views);
    }

    /// The handshake succeeded: the node takes work from now on.
    pub fn set_ready(&self, id: NodeId, client: NodeClient, now: Instant) -> bool {
        let mut g = self.lock();
        let Some(i) = g.index(id) else { return false };
        if g.meta[i].life != Life::Booting {
            return false;
        }
        g.meta[i].client = Some(client);
        g.meta[i].life = Life::Ready;
        g.views[i].state = NodeState::Ready;
        let inner = &mut *g;
        inner.balancer.on_nodes_changed(&inner.views);
        // A node that turns ready is idle: it may pull held work.
        if inner.balancer.on_idle(&inner.views, i, now) {
            inner.hand_oldest_to(i, self, now);
        }
        inner.drain_held(self, now);
        true
    }

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
        let (was, client) = {
            let mut g = self.lock();
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
            let inner = &mut *g;
            inner.balancer.on_nodes_changed(&inner.views);
            inner.drain_held(self, now);
            (was, client)
        };
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

    /// Drops held requests whose deadline has passed (their callers have
    /// given up) and probes ejected nodes whose time is up. The pool
    /// manager calls it every tick.
    pub fn maintain(&self, now: Instant) {
        let mut g = self.lock();
        let inner = &mut *g;
        let before = inner.held.len();
        let mut freed = 0;
        inner.held.retain(|h| {
            let keep = h.deadline > now && !h.tx.is_closed();
            if !keep {
                freed += h.bytes;
            }
            keep
        });
        inner.held_bytes -= freed;
        debug_assert!(inner.held.len() <= before);
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
            inner.drain_held(self, now);
        }
    }

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

    // ---- the request path ----

    /// Admission, then a node now, a place in the held FIFO, or a refusal.
    /// `refused_by`: the node that just refused the request unrun, being
    /// full. The request goes to another ready node if there is one;
    /// otherwise it is held until a call ends (that frees room, on the
    /// refusing node too) rather than sent straight back, unless nothing is
    /// in flight anywhere (then no call would end to wake it).
    pub fn acquire(
        &self,
        bytes: usize,
        deadline: Instant,
        now: Instant,
        excluded: &[NodeId],
        first_attempt: bool,
        refused_by: Option<NodeId>,
    ) -> Acquired {
        let mut g = self.lock();
        let inner = &mut *g;
        if first_attempt {
            inner.counters.arrivals += 1;
            // A retry was admitted once already; a new request is refused
            // when the gateway is behind.
            let delay = GatewayDelay {
                arrived: now,
                oldest_held: inner.oldest_held(now),
            };
            if let Admit::Refuse { why, retry_after } =
                admission::admit_delay(&inner.admission, delay, now)
            {
                inner.counters.refusals += 1;
                return Acquired::Refused { why, retry_after };
            }
        }
        let load = inner.load(now);
        let deadline_cfg = AdmissionConfig {
            max_held_requests: usize::MAX,
            max_held_bytes: usize::MAX,
            ..inner.admission
        };
        if let Admit::Refuse { why, retry_after } =
            admission::admit(&deadline_cfg, &load, bytes, deadline, now, false)
        {
            inner.counters.refusals += 1;
            return Acquired::Refused { why, retry_after };
        }
        let req = RequestInfo {
            deadline: Some(deadline),
        };
        let wait_for_room = refused_by.is_some() && inner.views.iter().any(|v| v.in_flight > 0);
        // The balancer's pick, unless the request may not go there (it
        // failed there) or the node is at its bound of calls in flight.
        let mut unusable_pick = false;
        if !wait_for_room {
            match inner.balancer.pick(&inner.views, req, now, &mut inner.rng) {
                Choice::Node(i) if inner.may_take(i, excluded) => {
                    if let Some(slot) = inner.take(i, self, now) {
                        return Acquired::Now(slot);
                    }
                }
                Choice::Node(_) => unusable_pick = true,
                Choice::Hold => {}
            }
        }
        // A retry that the balancer sent back to a node it failed on (or
        // that must not go straight back to the node that refused it), or a
        // request whose node is full, takes the least busy other ready node
        // with room instead; with none it is held.
        if unusable_pick || !excluded.is_empty() || wait_for_room {
            let avoid = refused_by.filter(|_| wait_for_room);
            if let Some(slot) = inner
                .other_node(excluded, avoid)
                .and_then(|i| inner.take(i, self, now))
            {
                return Acquired::Now(slot);
            }
        }
        let queue_cfg = AdmissionConfig {
            deadline_check: false,
            ..inner.admission
        };
        if let Admit::Refuse { why, retry_after } =
            admission::admit(&queue_cfg, &load, bytes, deadline, now, true)
        {
            inner.counters.refusals += 1;
            return Acquired::Refused { why, retry_after };
        }
        let (tx, rx) = oneshot::channel();
        inner.held.push_back(HeldRequest {
            tx,
            arrived: now,
            bytes,
            deadline,
            excluded: excluded.to_vec(),
        });
        inner.held_bytes += bytes;
        Acquired::Held(rx)
    }

    /// A ready node other than `excluded`, now, for a hedge: no admission
    /// check, no place in the held FIFO (a hedge that cannot go at once is
    /// not worth sending). The balancer's pick if it is allowed, else the
    /// least busy other ready node.
    pub fn acquire_other(&self, excluded: &[NodeId], now: Instant) -> Option<Slot> {
        let mut g = self.lock();
        let inner = &mut *g;
        let req = RequestInfo { deadline: None };
        let picked = match inner.balancer.pick(&inner.views, req, now, &mut inner.rng) {
            Choice::Node(i) if inner.may_take(i, excluded) => Some(i),
            _ => inner.other_node(excluded, None),
        };
        picked.and_then(|i| inner.take(i, self, now))
    }

    /// The call sent through `slot` ended; `latency` is set when it was
    /// answered by the node (not cut short by the node's death).
    pub fn release(&self, node: NodeId, latency: Option<Nanos>, ahead: u32, now: Instant) {
        self.finish(node, latency, ahead, None, now);
    }

    /// [`Registry::release`] and [`Registry::report`] under one lock: what
    /// ends every forwarded call. `health` is `Some(ok)` when the outcome
    /// says something about the node's health. True if the node was just
    /// ejected.
    pub fn finish(
        &self,
        node: NodeId,
        latency: Option<Nanos>,
        ahead: u32,
        health: Option<bool>,
        now: Instant,
    ) -> bool {
        let mut g = self.lock();
        let inner = &mut *g;
        let ejected = match health {
            Some(ok) => inner.report(node, ok, now).is_some(),
            None => false,
        };
        inner.counters.completions += 1;
        let Some(i) = inner.index(node) else {
            return ejected;
        };
        debug_assert!(inner.views[i].in_flight > 0);
        inner.views[i].in_flight = inner.views[i].in_flight.saturating_sub(1);
        // The reply carried the node's load; the transport kept it.
        inner.refresh_reported(i);
        if let Some(l) = latency {
            inner.counters.busy = inner.counters.busy.saturating_add(l);
            inner.meta[i].ewma.observe(l, now, LATENCY_TAU);
            inner.views[i].ewma_latency =
                Nanos(inner.meta[i].ewma.estimate(now, LATENCY_TAU) as u64);
            // A call that found n ahead on its node waited for their
            // services and then its own (a node serving one at a time, as
            // admission's estimate assumes): every call is a sample, not
            // only those that were alone, which under load are none.
            let x = l.as_nanos() as f64 / (f64::from(ahead) + 1.0);
            inner.service_time = if inner.service_time == 0.0 {
                x
            } else {
                inner.service_time + (x - inner.service_time) * SERVICE_TIME_WEIGHT
            };
            inner.balancer.on_complete(&inner.views, i, l, now);
        }
        if inner.views[i].in_flight == 0
            && inner.views[i].is_ready()
            && inner.balancer.on_idle(&inner.views, i, now)
        {
            inner.hand_oldest_to(i, self, now);
        }
        inner.drain_held(self, now);
        ejected
    }

    /// A call failed in a way that says the node is dead (unresponsive, or
    /// its connection could not be restored): the pool manager removes it.
    pub fn suspect(&self, node: NodeId) {
        let mut g = self.lock();
        if let Some(i) = g.index(node) {
            g.meta[i].suspect = true;
        }
    }

    /// A request was answered `response` after it arrived.
    pub fn record_response(&self, response: Nanos) {
        let mut g = self.lock();
        g.counters.response_sum = g.counters.response_sum.saturating_add(response);
        g.counters.latencies.push(response);
    }

    pub fn count_retry(&self) {
        self.lock().counters.retries += 1;
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

impl Inner {
    fn index(&self, id: NodeId) -> Option<usize> {
        self.meta.iter().position(|m| m.id == id)
    }

    fn report(&mut self, node: NodeId, ok: bool, now: Instant) -> Option<Instant> {
        if ok {
            self.outliers.on_success(node);
            return None;
        }
        let pool = self.views.len();
        let Verdict::Eject { until } = self.outliers.on_failure(node, pool, now) else {
            return None;
        };
        self.counters.ejections += 1;
        if let Some(i) = self.index(node) {
            if self.meta[i].life == Life::Ready {
                self.views[i].state = NodeState::Draining;
                self.balancer.on_nodes_changed(&self.views);
            }
        }
        Some(until)
    }

    fn load(&self, now: Instant) -> Load {
        let ready = self.views.iter().filter(|v| v.is_ready()).count();
        let booting = self.meta.iter().filter(|m| m.life == Life::Booting);
        let mut capacity_at = booting
            .map(|m| (m.started_at + self.expected_boot).max(now))
            .min();
        if ready == 0 && capacity_at.is_none() && self.target > 0 {
            // A replacement is about to be started.
            capacity_at = Some(now + self.expected_boot);
        }
        // The work on the ready nodes and their service time as the nodes
        // report them: the gateway's own timing (its fallback) includes its
        // own queueing, which would refuse work the nodes could do once the
        // gateway is saturated.
        let nodes = self
            .views
            .iter()
            .zip(&self.meta)
            .filter(|(v, _)| v.is_ready())
            .map(|(v, m)| NodeLoad {
                in_flight: v.in_flight,
                reported_queue: v.reported_queue,
                reported_service_time: m.reported_service_time,
            });
        let gateway_timing = Nanos(self.service_time as u64);
        let (in_flight, service_time) = match self.admission.service_time_from {
            ServiceTimeSource::Nodes => {
                // Calls on nodes that are not ready (draining) are not
                // ahead of a new request: no new request goes there.
                let reported = admission::from_nodes(nodes, gateway_timing);
                (reported.in_flight, reported.service_time)
            }
            ServiceTimeSource::Gateway => (
                self.views.iter().map(|v| v.in_flight as usize).sum(),
                gateway_timing,
            ),
        };
        Load {
            held: self.held.len(),
            held_bytes: self.held_bytes,
            in_flight,
            ready,
            service_time,
            capacity_at,
        }
    }

    /// Copies the load `nodes[i]` last reported (calls executing, other
    /// callers' included) into its view, where `:reported` balancers and
    /// `/status` read it. A node that has not reported yet counts as 0.
    fn refresh_reported(&mut self, i: usize) {
        if let Some(client) = &self.meta[i].client {
            self.views[i].reported_queue = client.reported_load().unwrap_or(0);
            self.meta[i].reported_service_time = client.reported_service_time();
        }
    }

    /// Whether a request that failed on `excluded` may go to `nodes[i]`
    /// now: ready, not one it failed on, and below its bound in flight.
    fn may_take(&self, i: usize, excluded: &[NodeId]) -> bool {
        self.views[i].is_ready()
            && self.views[i].in_flight < self.max_in_flight_per_node
            && !excluded.contains(&self.meta[i].id)
    }

    /// The least busy node a request that failed on `excluded` may go to,
    /// other than `avoid`.
    fn other_node(&self, excluded: &[NodeId], avoid: Option<NodeId>) -> Option<usize> {
        (0..self.views.len())
            .filter(|&i| self.may_take(i, excluded) && avoid != Some(self.meta[i].id))
            .min_by_key(|&i| self.views[i].in_flight)
    }

    /// Counts a request in flight on `nodes[i]` and hands out its slot.
    fn take(&mut self, i: usize, me: &Registry, now: Instant) -> Option<Slot> {
        let client = self.meta[i].client.clone()?;
        debug_assert!(self.views[i].is_ready());
        let ahead = self.views[i].in_flight;
        self.views[i].in_flight += 1;
        Some(Slot {
            node: self.meta[i].id,
            client,
            gone: self.meta[i].gone.subscribe(),
            ahead,
            unclaimed: Some((me.clone(), now)),
        })
    }

    /// When the oldest live held request arrived; dead ones at the front
    /// (caller gone, deadline passed) are dropped on the way.
    fn oldest_held(&mut self, now: Instant) -> Option<Instant> {
        while let Some(front) = self.held.front() {
            if front.tx.is_closed() || front.deadline <= now {
                self.remove_held(0);
                continue;
            }
            return Some(front.arrived);
        }
        None
    }

    fn remove_held(&mut self, k: usize) -> Option<HeldRequest> {
        let h = self.held.remove(k)?;
        self.held_bytes -= h.bytes;
        Some(h)
    }

    /// Gives the oldest live held request that may go to `nodes[i]` to it
    /// (a pull). One that failed on this node keeps its place and the next
    /// is looked at (up to [`MAX_HELD_SKIPPED`]), so a request avoiding a
    /// lost node does not stall the queue behind it. True if one was
    /// handed over.
    fn hand_oldest_to(&mut self, i: usize, me: &Registry, now: Instant) -> bool {
        if !self.may_take(i, &[]) {
            return false;
        }
        let id = self.meta[i].id;
        let mut k = 0;
        while k < self.held.len() && k <= MAX_HELD_SKIPPED {
            let h = &self.held[k];
            if h.tx.is_closed() || h.deadline <= now {
                self.remove_held(k);
                continue;
            }
            if h.excluded.contains(&id) {
                k += 1;
                continue;
            }
            let Some(slot) = self.take(i, me, now) else {
                return false;
            };
            let Some(h) = self.remove_held(k) else {
                debug_assert!(false, "index {k} was just read");
                return false;
            };
            if let Err(mut slot) = h.tx.send(slot) {
                // The caller left between the check and the send; the lock
                // is held here, so give the count back by hand.
                slot.claim();
                self.views[i].in_flight -= 1;
                continue;
            }
            return true;
        }
        false
    }

    /// Sends held requests wherever the balancer now places them, oldest
    /// first, until it says hold or no node has room. A head that may not
    /// go where the balancer placed it (it failed there, or the node is
    /// full) goes to another node with room; failing that, the placed node
    /// takes the oldest request it may have.
    fn drain_held(&mut self, me: &Registry, now: Instant) {
        while let Some(front) = self.held.front() {
            let req = RequestInfo {
                deadline: Some(front.deadline),
            };
            let Choice::Node(i) = self.balancer.pick(&self.views, req, now, &mut self.rng) else {
                return;
            };
            let head_may = self.may_take(i, &front.excluded);
            let node = if head_may {
                Some(i)
            } else {
                let excluded = front.excluded.clone();
                self.other_node(&excluded, None)
            };
            let handed = match node {
                Some(n) => self.hand_oldest_to(n, me, now),
                None => false,
            };
            if handed || (node != Some(i) && self.hand_oldest_to(i, me, now)) {
                continue;
            }
            // Nothing could go anywhere; wait for the next event.
            return;
        }
    }
}
