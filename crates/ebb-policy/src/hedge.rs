//! Hedged requests: when an idempotent call has not answered by the time
//! most calls have (a high percentile of recent latencies), a second copy
//! goes to another node and the first answer wins. Origin: Dean and
//! Barroso, "The Tail at Scale" (CACM 2013), which hedges after the 95th
//! percentile and finds a few percent more load buys a much shorter tail.
//!
//! This module only says *when*: the delay after which a call is hedged,
//! from the latencies it was shown. Whether a hedge may go at all (the
//! method is idempotent, the retry budget allows it, another node is free)
//! is the caller's to check; at-most-once calls are never hedged, since a
//! second copy could run a second time.
//!
//! State: a ring of the last `window` latencies and the percentile of the
//! ring, recomputed every `RECOMPUTE_EVERY` samples. Cost: O(1) per sample
//! amortised over the recomputation's sort of the ring.

use ebb_core::Nanos;

/// Samples between two recomputations of the percentile.
pub const RECOMPUTE_EVERY: usize = 64;
/// The largest ring a config may ask for.
pub const MAX_WINDOW: usize = 65_536;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HedgeConfig {
    /// The percentile of recent latencies after which a call is hedged
    /// (95.0 as in "The Tail at Scale").
    pub percentile: f64,
    /// No hedging before this many latencies have been seen: a percentile
    /// of a handful of samples says little.
    pub min_samples: usize,
    /// How many recent latencies the percentile is taken over.
    pub window: usize,
}

impl Default for HedgeConfig {
    fn default() -> HedgeConfig {
        HedgeConfig {
            percentile: 95.0,
            min_samples: 100,
            window: 1_024,
        }
    }
}

/// Why a config was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum HedgeConfigError {
    #[error("percentile {0} is outside 1.0..=99.9")]
    Percentile(f64),
    #[error("window {window} is outside 1..={MAX_WINDOW}, or below min_samples {min_samples}")]
    Window { window: usize, min_samples: usize },
}

impl HedgeConfig {
    pub fn check(&self) -> Result<(), HedgeConfigError> {
        if !(1.0..=99.9).contains(&self.percentile) {
            return Err(HedgeConfigError::Percentile(self.percentile));
        }
        if self.window == 0 || self.window > MAX_WINDOW || self.window < self.min_samples {
            return Err(HedgeConfigError::Window {
                window: self.window,
                min_samples: self.min_samples,
            });
        }
        Ok(())
    }
}

/// When to hedge, from the latencies seen.
#[derive(Clone, Debug)]
pub struct HedgeDelay {
    cfg: HedgeConfig,
    ring: Vec<Nanos>,
    next: usize,
    seen: usize,
    since_recompute: usize,
    delay: Option<Nanos>,
}

impl HedgeDelay {
    pub fn new(cfg: HedgeConfig) -> HedgeDelay {
        let window = cfg.window.clamp(1, MAX_WINDOW);
        HedgeDelay {
            cfg: HedgeConfig { window, ..cfg },
            ring: Vec::with_capacity(window),
            next: 0,
            seen: 0,
            since_recompute: 0,
            delay: None,
        }
    }

    /// A call was answered `latency` after it was sent.
    pub fn observe(&mut self, latency: Nanos) {
        if self.ring.len() < self.cfg.window {
            self.ring.push(latency);
        } else {
            self.ring[self.next] = latency;
        }
        self.next = (self.next + 1) % self.cfg.window;
        self.seen = self.seen.saturating_add(1);
        self.since_recompute += 1;
        let warming = self.delay.is_none() && self.seen >= self.cfg.min_samples;
        if warming || self.since_recompute >= RECOMPUTE_EVERY {
            self.recompute();
        }
        debug_assert!(self.ring.len() <= self.cfg.window && self.next < self.cfg.window);
    }

    fn recompute(&mut self) {
        self.since_recompute = 0;
        if self.seen < self.cfg.min_samples || self.ring.is_empty() {
            return;
        }
        let mut sorted = self.ring.clone();
        sorted.sort_unstable();
        let rank = (self.cfg.percentile / 100.0 * sorted.len() as f64).ceil() as usize;
        let i = rank.clamp(1, sorted.len()) - 1;
        self.delay = Some(sorted[i]);
    }

    /// How long to wait for an answer before hedging; `None` until enough
    /// latencies were seen.
    pub fn delay(&self) -> Option<Nanos> {
        self.delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(min_samples: usize, window: usize) -> HedgeConfig {
        HedgeConfig {
            percentile: 95.0,
            min_samples,
            window,
        }
    }

    #[test]
    fn no_delay_before_enough_samples_then_the_percentile() {
        let mut h = HedgeDelay::new(cfg(100, 1_000));
        for ms in 1..100 {
            h.observe(Nanos::from_millis(ms));
        }
        assert_eq!(h.delay(), None, "99 samples are not enough");
        h.observe(Nanos::from_millis(100));
        assert_eq!(h.delay(), Some(Nanos::from_millis(95)));
    }

    #[test]
    fn old_latencies_leave_the_window() {
        let mut h = HedgeDelay::new(cfg(10, 64));
        for _ in 0..64 {
            h.observe(Nanos::from_millis(500));
        }
        assert_eq!(h.delay(), Some(Nanos::from_millis(500)));
        // A full window of fast calls, and a recomputation after them.
        for _ in 0..(64 + RECOMPUTE_EVERY) {
            h.observe(Nanos::from_millis(2));
        }
        assert_eq!(
            h.delay(),
            Some(Nanos::from_millis(2)),
            "slow past forgotten"
        );
    }

    #[test]
    fn configs_outside_the_bounds_are_refused() {
        assert!(HedgeConfig::default().check().is_ok());
        let bad = HedgeConfig {
            percentile: 100.0,
            ..HedgeConfig::default()
        };
        assert_eq!(bad.check(), Err(HedgeConfigError::Percentile(100.0)));
        assert!(cfg(10, 5).check().is_err(), "window below min_samples");
        assert!(cfg(0, MAX_WINDOW + 1).check().is_err());
    }
}
