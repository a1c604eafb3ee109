//! The invalidation poller: one long-poll per node hands in the releases
//! queued since the last one and obeys the invalidations it brings back.
//! A poll that fails keeps its releases for the next one, so an
//! acknowledgement is late at worst, never lost while the queue has room.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ebb_rpc::service::Transport;

use super::{CacheError, LeaseCache, lock, push_release};
use crate::api::Release;

/// Pause after a failed poll, doubling up to the maximum.
const POLL_BACKOFF_MIN_MS: u64 = 50;
const POLL_BACKOFF_MAX_MS: u64 = 1_000;

impl<T: Transport> LeaseCache<T> {
    /// Obeys one invalidation: poison reads in flight, drop the entry,
    /// queue the acknowledgement.
    fn invalidate(&self, key: &str, lease_id: u64) {
        let inner = &self.inner;
        {
            let mut fetches = lock(&inner.fetches);
            fetches.invalidate(&key.to_owned());
            inner.entries.invalidate(key);
        }
        inner.stats.invalidations.fetch_add(1, Ordering::Relaxed);
        push_release(
            &inner.releases,
            &inner.stats,
            Release {
                key: key.to_owned(),
                lease_id,
            },
        );
    }

    /// One poll: hand in releases, obey invalidations. Returns how many
    /// invalidations it obeyed.
    pub async fn poll_once(&self) -> Result<usize, CacheError> {
        let inner = &self.inner;
        let releases = std::mem::take(&mut *lock(&inner.releases));
        let reply = inner
            .origin
            .poll_invalidations(inner.holder, releases.clone(), inner.settings.poll_wait_ms)
            .await;
        let reply = match reply {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.requeue(releases);
                return Err(e.into());
            }
            Err(e) => {
                self.requeue(releases);
                return Err(e.into());
            }
        };
        inner.stats.polls.fetch_add(1, Ordering::Relaxed);
        let before = inner.incarnation.swap(reply.incarnation, Ordering::SeqCst);
        if before != 0 && before != reply.incarnation {
            // A new origin incarnation forgot every grant: drop everything
            // (what callbacks need; harmless for finite terms).
            let mut fetches = lock(&inner.fetches);
            fetches.clear();
            inner.entries.invalidate_all();
        }
        let n = reply.invalidations.len();
        for inv in reply.invalidations {
            self.invalidate(&inv.key, inv.lease_id);
        }
        Ok(n)
    }

    fn requeue(&self, releases: Vec<Release>) {
        for r in releases {
            push_release(&self.inner.releases, &self.inner.stats, r);
        }
    }

    /// Polls until the task is dropped, backing off while the origin is
    /// unreachable.
    pub async fn run_poller(self) {
        let mut backoff = POLL_BACKOFF_MIN_MS;
        loop {
            match self.poll_once().await {
                Ok(_) => backoff = POLL_BACKOFF_MIN_MS,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                    backoff = (backoff * 2).min(POLL_BACKOFF_MAX_MS);
                }
            }
        }
    }
}
