//! The holder's side: may a cached entry answer a read now, and may a reply
//! from the origin be cached at all.
//!
//! Two rules keep a holder from serving a value the origin has already
//! replaced:
//! - a lease counts from when the read was *sent*, minus ε for clock drift:
//!   the origin recorded the lease no earlier than that, so its own expiry
//!   is never before the holder's;
//! - a reply to a read that was in flight when an invalidation for its key
//!   arrived is used once but never cached: the origin forgot this holder
//!   when it acknowledged, and will not tell it again.

use std::collections::BTreeMap;

use ebb_core::{Instant, Nanos};

use super::{LeaseId, LeaseTerm, Version};

/// A lease as the holder keeps it, beside the cached value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldLease {
    pub version: Version,
    /// When the read that brought this lease left the holder (holder clock).
    pub request_sent: Instant,
    pub term: LeaseTerm,
    /// The origin's name for the grant, sent back when the entry is evicted.
    pub id: LeaseId,
}

impl HeldLease {
    /// The first holder-clock instant at which the entry may no longer be
    /// served from the cache: `request_sent + T − ε`, never for a term of at
    /// most ε, and never ending for a callback.
    pub fn serve_until(&self, epsilon: Nanos) -> Instant {
        if self.term.is_callback() {
            Instant::FAR_FUTURE
        } else {
            self.request_sent + self.term.span().saturating_sub(epsilon)
        }
    }

    /// Whether a read at `now` may be answered from the cache.
    pub fn may_serve(&self, now: Instant, epsilon: Nanos) -> bool {
        now < self.serve_until(epsilon)
    }

    /// Which of two leases on one key to keep: the newer version, and for
    /// the same version the later request (its term ends later).
    pub fn newer_of(self, other: HeldLease) -> HeldLease {
        if (other.version, other.request_sent) > (self.version, self.request_sent) {
            other
        } else {
            self
        }
    }
}

/// What a read must do on the holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPlan {
    /// Answer from the cache.
    Serve,
    /// The lease ran out (or there never was one: check-on-use); ask the
    /// origin whether `version` is still current, which costs a round trip
    /// but not the value's bytes when it is.
    Validate { version: Version },
    /// Nothing cached: fetch the value.
    Fetch,
}

/// The decision for a read of an entry cached with `lease` (or of nothing).
pub fn plan_read(lease: Option<&HeldLease>, now: Instant, epsilon: Nanos) -> ReadPlan {
    match lease {
        None => ReadPlan::Fetch,
        Some(l) if l.may_serve(now, epsilon) => ReadPlan::Serve,
        Some(l) => ReadPlan::Validate { version: l.version },
    }
}

/// One read in flight to the origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FetchId(u64);

#[derive(Debug)]
struct InFlight<K> {
    key: K,
    sent: Instant,
    /// An invalidation for `key` arrived while this read was in flight.
    poisoned: bool,
}

/// Reads in flight to the origin, so an invalidation can poison those that
/// raced it. Bounded: past `max_in_flight` a read is still allowed but its
/// reply is not cached (it cannot be poisoned, so it cannot be trusted).
#[derive(Debug)]
pub struct FetchTracker<K> {
    next: u64,
    in_flight: BTreeMap<FetchId, InFlight<K>>,
    max_in_flight: usize,
}

impl<K: Ord> FetchTracker<K> {
    pub fn new(max_in_flight: usize) -> FetchTracker<K> {
        FetchTracker {
            next: 0,
            in_flight: BTreeMap::new(),
            max_in_flight,
        }
    }

    /// Records a read of `key` leaving the holder at `now`.
    pub fn begin(&mut self, key: K, now: Instant) -> FetchId {
        let id = FetchId(self.next);
        self.next += 1;
        if self.in_flight.len() < self.max_in_flight {
            self.in_flight.insert(
                id,
                InFlight {
                    key,
                    sent: now,
                    poisoned: false,
                },
            );
        }
        id
    }

    /// An invalidation for `key` arrived: no reply to a read already in
    /// flight for it may be cached. Returns how many reads it poisoned.
    pub fn invalidate(&mut self, key: &K) -> usize {
        let mut n = 0;
        for f in self.in_flight.values_mut() {
            if &f.key == key && !f.poisoned {
                f.poisoned = true;
                n += 1;
            }
        }
        n
    }

    /// The read `id` ended (with a reply or not). `Some(sent)` means its
    /// reply may be cached with a lease counted from `sent`; `None` means use
    /// it for this one read only.
    pub fn finish(&mut self, id: FetchId) -> Option<Instant> {
        match self.in_flight.remove(&id) {
            Some(f) if !f.poisoned => Some(f.sent),
            _ => None,
        }
    }

    /// Forgets everything in flight (the holder lost its cache).
    pub fn clear(&mut self) {
        self.in_flight.clear();
    }

    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }
}
