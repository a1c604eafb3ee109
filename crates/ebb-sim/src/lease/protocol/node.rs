//! A caching node: its clients' reads and writes, served from its leases
//! or sent to the origin and resent until answered, and what a crash and
//! a restart take from it. The serve-or-fetch decision is
//! `ebb_policy::lease::plan_read`, the one `ebb-lease` runs.

use ebb_core::Nanos;
use ebb_policy::lease::{HeldLease, LeaseId, LeaseTerm, ReadGrant, ReadPlan, Version, plan_read};

use super::config::PlantedBug;
use super::world::{Dest, Event, Msg, Pending, Waiting, World, local};
use crate::lease::check::{Op, OpKind};

/// Where a node's index and its life start in a write id: below them the
/// life's count of writes (2^24 per life), then the life (2^16 restarts).
const WRITE_ID_NODE_SHIFT: u32 = 40;
const WRITE_ID_LIFE_SHIFT: u32 = 24;

/// A write id unique over the run, so the origin can answer a resend with
/// the version it already gave that write.
fn write_id(node: u32, life: u64, writes: u64) -> u64 {
    debug_assert!(
        writes < 1 << WRITE_ID_LIFE_SHIFT
            && life < 1 << (WRITE_ID_NODE_SHIFT - WRITE_ID_LIFE_SHIFT),
        "write id fields overflow: life {life}, writes {writes}"
    );
    (u64::from(node) << WRITE_ID_NODE_SHIFT) | (life << WRITE_ID_LIFE_SHIFT) | writes
}

impl World {
    fn epsilon_for_holder(&self) -> Nanos {
        match self.cfg.bug {
            Some(PlantedBug::IgnoreEpsilon) => Nanos::ZERO,
            _ => self.cfg.epsilon,
        }
    }

    pub(super) fn client_op(&mut self, node: u32, life: u64) {
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
            let write_id = write_id(node, n.life, n.writes);
            n.pending = Some(Pending {
                op,
                key,
                waiting: Waiting::Write { write_id },
            });
            self.write_ids.insert(op, write_id);
            self.history.push(self.op(node, key, OpKind::Write));
            self.put(node, key, write_id);
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

    /// Sends a write, or resends it: the origin answers a `write_id` it
    /// already applied with that write's version, so a resend never writes
    /// twice.
    fn put(&mut self, node: u32, key: u64, write_id: u64) {
        self.send(
            Dest::Origin,
            Msg::Put {
                holder: node,
                key,
                write_id,
            },
        );
    }

    pub(super) fn node_retry(&mut self, node: u32, life: u64, op: usize) {
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
            Waiting::Write { write_id } => self.put(node, key, write_id),
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

    pub(super) fn node_receive(&mut self, node: u32, msg: Msg) {
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

    pub(super) fn node_crash(&mut self, node: u32) {
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

    pub(super) fn node_restart(&mut self, node: u32) {
        let n = &mut self.nodes[node as usize];
        n.up = true;
        n.life += 1;
        let life = n.life;
        let d = self.exp(self.cfg.mean_think);
        self.at(d, Event::ClientOp { node, life });
        self.schedule_node_crash(node);
    }
}
