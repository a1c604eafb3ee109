//! The seam between real and simulated time.
//!
//! Runtime edges read a [`Clock`] and pass `now` into pure decision code;
//! tests and the simulator substitute a [`ManualClock`] they advance by hand.

use crate::Nanos;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub trait Clock: Send + Sync {
    /// Monotonic nanoseconds since this clock's epoch.
    fn now(&self) -> Nanos;
}

/// Monotonic real time, with its epoch at construction.
#[derive(Clone, Debug)]
pub struct SystemClock {
    epoch: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            epoch: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Nanos {
        Nanos::from(self.epoch.elapsed())
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now_ns: Arc<AtomicU64>,
}

impl ManualClock {
    pub fn new(start: Nanos) -> ManualClock {
        ManualClock {
            now_ns: Arc::new(AtomicU64::new(start.0)),
        }
    }

    pub fn advance(&self, by: Nanos) {
        self.now_ns.fetch_add(by.0, Ordering::SeqCst);
    }

    /// Moves to `to`; never moves backwards.
    pub fn set(&self, to: Nanos) {
        self.now_ns.fetch_max(to.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        Nanos(self.now_ns.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward_and_clones_share_time() {
        let c = ManualClock::new(Nanos(10));
        let c2 = c.clone();
        c.advance(Nanos(5));
        assert_eq!(c2.now(), Nanos(15));
        c.set(Nanos(3));
        assert_eq!(c.now(), Nanos(15));
    }

    #[test]
    fn system_clock_is_monotonic() {
        let c = SystemClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
    }
}
