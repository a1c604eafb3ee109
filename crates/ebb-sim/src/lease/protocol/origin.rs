//! The origin: grants, the writes that wait for holders to let go, the
//! periodic resend of invalidations and resets, and recovery after a
//! crash (durable versions and term bound kept, leases forgotten). The
//! decisions are `ebb_policy::lease::OriginLeases`'.

use std::collections::BTreeSet;

use ebb_core::Instant;
use ebb_policy::lease::{
    HolderId, LeaseId, NoLease, OriginConfig, OriginLeases, ReadGrant, Recovery, WriteStart,
    WriteStatus,
};

use super::config::PlantedBug;
use super::world::{Dest, Event, Msg, WaitingWrite, World, local};

impl World {
    fn origin_now(&self) -> Instant {
        local(self.now, self.origin.ppm)
    }

    pub(super) fn origin_receive(&mut self, msg: Msg) {
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

    pub(super) fn try_complete(&mut self, key: u64) {
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

    pub(super) fn origin_tick(&mut self, incarnation: u64) {
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

    pub(super) fn origin_crash(&mut self) {
        if !self.origin.up {
            return;
        }
        self.stats.origin_crashes += 1;
        self.origin.up = false;
        self.origin.writes.clear();
        let down = self.uniform(self.cfg.down_min, self.cfg.down_max);
        self.at(down, Event::OriginRestart);
    }

    pub(super) fn origin_restart(&mut self) {
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
}
