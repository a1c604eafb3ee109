//! The gateway's one reading of time: a monotonic clock turned into
//! `ebb_core::Instant`s, shared by the request path and the pool manager so
//! their instants compare.

use ebb_core::{Instant, Nanos};

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            epoch: std::time::Instant::now(),
        }
    }

    /// A clock whose instants count from `epoch`: a test's way to stand
    /// at a point well past zero, so instants before its `now` (a request
    /// read earlier) exist.
    pub fn since(epoch: std::time::Instant) -> Clock {
        Clock { epoch }
    }

    pub fn now(&self) -> Instant {
        Instant::from_epoch(Nanos::from(self.epoch.elapsed()))
    }

    /// `at` on the monotonic clock, for a timer set to fire then.
    pub fn to_std(&self, at: Instant) -> std::time::Instant {
        self.epoch + std::time::Duration::from_nanos(at.since_epoch().as_nanos())
    }

    /// `at`, read from the monotonic clock by someone else (the RPC
    /// server's read of a socket), on this clock's time line: no read of
    /// the clock. An instant before this clock began counts as its start.
    pub fn at(&self, at: std::time::Instant) -> Instant {
        Instant::from_epoch(Nanos::from(at.saturating_duration_since(self.epoch)))
    }
}

/// Milliseconds since the Unix epoch, for timestamps people read.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
