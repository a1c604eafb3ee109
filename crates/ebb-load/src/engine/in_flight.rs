//! The requests in flight: their count (which the pacer holds under its
//! bound), a wake-up when none is left, and where each one's end goes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ebb_core::Nanos;
use tokio::sync::Notify;

use super::Observer;
use crate::{Ends, Outcome};

/// Requests sent and not yet ended, and a wake-up when none is left.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicU64,
    idle: Notify,
}

impl InFlight {
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    pub(super) fn begin(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn end(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Waits until no request is in flight, or until `give_up` (if any)
    /// passes; says whether none is left.
    pub async fn drained(&self, give_up: Option<Instant>) -> bool {
        loop {
            // Registered before the check: an end between the check and
            // the wait still wakes it.
            let idle = self.idle.notified();
            if self.count() == 0 {
                return true;
            }
            match give_up {
                Some(t) => {
                    if tokio::time::timeout_at(t.into(), idle).await.is_err() {
                        return self.count() == 0;
                    }
                }
                None => idle.await,
            }
        }
    }
}

/// Where every request's end goes, however it was started: the observer
/// hears it with the request's due offset (the token), and the in-flight
/// count drops.
pub(super) struct EngineEnds {
    pub(super) observer: Arc<dyn Observer>,
    pub(super) in_flight: Arc<InFlight>,
    pub(super) start: Instant,
}

impl Ends for EngineEnds {
    fn ended(&self, token: u64, outcome: Outcome) {
        let at: Nanos = self.start.elapsed().into();
        self.observer.ended(Nanos(token), at, outcome);
        self.in_flight.end();
    }
}
