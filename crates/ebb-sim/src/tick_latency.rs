//! Response-time percentiles of one control tick, for the scale hook's
//! latency signal: log-linear buckets (8 per power of two, so within 12.5%),
//! a fixed 4 KiB of counters, cleared every tick. The run's own percentiles
//! come from the exact HDR histograms in `stats`; this is the cheap,
//! coarse view a controller would have.

/// Sub-buckets per power of two.
const SUB_BITS: u32 = 3;
const BUCKETS: usize = (64 << SUB_BITS) as usize;

#[derive(Clone, Debug)]
pub(crate) struct TickLatency {
    counts: Box<[u32; BUCKETS]>,
    n: u64,
}

impl Default for TickLatency {
    fn default() -> Self {
        TickLatency {
            counts: Box::new([0; BUCKETS]),
            n: 0,
        }
    }
}

fn bucket(ns: u64) -> usize {
    if ns < (1 << SUB_BITS) {
        return ns as usize;
    }
    let msb = 63 - ns.leading_zeros();
    let sub = (ns >> (msb - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (((msb - SUB_BITS + 1) << SUB_BITS) as u64 + sub) as usize
}

/// The smallest value of bucket `b`'s range mapped back, at its midpoint.
fn value(b: usize) -> u64 {
    let b = b as u64;
    if b < (1 << SUB_BITS) {
        return b;
    }
    let msb = (b >> SUB_BITS) + u64::from(SUB_BITS) - 1;
    let sub = b & ((1 << SUB_BITS) - 1);
    let lo = (1u64 << msb) | (sub << (msb - u64::from(SUB_BITS)));
    lo + (1u64 << (msb - u64::from(SUB_BITS))) / 2
}

impl TickLatency {
    #[inline]
    pub(crate) fn record(&mut self, ns: u64) {
        let c = &mut self.counts[bucket(ns)];
        *c = c.saturating_add(1);
        self.n += 1;
    }

    /// The q-quantile of what was recorded since the last clear.
    pub(crate) fn quantile(&self, q: f64) -> Option<u64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0u64;
        for (b, c) in self.counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return Some(value(b));
            }
        }
        None
    }

    pub(crate) fn clear(&mut self) {
        if self.n > 0 {
            self.counts.fill(0);
            self.n = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_one_bucket() {
        let mut t = TickLatency::default();
        assert_eq!(t.quantile(0.5), None);
        for ms in 1..=100u64 {
            t.record(ms * 1_000_000);
        }
        for (q, want) in [(0.5, 50e6), (0.99, 99e6)] {
            let got = t.quantile(q).map_or(0.0, |v| v as f64);
            assert!((got - want).abs() / want < 0.125, "q{q}: {got}");
        }
        for ns in [0u64, 7, 8, 9, 1000, u64::MAX] {
            let v = value(bucket(ns)) as f64;
            assert!(
                ns < 8 || (v - ns as f64).abs() / (ns as f64) < 0.125,
                "{ns} → {v}"
            );
        }
        t.clear();
        assert_eq!(t.quantile(0.5), None);
    }
}
