//! A deterministic simulation of the lease protocol: one origin, caching
//! nodes with drifting clocks, a network that loses, duplicates and delays
//! messages, node and origin crashes. The holder and origin decisions are
//! `ebb_policy::lease`'s, the very code `ebb-lease` runs.
//!
//! A run has two phases (after TigerBeetle's VOPR): a fault phase in which
//! clients on every node read and write and faults strike, then healing
//! (no more loss or crashes, everyone up, no new operations) in which every
//! write still outstanding must complete within a bound. The history of
//! client operations goes to [`super::check`].
//!
//! Clocks: each machine's clock runs at `1 + ppm/10⁶` of real time, with
//! |ppm| chosen so that two clocks part by less than ε over one term; that
//! is the drift the protocol's ε is meant to absorb. Only spans are compared
//! on one machine, so clock offsets would change nothing and are left out.

use std::collections::{BTreeMap, BTreeSet};

use ebb_core::{Instant, Nanos, Rng};
use ebb_policy::lease::{
    FetchId, FetchTracker, HeldLease, HolderId, LeaseId, LeaseTerm, NoLease, OriginConfig,
    OriginLeases, ReadGrant, ReadPlan, Recovery, Version, WriteStart, WriteStatus, plan_read,
};

use super::check::{Op, OpKind};

/// Reads a node may have in flight (one per client op, plus timed-out ones
/// whose replies may still arrive).
const MAX_FETCHES_PER_NODE: usize = 64;

/// A bug planted on purpose, to show the checker catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// The holder serves until `request_sent + T`, forgetting drift.
    IgnoreEpsilon,
    /// The origin applies a write without waiting for holders.
    WriteSkipsHolders,
    /// The holder serves a cached entry whatever its lease says.
    ServePastExpiry,
    /// A restarted origin does not wait out the term it may have granted.
    ForgetTermBound,
}

/// One run's parameters.
#[derive(Clone, Debug)]
pub struct ProtocolConfig {
    pub seed: u64,
    pub nodes: u32,
    pub keys: u64,
    pub term: LeaseTerm,
    pub epsilon: Nanos,
    /// Mean pause between one client's operations (exponential).
    pub mean_think: Nanos,
    pub write_fraction: f64,
    pub delay_min: Nanos,
    pub delay_max: Nanos,
    /// Probability that a message is lost / delivered twice (fault phase).
    pub loss: f64,
    pub duplication: f64,
    /// Crashes per second of simulated time, per node and for the origin.
    pub node_crash_per_s: f64,
    pub origin_crash_per_s: f64,
    pub down_min: Nanos,
    pub down_max: Nanos,
    /// How long the fault phase (and new operations) lasts.
    pub fault_phase: Nanos,
    /// Resend interval of nodes (reads, writes) and the origin
    /// (invalidations, resets).
    pub retry: Nanos,
    /// How long the failure detector takes to declare a crashed node dead.
    pub detect: Nanos,
    pub bug: Option<PlantedBug>,
}

impl ProtocolConfig {
    /// A small, fault-heavy default for tests: 4 nodes on 3 keys, term
    /// 300 ms, ε 60 ms.
    pub fn stress(seed: u64, term: LeaseTerm) -> ProtocolConfig {
        ProtocolConfig {
            seed,
            nodes: 4,
            keys: 3,
            term,
            epsilon: Nanos::from_millis(60),
            mean_think: Nanos::from_millis(20),
            write_fraction: 0.25,
            delay_min: Nanos::from_micros(200),
            delay_max: Nanos::from_millis(8),
            loss: 0.05,
            duplication: 0.05,
            node_crash_per_s: 0.1,
            origin_crash_per_s: 0.1,
            down_min: Nanos::from_millis(10),
            down_max: Nanos::from_millis(300),
            fault_phase: Nanos::from_secs(5),
            retry: Nanos::from_millis(40),
            detect: Nanos::from_millis(100),
            bug: None,
        }
    }

    /// The longest a write may take after healing: the recovery gate, then
    /// every node's write on the same key in turn, each waiting out a term
    /// (or the failure detector, for callbacks) plus resends.
    pub fn liveness_bound(&self) -> Nanos {
        let drift_slack = self.term.span().as_nanos() / 50;
        let wait = if self.term.is_callback() {
            self.detect + self.retry
        } else {
            self.term.span() + Nanos(drift_slack)
        };
        let per_write =
            wait + Nanos(self.retry.as_nanos() * 3) + Nanos(self.delay_max.as_nanos() * 4);
        let gate = if self.term.is_callback() {
            self.detect + Nanos(self.retry.as_nanos() * 2) + Nanos(self.delay_max.as_nanos() * 2)
        } else {
            self.term.span() + self.epsilon + Nanos(drift_slack)
        };
        gate + Nanos(
            per_write
                .as_nanos()
                .saturating_mul(u64::from(self.nodes) + 1),
        )
    }

    /// The largest clock rate error, in parts per million, that keeps two
    /// clocks within ε of each other over one term (with a margin).
    fn max_ppm(&self) -> i64 {
        let t = self.term.span();
        if t == Nanos::ZERO || t == Nanos::MAX {
            return 1_000;
        }
        let ppm = (self.epsilon.as_nanos() as f64 / t.as_nanos() as f64) * 1e6 / 2.5;
        ppm.min(100_000.0) as i64
    }
}

/// Counters showing which paths a run took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub reads_from_cache: u64,
    pub reads_from_origin: u64,
    pub writes: u64,
    pub invalidations_sent: u64,
    pub acks: u64,
    /// Writes that completed although some holder never acknowledged (its
    /// lease ran out, or it was declared dead).
    pub writes_past_silent_holder: u64,
    pub no_lease_write_pending: u64,
    pub refused_recovering: u64,
    pub poisoned_fetches: u64,
    pub node_crashes: u64,
    pub origin_crashes: u64,
    pub declared_dead: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub resets: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.reads_from_cache += o.reads_from_cache;
        self.reads_from_origin += o.reads_from_origin;
        self.writes += o.writes;
        self.invalidations_sent += o.invalidations_sent;
        self.acks += o.acks;
        self.writes_past_silent_holder += o.writes_past_silent_holder;
        self.no_lease_write_pending += o.no_lease_write_pending;
        self.refused_recovering += o.refused_recovering;
        self.poisoned_fetches += o.poisoned_fetches;
        self.node_crashes += o.node_crashes;
        self.origin_crashes += o.origin_crashes;
        self.declared_dead += o.declared_dead;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.resets += o.resets;
    }
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub history: Vec<Op>,
    pub stats: Stats,
    /// When faults stopped and every machine was up again (real time, ns).
    pub healed_at: u64,
    /// Writes of live clients still unfinished at the end of the run.
    pub unfinished_writes: usize,
    /// The latest completion of a write, and the bound it had to meet.
    pub last_write_done: u64,
    pub deadline: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Dest {
    Origin,
    Node(u32),
}

#[derive(Clone, Copy, Debug)]
enum Msg {
    Read {
        holder: u32,
        key: u64,
        fetch: FetchId,
        term: LeaseTerm,
    },
    ReadReply {
        key: u64,
        fetch: FetchId,
        version: u64,
        grant: ReadGrant,
    },
    Put {
        holder: u32,
        key: u64,
        write_id: u64,
    },
    PutReply {
        write_id: u64,
        version: u64,
    },
    Invalidate {
        key: u64,
        id: LeaseId,
    },
    Ack {
        holder: u32,
        key: u64,
        id: LeaseId,
    },
    Reset {
        incarnation: u64,
    },
    ResetAck {
        holder: u32,
        incarnation: u64,
    },
}

#[derive(Clone, Copy, Debug)]
enum Event {
    Deliver { to: Dest, msg: Msg },
    ClientOp { node: u32, life: u64 },
    NodeRetry { node: u32, life: u64, op: usize },
    OriginTick { incarnation: u64 },
    NodeCrash { node: u32 },
    NodeRestart { node: u32 },
    OriginCrash,
    OriginRestart,
    Detect { node: u32, life: u64 },
}

#[derive(Debug)]
enum Waiting {
    Read { fetch: Option<FetchId> },
    Write { write_id: u64 },
}

#[derive(Debug)]
struct Pending {
    op: usize,
    key: u64,
    waiting: Waiting,
}

#[derive(Debug)]
struct Node {
    up: bool,
    life: u64,
    ppm: i64,
    cache: BTreeMap<u64, HeldLease>,
    fetches: FetchTracker<u64>,
    pending: Option<Pending>,
    writes: u64,
}

#[derive(Debug)]
struct WaitingWrite {
    write_id: u64,
    writer: u32,
    holders: Vec<(HolderId, LeaseId)>,
    acked: BTreeSet<HolderId>,
}

#[derive(Debug)]
struct Origin {
    up: bool,
    incarnation: u64,
    ppm: i64,
    leases: OriginLeases<u64>,
    writes: BTreeMap<u64, WaitingWrite>,
    reset_acked: BTreeSet<u32>,
    // Durable: survives a crash.
    versions: BTreeMap<u64, u64>,
    done: BTreeMap<u64, u64>,
    bound: Option<LeaseTerm>,
}

struct World {
    cfg: ProtocolConfig,
    rng: Rng,
    now: u64,
    seq: u64,
    events: BTreeMap<(u64, u64), Event>,
    nodes: Vec<Node>,
    origin: Origin,
    history: Vec<Op>,
    write_ids: BTreeMap<usize, u64>,
    stats: Stats,
    fault_end: u64,
}

fn local(now: u64, ppm: i64) -> Instant {
    let skew = (i128::from(now) * i128::from(ppm)) / 1_000_000;
    let t = i128::from(now) + skew;
    Instant::from_epoch(Nanos(u64::try_from(t.max(0)).unwrap_or(u64::MAX)))
}

/// Runs one simulation.
pub fn run(cfg: &ProtocolConfig) -> Outcome {
    let mut rng = Rng::seeded(cfg.seed);
    let max_ppm = cfg.max_ppm();
    let ppm = |rng: &mut Rng| rng.below(2 * max_ppm as u64 + 1) as i64 - max_ppm;
    let nodes = (0..cfg.nodes)
        .map(|_| Node {
            up: true,
            life: 0,
            ppm: ppm(&mut rng),
            cache: BTreeMap::new(),
            fetches: FetchTracker::new(MAX_FETCHES_PER_NODE),
            pending: None,
            writes: 0,
        })
        .collect();
    let ocfg = OriginConfig::new(cfg.term, cfg.epsilon);
    let origin = Origin {
        up: true,
        incarnation: 0,
        ppm: ppm(&mut rng),
        leases: OriginLeases::new(ocfg),
        writes: BTreeMap::new(),
        reset_acked: BTreeSet::new(),
        versions: BTreeMap::new(),
        done: BTreeMap::new(),
        // Persisted before the first grant.
        bound: Some(cfg.term),
    };
    let mut w = World {
        cfg: cfg.clone(),
        rng,
        now: 0,
        seq: 0,
        events: BTreeMap::new(),
        nodes,
        origin,
        history: Vec::new(),
        write_ids: BTreeMap::new(),
        stats: Stats::default(),
        fault_end: cfg.fault_phase.as_nanos(),
    };
    w.start();
    let healed_at = w.fault_end + cfg.down_max.as_nanos();
    let deadline = healed_at + cfg.liveness_bound().as_nanos();
    while let Some(((t, _), ev)) = w.events.pop_first() {
        if t > deadline || (t > healed_at && w.nodes.iter().all(|n| n.pending.is_none())) {
            break;
        }
        w.now = t;
        w.handle(ev);
    }
    w.finish(healed_at, deadline)
}

impl World {
    fn at(&mut self, delay: u64, ev: Event) {
        self.seq += 1;
        self.events
            .insert((self.now.saturating_add(delay), self.seq), ev);
    }

    fn exp(&mut self, mean: Nanos) -> u64 {
        self.rng.exp(mean.as_nanos() as f64) as u64
    }

    fn uniform(&mut self, lo: Nanos, hi: Nanos) -> u64 {
        lo.as_nanos()
            + self
                .rng
                .below(hi.as_nanos().saturating_sub(lo.as_nanos()) + 1)
    }

    fn faulty(&self) -> bool {
        self.now < self.fault_end
    }

    fn start(&mut self) {
        for n in 0..self.cfg.nodes {
            let d = self.exp(self.cfg.mean_think);
            self.at(d, Event::ClientOp { node: n, life: 0 });
            self.schedule_node_crash(n);
        }
        self.schedule_origin_crash();
        let retry = self.cfg.retry.as_nanos();
        self.at(retry, Event::OriginTick { incarnation: 0 });
    }

    fn schedule_node_crash(&mut self, node: u32) {
        if self.cfg.node_crash_per_s > 0.0 {
            let d = self.rng.exp(1e9 / self.cfg.node_crash_per_s) as u64;
            if self.now + d < self.fault_end {
                self.at(d, Event::NodeCrash { node });
            }
        }
    }

    fn schedule_origin_crash(&mut self) {
        if self.cfg.origin_crash_per_s > 0.0 {
            let d = self.rng.exp(1e9 / self.cfg.origin_crash_per_s) as u64;
            if self.now + d < self.fault_end {
                self.at(d, Event::OriginCrash);
            }
        }
    }

    fn send(&mut self, to: Dest, msg: Msg) {
        if self.faulty() && self.rng.chance(self.cfg.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.faulty() && self.rng.chance(self.cfg.duplication) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let d = self.uniform(self.cfg.delay_min, self.cfg.delay_max);
            self.at(d, Event::Deliver { to, msg });
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Deliver {
                to: Dest::Origin,
                msg,
            } => {
                if self.origin.up {
                    self.origin_receive(msg);
                }
            }
            Event::Deliver {
                to: Dest::Node(n),
                msg,
            } => {
                if self.nodes[n as usize].up {
                    self.node_receive(n, msg);
                }
            }
            Event::ClientOp { node, life } => self.client_op(node, life),
            Event::NodeRetry { node, life, op } => self.node_retry(node, life, op),
            Event::OriginTick { incarnation } => self.origin_tick(incarnation),
            Event::NodeCrash { node } => self.node_crash(node),
            Event::NodeRestart { node } => self.node_restart(node),
            Event::OriginCrash => self.origin_crash(),
            Event::OriginRestart => self.origin_restart(),
            Event::Detect { node, life } => {
                let n = &self.nodes[node as usize];
                if !n.up && n.life == life && self.origin.up {
                    self.stats.declared_dead += 1;
                    self.origin.leases.declare_dead(HolderId(u64::from(node)));
                    let keys: Vec<u64> = self.origin.writes.keys().copied().collect();
                    for k in keys {
                        self.try_complete(k);
                    }
                }
            }
        }
    }

    // ---- nodes ----

    fn epsilon_for_holder(&self) -> Nanos {
        match self.cfg.bug {
            Some(PlantedBug::IgnoreEpsilon) => Nanos::ZERO,
            _ => self.cfg.epsilon,
        }
    }

    fn client_op(&mut self, node: u32, life: u64) {
        let n = &self.nodes[node as usize];
        if !n.up || n.life != life || n.pending.is_some() || !self.faulty() {
            return;
        }
        let key = self.rng.below(self.cfg.keys);
        let op = self.history.len();
        if self.rng.chance(self.cfg.write_fraction) {
            self.stats.writes += 1;
            let n = &mut self.nodes[node as usize];
            n.writes += 1;
            let write_id = (u64::from(node) << 40) | (n.life << 24) | n.writes;
            n.pending = Some(Pending {
                op,
                key,
                waiting: Waiting::Write { write_id },
            });
            self.write_ids.insert(op, write_id);
            self.history.push(self.op(node, key, OpKind::Write));
            self.send(
                Dest::Origin,
                Msg::Put {
                    holder: node,
                    key,
                    write_id,
                },
            );
        } else {
            self.history.push(self.op(node, key, OpKind::Read));
            let now = local(self.now, self.nodes[node as usize].ppm);
            let eps = self.epsilon_for_holder();
            let n = &self.nodes[node as usize];
            let cached = n.cache.get(&key).copied();
            let serve = match (self.cfg.bug, cached) {
                (Some(PlantedBug::ServePastExpiry), Some(l)) => !l.term.is_check_on_use(),
                _ => plan_read(cached.as_ref(), now, eps) == ReadPlan::Serve,
            };
            match cached {
                Some(l) if serve => {
                    self.stats.reads_from_cache += 1;
                    self.complete(node, op, l.version.0);
                    return;
                }
                _ => {}
            }
            self.nodes[node as usize].pending = Some(Pending {
                op,
                key,
                waiting: Waiting::Read { fetch: None },
            });
            self.fetch(node, key);
        }
        let retry = self.cfg.retry.as_nanos();
        self.at(retry, Event::NodeRetry { node, life, op });
    }

    fn op(&self, node: u32, key: u64, kind: OpKind) -> Op {
        Op {
            key,
            kind,
            invoke: self.now,
            complete: None,
            version: None,
            client: u64::from(node),
        }
    }

    fn fetch(&mut self, node: u32, key: u64) {
        let now = local(self.now, self.nodes[node as usize].ppm);
        let n = &mut self.nodes[node as usize];
        let fetch = n.fetches.begin(key, now);
        if let Some(Pending {
            waiting: Waiting::Read { fetch: f },
            ..
        }) = n.pending.as_mut()
        {
            *f = Some(fetch);
        }
        let term = self.cfg.term;
        self.send(
            Dest::Origin,
            Msg::Read {
                holder: node,
                key,
                fetch,
                term,
            },
        );
    }

    fn node_retry(&mut self, node: u32, life: u64, op: usize) {
        let n = &mut self.nodes[node as usize];
        if !n.up || n.life != life {
            return;
        }
        let Some(p) = n.pending.as_ref() else { return };
        if p.op != op {
            return;
        }
        let key = p.key;
        match p.waiting {
            Waiting::Read { fetch } => {
                if let Some(f) = fetch {
                    n.fetches.finish(f);
                }
                self.fetch(node, key);
            }
            Waiting::Write { write_id } => {
                self.send(
                    Dest::Origin,
                    Msg::Put {
                        holder: node,
                        key,
                        write_id,
                    },
                );
            }
        }
        let retry = self.cfg.retry.as_nanos();
        self.at(retry, Event::NodeRetry { node, life, op });
    }

    fn complete(&mut self, node: u32, op: usize, version: u64) {
        let h = &mut self.history[op];
        h.complete = Some(self.now);
        h.version = Some(version);
        let n = &mut self.nodes[node as usize];
        n.pending = None;
        let life = n.life;
        let d = self.exp(self.cfg.mean_think);
        self.at(d, Event::ClientOp { node, life });
    }

    fn node_receive(&mut self, node: u32, msg: Msg) {
        match msg {
            Msg::ReadReply {
                key,
                fetch,
                version,
                grant,
            } => {
                let n = &mut self.nodes[node as usize];
                let sent = n.fetches.finish(fetch);
                if let Some(sent) = sent {
                    let (term, id) = match grant {
                        ReadGrant::Lease { term, id } => (term, id),
                        ReadGrant::NoLease(_) => (LeaseTerm::CHECK_ON_USE, LeaseId::NONE),
                    };
                    let fresh = HeldLease {
                        version: Version(version),
                        request_sent: sent,
                        term,
                        id,
                    };
                    let kept = n.cache.get(&key).map_or(fresh, |old| old.newer_of(fresh));
                    n.cache.insert(key, kept);
                }
                let mine = match n.pending.as_ref() {
                    Some(Pending {
                        op,
                        waiting: Waiting::Read { fetch: f },
                        ..
                    }) if *f == Some(fetch) => Some(*op),
                    _ => None,
                };
                if let Some(op) = mine {
                    self.stats.reads_from_origin += 1;
                    self.complete(node, op, version);
                }
            }
            Msg::PutReply { write_id, version } => {
                let n = &self.nodes[node as usize];
                let mine = match n.pending.as_ref() {
                    Some(Pending {
                        op,
                        waiting: Waiting::Write { write_id: w },
                        ..
                    }) if *w == write_id => Some(*op),
                    _ => None,
                };
                if let Some(op) = mine {
                    self.complete(node, op, version);
                }
            }
            Msg::Invalidate { key, id } => {
                let n = &mut self.nodes[node as usize];
                self.stats.poisoned_fetches += n.fetches.invalidate(&key) as u64;
                n.cache.remove(&key);
                self.send(
                    Dest::Origin,
                    Msg::Ack {
                        holder: node,
                        key,
                        id,
                    },
                );
            }
            Msg::Reset { incarnation } => {
                let n = &mut self.nodes[node as usize];
                n.cache.clear();
                n.fetches.clear();
                self.send(
                    Dest::Origin,
                    Msg::ResetAck {
                        holder: node,
                        incarnation,
                    },
                );
            }
            Msg::Read { .. } | Msg::Put { .. } | Msg::Ack { .. } | Msg::ResetAck { .. } => {}
        }
    }

    fn node_crash(&mut self, node: u32) {
        let n = &mut self.nodes[node as usize];
        if !n.up {
            return;
        }
        self.stats.node_crashes += 1;
        n.up = false;
        n.life += 1;
        n.cache.clear();
        n.fetches.clear();
        n.pending = None;
        let life = n.life;
        let down = self.uniform(self.cfg.down_min, self.cfg.down_max);
        self.at(down, Event::NodeRestart { node });
        let detect = self.cfg.detect.as_nanos();
        self.at(detect, Event::Detect { node, life });
    }

    fn node_restart(&mut self, node: u32) {
        let n = &mut self.nodes[node as usize];
        n.up = true;
        n.life += 1;
        let life = n.life;
        let d = self.exp(self.cfg.mean_think);
        self.at(d, Event::ClientOp { node, life });
        self.schedule_node_crash(node);
    }

    // ---- origin ----

    fn origin_now(&self) -> Instant {
        local(self.now, self.origin.ppm)
    }

    fn origin_receive(&mut self, msg: Msg) {
        let now = self.origin_now();
        match msg {
            Msg::Read {
                holder,
                key,
                fetch,
                term,
            } => {
                let grant = self
                    .origin
                    .leases
                    .read(now, &key, HolderId(u64::from(holder)), term);
                if grant == ReadGrant::NoLease(NoLease::WritePending) {
                    self.stats.no_lease_write_pending += 1;
                }
                let version = self.origin.versions.get(&key).copied().unwrap_or(0);
                self.send(
                    Dest::Node(holder),
                    Msg::ReadReply {
                        key,
                        fetch,
                        version,
                        grant,
                    },
                );
            }
            Msg::Put {
                holder,
                key,
                write_id,
            } => self.origin_put(holder, key, write_id),
            Msg::Ack { holder, key, id } => {
                let h = HolderId(u64::from(holder));
                self.stats.acks += 1;
                if self.origin.leases.release(&key, h, id) {
                    if let Some(w) = self.origin.writes.get_mut(&key) {
                        w.acked.insert(h);
                    }
                    self.try_complete(key);
                }
            }
            Msg::ResetAck {
                holder,
                incarnation,
            } => {
                if incarnation == self.origin.incarnation {
                    self.origin.reset_acked.insert(holder);
                }
            }
            Msg::ReadReply { .. }
            | Msg::PutReply { .. }
            | Msg::Invalidate { .. }
            | Msg::Reset { .. } => {}
        }
    }

    fn origin_put(&mut self, writer: u32, key: u64, write_id: u64) {
        if let Some(version) = self.origin.done.get(&write_id).copied() {
            self.send(Dest::Node(writer), Msg::PutReply { write_id, version });
            return;
        }
        if self.cfg.bug == Some(PlantedBug::WriteSkipsHolders) {
            self.apply(key, write_id, writer, 0);
            return;
        }
        match self.origin.writes.get(&key) {
            Some(w) if w.write_id == write_id => {
                let holders = w.holders.clone();
                self.invalidate(key, &holders);
                self.try_complete(key);
                return;
            }
            Some(_) => return, // another write waits on this key; the writer resends
            None => {}
        }
        let now = self.origin_now();
        match self.origin.leases.begin_write(now, &key) {
            WriteStart::Ready => self.apply(key, write_id, writer, 0),
            WriteStart::Invalidate { holders, .. } => {
                self.invalidate(key, &holders);
                self.origin.writes.insert(
                    key,
                    WaitingWrite {
                        write_id,
                        writer,
                        holders,
                        acked: BTreeSet::new(),
                    },
                );
            }
            WriteStart::Busy => {}
            WriteStart::Recovering(_) => self.stats.refused_recovering += 1,
        }
    }

    fn invalidate(&mut self, key: u64, holders: &[(HolderId, LeaseId)]) {
        for (h, id) in holders {
            self.stats.invalidations_sent += 1;
            self.send(Dest::Node(h.0 as u32), Msg::Invalidate { key, id: *id });
        }
    }

    fn try_complete(&mut self, key: u64) {
        let now = self.origin_now();
        if self.origin.leases.write_status(now, &key) != WriteStatus::Ready {
            return;
        }
        if let Some(w) = self.origin.writes.remove(&key) {
            let silent = w
                .holders
                .iter()
                .filter(|(h, _)| !w.acked.contains(h))
                .count();
            self.apply(key, w.write_id, w.writer, silent);
        }
    }

    fn apply(&mut self, key: u64, write_id: u64, writer: u32, silent: usize) {
        if silent > 0 {
            self.stats.writes_past_silent_holder += 1;
        }
        let v = self.origin.versions.entry(key).or_insert(0);
        *v += 1;
        let version = *v;
        self.origin.done.insert(write_id, version);
        self.origin.leases.finish_write(&key);
        self.origin.writes.remove(&key);
        self.send(Dest::Node(writer), Msg::PutReply { write_id, version });
    }

    fn origin_tick(&mut self, incarnation: u64) {
        if !self.origin.up || incarnation != self.origin.incarnation {
            return;
        }
        let keys: Vec<u64> = self.origin.writes.keys().copied().collect();
        for key in keys {
            self.try_complete(key);
            if let Some(w) = self.origin.writes.get(&key) {
                let silent: Vec<(HolderId, LeaseId)> = w
                    .holders
                    .iter()
                    .filter(|(h, _)| !w.acked.contains(h))
                    .copied()
                    .collect();
                self.invalidate(key, &silent);
            }
        }
        let now = self.origin_now();
        if self.origin.leases.recovery(now) == Recovery::UntilCleared {
            let inc = self.origin.incarnation;
            let mut all = true;
            for n in 0..self.cfg.nodes {
                let detected_dead = !self.nodes[n as usize].up;
                if self.origin.reset_acked.contains(&n) || detected_dead {
                    continue;
                }
                all = false;
                self.stats.resets += 1;
                self.send(Dest::Node(n), Msg::Reset { incarnation: inc });
            }
            if all {
                self.origin.leases.clear_recovery();
            }
        }
        let retry = self.cfg.retry.as_nanos();
        self.at(retry, Event::OriginTick { incarnation });
    }

    fn origin_crash(&mut self) {
        if !self.origin.up {
            return;
        }
        self.stats.origin_crashes += 1;
        self.origin.up = false;
        self.origin.writes.clear();
        let down = self.uniform(self.cfg.down_min, self.cfg.down_max);
        self.at(down, Event::OriginRestart);
    }

    fn origin_restart(&mut self) {
        let o = &mut self.origin;
        o.up = true;
        o.incarnation += 1;
        o.reset_acked.clear();
        let bound = match self.cfg.bug {
            Some(PlantedBug::ForgetTermBound) => None,
            _ => o.bound,
        };
        let cfg = OriginConfig::new(self.cfg.term, self.cfg.epsilon);
        let now = local(self.now, o.ppm);
        o.leases = OriginLeases::restarted(cfg, now, bound, o.incarnation);
        let inc = o.incarnation;
        let retry = self.cfg.retry.as_nanos();
        self.at(retry, Event::OriginTick { incarnation: inc });
        self.schedule_origin_crash();
    }

    fn finish(mut self, healed_at: u64, deadline: u64) -> Outcome {
        for (op, id) in &self.write_ids {
            if self.history[*op].version.is_none() {
                self.history[*op].version = self.origin.done.get(id).copied();
            }
        }
        let unfinished_writes = self
            .nodes
            .iter()
            .filter_map(|n| n.pending.as_ref())
            .filter(|p| matches!(p.waiting, Waiting::Write { .. }))
            .count();
        let last_write_done = self
            .history
            .iter()
            .filter(|o| o.kind == OpKind::Write)
            .filter_map(|o| o.complete)
            .max()
            .unwrap_or(0);
        Outcome {
            history: self.history,
            stats: self.stats,
            healed_at,
            unfinished_writes,
            last_write_done,
            deadline,
        }
    }
}
