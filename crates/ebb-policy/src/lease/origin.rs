//! The origin's side: who holds a lease on which key, and when a write on a
//! key may complete.
//!
//! Rules, each a method here and a test in `tests.rs`:
//! - a read may carry a lease of at most [`OriginConfig::max_term`]; the
//!   origin records the holder with the expiry `now + T` on its own clock,
//!   which is never before the holder's own `request_sent + T − ε`;
//! - a write completes only once every recorded holder acknowledged an
//!   invalidation or its lease ran out; a holder that never answers delays
//!   the write until its term ends, never longer (callbacks excepted: their
//!   term does not end, so only [`OriginLeases::declare_dead`] releases it);
//! - while a write on a key waits, reads of that key are answered without a
//!   lease, so a steady stream of readers cannot starve the writer;
//! - after a restart the origin has forgotten its holders, so no write is
//!   allowed until the longest term it may have granted (persisted before
//!   granting) plus ε has passed; with callbacks, until the holders of the
//!   previous incarnation are known gone ([`OriginLeases::clear_recovery`]).

use std::collections::{BTreeMap, BTreeSet};

use ebb_core::{Instant, Nanos};

use super::{HolderId, LeaseId, LeaseTerm};

/// Holders recorded per key by default; past it, reads of that key are
/// answered without a lease (they still succeed).
pub const DEFAULT_MAX_HOLDERS_PER_KEY: usize = 1_024;
/// Keys with leases recorded by default; past it (after dropping expired
/// leases), reads of new keys are answered without a lease.
pub const DEFAULT_MAX_LEASED_KEYS: usize = 100_000;

/// How the origin leases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OriginConfig {
    /// The longest term granted. It is the bound persisted before the first
    /// grant and waited out after a restart.
    pub max_term: LeaseTerm,
    /// Clock drift allowance between origin and holders over one term.
    pub epsilon: Nanos,
    pub max_holders_per_key: usize,
    pub max_leased_keys: usize,
}

impl OriginConfig {
    pub fn new(max_term: LeaseTerm, epsilon: Nanos) -> OriginConfig {
        OriginConfig {
            max_term,
            epsilon,
            max_holders_per_key: DEFAULT_MAX_HOLDERS_PER_KEY,
            max_leased_keys: DEFAULT_MAX_LEASED_KEYS,
        }
    }
}

/// The answer to a read, as far as leases go (the value is the store's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadGrant {
    /// Cache the value for this term, counted from when the read was sent.
    Lease { term: LeaseTerm, id: LeaseId },
    /// Use the value for this read only.
    NoLease(NoLease),
}

/// Why a read got no lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoLease {
    /// The term asked for (or allowed) is zero.
    CheckOnUse,
    /// A write on the key is waiting for holders.
    WritePending,
    /// The key already has `max_holders_per_key` holders.
    HoldersFull,
    /// `max_leased_keys` keys already have leases.
    TableFull,
}

/// Whether a restarted origin may let writes complete yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing from a previous incarnation can still be held.
    Done,
    /// Leases of a previous incarnation may be held until this instant.
    Until(Instant),
    /// Callbacks of a previous incarnation may be held until every holder is
    /// known gone or has dropped its cache.
    UntilCleared,
}

/// The answer to a write that wants to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteStart {
    /// No one holds a lease: apply the write now, then call
    /// [`OriginLeases::finish_write`] (or [`OriginLeases::abandon_write`]);
    /// until then reads of the key get no lease.
    Ready,
    /// Send an invalidation naming the grant to each holder; the write may
    /// complete once [`OriginLeases::write_status`] says so, at the latest
    /// at `until`.
    Invalidate {
        holders: Vec<(HolderId, LeaseId)>,
        until: Instant,
    },
    /// Another write on this key is waiting: try again after it.
    Busy,
    /// The origin restarted and may have granted leases it forgot.
    Recovering(Recovery),
}

/// Where a started write stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteStatus {
    /// Every holder acknowledged or expired: apply the write.
    Ready,
    /// `holders` have neither acknowledged nor expired; the last finite
    /// expiry among them is `until` (far future for callbacks).
    Waiting { holders: usize, until: Instant },
    /// No write on this key was started.
    NotStarted,
}

#[derive(Debug, Default)]
struct KeyLeases {
    /// Holder → the origin-clock instant its lease ends, and the grant.
    holders: BTreeMap<HolderId, (Instant, LeaseId)>,
    /// A write is waiting on these holders.
    write: Option<BTreeSet<HolderId>>,
}

/// The origin's lease table. Bounded by [`OriginConfig::max_leased_keys`] ×
/// [`OriginConfig::max_holders_per_key`] entries.
#[derive(Debug)]
pub struct OriginLeases<K> {
    cfg: OriginConfig,
    keys: BTreeMap<K, KeyLeases>,
    recovery: Recovery,
    /// The next grant's id: the incarnation in the high 24 bits, a count in
    /// the low 40.
    next_id: u64,
}

const ID_COUNT_BITS: u32 = 40;

impl<K: Ord + Clone> OriginLeases<K> {
    /// A fresh origin that never granted a lease before.
    pub fn new(cfg: OriginConfig) -> OriginLeases<K> {
        OriginLeases {
            cfg,
            keys: BTreeMap::new(),
            recovery: Recovery::Done,
            next_id: 1,
        }
    }

    /// An origin that restarted at `now`. `persisted_bound` is the term bound
    /// the previous incarnation wrote down before granting (`None`: it never
    /// granted). Writes wait until that term plus ε has passed.
    /// `incarnation` (persisted, one more at every start) keeps this
    /// incarnation's lease ids apart from the previous ones'.
    pub fn restarted(
        cfg: OriginConfig,
        now: Instant,
        persisted_bound: Option<LeaseTerm>,
        incarnation: u64,
    ) -> OriginLeases<K> {
        let recovery = match persisted_bound {
            None => Recovery::Done,
            Some(t) if t.is_check_on_use() => Recovery::Done,
            Some(t) if t.is_callback() => Recovery::UntilCleared,
            Some(t) => Recovery::Until(now + t.span() + cfg.epsilon),
        };
        OriginLeases {
            cfg,
            keys: BTreeMap::new(),
            recovery,
            next_id: ((incarnation & 0xff_ffff) << ID_COUNT_BITS) | 1,
        }
    }

    /// The bound to persist before granting: never lower than what a
    /// previous incarnation persisted, since its leases may still be held.
    pub fn bound_to_persist(previous: Option<LeaseTerm>, configured: LeaseTerm) -> LeaseTerm {
        previous.map_or(configured, |p| p.max(configured))
    }

    pub fn config(&self) -> &OriginConfig {
        &self.cfg
    }

    /// Where recovery stands at `now` (ends it once its time has passed).
    pub fn recovery(&mut self, now: Instant) -> Recovery {
        if let Recovery::Until(t) = self.recovery {
            if now >= t {
                self.recovery = Recovery::Done;
            }
        }
        self.recovery
    }

    /// The failure detector's word that every holder of the previous
    /// incarnation is gone or dropped its cache: callbacks no longer block.
    pub fn clear_recovery(&mut self) {
        self.recovery = Recovery::Done;
    }

    /// A read of `key` by `holder` asking for `requested`. Records the lease
    /// when one is granted.
    pub fn read(
        &mut self,
        now: Instant,
        key: &K,
        holder: HolderId,
        requested: LeaseTerm,
    ) -> ReadGrant {
        let term = requested.min(self.cfg.max_term);
        if term.is_check_on_use() {
            return ReadGrant::NoLease(NoLease::CheckOnUse);
        }
        if !self.keys.contains_key(key) && self.keys.len() >= self.cfg.max_leased_keys {
            self.expire(now);
            if self.keys.len() >= self.cfg.max_leased_keys {
                return ReadGrant::NoLease(NoLease::TableFull);
            }
        }
        let max_holders = self.cfg.max_holders_per_key;
        let entry = self.keys.entry(key.clone()).or_default();
        if entry.write.is_some() {
            return ReadGrant::NoLease(NoLease::WritePending);
        }
        if !entry.holders.contains_key(&holder) && entry.holders.len() >= max_holders {
            entry.holders.retain(|_, (until, _)| *until > now);
            if entry.holders.len() >= max_holders {
                return ReadGrant::NoLease(NoLease::HoldersFull);
            }
        }
        let until = if term.is_callback() {
            Instant::FAR_FUTURE
        } else {
            now + term.span()
        };
        let id = LeaseId(self.next_id);
        self.next_id += 1;
        entry.holders.insert(holder, (until, id));
        ReadGrant::Lease { term, id }
    }

    /// A write on `key` wants to start at `now`.
    pub fn begin_write(&mut self, now: Instant, key: &K) -> WriteStart {
        match self.recovery(now) {
            Recovery::Done => {}
            r => return WriteStart::Recovering(r),
        }
        let entry = self.keys.entry(key.clone()).or_default();
        if entry.write.is_some() {
            return WriteStart::Busy;
        }
        entry.holders.retain(|_, (until, _)| *until > now);
        if entry.holders.is_empty() {
            // Marked all the same: until the write is applied no read may
            // take a lease on the value it is about to replace.
            entry.write = Some(BTreeSet::new());
            return WriteStart::Ready;
        }
        let holders: Vec<(HolderId, LeaseId)> =
            entry.holders.iter().map(|(h, (_, id))| (*h, *id)).collect();
        let until = entry.holders.values().map(|(u, _)| *u).max().unwrap_or(now);
        entry.write = Some(holders.iter().map(|(h, _)| *h).collect());
        WriteStart::Invalidate { holders, until }
    }

    /// Where the write on `key` stands at `now`.
    pub fn write_status(&mut self, now: Instant, key: &K) -> WriteStatus {
        let Some(entry) = self.keys.get_mut(key) else {
            return WriteStatus::NotStarted;
        };
        let Some(waiting) = entry.write.as_mut() else {
            return WriteStatus::NotStarted;
        };
        let holders = &entry.holders;
        waiting.retain(|h| holders.get(h).is_some_and(|(until, _)| *until > now));
        if waiting.is_empty() {
            return WriteStatus::Ready;
        }
        let until = waiting
            .iter()
            .filter_map(|h| holders.get(h))
            .map(|(until, _)| *until)
            .max()
            .unwrap_or(now);
        WriteStatus::Waiting {
            holders: waiting.len(),
            until,
        }
    }

    /// `holder` acknowledged the invalidation of grant `id` on `key`, or
    /// dropped that entry on its own (eviction): it no longer holds that
    /// lease. A late message naming an older grant changes nothing. Returns
    /// whether a waiting write was waiting for it.
    pub fn release(&mut self, key: &K, holder: HolderId, id: LeaseId) -> bool {
        let Some(entry) = self.keys.get_mut(key) else {
            return false;
        };
        if entry
            .holders
            .get(&holder)
            .is_none_or(|(_, held)| *held != id)
        {
            return false;
        }
        entry.holders.remove(&holder);
        let awaited = entry.write.as_mut().is_some_and(|w| w.remove(&holder));
        if entry.holders.is_empty() && entry.write.is_none() {
            self.keys.remove(key);
        }
        awaited
    }

    /// The write on `key` was applied (after [`WriteStart::Ready`] or
    /// [`WriteStatus::Ready`]): leases may be granted on it again.
    pub fn finish_write(&mut self, key: &K) {
        debug_assert!(
            self.keys
                .get(key)
                .and_then(|e| e.write.as_ref())
                .is_none_or(|w| w.is_empty()),
            "a write finished while holders it waits for were still recorded"
        );
        self.keys.remove(key);
    }

    /// The write on `key` was given up before it was applied: holders that
    /// have not acknowledged keep their leases.
    pub fn abandon_write(&mut self, key: &K) {
        if let Some(entry) = self.keys.get_mut(key) {
            entry.write = None;
            if entry.holders.is_empty() {
                self.keys.remove(key);
            }
        }
    }

    /// The failure detector declared `holder` dead: it serves nothing any
    /// more, so no write waits for it. Returns how many leases it held.
    pub fn declare_dead(&mut self, holder: HolderId) -> usize {
        let mut n = 0;
        for entry in self.keys.values_mut() {
            if entry.holders.remove(&holder).is_some() {
                n += 1;
            }
            if let Some(w) = entry.write.as_mut() {
                w.remove(&holder);
            }
        }
        self.keys
            .retain(|_, e| !e.holders.is_empty() || e.write.is_some());
        n
    }

    /// Drops leases that ended by `now` on keys with no waiting write.
    pub fn expire(&mut self, now: Instant) {
        for entry in self.keys.values_mut() {
            if entry.write.is_none() {
                entry.holders.retain(|_, (until, _)| *until > now);
            }
        }
        self.keys
            .retain(|_, e| !e.holders.is_empty() || e.write.is_some());
    }

    /// The holders recorded on `key` whose leases last past `now`.
    pub fn holders(&self, now: Instant, key: &K) -> Vec<HolderId> {
        self.keys.get(key).map_or_else(Vec::new, |e| {
            e.holders
                .iter()
                .filter(|(_, (until, _))| *until > now)
                .map(|(h, _)| *h)
                .collect()
        })
    }

    /// Keys with a lease or a waiting write recorded.
    pub fn leased_keys(&self) -> usize {
        self.keys.len()
    }
}
