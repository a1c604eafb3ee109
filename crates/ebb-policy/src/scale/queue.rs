//! ebb's queue-model policy: size the pool from the measured arrival rate
//! and service time so that the response-time objective is met.
//!
//! Each tick: the arrival rate is smoothed with a time constant of the time
//! new capacity takes to arrive (a boot, or nothing while nodes can still
//! grow in place; at least `smooth`), so a burst shorter than a boot, which a new
//! node could not catch anyway, is absorbed by the queue (and shed by
//! deadline); a rise that lasts a boot time scales out. The trend of the
//! smoothed rate is projected one boot time ahead, because a node started
//! now serves only then. The offered load `a = rate × service` (in
//! erlangs) gives, by Erlang C for M/M/k ([`super::erlang::servers_for`],
//! square-root staffing as its starting guess), the fewest servers whose
//! response time exceeds the objective with probability at most `miss`.
//! With a price per miss (`value`), fewer servers are chosen when the
//! misses they save cost less than the nodes. Scaling down follows the
//! largest recommendation of the last `down` window (30 s), a short
//! hysteresis because the model, not the metric, sets the target.
//!
//! The rate is provisioned at its upper (1 − `miss`) quantile under the
//! forecast's own error (the smoothed square of how far each tick's
//! prediction missed the smoothed rate, so one-tick spikes and Poisson
//! noise hardly count): a model that has been wrong keeps
//! more spare, and a surge widens the margin until the estimate catches up.
//!
//! Requests queued beyond what the ready nodes serve within the objective
//! add the load of serving them within one boot time and a tick, so a backlog built while nodes booted is worked off
//! rather than left to miss.
//!
//! Booting nodes count toward the target (they were started for it) but
//! not as capacity: the reasons report the objective miss the ready nodes
//! alone would give.
//!
//! Scale up vs out: where nodes may grow (`Limits::max_capacity_per_node`
//! above 1) the needed servers are spread over the current nodes first, each up
//! to its limit (no boot wait), and nodes are added only beyond that; when
//! load falls, capacity shrinks to 1 before nodes go.

use super::erlang::{
    erlang_b, erlang_c_from_b, normal_upper_quantile, response_exceeds, servers_for,
};
use super::window::Window;
use super::{Decision, Reason, ScalePolicy, Signals};
use crate::balance::parse::format_duration;
use ebb_core::{Instant, Nanos, Rng};

pub const DEFAULT_MISS: f64 = 0.01;
pub const DEFAULT_SMOOTH: Nanos = Nanos::from_secs(2);
pub const DEFAULT_DOWN_WINDOW: Nanos = Nanos::from_secs(30);
/// Objective assumed when neither the spec nor the signals give one: ten
/// mean service times.
pub const DEFAULT_OBJECTIVE_SERVICE_TIMES: f64 = 10.0;
/// Time constant of the service-time estimate, in ticks.
const SERVICE_SMOOTH_TICKS: u32 = 8;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueueConfig {
    /// Fraction of requests allowed over the objective.
    pub miss: f64,
    /// Response-time objective; `None` takes the signals' objective.
    pub objective: Option<Nanos>,
    /// Smallest time constant of the rate estimate (the boot time is used
    /// when longer).
    pub smooth: Nanos,
    pub down_window: Nanos,
    /// Project the rate's trend one boot time ahead.
    pub lookahead: bool,
    /// Price of one miss in micro-dollars; `None`: the objective must be met.
    pub miss_value_micros: Option<f64>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            miss: DEFAULT_MISS,
            objective: None,
            smooth: DEFAULT_SMOOTH,
            down_window: DEFAULT_DOWN_WINDOW,
            lookahead: true,
            miss_value_micros: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct QueueModel {
    cfg: QueueConfig,
    /// Smoothed arrival rate per second and its trend per second².
    rate: Option<f64>,
    trend: f64,
    /// Smoothed service time at capacity 1, seconds.
    service: Option<f64>,
    /// Ticks the service estimate has averaged over.
    service_ticks: u32,
    /// What the last tick predicted this tick's rate would be, and the
    /// smoothed square of how far off such predictions were.
    predicted: Option<f64>,
    error_var: f64,
    recommendations: Window,
}

impl QueueModel {
    pub fn new(cfg: QueueConfig) -> QueueModel {
        QueueModel {
            cfg,
            rate: None,
            trend: 0.0,
            service: None,
            service_ticks: 0,
            predicted: None,
            error_var: 0.0,
            recommendations: Window::new(),
        }
    }
}

/// P(response > objective) for `k` servers at offered load `a`, with the
/// objective `t` in mean service times.
fn miss_at(k: u32, a: f64, t: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    response_exceeds(k, a, erlang_c_from_b(k, a, erlang_b(k, a)), t)
}

impl ScalePolicy for QueueModel {
    fn name(&self) -> String {
        let c = &self.cfg;
        let mut s = format!(
            "queue:miss={}:smooth={}:down={}",
            c.miss,
            format_duration(c.smooth),
            format_duration(c.down_window)
        );
        if let Some(o) = c.objective {
            s += &format!(":objective={}", format_duration(o));
        }
        if let Some(v) = c.miss_value_micros {
            s += &format!(":value={v}");
        }
        if !c.lookahead {
            s += ":nolookahead";
        }
        s
    }

    fn decide(&mut self, s: &Signals, now: Instant, _rng: &mut Rng) -> Decision {
        let dt = s.tick.as_secs_f64();
        if dt <= 0.0 {
            return Decision::hold(s, Reason::NoSignal);
        }
        let cap_now = s.capacity_per_node.max(1);
        if let Some(measured) = s.mean_service_secs() {
            // Per unit of capacity: a node of capacity c serves c× faster.
            let unit = measured * f64::from(cap_now);
            let w = 1.0 - (-1.0 / f64::from(SERVICE_SMOOTH_TICKS)).exp();
            self.service = Some(self.service.map_or(unit, |v| v + w * (unit - v)));
            self.service_ticks = self.service_ticks.saturating_add(1);
        }
        // How long new capacity takes to arrive: a boot, or nothing where
        // the nodes can still grow in place.
        let max_cap = s.limits.max_capacity_per_node.max(1);
        let act = if cap_now < max_cap {
            Nanos::ZERO
        } else {
            s.boot_time
        };
        let tau = self.cfg.smooth.max(act).as_secs_f64();
        let w = 1.0 - (-dt / tau).exp();
        let observed = s.arrival_rate();
        let prev = self.rate.unwrap_or(observed);
        let rate = prev + w * (observed - prev);
        self.trend += w * ((rate - prev) / dt - self.trend);
        self.rate = Some(rate);
        if let Some(p) = self.predicted {
            self.error_var += w * ((rate - p).powi(2) - self.error_var);
        }
        self.predicted = Some(rate + self.trend.max(0.0) * dt);
        let Some(service) = self.service else {
            return Decision::hold(s, Reason::NoSignal).with("rate", rate);
        };
        let lead = if self.cfg.lookahead {
            (act.as_secs_f64() + dt) * self.trend.max(0.0)
        } else {
            0.0
        };
        // Headroom for the forecast's own error: the rate is provisioned at
        // its upper (1 − miss) quantile, so a model that has been wrong
        // lately keeps more spare, and a knob that asks for fewer misses
        // also asks for more certainty.
        let headroom = normal_upper_quantile(self.cfg.miss) * self.error_var.sqrt();
        let forecast = rate + lead + headroom;
        // Work already queued must be served on top of new arrivals; spread
        // over the time a node started now needs to help (a boot and a tick).
        // Only the queue beyond what the ready nodes serve within the
        // objective is a backlog: per-node queues exist at any load.
        let horizon = act.as_secs_f64() + dt;
        let unit_objective = self
            .cfg
            .objective
            .or(s.objective)
            .map_or(DEFAULT_OBJECTIVE_SERVICE_TIMES, |o| {
                o.as_secs_f64() / service
            });
        let absorbed = f64::from(s.nodes.ready.saturating_mul(cap_now)) * unit_objective;
        let excess = (s.queued as f64 - absorbed).max(0.0);
        let backlog = excess * service / f64::from(cap_now) / horizon;
        let a = forecast * service + backlog;
        let objective = self
            .cfg
            .objective
            .or(s.objective)
            .map_or(DEFAULT_OBJECTIVE_SERVICE_TIMES, |o| {
                o.as_secs_f64() / service
            });
        let limits = &s.limits;
        let max_servers = limits
            .max_nodes
            .saturating_mul(limits.max_capacity_per_node.max(1));
        let mut servers = servers_for(a, objective, self.cfg.miss, max_servers);
        if let Some(value) = self.cfg.miss_value_micros {
            // Fewer servers where the misses they avoid cost less than they do.
            let node_cost = s.cost_per_node_sec_micros as f64;
            let total =
                |k: u32| f64::from(k) * node_cost + forecast * miss_at(k, a, objective) * value;
            let lo = (a.floor() as u32).saturating_add(1).min(servers);
            servers = (lo..=servers)
                .min_by(|x, y| total(*x).total_cmp(&total(*y)))
                .unwrap_or(servers);
        }
        // Scale up first, out beyond the per-node limit.
        // Capacity is spread over the ready nodes only: booting ones cannot
        // serve yet, so giving them the capacity would leave it idle.
        let nodes_now = s.nodes.ready.max(1);
        let capacity = servers.div_ceil(nodes_now).clamp(1, max_cap);
        let wanted = servers.div_ceil(capacity);
        self.recommendations
            .push(now, f64::from(wanted), self.cfg.down_window);
        let held = self
            .recommendations
            .max(now, self.cfg.down_window)
            .map_or(wanted, |m| m as u32);
        let current = s.nodes.current();
        // An idle pool (nothing arrived, waiting or in service) has no call
        // a low estimate could leave short of a node.
        let idle = s.arrivals == 0 && s.in_flight() == 0;
        let (target, reason) =
            if wanted < current && self.service_ticks < SERVICE_SMOOTH_TICKS && !idle {
                // Early ticks see the short requests finish first: the service
                // estimate is low until it has averaged over several ticks, and
                // too low an estimate must not shrink the pool while calls come.
                // Once they stop, no more ticks average it: without the idle
                // exception a burst shorter than those ticks would leave the
                // pool scaled out for as long as the silence lasts.
                (current, Reason::DownStabilised)
            } else if wanted >= current {
                (wanted, Reason::Objective)
            } else if held > wanted {
                (held.min(current), Reason::DownStabilised)
            } else {
                (wanted, Reason::Objective)
            };
        let ready_miss = miss_at(s.nodes.ready.saturating_mul(cap_now), a, objective);
        Decision {
            target_nodes: target,
            capacity_per_node: (max_cap > 1).then_some(capacity),
            reason,
            inputs: Vec::new(),
        }
        .with("rate", rate)
        .with("headroom", headroom)
        .with("forecast", forecast)
        .with("service_s", service)
        .with("backlog_erlangs", backlog)
        .with("erlangs", a)
        .with("servers", f64::from(servers))
        .with("ready_miss", ready_miss)
        .limited(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::Limits;
    use crate::scale::testutil::{at_secs, signals};

    /// A 1 s tick with `rate` arrivals, service 20 ms, objective 200 ms.
    fn load(ready: u32, rate: u64) -> Signals {
        let mut s = signals(ready, 0.5);
        s.arrivals = rate;
        s.completions = 100;
        s.busy = Nanos::from_millis(2_000);
        s.objective = Some(Nanos::from_millis(200));
        s
    }

    #[test]
    fn sizes_the_pool_by_erlang_c() {
        let mut rng = Rng::seeded(1);
        let mut q = QueueModel::new(QueueConfig::default());
        // 1000/s × 20 ms = 20 erlangs; objective 10 service times at 1%.
        let d = q.decide(&load(10, 1000), at_secs(1), &mut rng);
        let k = servers_for(20.0, 10.0, 0.01, 10_000);
        assert_eq!((d.target_nodes, d.reason), (k, Reason::Objective));
        // Hand check: 20 erlangs need more than 20 and, by square-root
        // staffing, only a few more.
        assert!((21..=28).contains(&k), "{k}");
        assert!(miss_at(k, 20.0, 10.0) <= 0.01 && miss_at(k - 1, 20.0, 10.0) > 0.01);
    }

    #[test]
    fn a_burst_shorter_than_a_boot_is_absorbed_and_a_lasting_one_scales() {
        let mut rng = Rng::seeded(1);
        let mut q = QueueModel::new(QueueConfig::default());
        let boot = |mut s: Signals| {
            s.boot_time = Nanos::from_secs(30);
            s
        };
        for t in 0..60 {
            q.decide(&boot(load(26, 1000)), at_secs(t), &mut rng);
        }
        let base = q
            .decide(&boot(load(26, 1000)), at_secs(60), &mut rng)
            .target_nodes;
        // One second at 5×: the 30 s time constant moves the rate by 1/30
        // of the jump, far less than 5×.
        let d = q.decide(&boot(load(base, 5000)), at_secs(61), &mut rng);
        assert!(d.target_nodes < 2 * base, "{} vs {base}", d.target_nodes);
        // Sixty seconds at 5×: the pool follows.
        let mut last = d;
        for t in 62..152 {
            last = q.decide(&boot(load(last.target_nodes, 5000)), at_secs(t), &mut rng);
        }
        assert!(
            last.target_nodes > 3 * base,
            "{} vs {base}",
            last.target_nodes
        );
    }

    #[test]
    fn looks_ahead_on_a_rising_trend() {
        let mut rng = Rng::seeded(1);
        let run = |lookahead: bool, rng: &mut Rng| {
            let mut q = QueueModel::new(QueueConfig {
                lookahead,
                ..QueueConfig::default()
            });
            let mut d = None;
            for t in 0..30u64 {
                let mut s = load(50, 1000 + 50 * t);
                s.boot_time = Nanos::from_secs(10);
                d = Some(q.decide(&s, at_secs(t), rng));
            }
            d.map_or(0, |d| d.target_nodes)
        };
        let ahead = run(true, &mut rng);
        let behind = run(false, &mut rng);
        assert!(ahead > behind, "{ahead} vs {behind}");
    }

    #[test]
    fn scales_up_before_out_where_nodes_can_grow() {
        let mut rng = Rng::seeded(1);
        let mut q = QueueModel::new(QueueConfig::default());
        let mut s = load(10, 1000);
        s.limits = Limits {
            max_capacity_per_node: 4,
            ..s.limits
        };
        let mut d = q.decide(&s, at_secs(1), &mut rng);
        // Down only once the service estimate has matured.
        assert_eq!(d.target_nodes, 10);
        for t in 2..=10 {
            d = q.decide(&s, at_secs(t), &mut rng);
        }
        let k = servers_for(20.0, 10.0, 0.01, 40_000);
        // k servers on 10 nodes: capacity ceil(k/10), nodes unchanged.
        assert_eq!(d.capacity_per_node, Some(k.div_ceil(10)));
        assert_eq!(d.target_nodes, k.div_ceil(k.div_ceil(10)));
        assert!(d.target_nodes <= 10);
    }

    #[test]
    fn misses_priced_below_nodes_buy_fewer_nodes() {
        let mut rng = Rng::seeded(1);
        // Objective 100 ms, five service times: 21 servers miss ~4%.
        let tight = |mut s: Signals| {
            s.objective = Some(Nanos::from_millis(100));
            s
        };
        let strict = QueueModel::new(QueueConfig::default())
            .decide(&tight(load(10, 1000)), at_secs(1), &mut rng)
            .target_nodes;
        let mut cheap = QueueModel::new(QueueConfig {
            miss_value_micros: Some(0.001),
            ..QueueConfig::default()
        });
        let mut s = tight(load(10, 1000));
        s.cost_per_node_sec_micros = 100;
        let d = cheap.decide(&s, at_secs(1), &mut rng);
        // A node costs 100 µ$/s; 1000 req/s × 0.001 µ$ cannot pay for one:
        // the fewest servers that keep the queue stable, 21.
        assert_eq!(d.target_nodes, 21);
        assert!(d.target_nodes < strict);
    }

    #[test]
    fn a_burst_too_short_to_average_the_service_time_still_scales_back_in() {
        let mut rng = Rng::seeded(1);
        let cfg = QueueConfig {
            down_window: Nanos::from_secs(2),
            ..QueueConfig::default()
        };
        let mut q = QueueModel::new(cfg);
        // Three ticks of load, fewer than the estimate averages over.
        let mut d = q.decide(&load(1, 1000), at_secs(0), &mut rng);
        for t in 1..3 {
            d = q.decide(&load(d.target_nodes, 1000), at_secs(t), &mut rng);
        }
        // While calls still come (a trickle, none completing), the early
        // estimate may not shrink the pool, however far the rate falls.
        let mut trickle = load(d.target_nodes, 1);
        trickle.completions = 0;
        trickle.busy = Nanos::ZERO;
        let mut held = 0;
        for t in 3..20 {
            let before = d.target_nodes;
            trickle.nodes.ready = before;
            d = q.decide(&trickle, at_secs(t), &mut rng);
            assert!(d.target_nodes >= before, "shrank at {t}: {d:?}");
            held += usize::from(d.reason == Reason::DownStabilised);
        }
        let high = d.target_nodes;
        assert!(high > 4 && held > 0, "{high}, held {held} times");
        // Silence: no arrivals, nothing waiting or in service, no
        // completions. The pool goes back once the down window has passed.
        let mut silent = load(high, 0);
        silent.completions = 0;
        silent.busy = Nanos::ZERO;
        for t in 20..=40 {
            silent.nodes.ready = d.target_nodes;
            d = q.decide(&silent, at_secs(t), &mut rng);
        }
        assert_eq!(d.target_nodes, 1, "back to the minimum: {d:?}");
    }

    #[test]
    fn scale_down_waits_the_short_window() {
        let mut rng = Rng::seeded(1);
        let mut q = QueueModel::new(QueueConfig::default());
        let high = q.decide(&load(10, 2000), at_secs(0), &mut rng).target_nodes;
        // The rate estimate itself decays over 2 s; after 20 s it is low
        // but the 30 s window still holds the first recommendation.
        let mut d = q.decide(&load(high, 200), at_secs(1), &mut rng);
        for t in 2..=20 {
            d = q.decide(&load(high, 200), at_secs(t), &mut rng);
        }
        assert_eq!((d.target_nodes, d.reason), (high, Reason::DownStabilised));
        for t in 21..=40 {
            d = q.decide(&load(high, 200), at_secs(t), &mut rng);
        }
        assert!(d.target_nodes < high / 4, "{} vs {high}", d.target_nodes);
    }
}
