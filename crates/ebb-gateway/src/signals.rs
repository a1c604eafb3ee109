//! What the pool tells an autoscaler every tick, and the seam an
//! autoscaling policy plugs into.
//!
//! The gateway measures; a policy decides. [`Autoscaler::target`] is called
//! once per pool tick with [`PoolSignals`] and returns the pool size it
//! wants (or `None` to leave it). The policy is pure: `now` is an argument
//! and it holds no sockets. Hand-set targets (`POST /pool`, the config) go
//! through the same pool manager, so both paths obey `min`/`max`.

use ebb_core::{Instant, Nanos};

/// Latencies kept per tick for the percentiles; beyond it, samples are
/// dropped (the percentiles then describe the first ones of the tick).
pub const MAX_LATENCY_SAMPLES_PER_TICK: usize = 65_536;

/// Raw counts gathered on the request path between two ticks.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub arrivals: u64,
    pub completions: u64,
    pub refusals: u64,
    pub retries: u64,
    /// Filled in at the tick: requests held now.
    pub held: usize,
    /// Filled in at the tick: requests in flight now.
    pub in_flight: usize,
    /// Filled in at the tick: measured mean service time.
    pub service_time: Nanos,
    pub latencies: LatencySamples,
}

/// A bounded bag of latency samples.
#[derive(Clone, Debug, Default)]
pub struct LatencySamples(Vec<Nanos>);

impl LatencySamples {
    pub fn push(&mut self, l: Nanos) {
        if self.0.len() < MAX_LATENCY_SAMPLES_PER_TICK {
            self.0.push(l);
        }
    }

    /// The `q`-quantile (0..=1) of the samples, zero if there are none.
    pub fn quantile(&mut self, q: f64) -> Nanos {
        if self.0.is_empty() {
            return Nanos::ZERO;
        }
        self.0.sort_unstable();
        let rank = ((self.0.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        self.0[rank]
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Nodes per life state at the tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeCounts {
    pub booting: usize,
    pub ready: usize,
    pub draining: usize,
}

/// One tick's view of the pool, the autoscaler's whole input.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSignals {
    /// Length of the tick these counts cover.
    pub interval: Nanos,
    pub arrivals: u64,
    pub completions: u64,
    pub refusals: u64,
    pub retries: u64,
    pub held: usize,
    pub in_flight: usize,
    pub p50: Nanos,
    pub p99: Nanos,
    pub service_time: Nanos,
    pub nodes: NodeCounts,
    /// The pool's current target.
    pub target: usize,
    /// Start-to-ready time of this node kind as last measured.
    pub boot_time: Nanos,
}

impl PoolSignals {
    pub fn from_counters(
        mut c: Counters,
        interval: Nanos,
        nodes: NodeCounts,
        target: usize,
        boot_time: Nanos,
    ) -> PoolSignals {
        PoolSignals {
            interval,
            arrivals: c.arrivals,
            completions: c.completions,
            refusals: c.refusals,
            retries: c.retries,
            held: c.held,
            in_flight: c.in_flight,
            p50: c.latencies.quantile(0.5),
            p99: c.latencies.quantile(0.99),
            service_time: c.service_time,
            nodes,
            target,
            boot_time,
        }
    }
}

/// An autoscaling policy as the gateway runs it.
pub trait Autoscaler: Send {
    fn name(&self) -> String;

    /// The pool size wanted after this tick, or `None` to keep the target.
    /// The pool manager clamps it to the configured `min..=max`.
    fn target(&mut self, signals: &PoolSignals, now: Instant) -> Option<usize>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_tick() {
        let mut s = LatencySamples::default();
        assert_eq!(s.quantile(0.5), Nanos::ZERO);
        for ms in (1..=100).rev() {
            s.push(Nanos::from_millis(ms));
        }
        assert_eq!(s.quantile(0.5), Nanos::from_millis(51));
        assert_eq!(s.quantile(0.99), Nanos::from_millis(99));
        assert_eq!(s.quantile(1.0), Nanos::from_millis(100));
    }
}
