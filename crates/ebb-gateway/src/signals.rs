//! What the pool measures for an autoscaler every tick.
//!
//! The gateway measures; an `ebb_policy::scale::ScalePolicy` decides. The
//! pool manager calls it once per tick with [`Signals`] built here from the
//! request path's counters, and applies its target within `min..=max`.
//! Hand-set targets (`POST /pool`, the config) go through the same pool
//! manager.

use ebb_core::Nanos;
use ebb_policy::scale::{Limits, NodeCounts, Signals};

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
    /// Nodes taken out of rotation for failing.
    pub ejections: u64,
    /// Filled in at the tick: requests held now.
    pub held: usize,
    /// Filled in at the tick: requests in flight now.
    pub in_flight: usize,
    /// Filled in at the tick: measured mean service time.
    pub service_time: Nanos,
    /// Node time of the calls answered (the node's latency), summed.
    pub busy: Nanos,
    /// Arrival-to-answer time of the requests answered, summed.
    pub response_sum: Nanos,
    pub latencies: LatencySamples,
}

impl Counters {
    /// A request answered `response` after it arrived.
    pub fn record_response(&mut self, response: Nanos) {
        self.response_sum = self.response_sum.saturating_add(response);
        self.latencies.push(response);
    }
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

/// Turns a tick's counters into the signals every `ebb_policy::scale`
/// policy reads (the same type the simulator fills in).
pub fn to_signals(mut c: Counters, tick: Nanos, nodes: NodeCounts, ctx: &TickContext) -> Signals {
    let p50 = (!c.latencies.is_empty()).then(|| c.latencies.quantile(0.5));
    let p99 = (!c.latencies.is_empty()).then(|| c.latencies.quantile(0.99));
    Signals {
        tick,
        arrivals: c.arrivals,
        completions: c.completions,
        refusals: c.refusals,
        queued: c.held as u64,
        in_service: c.in_flight as u64,
        busy: c.busy,
        response_sum: c.response_sum,
        p50,
        p99,
        nodes,
        capacity_per_node: ctx.capacity_per_node,
        boot_time: ctx.boot_time,
        cost_per_node_sec_micros: ctx.cost_per_node_sec_micros,
        objective: ctx.objective,
        limits: ctx.limits,
    }
}

/// What the pool manager adds to the counters at each tick.
#[derive(Clone, Copy, Debug)]
pub struct TickContext {
    pub boot_time: Nanos,
    pub cost_per_node_sec_micros: u64,
    pub objective: Option<Nanos>,
    pub limits: Limits,
    /// The capacity in force on the ready nodes (1 where the pool does not
    /// scale up).
    pub capacity_per_node: u32,
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
