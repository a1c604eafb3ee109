//! A server's own measure of its service time, for its replies to carry.
//!
//! The measure is busy time per completed call: while at least one call
//! executes, the time since the last completion (or since the server turned
//! busy) is charged to the call that completes. One call alone is charged
//! its duration; calls that overlap share the busy time, so a server running
//! four at once on four cores reports a quarter of each call's duration:
//! the time one more call adds when the server is saturated, which is what
//! a gateway's admission divides the work ahead by. A caller's own timing
//! cannot give this once its own queueing (a saturated gateway) inflates it.
//!
//! Averaged with weight [`SERVICE_TIME_WEIGHT`] per completion. Pure: `now`
//! is an argument.

use ebb_core::{Instant, Nanos};

/// Weight of one completion's charge in the average (1/16).
pub const SERVICE_TIME_WEIGHT: f64 = 1.0 / 16.0;

#[derive(Clone, Copy, Debug, Default)]
pub struct ServiceTime {
    /// Start of the busy time not yet charged to a completion.
    mark: Option<Instant>,
    /// Average charge per completion, in nanoseconds; `None` before the
    /// first.
    mean: Option<f64>,
}

impl ServiceTime {
    /// A call starts; `executing` counts the calls executing before it.
    pub fn started(&mut self, executing: usize, now: Instant) {
        if executing == 0 {
            self.mark = Some(now);
        }
        debug_assert!(self.mark.is_some(), "busy without a mark");
    }

    /// A call completed; returns the average so far (at least 1 ns once
    /// anything was measured, so zero keeps meaning "not measured").
    pub fn completed(&mut self, now: Instant) -> Nanos {
        if let Some(mark) = self.mark {
            let charge = now.saturating_since(mark).as_nanos() as f64;
            self.mean = Some(match self.mean {
                None => charge,
                Some(m) => m + (charge - m) * SERVICE_TIME_WEIGHT,
            });
            self.mark = Some(now);
        }
        self.current()
    }

    /// The average so far; zero before the first completion.
    pub fn current(&self) -> Nanos {
        self.mean
            .map_or(Nanos::ZERO, |m| Nanos((m.round() as u64).max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant::EPOCH;

    fn at(ms: u64) -> Instant {
        T0 + Nanos::from_millis(ms)
    }

    #[test]
    fn one_call_alone_is_charged_its_duration() {
        let mut s = ServiceTime::default();
        assert_eq!(s.current(), Nanos::ZERO, "nothing measured yet");
        s.started(0, at(0));
        assert_eq!(s.completed(at(4)), Nanos::from_millis(4));
        // Idle time between calls is charged to nobody.
        s.started(0, at(100));
        assert_eq!(s.completed(at(104)), Nanos::from_millis(4));
    }

    #[test]
    fn overlapping_calls_share_the_busy_time() {
        // Four calls at once, each 8 ms (four cores): 2 ms per call is what
        // the server adds per call when saturated.
        let mut s = ServiceTime::default();
        for executing in 0..4 {
            s.started(executing, at(0));
        }
        let mut last = Nanos::ZERO;
        for _ in 0..4 {
            last = s.completed(at(8));
        }
        // The first is charged 8 ms, the others nothing: the average moves
        // toward 2 ms (exactly 2 ms for a plain mean; the weighted one
        // starts at the first charge).
        assert!(last < Nanos::from_millis(8), "{last}");
        // Kept saturated, one completion every 2 ms: the average goes to 2 ms.
        let mut t = 8;
        for _ in 0..200 {
            s.started(3, at(t));
            t += 2;
            last = s.completed(at(t));
        }
        let off = last.as_nanos().abs_diff(Nanos::from_millis(2).as_nanos());
        assert!(off < 10_000, "{last} is not about 2 ms");
    }
}
