//! Runs an `ebb-policy` [`ScalePolicy`] on what a live pool measures.
//!
//! The pool ticks often (every few milliseconds, so node events are handled
//! at once); a policy is meant to be asked once per control period (a
//! second), with counts over that period. [`Controller`] sums the pool's
//! ticks into one [`Signals`] per period, asks the policy, and keeps every
//! decision in a bounded [`DecisionLog`] for the live view and the report.
//! The policy itself is untouched: the same code the simulator runs.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use ebb_core::{Instant, Nanos, Rng};
use ebb_policy::scale::{Decision, Limits, NodeCounts, ScalePolicy, Signals};

/// Decisions kept in the log for the reader to drain; older ones are
/// dropped (and counted) if nobody drains.
pub const MAX_LOGGED_DECISIONS: usize = 4_096;
/// Default control period.
pub const DEFAULT_PERIOD_MS: u64 = 1_000;

/// One pool tick's measurements: what the gateway's pool gives an
/// autoscaler, in `ebb-policy`'s units.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tick {
    pub interval: Nanos,
    pub arrivals: u64,
    pub completions: u64,
    pub refusals: u64,
    /// Requests held at the gateway at the tick.
    pub held: u64,
    /// Requests at nodes at the tick.
    pub in_flight: u64,
    pub p50: Nanos,
    pub p99: Nanos,
    /// Mean service time as measured (a call alone on its node).
    pub service_time: Nanos,
    pub nodes: NodeCounts,
    pub boot_time: Nanos,
}

/// What the operator fixes; the rest comes from the pool.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ControlConfig {
    pub period: Nanos,
    pub limits: Limits,
    pub objective: Option<Nanos>,
    pub cost_per_node_sec_micros: u64,
}

/// One decision as logged.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedDecision {
    /// When it was made, on the caller's clock.
    pub at: std::time::Instant,
    /// Pool size (ready + booting) when it was made.
    pub current: u32,
    pub decision: Decision,
}

impl LoggedDecision {
    pub fn changes_pool(&self) -> bool {
        self.decision.target_nodes != self.current
    }
}

/// Decisions waiting to be read, bounded by [`MAX_LOGGED_DECISIONS`].
#[derive(Debug, Default)]
pub struct DecisionLog {
    queue: VecDeque<LoggedDecision>,
    dropped: u64,
    last: Option<LoggedDecision>,
    /// Nodes by state at the latest pool tick.
    nodes: NodeCounts,
}

impl DecisionLog {
    fn push(&mut self, d: LoggedDecision) {
        if self.queue.len() == MAX_LOGGED_DECISIONS {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.last = Some(d.clone());
        self.queue.push_back(d);
    }

    /// Takes every decision logged since the last call.
    pub fn drain(&mut self) -> Vec<LoggedDecision> {
        self.queue.drain(..).collect()
    }

    pub fn last(&self) -> Option<&LoggedDecision> {
        self.last.as_ref()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Nodes by state at the latest pool tick.
    pub fn nodes(&self) -> NodeCounts {
        self.nodes
    }
}

pub type SharedLog = Arc<Mutex<DecisionLog>>;

pub fn lock(log: &SharedLog) -> std::sync::MutexGuard<'_, DecisionLog> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sums of the ticks of one period.
#[derive(Clone, Copy, Debug, Default)]
struct Period {
    span: Nanos,
    arrivals: u64,
    completions: u64,
    refusals: u64,
    busy: Nanos,
    /// In-flight integrated over time: by Little's law the summed response
    /// time of the period's requests, which the pool does not report.
    in_system: Nanos,
    p50: Nanos,
    p99: Nanos,
}

pub struct Controller {
    policy: Box<dyn ScalePolicy + Send>,
    cfg: ControlConfig,
    period: Period,
    rng: Rng,
    log: SharedLog,
}

impl Controller {
    pub fn new(policy: Box<dyn ScalePolicy + Send>, cfg: ControlConfig, seed: u64) -> Controller {
        Controller {
            policy,
            cfg,
            period: Period::default(),
            rng: Rng::seeded(seed),
            log: SharedLog::default(),
        }
    }

    pub fn name(&self) -> String {
        self.policy.name()
    }

    /// The log this controller writes; clone it before handing the
    /// controller to the pool.
    pub fn log(&self) -> SharedLog {
        Arc::clone(&self.log)
    }

    /// Takes one pool tick. At the end of a period, asks the policy and
    /// returns its target; `None` between periods.
    pub fn tick(&mut self, t: &Tick, now: Instant, wall: std::time::Instant) -> Option<u32> {
        lock(&self.log).nodes = t.nodes;
        let p = &mut self.period;
        p.span += t.interval;
        p.arrivals += t.arrivals;
        p.completions += t.completions;
        p.refusals += t.refusals;
        p.busy += Nanos::from_secs_f64(t.service_time.as_secs_f64() * t.completions as f64);
        p.in_system +=
            Nanos::from_secs_f64(t.interval.as_secs_f64() * (t.held + t.in_flight) as f64);
        if t.completions > 0 {
            p.p50 = p.p50.max(t.p50);
            p.p99 = p.p99.max(t.p99);
        }
        if p.span < self.cfg.period {
            return None;
        }
        let p = std::mem::take(&mut self.period);
        let signals = Signals {
            tick: p.span,
            arrivals: p.arrivals,
            completions: p.completions,
            refusals: p.refusals,
            queued: t.held,
            in_service: t.in_flight,
            busy: p.busy,
            response_sum: p.in_system,
            p50: (p.completions > 0).then_some(p.p50),
            p99: (p.completions > 0).then_some(p.p99),
            nodes: t.nodes,
            capacity_per_node: 1,
            boot_time: t.boot_time,
            cost_per_node_sec_micros: self.cfg.cost_per_node_sec_micros,
            objective: self.cfg.objective,
            limits: self.cfg.limits,
        };
        let decision = self.policy.decide(&signals, now, &mut self.rng);
        let target = decision.target_nodes;
        debug_assert!(
            target >= self.cfg.limits.min_nodes
                && target <= self.cfg.limits.max_nodes.max(self.cfg.limits.min_nodes)
        );
        lock(&self.log).push(LoggedDecision {
            at: wall,
            current: t.nodes.current(),
            decision,
        });
        Some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ControlConfig {
        ControlConfig {
            period: Nanos::from_secs(1),
            limits: Limits {
                min_nodes: 1,
                max_nodes: 8,
                max_capacity_per_node: 1,
            },
            objective: Some(Nanos::from_millis(100)),
            cost_per_node_sec_micros: 0,
        }
    }

    /// 10 ms ticks carrying `rate` arrivals per second, service 10 ms.
    fn tick(rate: u64, ready: u32) -> Tick {
        Tick {
            interval: Nanos::from_millis(10),
            arrivals: rate / 100,
            completions: rate / 100,
            service_time: Nanos::from_millis(10),
            p50: Nanos::from_millis(10),
            p99: Nanos::from_millis(30),
            in_flight: 1,
            nodes: NodeCounts {
                ready,
                ..NodeCounts::default()
            },
            ..Tick::default()
        }
    }

    #[test]
    fn asks_the_policy_once_per_period_and_scales_with_load() {
        let policy = ebb_policy::scale::parse("queue").expect("spec");
        let mut c = Controller::new(policy, cfg(), 1);
        let log = c.log();
        let wall = std::time::Instant::now();
        let mut now = Instant::EPOCH;
        let mut targets = Vec::new();
        for _ in 0..500 {
            now += Nanos::from_millis(10);
            if let Some(t) = c.tick(&tick(600, 1), now, wall) {
                targets.push(t);
            }
        }
        assert_eq!(targets.len(), 5, "one decision per second of ticks");
        // 600/s × 10 ms = 6 erlangs: one node cannot hold it.
        let last = *targets.last().expect("decided");
        assert!(last >= 7, "target {last} for 6 erlangs");
        let logged = lock(&log).drain();
        assert_eq!(logged.len(), 5);
        assert!(logged.iter().any(LoggedDecision::changes_pool));
        assert!(
            logged[4].decision.to_string().contains("erlangs="),
            "{}",
            logged[4].decision
        );
        assert!(lock(&log).drain().is_empty(), "drained");
        assert_eq!(
            lock(&log).nodes().ready,
            1,
            "the latest tick's nodes are kept"
        );
    }

    #[test]
    fn the_log_is_bounded() {
        let mut log = DecisionLog::default();
        let d = LoggedDecision {
            at: std::time::Instant::now(),
            current: 1,
            decision: Decision {
                target_nodes: 1,
                capacity_per_node: None,
                reason: ebb_policy::scale::Reason::Hold,
                inputs: Vec::new(),
            },
        };
        for _ in 0..MAX_LOGGED_DECISIONS + 5 {
            log.push(d.clone());
        }
        assert_eq!(log.dropped(), 5);
        assert_eq!(log.drain().len(), MAX_LOGGED_DECISIONS);
        assert!(log.last().is_some());
    }
}
