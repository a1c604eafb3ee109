//! A rolling window of timestamped values: the stabilisation windows of the
//! HPA-like policy, Knative's stable and panic windows.
//!
//! Bounded: at most [`MAX_WINDOW_SAMPLES`] samples; past that the oldest is
//! dropped, which only shortens a window that ticks far faster than its span
//! (a 300 s window at 1 ms ticks).

use ebb_core::{Instant, Nanos};
use std::collections::VecDeque;

/// Most samples a window keeps.
pub const MAX_WINDOW_SAMPLES: usize = 4096;

#[derive(Clone, Debug, Default)]
pub struct Window {
    samples: VecDeque<(Instant, f64)>,
}

impl Window {
    pub fn new() -> Window {
        Window::default()
    }

    /// Adds `value` at `now` and forgets samples older than `span` before it.
    pub fn push(&mut self, now: Instant, value: f64, span: Nanos) {
        if self.samples.len() == MAX_WINDOW_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((now, value));
        let oldest = now.saturating_sub(span);
        while self.samples.front().is_some_and(|(t, _)| *t < oldest) {
            self.samples.pop_front();
        }
        debug_assert!(self.samples.len() <= MAX_WINDOW_SAMPLES);
    }

    /// Samples within `span` before `now` (inclusive of both ends).
    fn recent(&self, now: Instant, span: Nanos) -> impl Iterator<Item = f64> + '_ {
        let oldest = now.saturating_sub(span);
        self.samples
            .iter()
            .rev()
            .take_while(move |(t, _)| *t >= oldest)
            .map(|(_, v)| *v)
    }

    /// Largest value within `span` before `now`.
    pub fn max(&self, now: Instant, span: Nanos) -> Option<f64> {
        self.recent(now, span).reduce(f64::max)
    }

    /// Mean of the values within `span` before `now`.
    pub fn mean(&self, now: Instant, span: Nanos) -> Option<f64> {
        let (sum, n) = self
            .recent(now, span)
            .fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
        (n > 0).then(|| sum / f64::from(n))
    }

    pub fn clear(&mut self) {
        self.samples.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::testutil::at_secs;

    #[test]
    fn max_and_mean_see_only_the_span() {
        let mut w = Window::new();
        let span = Nanos::from_secs(10);
        for (t, v) in [(0, 9.0), (5, 1.0), (12, 3.0)] {
            w.push(at_secs(t), v, span);
        }
        // At 12 s the sample at 0 s is out; 5 s and 12 s remain.
        assert_eq!(w.max(at_secs(12), span), Some(3.0));
        assert_eq!(w.mean(at_secs(12), span), Some(2.0));
        // A shorter span sees only the last.
        assert_eq!(w.mean(at_secs(12), Nanos::from_secs(2)), Some(3.0));
    }

    #[test]
    fn stays_bounded() {
        let mut w = Window::new();
        for t in 0..(MAX_WINDOW_SAMPLES as u64 + 10) {
            w.push(Instant::from_epoch(Nanos(t)), t as f64, Nanos::MAX);
        }
        assert_eq!(w.samples.len(), MAX_WINDOW_SAMPLES);
        assert_eq!(
            w.max(Instant::from_epoch(Nanos(1 << 40)), Nanos::MAX),
            Some((MAX_WINDOW_SAMPLES + 9) as f64)
        );
    }
}
