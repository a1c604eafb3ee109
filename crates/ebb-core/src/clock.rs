//! The seam between real and simulated time.
//!
//! Runtime edges read a [`Clock`] and pass `now` into pure decision code;
//! tests and the simulator substitute a [`ManualClock`] they advance by hand.

use crate::{Instant, Nanos};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub trait Clock: Send + Sync {
    /// Monotonic time since this clock's epoch.
    fn now(&self) -> Instant;
}

/// Monotonic real time, with its epoch at construction.
#[derive(Clone, Debug)]
pub struct SystemClock {
    epoch: std::time::Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            epoch: std::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::from_epoch(Nanos::from(self.epoch.elapsed()))
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now_ns: Arc<AtomicU64>,
}

impl ManualClock {
    pub fn new(start: Instant) -> ManualClock {
        ManualClock {
            now_ns: Arc::new(AtomicU64::new(start.since_epoch().as_nanos())),
        }
    }

    pub fn advance(&self, by: Nanos) {
        self.now_ns.fetch_add(by.0, Ordering::SeqCst);
    }

    /// Moves to `to`; never moves backwards.
    pub fn set(&self, to: Instant) {
        self.now_ns
            .fetch_max(to.since_epoch().as_nanos(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::from_epoch(Nanos(self.now_ns.load(Ordering::SeqCst)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward_and_clones_share_time() {
        let at = |n| Instant::from_epoch(Nanos(n));
        let c = ManualClock::new(at(10));
        let c2 = c.clone();
        c.advance(Nanos(5));
        assert_eq!(c2.now(), at(15));
        c.set(at(3));
        assert_eq!(c.now(), at(15));
    }

    #[test]
    fn system_clock_is_monotonic() {
        let c = SystemClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
    }
}
