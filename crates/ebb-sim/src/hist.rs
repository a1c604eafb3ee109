//! The run's response-time histograms, recorded in the hot loop.
//!
//! Recording into `hdrhistogram` costs a range check, clamping, min/max
//! tracking and a saturating add per value: 9% of a 10,000-node run for the
//! two records per completion. This histogram keeps the very bucket layout
//! `hdrhistogram` uses for values 1..2^62 at three significant digits, so
//! recording is a leading-zero count, a shift and an add; the percentiles
//! are read by copying the counts into an `hdrhistogram` (each bucket under
//! its lowest value), which then answers exactly as if it had recorded
//! every value itself.

use hdrhistogram::Histogram;

/// Largest value the histograms resolve, in nanoseconds (about 146 years of
/// simulated time); larger values are recorded as this.
pub(crate) const HIST_MAX_NS: u64 = 1 << 62;
/// Significant decimal digits the histograms keep.
pub(crate) const HIST_DIGITS: u8 = 3;
/// log2 of the sub-buckets per power of two for three digits: the smallest
/// power of two at least 2 × 10^3 is 2^11.
const SUB_MAGNITUDE: u32 = 11;
const HALF_MAGNITUDE: u32 = SUB_MAGNITUDE - 1;
const SUB_MASK: u64 = (1 << SUB_MAGNITUDE) - 1;
/// `hdrhistogram`'s `leading_zero_count_base` with a lowest value of 1.
const LZ_BASE: u32 = 64 - SUB_MAGNITUDE;

/// Counts per bucket in `hdrhistogram`'s layout for 1..=[`HIST_MAX_NS`].
#[derive(Clone, Debug)]
pub(crate) struct FastHist {
    counts: Vec<u64>,
    total: u64,
}

#[inline]
fn index(v: u64) -> usize {
    let bucket = LZ_BASE - (v | SUB_MASK).leading_zeros();
    let sub = v >> bucket;
    (((bucket + 1) as usize) << HALF_MAGNITUDE) + sub as usize - (1 << HALF_MAGNITUDE)
}

/// The lowest value that lands in bucket `i`.
fn lowest(i: usize) -> u64 {
    let half = 1usize << HALF_MAGNITUDE;
    if i < half {
        return i as u64;
    }
    let bucket = (i >> HALF_MAGNITUDE) - 1;
    let sub = (i & (half - 1)) + half;
    (sub as u64) << bucket
}

impl FastHist {
    pub(crate) fn new() -> FastHist {
        FastHist {
            counts: vec![0; index(HIST_MAX_NS) + 1],
            total: 0,
        }
    }

    /// Records `v`, clamped to [`HIST_MAX_NS`].
    #[inline]
    pub(crate) fn record(&mut self, v: u64) {
        let i = index(v.min(HIST_MAX_NS));
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.total += 1;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The same counts as an `hdrhistogram`, for its quantile queries.
    pub(crate) fn to_hdr(&self) -> Histogram<u64> {
        let mut h = new_hdr();
        for (i, c) in self.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            // `hdrhistogram` stores values 0 and 1 in buckets 0 and 1 too.
            h.saturating_record_n(lowest(i), *c);
        }
        h
    }
}

pub(crate) fn new_hdr() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, HIST_DIGITS)
        .expect("constant bounds 1..2^62 with 3 digits are valid for hdrhistogram")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_core::Rng;

    /// Values at every power of two and its neighbours, and random ones of
    /// every magnitude.
    fn probes() -> Vec<u64> {
        let mut v: Vec<u64> = (0..=62u32)
            .flat_map(|b| {
                let p = 1u64 << b;
                [p.saturating_sub(1), p, p + 1, p + p / 3]
            })
            .collect();
        let mut rng = Rng::seeded(9);
        for _ in 0..20_000 {
            let bits = rng.below(63) as u32;
            v.push(rng.next_u64() >> (63 - bits));
        }
        v.extend(0..5_000u64);
        v
    }

    #[test]
    fn buckets_are_the_ones_hdrhistogram_uses() {
        let h = new_hdr();
        for v in probes() {
            let v = v.min(HIST_MAX_NS);
            assert_eq!(
                lowest(index(v)),
                h.lowest_equivalent(v),
                "value {v}: bucket {}",
                index(v)
            );
        }
        // Every bucket a clamped value can reach exists in both.
        assert!(FastHist::new().counts.len() <= h.distinct_values());
    }

    #[test]
    fn quantiles_and_max_equal_hdrhistogram_recording_directly() {
        let mut fast = FastHist::new();
        let mut hdr = new_hdr();
        for v in probes().into_iter().chain([u64::MAX, HIST_MAX_NS + 5]) {
            fast.record(v);
            hdr.saturating_record(v.min(HIST_MAX_NS));
        }
        let copy = fast.to_hdr();
        for q in [0.0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(copy.value_at_quantile(q), hdr.value_at_quantile(q), "q {q}");
        }
        assert_eq!(copy.max(), hdr.max());
        assert_eq!(copy.min(), hdr.min());
        assert_eq!(copy.len(), hdr.len());
    }
}
