//! The node side: a cache of origin values, bounded in bytes (moka), each
//! entry with its lease, checked on every read against `ebb_policy::lease`.
//!
//! Invalidations arrive through one long-poll per node ([`LeaseCache::run_poller`]);
//! the node drops the entry, poisons reads of that key still in flight, and
//! acknowledges on its next poll. An entry evicted for space while its lease
//! runs is reported the same way, so the origin stops waiting for this node
//! on that key; if the report queue is full the report is dropped and the
//! origin waits out the term instead (never longer).
//!
//! Reads and writes are here; the poller that obeys invalidations is
//! `poll.rs`, and connecting from a thread of its own is `connect.rs`.

mod connect;
mod poll;

pub use connect::{connect_in_background, random_holder_id};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ebb_core::{Clock, Nanos, SystemClock};
use ebb_policy::lease::{
    FetchTracker, HeldLease, LeaseId, LeaseTerm, ReadPlan, Version, plan_read,
};
use ebb_rpc::CallError;
use ebb_rpc::service::Transport;
use moka::notification::RemovalCause;

use crate::api::{Body, OriginClient, OriginError, Release};
use crate::planted::PlantedBug;

/// Reads of one node in flight to the origin that an invalidation can still
/// poison; past it a reply is used but not cached.
pub const MAX_FETCHES_IN_FLIGHT: usize = 4_096;
/// Releases (acknowledgements, eviction notices) waiting for the next poll.
pub const MAX_PENDING_RELEASES: usize = 4_096;
/// Bytes an entry costs beyond its key and value (the lease, moka's own).
const ENTRY_OVERHEAD_BYTES: usize = 96;

/// How a node caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    /// The term asked for (the origin may grant less).
    pub term: LeaseTerm,
    pub epsilon: Nanos,
    pub max_bytes: u64,
    /// How long one poll waits at the origin. Below the RPC client's first
    /// resend (1 s) so a quiet poll is not sent twice.
    pub poll_wait_ms: u64,
}

impl Default for CacheSettings {
    fn default() -> CacheSettings {
        CacheSettings {
            term: LeaseTerm::from_millis(crate::origin::DEFAULT_TERM_MS),
            epsilon: Nanos::from_millis(crate::origin::DEFAULT_EPSILON_MS),
            max_bytes: 64 << 20,
            poll_wait_ms: 500,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("calling the origin: {0}")]
    Call(#[from] CallError),
    #[error("the origin refused: {0}")]
    Origin(#[from] OriginError),
    #[error("starting the cache: {0}")]
    Start(String),
}

#[derive(Debug)]
struct Entry {
    value: Option<Vec<u8>>,
    lease: HeldLease,
}

/// Counters of what reads did.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub served_locally: AtomicU64,
    pub validated_unchanged: AtomicU64,
    pub fetched: AtomicU64,
    pub invalidations: AtomicU64,
    pub evictions_reported: AtomicU64,
    pub releases_dropped: AtomicU64,
    /// Polls answered by the origin (with or without invalidations).
    pub polls: AtomicU64,
}

struct Inner<T: Transport> {
    origin: OriginClient<T>,
    holder: u64,
    clock: SystemClock,
    settings: CacheSettings,
    entries: moka::sync::Cache<String, Arc<Entry>>,
    /// Also serialises "finish a read and cache its reply" against "obey an
    /// invalidation", so no reply that raced an invalidation is cached.
    fetches: Mutex<FetchTracker<String>>,
    releases: Arc<Mutex<Vec<Release>>>,
    incarnation: AtomicU64,
    stats: Arc<CacheStats>,
}

/// A node's lease cache in front of one origin. Cheap to clone.
pub struct LeaseCache<T: Transport> {
    inner: Arc<Inner<T>>,
}

impl<T: Transport> std::fmt::Debug for LeaseCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseCache")
            .field("holder", &self.inner.holder)
            .field("settings", &self.inner.settings)
            .field("stats", &self.inner.stats)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Clone for LeaseCache<T> {
    fn clone(&self) -> Self {
        LeaseCache {
            inner: self.inner.clone(),
        }
    }
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    // Every critical section leaves its data consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn push_release(queue: &Mutex<Vec<Release>>, stats: &CacheStats, r: Release) {
    let mut q = lock(queue);
    if q.len() < MAX_PENDING_RELEASES {
        q.push(r);
    } else {
        stats.releases_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

impl<T: Transport> LeaseCache<T> {
    /// A cache whose holder id is `holder` (random per node process: a
    /// restarted node is a new holder with an empty cache).
    pub fn new(origin: OriginClient<T>, holder: u64, settings: CacheSettings) -> LeaseCache<T> {
        let releases: Arc<Mutex<Vec<Release>>> = Arc::new(Mutex::new(Vec::new()));
        let stats = Arc::new(CacheStats::default());
        let (rq, st) = (releases.clone(), stats.clone());
        let entries = moka::sync::Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|k: &String, e: &Arc<Entry>| {
                let bytes = k.len() + e.value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD_BYTES;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |k: Arc<String>, e: Arc<Entry>, cause| {
                // Only evictions for space tell the origin: an explicit
                // removal is an invalidation (acknowledged by the poller),
                // a replacement is superseded by the newer grant.
                if matches!(cause, RemovalCause::Size | RemovalCause::Expired)
                    && e.lease.id != LeaseId::NONE
                {
                    st.evictions_reported.fetch_add(1, Ordering::Relaxed);
                    push_release(
                        &rq,
                        &st,
                        Release {
                            key: (*k).clone(),
                            lease_id: e.lease.id.0,
                        },
                    );
                }
            })
            .build();
        LeaseCache {
            inner: Arc::new(Inner {
                origin,
                holder,
                clock: SystemClock::new(),
                settings,
                entries,
                fetches: Mutex::new(FetchTracker::new(MAX_FETCHES_IN_FLIGHT)),
                releases,
                incarnation: AtomicU64::new(0),
                stats,
            }),
        }
    }

    pub fn stats(&self) -> &CacheStats {
        &self.inner.stats
    }

    pub fn holder(&self) -> u64 {
        self.inner.holder
    }

    /// The value of `key`: from the cache while its lease allows, else from
    /// the origin (by version when a copy is cached).
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self.read(key).await?.1)
    }

    /// [`LeaseCache::get`] with the version read (0: never written).
    pub async fn read(&self, key: &str) -> Result<(u64, Option<Vec<u8>>), CacheError> {
        let inner = &self.inner;
        let now = crate::planted::node_clock(inner.clock.now());
        let cached = inner.entries.get(key);
        let epsilon = match crate::planted::bug() {
            Some(PlantedBug::IgnoreEpsilon) => Nanos::ZERO,
            _ => inner.settings.epsilon,
        };
        let mut plan = plan_read(cached.as_ref().map(|e| &e.lease), now, epsilon);
        if crate::planted::bug() == Some(PlantedBug::ServePastExpiry)
            && cached
                .as_ref()
                .is_some_and(|e| !e.lease.term.is_check_on_use())
        {
            plan = ReadPlan::Serve;
        }
        if plan == ReadPlan::Serve {
            if let Some(e) = cached {
                inner.stats.served_locally.fetch_add(1, Ordering::Relaxed);
                return Ok((e.lease.version.0, e.value.clone()));
            }
        }
        let known = cached.as_ref().map_or(0, |e| e.lease.version.0);
        let fetch = lock(&inner.fetches).begin(key.to_owned(), now);
        let term_ns = inner.settings.term.span().as_nanos();
        let reply = inner
            .origin
            .get(key.to_owned(), inner.holder, term_ns, known)
            .await;
        let mut fetches = lock(&inner.fetches);
        let sent = fetches.finish(fetch);
        let reply = reply??;
        let value = match reply.body {
            Body::Absent => None,
            Body::Unchanged => {
                inner
                    .stats
                    .validated_unchanged
                    .fetch_add(1, Ordering::Relaxed);
                cached.as_ref().and_then(|e| e.value.clone())
            }
            Body::Value(v) => {
                inner.stats.fetched.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
        };
        if let Some(sent) = sent {
            let (term, id) = reply
                .lease
                .map_or((LeaseTerm::CHECK_ON_USE, LeaseId::NONE), |g| {
                    (LeaseTerm::new(Nanos(g.term_ns)), LeaseId(g.id))
                });
            let fresh = HeldLease {
                version: Version(reply.version),
                request_sent: sent,
                term,
                id,
            };
            let keep = inner
                .entries
                .get(key)
                .is_none_or(|old| old.lease.newer_of(fresh) == fresh);
            if keep {
                inner.entries.insert(
                    key.to_owned(),
                    Arc::new(Entry {
                        value: value.clone(),
                        lease: fresh,
                    }),
                );
            }
        }
        drop(fetches);
        Ok((reply.version, value))
    }

    /// Writes through to the origin; returns the new version. The origin
    /// invalidates this node's own copy like any other holder's.
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, CacheError> {
        Ok(self.inner.origin.put(key.to_owned(), value).await??)
    }

    /// Conditional write through to the origin.
    pub async fn put_if_version(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: u64,
    ) -> Result<u64, CacheError> {
        Ok(self
            .inner
            .origin
            .put_if_version(key.to_owned(), value, expected)
            .await??)
    }

    /// Entries currently cached (after pending maintenance).
    pub fn len(&self) -> u64 {
        self.inner.entries.run_pending_tasks();
        self.inner.entries.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
