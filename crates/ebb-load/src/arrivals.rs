//! When each request is due: a pure function of the arrival spec and a seed,
//! so a run's schedule replays exactly and is tested without a clock.

use std::sync::Arc;

use ebb_core::{Nanos, Rng};
use ebb_sim::trace::Trace;

/// The largest rate accepted, per second: far beyond what one generator
/// process can send, so hitting it is a typo, not a plan.
pub const MAX_RATE_PER_SEC: f64 = 10_000_000.0;

/// How requests arrive.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrivalSpec {
    /// A Poisson process: exponential gaps with mean `1 / rate`.
    Poisson { rate_per_sec: f64 },
    /// Arrivals from a trace. Per-second counts are spread uniformly at
    /// random within their second (a Poisson process given its count);
    /// timestamps are used as they are.
    Trace(Trace),
}

/// The schedule: offsets from the start of the run, non-decreasing, ending
/// before `duration`.
pub struct Arrivals {
    kind: Kind,
    rng: Rng,
    duration: Nanos,
}

enum Kind {
    Poisson {
        mean_gap_ns: f64,
        at_ns: f64,
    },
    Counts {
        counts: Arc<[u32]>,
        second: usize,
        /// The current second's offsets, sorted, consumed from the end.
        pending: Vec<u64>,
    },
    Timestamps {
        secs: Arc<[f64]>,
        next: usize,
    },
}

impl Arrivals {
    pub fn new(spec: &ArrivalSpec, duration: Nanos, seed: u64) -> Arrivals {
        let kind = match spec {
            ArrivalSpec::Poisson { rate_per_sec } => Kind::Poisson {
                mean_gap_ns: 1e9 / rate_per_sec.clamp(f64::MIN_POSITIVE, MAX_RATE_PER_SEC),
                at_ns: 0.0,
            },
            ArrivalSpec::Trace(Trace::Counts(counts)) => Kind::Counts {
                counts: Arc::clone(counts),
                second: 0,
                pending: Vec::new(),
            },
            ArrivalSpec::Trace(Trace::Timestamps(secs)) => Kind::Timestamps {
                secs: Arc::clone(secs),
                next: 0,
            },
        };
        Arrivals {
            kind,
            rng: Rng::seeded(seed),
            duration,
        }
    }
}

impl Iterator for Arrivals {
    type Item = Nanos;

    fn next(&mut self) -> Option<Nanos> {
        let end = self.duration.as_nanos();
        let at = match &mut self.kind {
            Kind::Poisson { mean_gap_ns, at_ns } => {
                *at_ns += self.rng.exp(*mean_gap_ns);
                *at_ns as u64
            }
            Kind::Counts {
                counts,
                second,
                pending,
            } => loop {
                if let Some(at) = pending.pop() {
                    break at;
                }
                let count = *counts.get(*second)?;
                let base = *second as u64 * 1_000_000_000;
                pending.extend((0..count).map(|_| base + self.rng.below(1_000_000_000)));
                // Descending, so `pop` yields them in time order.
                pending.sort_unstable_by(|a, b| b.cmp(a));
                *second += 1;
            },
            Kind::Timestamps { secs, next } => {
                let first = *secs.first()?;
                let t = *secs.get(*next)?;
                *next += 1;
                ((t - first).max(0.0) * 1e9) as u64
            }
        };
        (at < end).then_some(Nanos(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(spec: ArrivalSpec, secs: u64, seed: u64) -> Vec<Nanos> {
        Arrivals::new(&spec, Nanos::from_secs(secs), seed).collect()
    }

    #[test]
    fn poisson_arrivals_have_the_requested_rate_and_replay_from_the_seed() {
        let spec = ArrivalSpec::Poisson {
            rate_per_sec: 1_000.0,
        };
        let a = collect(spec.clone(), 100, 7);
        // 100 000 expected; the count's standard deviation is ~316.
        assert!(
            (a.len() as f64 - 100_000.0).abs() < 5.0 * 316.0,
            "{}",
            a.len()
        );
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        assert!(a.iter().all(|t| *t < Nanos::from_secs(100)));
        assert_eq!(a, collect(spec.clone(), 100, 7), "same seed, same schedule");
        assert_ne!(a, collect(spec, 100, 8));
    }

    #[test]
    fn per_second_counts_put_exactly_that_many_arrivals_in_each_second() {
        let counts: Arc<[u32]> = Arc::from(vec![3, 0, 5, 1]);
        let a = collect(ArrivalSpec::Trace(Trace::Counts(counts)), 10, 1);
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        let per_second: Vec<usize> = (0..4)
            .map(|s| {
                a.iter()
                    .filter(|t| t.as_nanos() / 1_000_000_000 == s)
                    .count()
            })
            .collect();
        assert_eq!(per_second, vec![3, 0, 5, 1]);
    }

    #[test]
    fn a_trace_stops_at_the_duration() {
        let counts: Arc<[u32]> = Arc::from(vec![2, 2, 2]);
        assert_eq!(
            collect(ArrivalSpec::Trace(Trace::Counts(counts)), 2, 1).len(),
            4
        );
        let stamps: Arc<[f64]> = Arc::from(vec![10.0, 10.5, 11.0, 12.5]);
        assert_eq!(
            collect(ArrivalSpec::Trace(Trace::Timestamps(stamps)), 2, 1),
            vec![Nanos::ZERO, Nanos::from_millis(500), Nanos::from_secs(1)]
        );
    }
}
