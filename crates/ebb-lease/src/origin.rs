//! The origin: the store, the lease table and the invalidation outboxes,
//! behind the [`Origin`] RPC interface.
//!
//! Order of a write: wait until every holder acknowledged or expired (the
//! key is marked, so no read takes a new lease meanwhile), then commit
//! durably, then let leases be granted again. Order at start: read the
//! persisted term bound and incarnation, persist the new ones, and only then
//! serve; writes wait out the previous incarnation's bound plus ε. The
//! write path is `origin/write.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ebb_core::{Clock, Instant, Nanos, SystemClock};
use ebb_policy::lease::{
    HolderId, LeaseId, LeaseTerm, OriginConfig, OriginLeases, ReadGrant, Recovery,
};
use tokio::sync::Notify;

use crate::api::{Body, GetReply, Grant, Invalidation, Origin, OriginError, PollReply, Release};
use crate::commit::Committer;
use crate::planted::PlantedBug;
use crate::store::{Store, StoreError, check_sizes};

mod write;

/// Persisted names.
const META_TERM_BOUND_NS: &str = "lease_term_bound_ns";
const META_INCARNATION: &str = "incarnation";

/// The longest a poll waits, whatever the caller asks.
pub const MAX_POLL_WAIT_MS: u64 = 30_000;
/// Holders polling at once; a new one past it is refused.
pub const MAX_HOLDERS: usize = 4_096;
/// Releases read from one poll; the rest are ignored (their leases expire).
pub const MAX_RELEASES_PER_POLL: usize = 4_096;

/// Defaults shared by the origin, the node caches and the command lines
/// that start them, so `ebb origin`, `ebb node` and `ebb up` agree: the
/// longest term granted (and the one nodes ask for), milliseconds.
pub const DEFAULT_TERM_MS: u64 = 10_000;
/// Clock drift allowed between origin and nodes over one term, milliseconds.
pub const DEFAULT_EPSILON_MS: u64 = 100;
/// Silence after which a callback holder is declared dead, milliseconds.
pub const DEFAULT_HOLDER_TIMEOUT_MS: u64 = 3_000;

/// How the origin leases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OriginSettings {
    /// Longest term granted (`LeaseTerm::CALLBACK` for callbacks).
    pub max_term: LeaseTerm,
    pub epsilon: Nanos,
    /// With callbacks: a holder silent (no poll, no read) this long is
    /// declared dead, and a restarted origin accepts writes this long after
    /// starting (every earlier holder has polled and seen the new
    /// incarnation, or counts as dead).
    pub holder_timeout: Nanos,
    /// Puts committed together in one durable transaction at most (group
    /// commit; 1: each put its own fsync).
    pub max_batch_writes: usize,
}

/// Puts sharing one commit at most, by default.
pub const DEFAULT_MAX_BATCH_WRITES: usize = 256;

impl Default for OriginSettings {
    fn default() -> OriginSettings {
        OriginSettings {
            max_term: LeaseTerm::from_millis(DEFAULT_TERM_MS),
            epsilon: Nanos::from_millis(DEFAULT_EPSILON_MS),
            holder_timeout: Nanos::from_millis(DEFAULT_HOLDER_TIMEOUT_MS),
            max_batch_writes: DEFAULT_MAX_BATCH_WRITES,
        }
    }
}

#[derive(Debug)]
struct State {
    leases: OriginLeases<String>,
    /// Holder → key → grant to invalidate, until acknowledged or moot.
    outbox: BTreeMap<u64, BTreeMap<String, u64>>,
    last_seen: BTreeMap<u64, Instant>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<Store>,
    committer: Committer,
    clock: SystemClock,
    started: Instant,
    incarnation: u64,
    settings: OriginSettings,
    state: Mutex<State>,
    changed: Notify,
}

/// The origin service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct OriginService {
    inner: Arc<Inner>,
}

/// What opening found, for the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    pub incarnation: u64,
    /// The term bound the previous incarnation persisted, if any.
    pub previous_bound: Option<LeaseTerm>,
    /// How long writes wait from now (None: not at all; `Nanos::MAX`: until
    /// the holder timeout clears callbacks).
    pub writes_wait: Option<Nanos>,
}

impl OriginService {
    /// Opens the store in `dir`, persists the term bound and the next
    /// incarnation, and sets the recovery gate from the previous bound.
    pub fn open(
        dir: &Path,
        settings: OriginSettings,
    ) -> Result<(OriginService, Opened), StoreError> {
        let store = Store::open(dir)?;
        let mut previous_bound = store
            .meta(META_TERM_BOUND_NS)?
            .map(|ns| LeaseTerm::new(Nanos(ns)));
        if crate::planted::bug() == Some(PlantedBug::ForgetTermBound) {
            previous_bound = None;
        }
        let incarnation = store.meta(META_INCARNATION)?.unwrap_or(0) + 1;
        store.set_meta(META_INCARNATION, incarnation)?;
        let bound = OriginLeases::<String>::bound_to_persist(previous_bound, settings.max_term);
        // Persisted before the first grant: a crash from here on must wait
        // out this bound.
        store.set_meta(META_TERM_BOUND_NS, bound.span().as_nanos())?;
        let clock = SystemClock::new();
        let now = clock.now();
        let cfg = OriginConfig::new(settings.max_term, settings.epsilon);
        let mut leases = OriginLeases::restarted(cfg, now, previous_bound, incarnation);
        let writes_wait = match leases.recovery(now) {
            Recovery::Done => None,
            Recovery::Until(t) => Some(t.saturating_since(now)),
            Recovery::UntilCleared => Some(Nanos::MAX),
        };
        let store = Arc::new(store);
        let committer =
            Committer::start(store.clone(), settings.max_batch_writes).map_err(|e| {
                StoreError::Io {
                    path: dir.to_owned(),
                    detail: format!("starting the commit thread: {e}"),
                }
            })?;
        let inner = Inner {
            store,
            committer,
            clock,
            started: now,
            incarnation,
            settings,
            state: Mutex::new(State {
                leases,
                outbox: BTreeMap::new(),
                last_seen: BTreeMap::new(),
            }),
            changed: Notify::new(),
        };
        let opened = Opened {
            incarnation,
            previous_bound,
            writes_wait,
        };
        Ok((
            OriginService {
                inner: Arc::new(inner),
            },
            opened,
        ))
    }

    /// Holders with a running lease on `key`: for operators and tests.
    pub fn lease_holders(&self, key: &str) -> usize {
        self.state()
            .leases
            .holders(self.now(), &key.to_owned())
            .len()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the table consistent (every
        // method updates it in one step), so a poisoned lock is still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Instant {
        self.inner.clock.now()
    }

    /// Records `holder` as alive; false when the table is full of others.
    fn seen(st: &mut State, holder: u64, now: Instant, timeout: Nanos) -> bool {
        if !st.last_seen.contains_key(&holder) && st.last_seen.len() >= MAX_HOLDERS {
            st.last_seen.retain(|_, at| {
                now.saturating_since(*at) < Nanos(timeout.as_nanos().saturating_mul(10))
            });
            if st.last_seen.len() >= MAX_HOLDERS {
                return false;
            }
        }
        st.last_seen.insert(holder, now);
        true
    }
}

impl Origin for OriginService {
    async fn get(
        &self,
        key: String,
        holder: u64,
        term_ns: u64,
        known_version: u64,
    ) -> Result<GetReply, OriginError> {
        check_sizes(&key, None)?;
        let now = self.now();
        // Grant (record the holder) before reading the store: a write that
        // starts after this point will invalidate the holder, so the value
        // read below can never be older than the lease admits.
        let grant = {
            let mut st = self.state();
            if Self::seen(&mut st, holder, now, self.inner.settings.holder_timeout) {
                st.leases
                    .read(now, &key, HolderId(holder), LeaseTerm::new(Nanos(term_ns)))
            } else {
                ReadGrant::NoLease(ebb_policy::lease::NoLease::TableFull)
            }
        };
        let record = self.inner.store.get(&key)?;
        let (version, body) = match record {
            None => (0, Body::Absent),
            Some(r) if r.version == known_version => (r.version, Body::Unchanged),
            Some(r) => (r.version, Body::Value(r.value)),
        };
        let lease = match grant {
            ReadGrant::Lease { term, id } => Some(Grant {
                term_ns: term.span().as_nanos(),
                id: id.0,
            }),
            ReadGrant::NoLease(_) => None,
        };
        Ok(GetReply {
            version,
            body,
            lease,
        })
    }

    async fn put(&self, key: String, value: Vec<u8>) -> Result<u64, OriginError> {
        self.write(key, value, None).await
    }

    async fn put_if_version(
        &self,
        key: String,
        value: Vec<u8>,
        expected: u64,
    ) -> Result<u64, OriginError> {
        self.write(key, value, Some(expected)).await
    }

    async fn poll_invalidations(
        &self,
        holder: u64,
        releases: Vec<Release>,
        wait_ms: u64,
    ) -> Result<PollReply, OriginError> {
        let now = self.now();
        let mut released = false;
        {
            let mut st = self.state();
            if !Self::seen(&mut st, holder, now, self.inner.settings.holder_timeout) {
                return Err(OriginError::TooManyHolders { max: MAX_HOLDERS });
            }
            for r in releases.iter().take(MAX_RELEASES_PER_POLL) {
                released |= st
                    .leases
                    .release(&r.key, HolderId(holder), LeaseId(r.lease_id));
                if let Some(p) = st.outbox.get_mut(&holder) {
                    if p.get(&r.key) == Some(&r.lease_id) {
                        p.remove(&r.key);
                    }
                }
            }
            st.outbox.retain(|_, p| !p.is_empty());
        }
        if released {
            self.inner.changed.notify_waiters();
        }
        let deadline = now + Nanos::from_millis(wait_ms.min(MAX_POLL_WAIT_MS));
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.now();
            let invalidations: Vec<Invalidation> = self
                .state()
                .outbox
                .get(&holder)
                .map(|p| {
                    p.iter()
                        .map(|(k, id)| Invalidation {
                            key: k.clone(),
                            lease_id: *id,
                        })
                        .collect()
                })
                .unwrap_or_default();
            if !invalidations.is_empty() || now >= deadline {
                return Ok(PollReply {
                    incarnation: self.inner.incarnation,
                    invalidations,
                });
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(Duration::from(deadline.saturating_since(now))) => {}
            }
        }
    }
}
