//! HPA-like: Kubernetes' horizontal pod autoscaler, as its controller
//! computes a replica count.
//!
//! Every `sync` period (Kubernetes: 15 s) it averages the metric over the
//! ready nodes since the last sync (utilisation, requests in flight or
//! waiting per node, or the p99 latency as an external metric) and sets `desired = ceil(ready × metric / target)`, nothing if the
//! ratio is within `tolerance` (10%) of 1. Scaling up, booting nodes count
//! with a metric of 0 (Kubernetes' rule for unready pods), so a boot in
//! progress is not paid for twice. Scaling down takes the largest
//! recommendation of the last `down` window (300 s); scaling up is limited
//! per sync to max(2 × current, current + 4) (the default 100% / 4 pods per
//! 15 s policies). State: one window of recommendations, O(down / sync).

use super::window::Window;
use super::{Decision, Reason, ScalePolicy, Signals};
use crate::balance::parse::format_duration;
use ebb_core::{Instant, Nanos, Rng};

pub const DEFAULT_UTILISATION_TARGET: f64 = 0.8;
pub const DEFAULT_IN_FLIGHT_TARGET: f64 = 4.0;
pub const DEFAULT_QUEUE_TARGET: f64 = 1.0;
pub const DEFAULT_TOLERANCE: f64 = 0.1;
pub const DEFAULT_SYNC: Nanos = Nanos::from_secs(15);
pub const DEFAULT_DOWN_WINDOW: Nanos = Nanos::from_secs(300);
/// Scale-up policies: at most +100% or +4 nodes per sync, whichever is more.
pub const UP_PERCENT: u32 = 100;
pub const UP_NODES: u32 = 4;

/// What the HPA-like policy averages per ready node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// Busy fraction of the node (Kubernetes' CPU utilisation).
    Utilisation,
    /// Requests queued or in service per node (a custom metric).
    InFlight,
    /// Requests waiting per node, averaged over ticks (a custom metric).
    Queue,
    /// The p99 response time, seconds (an external metric: not per node,
    /// but the ratio to its target scales the pool the same way).
    Latency,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HpaConfig {
    pub metric: Metric,
    pub target: f64,
    pub tolerance: f64,
    pub sync: Nanos,
    pub down_window: Nanos,
}

impl Default for HpaConfig {
    fn default() -> Self {
        HpaConfig {
            metric: Metric::Utilisation,
            target: DEFAULT_UTILISATION_TARGET,
            tolerance: DEFAULT_TOLERANCE,
            sync: DEFAULT_SYNC,
            down_window: DEFAULT_DOWN_WINDOW,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Hpa {
    cfg: HpaConfig,
    last_sync: Option<Instant>,
    /// Since the last sync: metric numerator (busy seconds, or requests ×
    /// seconds) and ready node-seconds.
    metric_sum: f64,
    node_secs: f64,
    /// Since the last sync, for the latency metric: p99 × seconds, seconds.
    latency_sum: f64,
    latency_secs: f64,
    recommendations: Window,
}

impl Hpa {
    pub fn new(cfg: HpaConfig) -> Hpa {
        Hpa {
            cfg,
            last_sync: None,
            metric_sum: 0.0,
            node_secs: 0.0,
            latency_sum: 0.0,
            latency_secs: 0.0,
            recommendations: Window::new(),
        }
    }
}

impl ScalePolicy for Hpa {
    fn name(&self) -> String {
        let c = &self.cfg;
        let metric = match c.metric {
            Metric::Utilisation => format!("util={}", c.target),
            Metric::InFlight => format!("inflight={}", c.target),
            Metric::Queue => format!("queue={}", c.target),
            Metric::Latency => format!("p99={}", format_duration(Nanos::from_secs_f64(c.target))),
        };
        format!(
            "hpa:{metric}:tolerance={}:sync={}:down={}",
            c.tolerance,
            format_duration(c.sync),
            format_duration(c.down_window)
        )
    }

    fn decide(&mut self, s: &Signals, now: Instant, _rng: &mut Rng) -> Decision {
        let serving = f64::from(s.nodes.ready + s.nodes.draining);
        self.node_secs += serving * s.tick.as_secs_f64();
        let tick = s.tick.as_secs_f64();
        self.metric_sum += match self.cfg.metric {
            Metric::Utilisation => s.busy.as_secs_f64(),
            Metric::InFlight => s.response_sum.as_secs_f64(),
            Metric::Queue => s.queued as f64 * tick,
            Metric::Latency => 0.0,
        };
        if let Some(p99) = s.p99 {
            self.latency_sum += p99.as_secs_f64() * tick;
            self.latency_secs += tick;
        }
        let last = *self.last_sync.get_or_insert(now);
        if now.saturating_since(last) < self.cfg.sync && now != last {
            return Decision::hold(s, Reason::Hold);
        }
        self.last_sync = Some(now);
        let (sum, node_secs) = (self.metric_sum, self.node_secs);
        let (lat_sum, lat_secs) = (self.latency_sum, self.latency_secs);
        self.metric_sum = 0.0;
        self.node_secs = 0.0;
        self.latency_sum = 0.0;
        self.latency_secs = 0.0;
        let current = s.nodes.current();
        let no_latency = self.cfg.metric == Metric::Latency && lat_secs <= 0.0;
        if s.nodes.ready == 0 || node_secs <= 0.0 || no_latency {
            return Decision::hold(s, Reason::NoSignal);
        }
        let metric = if self.cfg.metric == Metric::Latency {
            lat_sum / lat_secs
        } else {
            sum / node_secs
        };
        let ready = f64::from(s.nodes.ready);
        let mut ratio = metric / self.cfg.target;
        let (mut desired, mut reason) = (current, Reason::WithinTolerance);
        if (ratio - 1.0).abs() > self.cfg.tolerance {
            if ratio > 1.0 && s.nodes.booting > 0 {
                // Booting nodes count as idle: would the pool still be hot?
                ratio = metric * ready / f64::from(current) / self.cfg.target;
                if ratio > 1.0 + self.cfg.tolerance {
                    desired = (ratio * f64::from(current)).ceil() as u32;
                    reason = Reason::Up;
                }
            } else {
                desired = (ratio * ready).ceil() as u32;
                reason = if desired > current {
                    Reason::Up
                } else {
                    Reason::Down
                };
            }
        }
        self.recommendations
            .push(now, f64::from(desired), self.cfg.down_window);
        let mut target = desired;
        if desired < current {
            let held = self
                .recommendations
                .max(now, self.cfg.down_window)
                .map_or(desired, |m| m as u32)
                .min(current);
            if held > desired {
                reason = Reason::DownStabilised;
            }
            target = held;
        } else if desired > current {
            let limit = current
                .saturating_mul(100 + UP_PERCENT)
                .div_ceil(100)
                .max(current.saturating_add(UP_NODES));
            if desired > limit {
                target = limit;
                reason = Reason::UpRateLimited;
            }
        }
        Decision {
            target_nodes: target,
            capacity_per_node: None,
            reason,
            inputs: Vec::new(),
        }
        .with("metric", metric)
        .with("target", self.cfg.target)
        .with("ratio", ratio)
        .with("desired", f64::from(desired))
        .limited(&s.limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::testutil::{at_secs, signals};

    fn sync_every_tick() -> Hpa {
        Hpa::new(HpaConfig {
            target: 0.6,
            sync: Nanos::from_secs(1),
            ..HpaConfig::default()
        })
    }

    #[test]
    fn scales_by_ceil_of_ratio_outside_tolerance() {
        let mut rng = Rng::seeded(1);
        let mut h = sync_every_tick();
        // 4 nodes at 90% against 60%: ratio 1.5, ceil(4 × 1.5) = 6.
        let d = h.decide(&signals(4, 0.9), at_secs(1), &mut rng);
        assert_eq!((d.target_nodes, d.reason), (6, Reason::Up));
        // 63% is within 10% of 60%: hold.
        let d = h.decide(&signals(6, 0.63), at_secs(2), &mut rng);
        assert_eq!((d.target_nodes, d.reason), (6, Reason::WithinTolerance));
    }

    #[test]
    fn booting_nodes_count_as_idle_when_scaling_up() {
        let mut rng = Rng::seeded(1);
        let mut h = sync_every_tick();
        // 4 ready at 90% and 2 booting: 0.9 × 4 / 6 = 0.6, on target: hold.
        let mut s = signals(4, 0.9);
        s.nodes.booting = 2;
        let d = h.decide(&s, at_secs(1), &mut rng);
        assert_eq!((d.target_nodes, d.reason), (6, Reason::WithinTolerance));
    }

    #[test]
    fn scale_down_waits_out_the_stabilisation_window() {
        let mut rng = Rng::seeded(1);
        let mut h = sync_every_tick();
        // 10 nodes at 60% (desired 10), then at 30% (desired 5).
        h.decide(&signals(10, 0.6), at_secs(0), &mut rng);
        let d = h.decide(&signals(10, 0.3), at_secs(100), &mut rng);
        assert_eq!((d.target_nodes, d.reason), (10, Reason::DownStabilised));
        // 301 s after the last recommendation of 10, it may go.
        let d = h.decide(&signals(10, 0.3), at_secs(301), &mut rng);
        assert_eq!((d.target_nodes, d.reason), (5, Reason::Down));
    }

    #[test]
    fn latency_scales_by_its_ratio_to_the_target() {
        let mut rng = Rng::seeded(1);
        let mut h = Hpa::new(HpaConfig {
            metric: Metric::Latency,
            target: 0.1,
            sync: Nanos::from_secs(1),
            ..HpaConfig::default()
        });
        // p99 150 ms against 100 ms on 4 nodes: ceil(4 × 1.5) = 6.
        let mut s = signals(4, 0.5);
        s.p99 = Some(Nanos::from_millis(150));
        let d = h.decide(&s, at_secs(1), &mut rng);
        assert_eq!((d.target_nodes, d.reason), (6, Reason::Up));
        // No completions, no p99: nothing to go on.
        s.p99 = None;
        assert_eq!(h.decide(&s, at_secs(2), &mut rng).reason, Reason::NoSignal);
    }

    #[test]
    fn scale_up_is_rate_limited() {
        let mut rng = Rng::seeded(1);
        let mut h = sync_every_tick();
        // 2 nodes at 100% against 10%: desired 20, limit max(4, 2 + 4) = 6.
        h.cfg.target = 0.1;
        let d = h.decide(&signals(2, 1.0), at_secs(1), &mut rng);
        assert_eq!((d.target_nodes, d.reason), (6, Reason::UpRateLimited));
    }

    #[test]
    fn evaluates_only_every_sync_period_on_the_average_since() {
        let mut rng = Rng::seeded(1);
        let mut h = Hpa::new(HpaConfig {
            target: 0.6,
            ..HpaConfig::default()
        });
        // First call syncs (no history): 4 nodes at 60%, hold.
        assert_eq!(
            h.decide(&signals(4, 0.6), at_secs(0), &mut rng).reason,
            Reason::WithinTolerance
        );
        // 14 ticks at 100% then one at 100%: the sync at 15 s averages 1.0.
        for t in 1..15 {
            let d = h.decide(&signals(4, 1.0), at_secs(t), &mut rng);
            assert_eq!((d.target_nodes, d.reason), (4, Reason::Hold));
        }
        let d = h.decide(&signals(4, 1.0), at_secs(15), &mut rng);
        // ceil(4 × 1.0 / 0.6) = 7.
        assert_eq!((d.target_nodes, d.reason), (7, Reason::Up));
    }
}
