//! The simulated world: the event queue, the network that loses and
//! duplicates in the fault phase, the crash schedule, and the state of
//! every machine. What a node or the origin does with an event lives in
//! [`super::node`] and [`super::origin`].

use std::collections::{BTreeMap, BTreeSet};

use ebb_core::{Instant, Nanos, Rng};
use ebb_policy::lease::{
    FetchId, FetchTracker, HeldLease, HolderId, LeaseId, LeaseTerm, OriginConfig, OriginLeases,
    ReadGrant,
};

use super::config::{Outcome, ProtocolConfig, Stats};
use crate::lease::check::{Op, OpKind};

/// Reads a node may have in flight (one per client op, plus timed-out ones
/// whose replies may still arrive).
const MAX_FETCHES_PER_NODE: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Dest {
    Origin,
    Node(u32),
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Msg {
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
pub(super) enum Event {
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
pub(super) enum Waiting {
    Read { fetch: Option<FetchId> },
    Write { write_id: u64 },
}

#[derive(Debug)]
pub(super) struct Pending {
    pub(super) op: usize,
    pub(super) key: u64,
    pub(super) waiting: Waiting,
}

#[derive(Debug)]
pub(super) struct Node {
    pub(super) up: bool,
    pub(super) life: u64,
    pub(super) ppm: i64,
    pub(super) cache: BTreeMap<u64, HeldLease>,
    pub(super) fetches: FetchTracker<u64>,
    pub(super) pending: Option<Pending>,
    pub(super) writes: u64,
}

#[derive(Debug)]
pub(super) struct WaitingWrite {
    pub(super) write_id: u64,
    pub(super) writer: u32,
    pub(super) holders: Vec<(HolderId, LeaseId)>,
    pub(super) acked: BTreeSet<HolderId>,
}

#[derive(Debug)]
pub(super) struct Origin {
    pub(super) up: bool,
    pub(super) incarnation: u64,
    pub(super) ppm: i64,
    pub(super) leases: OriginLeases<u64>,
    pub(super) writes: BTreeMap<u64, WaitingWrite>,
    pub(super) reset_acked: BTreeSet<u32>,
    // Durable: survives a crash.
    pub(super) versions: BTreeMap<u64, u64>,
    pub(super) done: BTreeMap<u64, u64>,
    pub(super) bound: Option<LeaseTerm>,
}

pub(super) struct World {
    pub(super) cfg: ProtocolConfig,
    pub(super) rng: Rng,
    pub(super) now: u64,
    pub(super) seq: u64,
    pub(super) events: BTreeMap<(u64, u64), Event>,
    pub(super) nodes: Vec<Node>,
    pub(super) origin: Origin,
    pub(super) history: Vec<Op>,
    pub(super) write_ids: BTreeMap<usize, u64>,
    pub(super) stats: Stats,
    pub(super) fault_end: u64,
}

pub(super) fn local(now: u64, ppm: i64) -> Instant {
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
    pub(super) fn at(&mut self, delay: u64, ev: Event) {
        self.seq += 1;
        self.events
            .insert((self.now.saturating_add(delay), self.seq), ev);
    }

    pub(super) fn exp(&mut self, mean: Nanos) -> u64 {
        self.rng.exp(mean.as_nanos() as f64) as u64
    }

    pub(super) fn uniform(&mut self, lo: Nanos, hi: Nanos) -> u64 {
        lo.as_nanos()
            + self
                .rng
                .below(hi.as_nanos().saturating_sub(lo.as_nanos()) + 1)
    }

    pub(super) fn faulty(&self) -> bool {
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

    pub(super) fn schedule_node_crash(&mut self, node: u32) {
        if self.cfg.node_crash_per_s > 0.0 {
            let d = self.rng.exp(1e9 / self.cfg.node_crash_per_s) as u64;
            if self.now + d < self.fault_end {
                self.at(d, Event::NodeCrash { node });
            }
        }
    }

    pub(super) fn schedule_origin_crash(&mut self) {
        if self.cfg.origin_crash_per_s > 0.0 {
            let d = self.rng.exp(1e9 / self.cfg.origin_crash_per_s) as u64;
            if self.now + d < self.fault_end {
                self.at(d, Event::OriginCrash);
            }
        }
    }

    pub(super) fn send(&mut self, to: Dest, msg: Msg) {
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
