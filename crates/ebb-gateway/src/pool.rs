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
//! It runs on its own thread because providers block (a container or VM
//! start does real work) and must not stall the request path.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use ebb_core::{Instant, Nanos, NodeId};
use ebb_node::provider::{NodeEvent, NodeKind, NodeProvider};
use ebb_rpc::transport::{Credentials, TcpClient, TcpClientConfig};

use crate::clock::{Clock, unix_ms};
use crate::decisions::{DecisionLog, DecisionRecord};
use crate::metrics::Metrics;
use crate::registry::{Life, NewNode, Registry};
use crate::service::ServiceCell;
use crate::signals::{TickContext, to_signals};
use ebb_core::Rng;
use ebb_policy::scale::{Limits, NodeCounts, ScalePolicy};

/// Nodes started per tick at most, so a large target does not stall the
/// loop (and events) behind a burst of slow starts.
pub const MAX_STARTS_PER_TICK: usize = 8;
/// Pause after a failed start or a node that died before it was ready;
/// doubles up to the maximum while failures continue.
pub const START_BACKOFF_MS: u64 = 100;
pub const MAX_START_BACKOFF_MS: u64 = 5_000;
/// The largest pool size anyone may ask for.
pub const MAX_POOL_SIZE: usize = 256;
/// How long a node that accepted the handshake may take to describe its
/// service when the config sets nothing; past it the handshake is tried
/// again at the next tick.
pub const DESCRIBE_TIMEOUT_MS: u64 = 2_000;
/// Handshakes in progress at once at most. They run on the gateway's
/// runtime, not on the manager's thread, so a node slow to answer holds up
/// neither the tick nor the other nodes' handshakes; past this bound a
/// ready node waits for a later tick.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 16;
/// Longest pause between two ticks of a quiet pool (every node ready and
/// idle, nothing held, booting, draining or handshaking, the target met):
/// the pause doubles from `tick_ms` up to this, so an idle gateway's
/// manager wakes ten times a second rather than a hundred. Anything to do
/// (a command, a handshake's end, a call in flight) brings `tick_ms` back.
pub const MAX_IDLE_TICK_MS: u64 = 100;

/// The pause before the next tick: `tick` while there is work, else twice
/// the last one, up to `MAX_IDLE_TICK_MS` (never below `tick`).
fn next_wait(last: Duration, tick: Duration, busy: bool) -> Duration {
    let idle_max = tick.max(Duration::from_millis(MAX_IDLE_TICK_MS));
    if busy {
        tick
    } else {
        last.saturating_mul(2).clamp(tick, idle_max)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    pub initial: usize,
    pub min: usize,
    pub max: usize,
    /// Period of the control loop.
    pub tick_ms: u64,
    /// A node not ready this long after its start is stopped.
    pub boot_timeout_ms: u64,
    /// How long shutdown waits for in-flight calls and nodes to end before
    /// the provider is dropped (which kills what is left).
    pub shutdown_grace_ms: u64,
    pub cost_per_node_sec_micros: u64,
    /// Period of the autoscaler's decisions.
    pub scale_tick_ms: u64,
    /// Calls in flight on one node at most; more wait at the gateway. The
    /// nodes' own bound per connection, so they never refuse for it.
    pub max_in_flight_per_node: u32,
    /// How long a node that accepted the handshake's connection may take
    /// to describe its service before the handshake is tried again.
    pub describe_timeout_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig {
            initial: 1,
            min: 0,
            max: 16,
            tick_ms: 10,
            boot_timeout_ms: 60_000,
            shutdown_grace_ms: 10_000,
            cost_per_node_sec_micros: 0,
            scale_tick_ms: 1_000,
            max_in_flight_per_node: crate::registry::DEFAULT_MAX_IN_FLIGHT_PER_NODE,
            describe_timeout_ms: DESCRIBE_TIMEOUT_MS,
        }
    }
}

/// One node's change of state, as `ebb up` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeChange {
    pub id: NodeId,
    pub kind: NodeKind,
    pub addr: SocketAddr,
    pub from: Option<Life>,
    pub to: Life,
    pub reason: Option<String>,
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

enum Command {
    /// The target changed: act now rather than at the next tick.
    Wake,
    Shutdown,
    /// A node's handshake ended on the runtime: act on it now.
    Handshake(NodeId, Handshake),
}

/// How a handshake with a node that said it is ready ended.
enum Handshake {
    /// Connected (the connection its calls will use) and described.
    Described(TcpClient, ebb_rpc::service::ServiceDescription),
    /// The node refuses what the gateway presents: it would refuse every
    /// call, so trying again cannot help.
    Unauthorized(String),
    /// Not reachable or no description in time: tried again later.
    Failed,
}

/// Connects to a node and asks what it serves.
async fn handshake(addr: SocketAddr, credentials: Credentials, describe: Nanos) -> Handshake {
    let connected =
        TcpClient::connect_as(&addr.to_string(), TcpClientConfig::default(), credentials).await;
    let Ok(client) = connected else {
        return Handshake::Failed;
    };
    match client.describe(describe).await {
        Ok(d) => Handshake::Described(client, d),
        Err(ebb_rpc::CallError::Refused {
            reason: ebb_rpc::wire::Refusal::Unauthorized,
            message,
        }) => Handshake::Unauthorized(message),
        Err(_) => Handshake::Failed,
    }
}

/// Talks to the pool manager thread.
pub struct PoolHandle {
    tx: mpsc::Sender<Command>,
    target: Arc<AtomicUsize>,
    cfg: PoolConfig,
    thread: Option<JoinHandle<()>>,
    kind: NodeKind,
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

/// An autoscaling policy and the random stream its decisions draw from.
pub struct Scaler {
    pub policy: Box<dyn ScalePolicy + Send>,
    pub rng: Rng,
    /// The response-time objective the policy is told about.
    pub objective: Option<Nanos>,
}

/// Everything the manager thread owns.
struct Manager {
    provider: Box<dyn NodeProvider>,
    registry: Registry,
    clock: Clock,
    rt: tokio::runtime::Handle,
    cfg: PoolConfig,
    target: Arc<AtomicUsize>,
    autoscaler: Option<Scaler>,
    on_change: OnChange,
    service: ServiceCell,
    decisions: DecisionLog,
    metrics: Metrics,
    node_credentials: Credentials,
    next_id: u32,
    /// Nodes the provider said are ready but that did not answer the
    /// handshake yet.
    awaiting_handshake: HashMap<NodeId, SocketAddr>,
    /// Of those, the ones whose handshake is running on the runtime (at
    /// most `MAX_CONCURRENT_HANDSHAKES`).
    handshaking: HashSet<NodeId>,
    /// Where a running handshake reports its end (this manager's own
    /// command channel, so the report wakes it).
    reports: mpsc::Sender<Command>,
    addrs: HashMap<NodeId, SocketAddr>,
    stopping: HashSet<NodeId>,
    next_start_at: Instant,
    backoff: Nanos,
    last_tick: Instant,
}

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
        cfg,
        thread: Some(thread),
        kind,
    })
}

impl Manager {
    fn run(mut self, rx: mpsc::Receiver<Command>) {
        let tick = Duration::from_millis(self.cfg.tick_ms.max(1));
        let mut shutdown_since: Option<Instant> = None;
        let mut wait = tick;
        loop {
            let woken = match rx.recv_timeout(wait) {
                Err(mpsc::RecvTimeoutError::Timeout) => false,
                Ok(Command::Wake) => true,
                Ok(Command::Handshake(id, done)) => {
                    self.handshake_done(id, done);
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
            let quiet = self.awaiting_handshake.is_empty()
                && self.handshaking.is_empty()
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

    fn change(&self, id: NodeId, from: Option<Life>, to: Life, reason: Option<String>) {
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
        });
    }

    /// Whether the provider reported anything.
    fn events(&mut self, now: Instant) -> bool {
        let events = self.provider.poll_events();
        let any = !events.is_empty();
        for ev in events {
            match ev {
                NodeEvent::Ready(id) => {
                    if let Some(&addr) = self.addrs.get(&id) {
                        self.awaiting_handshake.insert(id, addr);
                    }
                }
                NodeEvent::Gone(id, reason) => self.gone(id, &reason, now),
            }
        }
        any
    }

    fn gone(&mut self, id: NodeId, reason: &str, now: Instant) {
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

    fn back_off(&mut self, now: Instant) {
        self.next_start_at = now + self.backoff;
        let max = Nanos::from_millis(MAX_START_BACKOFF_MS);
        self.backoff = Nanos(self.backoff.as_nanos().saturating_mul(2)).min(max);
    }

    /// Starts a handshake (connect, then `Describe`) on the runtime with
    /// each node that says it is ready and has none running, up to
    /// `MAX_CONCURRENT_HANDSHAKES` at once; [`Manager::handshake_done`]
    /// acts on each as it ends. The connection is the one its calls will
    /// use, so a node that cannot be reached never gets work.
    fn handshakes(&mut self) {
        let room = MAX_CONCURRENT_HANDSHAKES.saturating_sub(self.handshaking.len());
        let start: Vec<(NodeId, SocketAddr)> = self
            .awaiting_handshake
            .iter()
            .filter(|(id, _)| !self.handshaking.contains(id))
            .map(|(&id, &addr)| (id, addr))
            .take(room)
            .collect();
        let describe = Nanos::from_millis(self.cfg.describe_timeout_ms);
        for (id, addr) in start {
            self.handshaking.insert(id);
            let reports = self.reports.clone();
            let credentials = self.node_credentials.clone();
            self.rt.spawn(async move {
                let done = handshake(addr, credentials, describe).await;
                // The manager has ended (shutdown): the connection closes.
                let _ = reports.send(Command::Handshake(id, done));
            });
        }
        debug_assert!(self.handshaking.len() <= MAX_CONCURRENT_HANDSHAKES);
    }

    /// A handshake ended: the node becomes ready, is stopped (it refused
    /// the gateway's credentials, or its service does not fit the pool's),
    /// or waits for another try. A node that went away or began draining
    /// meanwhile is left alone, its connection dropped.
    fn handshake_done(&mut self, id: NodeId, done: Handshake) {
        self.handshaking.remove(&id);
        if !self.awaiting_handshake.contains_key(&id) {
            return;
        }
        let now = self.clock.now();
        let (client, description) = match done {
            Handshake::Described(client, description) => (client, description),
            Handshake::Unauthorized(message) => {
                self.awaiting_handshake.remove(&id);
                let _ = self.provider.stop(id);
                self.back_off(now);
                self.gone(
                    id,
                    &format!("refused the gateway's credentials: {message}"),
                    now,
                );
                return;
            }
            Handshake::Failed => return,
        };
        self.awaiting_handshake.remove(&id);
        if let Err(why) = self.service.admit(description) {
            let _ = self.provider.stop(id);
            self.back_off(now);
            self.gone(id, &format!("refused at the handshake: {why}"), now);
            return;
        }
        if self.registry.set_ready(id, Arc::new(client), now) {
            self.backoff = Nanos::from_millis(START_BACKOFF_MS);
            self.change(id, Some(Life::Booting), Life::Ready, None);
        }
    }

    /// Nodes whose calls say they are dead, and nodes that never became
    /// ready, are stopped and gone at once.
    /// Whether any node was removed.
    fn remove_dead(&mut self, now: Instant) -> bool {
        let suspects = self.registry.suspects();
        let mut removed = !suspects.is_empty();
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
        removed |= !late.is_empty();
        for id in late {
            let _ = self.provider.stop(id);
            self.gone(id, "not ready within the boot timeout", now);
        }
        removed
    }

    fn drain(&mut self, id: NodeId, why: &str) {
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

    fn stop_drained(&mut self) {
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

    fn autoscale(&mut self, now: Instant) {
        let Some(scaler) = self.autoscaler.as_mut() else {
            return;
        };
        let interval = now.saturating_since(self.last_tick);
        if interval < Nanos::from_millis(self.cfg.scale_tick_ms) {
            return;
        }
        self.last_tick = now;
        let counters = self.registry.tick();
        let mut nodes = NodeCounts::default();
        for (_, life, _) in self.registry.lives() {
            match life {
                Life::Booting => nodes.booting += 1,
                Life::Ready => nodes.ready += 1,
                Life::Draining => nodes.draining += 1,
                Life::Gone => {}
            }
        }
        let max = self.cfg.max.min(MAX_POOL_SIZE);
        let ctx = TickContext {
            boot_time: self.provider.expected_start(),
            cost_per_node_sec_micros: self.cfg.cost_per_node_sec_micros,
            objective: scaler.objective,
            limits: Limits {
                min_nodes: self.cfg.min as u32,
                max_nodes: max as u32,
                max_capacity_per_node: 1,
            },
        };
        let signals = to_signals(counters, interval, nodes, &ctx);
        let decision = scaler.policy.decide(&signals, now, &mut scaler.rng);
        let t = (decision.target_nodes as usize).clamp(self.cfg.min, max);
        let record = DecisionRecord::new(unix_ms(), &signals, &decision, t as u32);
        self.metrics.decided(record.direction, record.applied_nodes);
        self.decisions.record(record);
        let before = self.target.swap(t, Ordering::SeqCst);
        debug_assert!(before <= MAX_POOL_SIZE && t <= MAX_POOL_SIZE);
    }

    fn reconcile(&mut self, now: Instant) {
        let target = self.target.load(Ordering::SeqCst);
        self.registry
            .set_target(target, self.provider.expected_start());
        let lives = self.registry.lives();
        let live: Vec<_> = lives
            .iter()
            .filter(|(_, l, _)| matches!(l, Life::Booting | Life::Ready))
            .collect();
        if live.len() > target {
            // Booting nodes first (newest first), then the least busy.
            let mut victims: Vec<_> = live.iter().map(|&&(id, l, f)| (id, l, f)).collect();
            victims.sort_by_key(|&(id, l, f)| (l != Life::Booting, f, std::cmp::Reverse(id.0)));
            for (id, _, _) in victims.into_iter().take(live.len() - target) {
                self.drain(id, "pool shrinks");
            }
            return;
        }
        let missing = target - live.len();
        if missing == 0 || now < self.next_start_at {
            return;
        }
        for _ in 0..missing.min(MAX_STARTS_PER_TICK) {
            let id = NodeId(self.next_id);
            self.next_id += 1;
            match self.provider.start(id) {
                Ok(started) => {
                    self.addrs.insert(id, started.addr);
                    let node = NewNode {
                        id,
                        kind: started.kind,
                        addr: started.addr,
                        cost_per_sec_micros: self.cfg.cost_per_node_sec_micros,
                        started_unix_ms: unix_ms(),
                        expected_boot: self.provider.expected_start(),
                    };
                    self.registry.add_booting(node, now);
                    self.change(id, None, Life::Booting, None);
                }
                Err(e) => {
                    (self.on_change)(&NodeChange {
                        id,
                        kind: self.provider.kind(),
                        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                        from: None,
                        to: Life::Gone,
                        reason: Some(format!("start failed: {e}")),
                    });
                    self.back_off(now);
                    return;
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
