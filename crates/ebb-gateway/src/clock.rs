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

    pub fn now(&self) -> Instant {
        Instant::from_epoch(Nanos::from(self.epoch.elapsed()))
    }
}

/// Milliseconds since the Unix epoch, for timestamps people read.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
