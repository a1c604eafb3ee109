//! Running an `ebb_policy::scale` policy as the simulator's scale hook:
//! the pool's signals become the policy's [`Signals`], its [`Decision`]
//! becomes starts and drains, and every tick can be written to a timeline.
//!
//! The same policy code runs in the gateway's controller; this adapter is
//! the simulator's edge, as the controller loop is the gateway's.

use crate::scale::{PoolSignals, ScaleAction, ScaleHook};
use ebb_core::{Instant, Nanos, Rng};
use ebb_policy::scale::{Decision, Limits, NodeCounts, ScalePolicy, Signals};
use serde::Serialize;

/// Most timeline rows kept (a day of 1 s ticks is 86,400); past it, rows
/// are counted in [`Autoscaler::rows_dropped`] and not stored.
pub const MAX_TIMELINE_ROWS: usize = 1 << 20;

/// What the policy is told about the pool besides what the run measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleSetup {
    pub limits: Limits,
    pub boot_time: Nanos,
    pub cost_per_node_sec_micros: u64,
    pub objective: Option<Nanos>,
}

/// One control tick: what was measured and what was decided.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelineRow {
    pub t: f64,
    pub arrivals: u64,
    pub completions: u64,
    pub drops: u64,
    pub booting: u32,
    pub ready: u32,
    pub draining: u32,
    pub queued: u64,
    pub in_service: u64,
    pub p99: Option<f64>,
    pub target: u32,
    pub capacity: u32,
    pub reason: String,
}

/// The header of [`TimelineRow::csv`].
pub const TIMELINE_CSV_HEADER: &str = "t,arrivals,completions,drops,booting,ready,draining,queued,in_service,p99,target,capacity,reason";

impl TimelineRow {
    pub fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.t,
            self.arrivals,
            self.completions,
            self.drops,
            self.booting,
            self.ready,
            self.draining,
            self.queued,
            self.in_service,
            self.p99.map_or(String::new(), |p| p.to_string()),
            self.target,
            self.capacity,
            self.reason
        )
    }
}

/// A [`ScaleHook`] that runs a [`ScalePolicy`].
pub struct Autoscaler {
    policy: Box<dyn ScalePolicy + Send>,
    setup: ScaleSetup,
    capacity: Option<u32>,
    timeline: Option<Vec<TimelineRow>>,
    rows_dropped: u64,
    last: Option<Decision>,
}

impl Autoscaler {
    pub fn new(policy: Box<dyn ScalePolicy + Send>, setup: ScaleSetup) -> Autoscaler {
        Autoscaler {
            policy,
            setup,
            capacity: None,
            timeline: None,
            rows_dropped: 0,
            last: None,
        }
    }

    /// Keeps a row per tick (bounded by [`MAX_TIMELINE_ROWS`]).
    pub fn with_timeline(mut self) -> Autoscaler {
        self.timeline = Some(Vec::new());
        self
    }

    pub fn policy_name(&self) -> String {
        self.policy.name()
    }

    pub fn timeline(&self) -> &[TimelineRow] {
        self.timeline.as_deref().unwrap_or_default()
    }

    pub fn rows_dropped(&self) -> u64 {
        self.rows_dropped
    }

    /// The most recent decision, with its reason and inputs.
    pub fn last_decision(&self) -> Option<&Decision> {
        self.last.as_ref()
    }

    /// The policy's view of the tick.
    fn signals(&self, p: &PoolSignals) -> Signals {
        Signals {
            tick: Nanos::from_secs_f64(p.interval_secs),
            arrivals: p.arrivals_since_tick,
            completions: p.completions_since_tick,
            refusals: p.drops_since_tick,
            queued: p.queued,
            in_service: p.in_service,
            busy: Nanos(p.busy_ns_since_tick),
            response_sum: Nanos(p.response_ns_since_tick),
            p50: p.p50_ns.map(Nanos),
            p99: p.p99_ns.map(Nanos),
            nodes: NodeCounts {
                booting: p.booting,
                ready: p.ready,
                draining: p.draining,
            },
            capacity_per_node: p.capacity_per_node.max(1),
            boot_time: self.setup.boot_time,
            cost_per_node_sec_micros: self.setup.cost_per_node_sec_micros,
            objective: self.setup.objective,
            limits: self.setup.limits,
        }
    }
}

impl ScaleHook for Autoscaler {
    fn on_tick(&mut self, p: &PoolSignals, now: Instant, rng: &mut Rng) -> ScaleAction {
        let s = self.signals(p);
        let d = self.policy.decide(&s, now, rng);
        let target = self.setup.limits.clamp_nodes(d.target_nodes);
        let current = s.nodes.current();
        self.capacity = d
            .capacity_per_node
            .map(|c| c.clamp(1, self.setup.limits.max_capacity_per_node.max(1)));
        if let Some(rows) = &mut self.timeline {
            if rows.len() < MAX_TIMELINE_ROWS {
                rows.push(TimelineRow {
                    t: now.since_epoch().as_secs_f64(),
                    arrivals: p.arrivals_since_tick,
                    completions: p.completions_since_tick,
                    drops: p.drops_since_tick,
                    booting: p.booting,
                    ready: p.ready,
                    draining: p.draining,
                    queued: p.queued,
                    in_service: p.in_service,
                    p99: p.p99_ns.map(|n| n as f64 * 1e-9),
                    target,
                    capacity: self.capacity.unwrap_or(s.capacity_per_node),
                    reason: d.reason.to_string(),
                });
            } else {
                self.rows_dropped += 1;
            }
        }
        self.last = Some(d);
        match target.cmp(&current) {
            std::cmp::Ordering::Greater => ScaleAction::Add(target - current),
            std::cmp::Ordering::Less => ScaleAction::Remove(current - target),
            std::cmp::Ordering::Equal => ScaleAction::Hold,
        }
    }

    fn capacity_per_node(&mut self) -> Option<u32> {
        self.capacity
    }
}
