//! Time as integer nanoseconds: [`Instant`] for points, [`Nanos`] for spans.
//!
//! Integers keep simulated runs bit-for-bit reproducible, which
//! floating-point seconds would not. Two types keep a deadline from being
//! passed where a timeout is expected.

use std::fmt;
use std::ops::{Add, AddAssign};

/// A span of time in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub u64);

impl Nanos {
    pub const ZERO: Nanos = Nanos(0);
    pub const MAX: Nanos = Nanos(u64::MAX);

    pub const fn from_micros(us: u64) -> Nanos {
        Nanos(us.saturating_mul(1_000))
    }

    pub const fn from_millis(ms: u64) -> Nanos {
        Nanos(ms.saturating_mul(1_000_000))
    }

    pub const fn from_secs(s: u64) -> Nanos {
        Nanos(s.saturating_mul(1_000_000_000))
    }

    /// Rounds to the nearest nanosecond; negative and NaN inputs become zero.
    pub fn from_secs_f64(s: f64) -> Nanos {
        Nanos((s * 1e9).round() as u64)
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    pub const fn as_micros(self) -> u64 {
        self.0 / 1_000
    }

    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    pub const fn saturating_sub(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(rhs.0))
    }

    pub const fn saturating_add(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(rhs.0))
    }
}

impl Add for Nanos {
    type Output = Nanos;
    /// Saturates: a deadline far in the future must not wrap into the past.
    fn add(self, rhs: Nanos) -> Nanos {
        self.saturating_add(rhs)
    }
}

impl AddAssign for Nanos {
    fn add_assign(&mut self, rhs: Nanos) {
        *self = *self + rhs;
    }
}

impl Nanos {
    /// `self - rhs`, or `None` when `rhs` is longer.
    pub const fn checked_sub(self, rhs: Nanos) -> Option<Nanos> {
        match self.0.checked_sub(rhs.0) {
            Some(n) => Some(Nanos(n)),
            None => None,
        }
    }
}

impl From<std::time::Duration> for Nanos {
    fn from(d: std::time::Duration) -> Nanos {
        Nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl From<Nanos> for std::time::Duration {
    fn from(n: Nanos) -> std::time::Duration {
        std::time::Duration::from_nanos(n.0)
    }
}

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n >= 1_000_000_000 {
            write!(f, "{:.3}s", n as f64 / 1e9)
        } else if n >= 1_000_000 {
            write!(f, "{:.3}ms", n as f64 / 1e6)
        } else if n >= 1_000 {
            write!(f, "{:.3}us", n as f64 / 1e3)
        } else {
            write!(f, "{n}ns")
        }
    }
}

/// A point in time: nanoseconds since a clock's epoch.
///
/// Distinct from [`Nanos`] (a span) so that adding two instants, or passing a
/// deadline where a timeout is expected, does not compile. The epoch is the
/// clock's own (a [`crate::SystemClock`]'s construction, a simulation's
/// start); instants from different clocks do not compare meaningfully.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The clock's epoch.
    pub const EPOCH: Instant = Instant(0);
    /// Later than every reachable instant: "no deadline".
    pub const FAR_FUTURE: Instant = Instant(u64::MAX);

    /// The instant `since_epoch` after the epoch.
    pub const fn from_epoch(since_epoch: Nanos) -> Instant {
        Instant(since_epoch.0)
    }

    /// How long after the epoch this instant is.
    pub const fn since_epoch(self) -> Nanos {
        Nanos(self.0)
    }

    /// The span from `earlier` to `self`, or zero when `earlier` is later.
    ///
    /// Named, not `Sub`, because clamping hides a reversed argument: use it
    /// where "already past" legitimately means "no time left".
    pub const fn saturating_since(self, earlier: Instant) -> Nanos {
        Nanos(self.0.saturating_sub(earlier.0))
    }

    /// The span from `earlier` to `self`, or `None` when `earlier` is later.
    pub const fn checked_since(self, earlier: Instant) -> Option<Nanos> {
        match self.0.checked_sub(earlier.0) {
            Some(n) => Some(Nanos(n)),
            None => None,
        }
    }

    /// `self - span`, clamped at the epoch.
    pub const fn saturating_sub(self, span: Nanos) -> Instant {
        Instant(self.0.saturating_sub(span.0))
    }
}

impl Add<Nanos> for Instant {
    type Output = Instant;
    /// Saturates at [`Instant::FAR_FUTURE`]: a deadline far in the future
    /// must not wrap into the past.
    fn add(self, rhs: Nanos) -> Instant {
        Instant(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign<Nanos> for Instant {
    fn add_assign(&mut self, rhs: Nanos) {
        *self = *self + rhs;
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", Nanos(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        assert_eq!(Nanos(5).saturating_sub(Nanos(7)), Nanos::ZERO);
        assert_eq!(Nanos(5).checked_sub(Nanos(7)), None);
        assert_eq!(Nanos::MAX + Nanos(1), Nanos::MAX);
        assert_eq!(Instant::FAR_FUTURE + Nanos(1), Instant::FAR_FUTURE);
    }

    #[test]
    fn instants_and_spans_convert_only_by_name() {
        let a = Instant::from_epoch(Nanos(10));
        let b = a + Nanos(5);
        assert_eq!(b.saturating_since(a), Nanos(5));
        assert_eq!(a.saturating_since(b), Nanos::ZERO);
        assert_eq!(a.checked_since(b), None);
        assert_eq!(b.checked_since(a), Some(Nanos(5)));
        assert_eq!(b.since_epoch(), Nanos(15));
    }

    #[test]
    fn unit_conversions_round_trip() {
        assert_eq!(Nanos::from_millis(3).as_micros(), 3_000);
        assert_eq!(Nanos::from_secs_f64(1.5), Nanos(1_500_000_000));
        assert_eq!(
            Nanos::from(std::time::Duration::from_micros(7)),
            Nanos(7_000)
        );
    }

    #[test]
    fn display_picks_a_readable_unit() {
        assert_eq!(Nanos(12).to_string(), "12ns");
        assert_eq!(Nanos(1_500).to_string(), "1.500us");
        assert_eq!(Nanos::from_millis(2).to_string(), "2.000ms");
        assert_eq!(Nanos::from_secs(3).to_string(), "3.000s");
    }
}
