//! Autoscaling: how many nodes the pool should have, and how big each.
//!
//! A [`ScalePolicy`] is called once per control tick with the [`Signals`] a
//! controller can measure (the simulator's pool, or the gateway's), `now`
//! and a seeded RNG, and returns a [`Decision`]: the target node count,
//! optionally a per-node capacity, and the reason with the values it was
//! computed from, so every decision can be logged and explained. The caller
//! turns the target into starts and drains; the policy never touches nodes.
//!
//! One module per policy: [`hpa`] (Kubernetes' horizontal pod autoscaler),
//! [`kpa`] (Knative's concurrency autoscaler), [`queue`] (ebb's
//! queue-model policy), [`fixed`] (`none`: never scales). [`erlang`] holds
//! the M/M/k arithmetic the queue model uses; [`window`] the bounded rolling
//! windows the stabilisation rules keep.

use ebb_core::{Instant, Nanos, Rng};
use std::fmt;

pub mod erlang;
pub mod fixed;
pub mod hpa;
pub mod kpa;
pub mod parse;
pub mod queue;
pub mod window;

pub use parse::{SCALE_POLICY_NAMES, SCALE_SYNTAX, ScaleParseError, parse};

/// Nodes by lifecycle state, as the controller counts them at the tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCounts {
    /// Started, not yet serving.
    pub booting: u32,
    /// Serving and taking new work.
    pub ready: u32,
    /// Finishing their work, taking none; they go away by themselves.
    pub draining: u32,
}

impl NodeCounts {
    /// Nodes that count toward the pool's size: ready and booting. Draining
    /// nodes are already on their way out.
    pub fn current(&self) -> u32 {
        self.ready.saturating_add(self.booting)
    }
}

/// What the operator allows: the policy keeps its target inside these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub min_nodes: u32,
    pub max_nodes: u32,
    /// Largest capacity one node may be given (threads per node, a
    /// container's CPU quota in cores); 1 where the node kind cannot grow.
    pub max_capacity_per_node: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            min_nodes: 1,
            max_nodes: u32::MAX,
            max_capacity_per_node: 1,
        }
    }
}

impl Limits {
    pub fn clamp_nodes(&self, n: u32) -> u32 {
        n.clamp(self.min_nodes, self.max_nodes.max(self.min_nodes))
    }
}

/// What a controller measured over the last tick and sees at its end.
///
/// Counts cover the interval `tick` that just ended; `queued`, `in_service`
/// and `nodes` are the state at its end. Every field is something a real
/// gateway can measure without asking the nodes anything but their queue.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Signals {
    /// Length of the interval the counts cover.
    pub tick: Nanos,
    pub arrivals: u64,
    pub completions: u64,
    /// Requests refused or dropped (deadline passed while queued).
    pub refusals: u64,
    /// Requests waiting (at nodes and held at gateways).
    pub queued: u64,
    /// Requests being served.
    pub in_service: u64,
    /// Service time of the requests completed in the interval, summed:
    /// node-busy time, the numerator of utilisation.
    pub busy: Nanos,
    /// Response time (arrival to completion) of the requests completed in
    /// the interval, summed: by Little's law, divided by `tick` it is the
    /// mean number in the system, the concurrency Knative scales on.
    pub response_sum: Nanos,
    /// Response-time percentiles of the interval's completions, if any.
    pub p50: Option<Nanos>,
    pub p99: Option<Nanos>,
    pub nodes: NodeCounts,
    /// Capacity each node has now (1 unless the policy raised it).
    pub capacity_per_node: u32,
    /// Last measured time from start to ready for this node kind.
    pub boot_time: Nanos,
    pub cost_per_node_sec_micros: u64,
    /// The response-time objective: a request slower than this is a miss.
    pub objective: Option<Nanos>,
    pub limits: Limits,
}

impl Signals {
    fn tick_secs(&self) -> f64 {
        self.tick.as_secs_f64()
    }

    /// Arrivals per second over the interval; 0 for an empty interval.
    pub fn arrival_rate(&self) -> f64 {
        per_sec(self.arrivals as f64, self.tick_secs())
    }

    /// Mean service time of the interval's completions, in seconds.
    pub fn mean_service_secs(&self) -> Option<f64> {
        (self.completions > 0).then(|| self.busy.as_secs_f64() / self.completions as f64)
    }

    /// Busy node-time over serving node-time (ready and draining nodes).
    pub fn utilisation(&self) -> Option<f64> {
        let serving = f64::from(self.nodes.ready + self.nodes.draining) * self.tick_secs();
        (serving > 0.0).then(|| self.busy.as_secs_f64() / serving)
    }

    /// Mean requests in the system over the interval (Little's law).
    pub fn concurrency(&self) -> f64 {
        per_sec(self.response_sum.as_secs_f64(), self.tick_secs())
    }

    /// Requests queued or in service at the end of the interval.
    pub fn in_flight(&self) -> u64 {
        self.queued + self.in_service
    }
}

fn per_sec(x: f64, secs: f64) -> f64 {
    if secs > 0.0 { x / secs } else { 0.0 }
}

/// Why a policy decided what it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The policy never scales (`none`), or it is between evaluations.
    Hold,
    /// Nothing measured yet (no ready node, no completion): keep the pool.
    NoSignal,
    /// The metric is within the tolerance of its target.
    WithinTolerance,
    /// The metric asks for more nodes.
    Up,
    /// The metric asks for fewer nodes.
    Down,
    /// Fewer nodes would do, but a higher recommendation is still inside
    /// the scale-down stabilisation window.
    DownStabilised,
    /// More nodes are wanted than the scale-up rate allows at once.
    UpRateLimited,
    /// Knative's panic mode: short-window demand far above the pool.
    Panic,
    /// The pool size the queueing model says meets the objective.
    Objective,
    /// The target was raised or lowered into the operator's limits.
    Limited,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Hold => "hold",
            Reason::NoSignal => "no-signal",
            Reason::WithinTolerance => "within-tolerance",
            Reason::Up => "up",
            Reason::Down => "down",
            Reason::DownStabilised => "down-stabilised",
            Reason::UpRateLimited => "up-rate-limited",
            Reason::Panic => "panic",
            Reason::Objective => "objective",
            Reason::Limited => "limited",
        })
    }
}

/// One value a decision was computed from, for logs and `/status`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Input {
    pub name: &'static str,
    pub value: f64,
}

/// What the pool should become.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Ready plus booting nodes wanted; the caller starts or drains the
    /// difference. Draining nodes do not count.
    pub target_nodes: u32,
    /// Capacity each node should have, where the policy scales up; `None`
    /// leaves it as it is.
    pub capacity_per_node: Option<u32>,
    pub reason: Reason,
    pub inputs: Vec<Input>,
}

impl Decision {
    /// Keep the pool as it is.
    pub fn hold(s: &Signals, reason: Reason) -> Decision {
        Decision {
            target_nodes: s.limits.clamp_nodes(s.nodes.current()),
            capacity_per_node: None,
            reason,
            inputs: Vec::new(),
        }
    }

    pub(crate) fn with(mut self, name: &'static str, value: f64) -> Decision {
        self.inputs.push(Input { name, value });
        self
    }

    /// Clamps the target into the limits, saying so when that changed it.
    pub(crate) fn limited(mut self, limits: &Limits) -> Decision {
        let clamped = limits.clamp_nodes(self.target_nodes);
        if clamped != self.target_nodes {
            self.target_nodes = clamped;
            self.reason = Reason::Limited;
        }
        self
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "target {} ({})", self.target_nodes, self.reason)?;
        if let Some(c) = self.capacity_per_node {
            write!(f, " capacity {c}")?;
        }
        for i in &self.inputs {
            write!(f, " {}=", i.name)?;
            significant(f, i.value)?;
        }
        Ok(())
    }
}

/// Writes `v` to four significant digits (`83.25`, `0.005812`, `1794`), so
/// a decision's inputs read alike whatever their scale: a rate in the
/// hundreds and a service time in milliseconds of a second.
fn significant(f: &mut fmt::Formatter<'_>, v: f64) -> fmt::Result {
    const DIGITS: i32 = 4;
    if v == 0.0 || !v.is_finite() {
        return write!(f, "{v}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (DIGITS - 1 - magnitude).clamp(0, 9) as usize;
    write!(f, "{v:.decimals$}")
}

/// An autoscaling policy: pure, called once per control tick.
pub trait ScalePolicy {
    /// The spec that builds this policy again (see [`parse`]).
    fn name(&self) -> String;

    /// The decision for the tick ending at `now`.
    fn decide(&mut self, signals: &Signals, now: Instant, rng: &mut Rng) -> Decision;
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// A 1 s tick over `ready` ready nodes with a given busy fraction,
    /// service 20 ms.
    pub fn signals(ready: u32, utilisation: f64) -> Signals {
        let tick = Nanos::from_secs(1);
        let busy_secs = utilisation * f64::from(ready);
        let completions = (busy_secs / 0.02).round() as u64;
        Signals {
            tick,
            arrivals: completions,
            completions,
            busy: Nanos::from_secs_f64(busy_secs),
            response_sum: Nanos::from_secs_f64(busy_secs),
            nodes: NodeCounts {
                ready,
                ..NodeCounts::default()
            },
            capacity_per_node: 1,
            limits: Limits {
                min_nodes: 1,
                max_nodes: 10_000,
                max_capacity_per_node: 1,
            },
            ..Signals::default()
        }
    }

    pub fn at_secs(s: u64) -> Instant {
        Instant::from_epoch(Nanos::from_secs(s))
    }
}

#[cfg(test)]
mod display_tests {
    use super::*;

    #[test]
    fn inputs_show_four_significant_digits_at_any_scale() {
        let d = Decision {
            target_nodes: 2,
            capacity_per_node: Some(3),
            reason: Reason::Up,
            inputs: Vec::new(),
        }
        .with("rate", 83.245_7)
        .with("forecast", 1_794.68)
        .with("service_s", 0.005_812_3)
        .with("backlog", 0.0)
        .with("miss", -0.5);
        assert_eq!(
            d.to_string(),
            "target 2 (up) capacity 3 rate=83.25 forecast=1795 service_s=0.005812 backlog=0 miss=-0.5000"
        );
    }
}
