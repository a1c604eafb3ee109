//! Response-time statistics in memory that does not grow with run length.
//!
//! Means are exact (running sums). Percentiles come from an HDR histogram
//! with three significant digits (relative error at most 0.1%, fixed size),
//! recorded through [`crate::hist::FastHist`].
//! Confidence intervals for the means use batch means: consecutive
//! completions are grouped into between 32 and 64 equal batches (pairs merge
//! when the 64th fills, doubling the batch size), so the batch means are
//! nearly independent once a batch is much longer than the queue's
//! relaxation time.

use crate::hist::FastHist;
use hdrhistogram::Histogram;

/// Batch count that triggers merging pairs of batches.
const MAX_BATCHES: usize = 64;

/// Running mean with a batch-means confidence interval.
#[derive(Clone, Debug)]
pub struct BatchMeans {
    batch_size: u64,
    cur_sum: f64,
    cur_n: u64,
    sums: Vec<f64>,
    total: f64,
    n: u64,
}

impl Default for BatchMeans {
    fn default() -> Self {
        BatchMeans {
            batch_size: 1,
            cur_sum: 0.0,
            cur_n: 0,
            sums: Vec::with_capacity(MAX_BATCHES),
            total: 0.0,
            n: 0,
        }
    }
}

impl BatchMeans {
    #[inline]
    pub fn add(&mut self, x: f64) {
        self.total += x;
        self.n += 1;
        self.cur_sum += x;
        self.cur_n += 1;
        if self.cur_n == self.batch_size {
            self.sums.push(self.cur_sum);
            self.cur_sum = 0.0;
            self.cur_n = 0;
            if self.sums.len() == MAX_BATCHES {
                let merged: Vec<f64> = self.sums.chunks(2).map(|p| p.iter().sum()).collect();
                self.sums.clear();
                self.sums.extend(merged);
                self.batch_size *= 2;
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    /// Exact mean of everything added; NaN when nothing was.
    pub fn mean(&self) -> f64 {
        self.total / self.n as f64
    }

    /// Standard error of the mean estimated from the complete batches; NaN
    /// with fewer than two batches.
    pub fn std_error(&self) -> f64 {
        let b = self.sums.len();
        if b < 2 {
            return f64::NAN;
        }
        let size = self.batch_size as f64;
        let means = self.sums.iter().map(|s| s / size);
        let m = means.clone().sum::<f64>() / b as f64;
        let var = means.map(|x| (x - m).powi(2)).sum::<f64>() / (b - 1) as f64;
        (var / b as f64).sqrt()
    }

    /// Half-width of a 95% confidence interval for the mean.
    pub fn ci95(&self) -> f64 {
        let df = self.sums.len().saturating_sub(1) as f64;
        t_quantile_975(df) * self.std_error()
    }
}

/// Student-t 97.5% quantile (Cornish–Fisher expansion; within 0.5% for df ≥ 5).
pub fn t_quantile_975(df: f64) -> f64 {
    let z: f64 = 1.959_964;
    z + (z.powi(3) + z) / (4.0 * df)
        + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * df * df)
}

/// Everything measured about completed and dropped requests.
#[derive(Clone, Debug)]
pub struct Stats {
    pub response: BatchMeans,
    pub wait: BatchMeans,
    /// 1 for a completed request that waited at all, else 0.
    pub waited: BatchMeans,
    /// Over measured requests as they finish: 1 if dropped, 0 if completed.
    pub drop_indicator: BatchMeans,
    response_hist: FastHist,
    wait_hist: FastHist,
    pub dropped: u64,
    /// Completed requests slower than `objective_ns`.
    pub slow: u64,
    /// The response-time objective; `u64::MAX` when there is none.
    pub objective_ns: u64,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            response: BatchMeans::default(),
            wait: BatchMeans::default(),
            waited: BatchMeans::default(),
            drop_indicator: BatchMeans::default(),
            response_hist: FastHist::new(),
            wait_hist: FastHist::new(),
            dropped: 0,
            slow: 0,
            objective_ns: u64::MAX,
        }
    }

    /// One completed request: times in nanoseconds.
    #[inline]
    pub fn record(&mut self, response_ns: u64, wait_ns: u64) {
        self.response.add(response_ns as f64 * 1e-9);
        self.wait.add(wait_ns as f64 * 1e-9);
        self.waited.add(if wait_ns > 0 { 1.0 } else { 0.0 });
        self.drop_indicator.add(0.0);
        self.slow += u64::from(response_ns > self.objective_ns);
        self.response_hist.record(response_ns);
        self.wait_hist.record(wait_ns);
    }

    /// One measured request dropped.
    #[inline]
    pub fn record_drop(&mut self) {
        self.dropped += 1;
        self.drop_indicator.add(1.0);
    }

    /// Response-time quantile in seconds; NaN when nothing completed.
    pub fn response_quantile(&self, q: f64) -> f64 {
        quantile_secs(&self.response_hist.to_hdr(), q)
    }

    /// Wait-time quantile in seconds; NaN when nothing completed.
    pub fn wait_quantile(&self, q: f64) -> f64 {
        quantile_secs(&self.wait_hist.to_hdr(), q)
    }

    pub fn max_response(&self) -> f64 {
        if self.response_hist.is_empty() {
            return f64::NAN;
        }
        self.response_hist.to_hdr().max() as f64 * 1e-9
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

fn quantile_secs(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return f64::NAN;
    }
    // The bucket's midpoint halves the histogram's rounding bias.
    h.median_equivalent(h.value_at_quantile(q)) as f64 * 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_means_stay_bounded_and_mean_is_exact() {
        let mut b = BatchMeans::default();
        for i in 0..100_000u64 {
            b.add((i % 10) as f64);
        }
        assert!(b.sums.len() >= MAX_BATCHES / 2 && b.sums.len() < MAX_BATCHES);
        assert!((b.mean() - 4.5).abs() < 1e-12);
        // Period-10 data averages out within each batch, so the error
        // estimate is small and finite.
        assert!(b.ci95().is_finite() && b.ci95() < 0.1);
    }

    #[test]
    fn quantiles_are_within_the_histogram_precision() {
        let mut s = Stats::new();
        for i in 1..=1000u64 {
            s.record(i * 1_000_000, 0);
        }
        let p99 = s.response_quantile(0.99);
        assert!((p99 - 0.990).abs() / 0.990 < 2e-3, "{p99}");
        assert_eq!(s.wait_quantile(0.5), 0.0);
    }

    #[test]
    fn t_quantile_matches_tables() {
        assert!((t_quantile_975(30.0) - 2.042).abs() < 0.003);
        assert!((t_quantile_975(10.0) - 2.228).abs() < 0.01);
    }
}
