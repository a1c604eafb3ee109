//! The write path: mark the key, wait until every holder acknowledged or
//! its lease ran out (or, with callbacks, it was declared dead), commit
//! durably, then unmark. The mark is held by a guard that a commit task
//! owns, so a caller that gives up never unmarks a key whose write may
//! still land.

use std::time::Duration;

use ebb_core::{Instant, Nanos};
use ebb_policy::lease::{HolderId, Recovery, WriteStart, WriteStatus};

use super::{OriginService, State};
use crate::api::OriginError;
use crate::planted::PlantedBug;
use crate::store::{Write, check_sizes};

/// A waiting write re-checks at least this often, so a missed wake-up costs
/// at most this much.
const RECHECK_MS: u64 = 200;

impl OriginService {
    /// Waits until the write on `key` may be applied; on `Ok` the key is
    /// marked as being written (no new leases) until the guard ends it.
    async fn wait_for_holders(&self, key: &str) -> Result<WriteGuard, OriginError> {
        let mut started = false;
        let callbacks = self.inner.settings.max_term.is_callback();
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.now();
            let mut wake_pollers = false;
            let wait_until = {
                let mut st = self.state();
                if !started && crate::planted::bug() == Some(PlantedBug::WriteSkipsHolders) {
                    return Ok(self.guard(key));
                }
                if !started {
                    match st.leases.begin_write(now, &key.to_owned()) {
                        WriteStart::Ready => return Ok(self.guard(key)),
                        WriteStart::Invalidate { holders, until } => {
                            started = true;
                            wake_pollers = true;
                            for (h, id) in holders {
                                st.outbox
                                    .entry(h.0)
                                    .or_default()
                                    .insert(key.to_owned(), id.0);
                            }
                            Some(until)
                        }
                        WriteStart::Busy => None,
                        WriteStart::Recovering(Recovery::Until(t)) => Some(t),
                        WriteStart::Recovering(Recovery::UntilCleared) => {
                            let clear_at = self.inner.started + self.inner.settings.holder_timeout;
                            if now >= clear_at {
                                st.leases.clear_recovery();
                                continue;
                            }
                            Some(clear_at)
                        }
                        WriteStart::Recovering(Recovery::Done) => continue,
                    }
                } else {
                    if callbacks {
                        self.declare_silent_dead(&mut st, now);
                    }
                    match st.leases.write_status(now, &key.to_owned()) {
                        WriteStatus::Ready | WriteStatus::NotStarted => {
                            return Ok(self.guard(key));
                        }
                        WriteStatus::Waiting { until, .. } => Some(until),
                    }
                }
            };
            if wake_pollers {
                self.inner.changed.notify_waiters();
            }
            let mut nap = Nanos::from_millis(RECHECK_MS);
            if let Some(t) = wait_until {
                nap = nap.min(t.saturating_since(now).max(Nanos(1)));
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(Duration::from(nap)) => {}
            }
        }
    }

    fn declare_silent_dead(&self, st: &mut State, now: Instant) {
        let timeout = self.inner.settings.holder_timeout;
        let silent: Vec<u64> = st
            .last_seen
            .iter()
            .filter(|(_, at)| now.saturating_since(**at) >= timeout)
            .map(|(h, _)| *h)
            .collect();
        for h in silent {
            st.leases.declare_dead(HolderId(h));
            st.last_seen.remove(&h);
            st.outbox.remove(&h);
        }
    }

    fn guard(&self, key: &str) -> WriteGuard {
        WriteGuard {
            origin: self.clone(),
            key: key.to_owned(),
            applied: false,
        }
    }

    pub(super) async fn write(
        &self,
        key: String,
        value: Vec<u8>,
        expected: Option<u64>,
    ) -> Result<u64, OriginError> {
        check_sizes(&key, Some(&value))?;
        let mut guard = self.wait_for_holders(&key).await?;
        let write = Write {
            key,
            value,
            expected,
        };
        // Committed in a task of its own, which keeps the key marked until
        // the commit ended: a caller that gives up (its deadline, a
        // cancelled call) must not unmark a key whose write may still land,
        // or a lease on the old value could be granted meanwhile.
        let origin = self.clone();
        let commit = tokio::spawn(async move {
            let result = match origin.inner.committer.commit(write).await {
                Ok(r) => r.map_err(OriginError::from),
                Err(e) => Err(OriginError::Storage(e.to_string())),
            };
            guard.applied = result.is_ok();
            drop(guard);
            result
        });
        match commit.await {
            Ok(result) => result,
            Err(e) => Err(OriginError::Storage(format!("the commit task failed: {e}"))),
        }
    }
}

/// Ends a write's mark on its key however the write ends (applied, failed,
/// or its caller gone), so a key is never left refusing leases.
struct WriteGuard {
    origin: OriginService,
    key: String,
    applied: bool,
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        {
            let mut st = self.origin.state();
            if self.applied {
                st.leases.finish_write(&self.key);
            } else {
                st.leases.abandon_write(&self.key);
            }
            for pending in st.outbox.values_mut() {
                pending.remove(&self.key);
            }
            st.outbox.retain(|_, p| !p.is_empty());
        }
        self.origin.inner.changed.notify_waiters();
    }
}
