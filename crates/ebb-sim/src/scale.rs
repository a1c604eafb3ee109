//! The seam where an autoscaler plugs into a run.
//!
//! The simulator calls a [`ScaleHook`] on every control tick with what a real
//! controller could measure, and applies the [`ScaleAction`] it returns: added
//! nodes boot for `boot_secs` before taking work; removed nodes drain (finish
//! what they hold, take nothing new) and stop costing when empty.

use ebb_core::{Instant, Rng};

/// What the pool looked like at a tick, and what happened since the last one.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PoolSignals {
    pub ready: u32,
    pub booting: u32,
    pub draining: u32,
    /// Requests waiting in node queues and held at gateways.
    pub queued: u64,
    /// Requests being served.
    pub in_service: u64,
    pub arrivals_since_tick: u64,
    pub completions_since_tick: u64,
    pub drops_since_tick: u64,
    /// Seconds since the previous tick.
    pub interval_secs: f64,
    /// Service time of the requests completed since the last tick, summed
    /// (node-busy time).
    pub busy_ns_since_tick: u64,
    /// Response time of the requests completed since the last tick, summed.
    pub response_ns_since_tick: u64,
    /// Response-time percentiles of those completions (within 12.5%).
    pub p50_ns: Option<u64>,
    pub p99_ns: Option<u64>,
    /// Capacity of each node (its speed multiplier; 1 unless a hook set it).
    pub capacity_per_node: u32,
}

/// A scaling decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleAction {
    Hold,
    /// Start this many nodes (they boot first).
    Add(u32),
    /// Drain this many nodes, newest first.
    Remove(u32),
}

/// Called on every control tick; may grow or shrink the pool.
pub trait ScaleHook {
    fn on_tick(&mut self, signals: &PoolSignals, now: Instant, rng: &mut Rng) -> ScaleAction;

    /// Capacity every node should have after this tick's action (scale up
    /// rather than out: a node of capacity c serves c times as fast and
    /// costs c times as much); `None` keeps it. Asked once per tick, right
    /// after [`ScaleHook::on_tick`].
    fn capacity_per_node(&mut self) -> Option<u32> {
        None
    }
}

/// A fixed plan: each `(time_secs, action)` applies at the first tick at or
/// after its time. For scenarios and tests.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    steps: Vec<(f64, ScaleAction)>,
    next: usize,
}

impl Schedule {
    /// `steps` in time order.
    pub fn new(steps: Vec<(f64, ScaleAction)>) -> Schedule {
        Schedule { steps, next: 0 }
    }
}

impl ScaleHook for Schedule {
    fn on_tick(&mut self, _signals: &PoolSignals, now: Instant, _rng: &mut Rng) -> ScaleAction {
        match self.steps.get(self.next) {
            Some((at, action)) if now.since_epoch().as_secs_f64() >= *at => {
                self.next += 1;
                *action
            }
            _ => ScaleAction::Hold,
        }
    }
}
