//! The transports' time: `ebb_core::Clock` over tokio's monotonic clock, so
//! the `now` handed to the sessions and the instants the transports sleep
//! until are on one time line (and a test that pauses tokio's clock pauses
//! the sessions' too).

use std::time::Duration;

use ebb_core::{Clock, Instant, Nanos};

/// Session time zero is this clock's creation.
#[derive(Clone, Copy, Debug)]
pub struct RuntimeClock {
    epoch: tokio::time::Instant,
}

impl RuntimeClock {
    pub fn new() -> RuntimeClock {
        RuntimeClock {
            epoch: tokio::time::Instant::now(),
        }
    }

    /// The tokio instant a session instant stands for: what to sleep until.
    pub fn to_tokio(&self, at: Instant) -> tokio::time::Instant {
        self.epoch + Duration::from(at.since_epoch())
    }
}

impl Default for RuntimeClock {
    fn default() -> RuntimeClock {
        RuntimeClock::new()
    }
}

impl Clock for RuntimeClock {
    fn now(&self) -> Instant {
        Instant::from_epoch(Nanos::from(self.epoch.elapsed()))
    }
}
