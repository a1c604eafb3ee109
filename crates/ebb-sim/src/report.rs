//! What a run reports. Times are in seconds of simulated time, the unit of
//! the service distribution's parameters: with mean service 1, every time
//! reads in units of the mean service time.

use crate::engine::Sim;
use crate::node::Life;
use serde::Serialize;

/// The result of one run. Every field is a function of the configuration and
/// the seed, except `events_per_sec` and `wall_secs`, which the caller fills
/// in from the wall clock (the run itself never reads it).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Report {
    pub balance: String,
    pub nodes: u32,
    pub gateways: u32,
    pub load: f64,
    pub service: String,
    pub arrivals: String,
    pub seed: u64,
    /// Requests that arrived (all of them, warm-up included).
    pub requests: u64,
    /// Requests counted in the statistics (arrived after warm-up).
    pub measured: u64,
    /// Measured requests that completed.
    pub completed: u64,
    pub mean_response: f64,
    /// Half-width of the 95% batch-means confidence interval of `mean_response`.
    pub mean_response_ci95: f64,
    pub mean_wait: f64,
    pub mean_wait_ci95: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub wait_p99: f64,
    /// Fraction of completed requests that waited before service.
    pub wait_probability: f64,
    pub wait_probability_ci95: f64,
    pub max_response: f64,
    /// Completions per second over the measurement window.
    pub throughput: f64,
    /// Measured requests dropped (deadline passed while queued, or left
    /// held when the run ended) over measured requests.
    pub dropped_fraction: f64,
    /// 95% batch-means half-width of `dropped_fraction` (drops at run end
    /// excluded from the batches).
    pub dropped_fraction_ci95: f64,
    /// Busy node-time over serving node-time in the measurement window.
    pub utilization: f64,
    /// Node-seconds of being up (booting, ready or draining), whole run.
    pub node_seconds: f64,
    /// Σ node up time × its cost per second, micro-dollars.
    pub cost_micros: f64,
    /// Simulated seconds the run lasted.
    pub sim_secs: f64,
    /// Measurement window: first measured arrival to last arrival.
    pub window_secs: f64,
    pub events: u64,
    /// Dispatches to nodes that were not ready (a policy ignoring state).
    pub misrouted: u64,
    pub events_per_sec: f64,
    pub wall_secs: f64,
    /// With an objective: measured requests slower than it or dropped, over
    /// measured requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slo_miss_fraction: Option<f64>,
    /// The objective, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objective: Option<f64>,
    /// With a scale hook: ticks on which it changed the pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_actions: Option<u64>,
    /// With a scale hook: fewest and most nodes up at any time, and the
    /// time-average (node-seconds over simulated seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_nodes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_nodes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_nodes: Option<f64>,
}

impl Sim<'_> {
    pub(crate) fn finish(mut self) -> Report {
        let end = self.now;
        self.integrate();
        for i in 0..self.nodes.len() {
            if self.nodes[i].life != Life::Gone {
                self.account_up_time(i, end);
            }
        }
        // Requests still held had no node to go to: they count as dropped.
        for gw in &self.gws {
            self.stats.dropped += gw.held.iter().filter(|r| r.measured).count() as u64;
        }
        let measured = self.arrived.saturating_sub(self.warmup_count);
        let s = &self.stats;
        let scaled = self.hook.is_some();
        let sim_secs = end as f64 * 1e-9;
        let node_seconds = self.node_ns as f64 * 1e-9;
        let window_ns = self.window.1.saturating_sub(self.window.0);
        // A run too short for a window (one measured arrival) is judged
        // over its whole length instead, so no figure is NaN.
        let throughput = if window_ns > 0 {
            self.window_completions as f64 / (window_ns as f64 * 1e-9)
        } else if sim_secs > 0.0 {
            s.response.count() as f64 / sim_secs
        } else {
            0.0
        };
        let utilization = if self.serving_area > 0 {
            self.busy_area as f64 / self.serving_area as f64
        } else if self.node_ns > 0 {
            self.busy_ns_total as f64 / self.node_ns as f64
        } else {
            0.0
        };
        Report {
            balance: self
                .gws
                .first()
                .map(|g| g.balancer.name())
                .unwrap_or_default(),
            nodes: self.cfg.nodes,
            gateways: self.cfg.gateways,
            load: self.cfg.load,
            service: self.cfg.service.to_string(),
            arrivals: arrivals_name(&self.cfg.arrivals),
            seed: self.cfg.seed,
            requests: self.arrived,
            measured,
            completed: s.response.count(),
            mean_response: s.response.mean(),
            mean_response_ci95: s.response.ci95(),
            mean_wait: s.wait.mean(),
            mean_wait_ci95: s.wait.ci95(),
            p50: s.response_quantile(0.5),
            p99: s.response_quantile(0.99),
            p999: s.response_quantile(0.999),
            wait_p99: s.wait_quantile(0.99),
            wait_probability: s.waited.mean(),
            wait_probability_ci95: s.waited.ci95(),
            max_response: s.max_response(),
            throughput,
            dropped_fraction: if measured == 0 {
                0.0
            } else {
                s.dropped as f64 / measured as f64
            },
            dropped_fraction_ci95: s.drop_indicator.ci95(),
            utilization,
            node_seconds,
            cost_micros: self.cost_micros,
            sim_secs,
            window_secs: window_ns as f64 * 1e-9,
            events: self.events,
            misrouted: self.misrouted,
            events_per_sec: f64::NAN,
            wall_secs: f64::NAN,
            slo_miss_fraction: self.cfg.objective_secs.map(|_| {
                if measured == 0 {
                    0.0
                } else {
                    (s.slow + s.dropped) as f64 / measured as f64
                }
            }),
            objective: self.cfg.objective_secs,
            scale_actions: scaled.then_some(self.scale_actions),
            min_nodes: scaled.then_some(self.live_range.0),
            max_nodes: scaled.then_some(self.live_range.1),
            mean_nodes: scaled.then(|| {
                if sim_secs > 0.0 {
                    node_seconds / sim_secs
                } else {
                    f64::from(self.cfg.nodes)
                }
            }),
        }
    }
}

fn arrivals_name(a: &crate::arrivals::Arrivals) -> String {
    use crate::arrivals::Arrivals;
    match a {
        Arrivals::Poisson => "poisson".into(),
        Arrivals::Mmpp { r1, r2, s12, s21 } => format!("mmpp:{r1},{r2},{s12},{s21}"),
        Arrivals::Step { at, factor } => format!("step:{at},{factor}"),
        Arrivals::Ramp { from, to, over } => format!("ramp:{from},{to},{over}"),
        Arrivals::Diurnal { period, amplitude } => format!("diurnal:{period},{amplitude}"),
        Arrivals::Trace(t) => format!("trace ({} arrivals)", t.len()),
        Arrivals::Builtin { trace, seconds } => format!("builtin:{trace},{seconds}"),
    }
}
