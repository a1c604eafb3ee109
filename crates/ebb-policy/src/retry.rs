//! Retry budget: retries allowed as a fraction of recent requests plus a
//! small floor, so retries cannot multiply load during an outage.
//!
//! When every node is failing, retrying each failed call would turn one
//! request into several at the worst moment. A budget caps retries to
//! `ratio` of the requests seen in the last `window` plus `floor_per_sec`
//! (so a quiet gateway may still retry now and then). Origin: Finagle's
//! `RetryBudget` and tower's `TpsBudget` (a deposit per request, a
//! withdrawal per retry, both expiring after a time-to-live); here the
//! window is a ring of per-interval counters, which expires deposits the
//! same way with fixed memory.
//!
//! State: `BUCKETS` pairs of counters. Cost: O(1) amortised per call.

use ebb_core::{Instant, Nanos};

/// Intervals the window is divided into; memory is fixed at this many pairs.
pub const BUCKETS: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudgetConfig {
    /// Retries allowed per request seen in the window (0.2: one in five).
    pub ratio: f64,
    /// Retries per second allowed regardless of traffic.
    pub floor_per_sec: u32,
    /// How long a request counts toward the budget.
    pub window: Nanos,
}

impl Default for RetryBudgetConfig {
    /// Finagle's defaults: 20 % of requests, 10 retries per second, 10 s.
    fn default() -> RetryBudgetConfig {
        RetryBudgetConfig {
            ratio: 0.2,
            floor_per_sec: 10,
            window: Nanos::from_secs(10),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Index of the interval this bucket counts (time / interval length).
    interval: u64,
    requests: u64,
    retries: u64,
}

#[derive(Clone, Debug)]
pub struct RetryBudget {
    cfg: RetryBudgetConfig,
    buckets: [Bucket; BUCKETS],
}

impl RetryBudget {
    pub fn new(cfg: RetryBudgetConfig) -> RetryBudget {
        RetryBudget {
            cfg,
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    pub fn config(&self) -> &RetryBudgetConfig {
        &self.cfg
    }

    fn interval_len(&self) -> u64 {
        (self.cfg.window.as_nanos() / BUCKETS as u64).max(1)
    }

    fn bucket(&mut self, now: Instant) -> &mut Bucket {
        let interval = now.since_epoch().as_nanos() / self.interval_len();
        let b = &mut self.buckets[(interval % BUCKETS as u64) as usize];
        if b.interval != interval {
            *b = Bucket {
                interval,
                requests: 0,
                retries: 0,
            };
        }
        b
    }

    /// Counts a first attempt (a deposit).
    pub fn on_request(&mut self, now: Instant) {
        self.bucket(now).requests += 1;
    }

    /// Asks to retry at `now`; true withdraws one retry from the budget.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        let current = now.since_epoch().as_nanos() / self.interval_len();
        let oldest = current.saturating_sub(BUCKETS as u64 - 1);
        let (mut requests, mut retries) = (0u64, 0u64);
        for b in &self.buckets {
            if b.interval >= oldest && b.interval <= current {
                requests += b.requests;
                retries += b.retries;
            }
        }
        let floor = f64::from(self.cfg.floor_per_sec) * self.cfg.window.as_secs_f64();
        let allowed = floor + self.cfg.ratio * requests as f64;
        if (retries as f64) < allowed {
            self.bucket(now).retries += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: u64) -> Instant {
        Instant::EPOCH + Nanos::from_millis(ms)
    }

    #[test]
    fn the_floor_allows_retries_without_traffic_then_stops() {
        let mut b = RetryBudget::new(RetryBudgetConfig {
            ratio: 0.0,
            floor_per_sec: 1,
            window: Nanos::from_secs(2),
        });
        assert!(b.try_retry(at_ms(0)));
        assert!(b.try_retry(at_ms(1)));
        assert!(!b.try_retry(at_ms(2)), "floor of 1/s over 2 s is 2 retries");
    }

    #[test]
    fn retries_are_a_fraction_of_recent_requests() {
        let mut b = RetryBudget::new(RetryBudgetConfig {
            ratio: 0.1,
            floor_per_sec: 0,
            window: Nanos::from_secs(10),
        });
        for i in 0..100 {
            b.on_request(at_ms(i));
        }
        let granted = (0..50).filter(|i| b.try_retry(at_ms(100 + i))).count();
        assert_eq!(granted, 10);
    }

    #[test]
    fn old_requests_stop_counting_after_the_window() {
        let mut b = RetryBudget::new(RetryBudgetConfig {
            ratio: 1.0,
            floor_per_sec: 0,
            window: Nanos::from_secs(1),
        });
        for _ in 0..5 {
            b.on_request(at_ms(0));
        }
        assert!(b.try_retry(at_ms(500)));
        // A full window later the deposits (and the withdrawal) are gone.
        assert!(!b.try_retry(at_ms(1_500)));
        b.on_request(at_ms(1_500));
        assert!(b.try_retry(at_ms(1_501)));
        assert!(!b.try_retry(at_ms(1_502)));
    }
}
