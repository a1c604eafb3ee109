//! The autoscaler's recent decisions as the gateway shows them: each with
//! the signal values it was made from, the policy's reasoning and the
//! target, for `/status` (the last [`MAX_RECENT_DECISIONS`]), `/metrics`
//! (desired nodes, decisions by direction) and the dashboard.
//!
//! The pool manager records; readers take a copy. Nothing here decides.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ebb_policy::scale::{Decision, Signals};
use serde::Serialize;

/// Decisions `/status` lists, newest last; older ones are only counted.
pub const MAX_RECENT_DECISIONS: usize = 32;

/// Which way a decision moves the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
    Hold,
}

impl Direction {
    pub const ALL: [Direction; 3] = [Direction::Up, Direction::Down, Direction::Hold];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Hold => "hold",
        }
    }
}

/// The signal values a decision saw, in the units people read.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SignalValues {
    pub tick_ms: u64,
    pub arrivals_per_sec: f64,
    pub completions_per_sec: f64,
    pub refusals: u64,
    pub queued: u64,
    pub in_service: u64,
    /// Busy time over serving time; `None` with no node serving.
    pub utilisation: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub ready: u32,
    pub booting: u32,
    pub draining: u32,
    /// The capacity in force per ready node when it was made.
    pub capacity_per_node: u32,
    pub boot_time_ms: u64,
    pub objective_ms: Option<u64>,
}

impl SignalValues {
    pub fn of(s: &Signals) -> SignalValues {
        let ms = |n: ebb_core::Nanos| n.as_nanos() as f64 / 1e6;
        SignalValues {
            tick_ms: s.tick.as_millis(),
            arrivals_per_sec: s.arrival_rate(),
            completions_per_sec: per_sec(s.completions, s.tick),
            refusals: s.refusals,
            queued: s.queued,
            in_service: s.in_service,
            utilisation: s.utilisation(),
            p50_ms: s.p50.map(ms),
            p99_ms: s.p99.map(ms),
            ready: s.nodes.ready,
            booting: s.nodes.booting,
            draining: s.nodes.draining,
            capacity_per_node: s.capacity_per_node,
            boot_time_ms: s.boot_time.as_millis(),
            objective_ms: s.objective.map(|o| o.as_millis()),
        }
    }
}

fn per_sec(n: u64, tick: ebb_core::Nanos) -> f64 {
    let secs = tick.as_secs_f64();
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// One decision, as `/status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecisionRecord {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Ready plus booting nodes when it was made.
    pub current_nodes: u32,
    /// What the policy asked for.
    pub target_nodes: u32,
    /// The target after the pool's min/max.
    pub applied_nodes: u32,
    /// The capacity per node it set (within `max_capacity_per_node`);
    /// `None`: it left capacity alone (scale out only, or by hand).
    pub capacity_per_node: Option<u32>,
    pub direction: Direction,
    /// The policy's reason (`up`, `down-stabilised`, `objective`, ...).
    pub reason: String,
    /// The values the policy computed its target from, by name.
    pub inputs: Vec<(String, f64)>,
    pub signals: SignalValues,
}

impl DecisionRecord {
    pub fn new(
        at_unix_ms: u64,
        signals: &Signals,
        decision: &Decision,
        applied_nodes: u32,
    ) -> DecisionRecord {
        let current = signals.nodes.current();
        let direction = match applied_nodes.cmp(&current) {
            std::cmp::Ordering::Greater => Direction::Up,
            std::cmp::Ordering::Less => Direction::Down,
            std::cmp::Ordering::Equal => Direction::Hold,
        };
        DecisionRecord {
            at_unix_ms,
            current_nodes: current,
            target_nodes: decision.target_nodes,
            applied_nodes,
            capacity_per_node: None,
            direction,
            reason: decision.reason.to_string(),
            inputs: decision
                .inputs
                .iter()
                .map(|i| (i.name.to_owned(), i.value))
                .collect(),
            signals: SignalValues::of(signals),
        }
    }
}

impl DecisionRecord {
    /// The record with the capacity per node the decision set.
    pub fn with_capacity(mut self, capacity: Option<u32>) -> DecisionRecord {
        self.capacity_per_node = capacity;
        self
    }
}

/// What readers get: the recent decisions and the running totals.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DecisionSummary {
    /// The pool size the last decision wanted (after min/max).
    pub desired_nodes: Option<u32>,
    pub up: u64,
    pub down: u64,
    pub hold: u64,
    pub recent: Vec<DecisionRecord>,
}

impl DecisionSummary {
    pub fn count(&self, d: Direction) -> u64 {
        match d {
            Direction::Up => self.up,
            Direction::Down => self.down,
            Direction::Hold => self.hold,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    recent: VecDeque<DecisionRecord>,
    up: u64,
    down: u64,
    hold: u64,
    desired: Option<u32>,
}

/// Shared between the pool manager (which records) and the HTTP side.
#[derive(Clone, Debug, Default)]
pub struct DecisionLog {
    inner: Arc<Mutex<Inner>>,
}

impl DecisionLog {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves `Inner` consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn record(&self, r: DecisionRecord) {
        let mut g = self.lock();
        match r.direction {
            Direction::Up => g.up += 1,
            Direction::Down => g.down += 1,
            Direction::Hold => g.hold += 1,
        }
        g.desired = Some(r.applied_nodes);
        if g.recent.len() == MAX_RECENT_DECISIONS {
            g.recent.pop_front();
        }
        g.recent.push_back(r);
        debug_assert!(g.recent.len() <= MAX_RECENT_DECISIONS);
    }

    pub fn summary(&self) -> DecisionSummary {
        let g = self.lock();
        DecisionSummary {
            desired_nodes: g.desired,
            up: g.up,
            down: g.down,
            hold: g.hold,
            recent: g.recent.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use ebb_core::Nanos;
    use ebb_policy::scale::{Limits, NodeCounts, Reason};

    use super::*;

    fn signals(ready: u32) -> Signals {
        Signals {
            tick: Nanos::from_secs(1),
            arrivals: 120,
            completions: 100,
            refusals: 2,
            queued: 7,
            in_service: 3,
            busy: Nanos::from_millis(900),
            response_sum: Nanos::from_secs(2),
            p50: Some(Nanos::from_millis(4)),
            p99: Some(Nanos::from_millis(40)),
            nodes: NodeCounts {
                ready,
                booting: 0,
                draining: 0,
            },
            capacity_per_node: 1,
            boot_time: Nanos::from_millis(150),
            cost_per_node_sec_micros: 0,
            objective: Some(Nanos::from_millis(50)),
            limits: Limits {
                min_nodes: 1,
                max_nodes: 8,
                max_capacity_per_node: 1,
            },
        }
    }

    fn decision(target: u32, reason: Reason) -> Decision {
        Decision {
            target_nodes: target,
            capacity_per_node: None,
            reason,
            inputs: Vec::new(),
        }
    }

    #[test]
    fn a_record_keeps_the_signals_the_reason_and_the_direction() {
        let r = DecisionRecord::new(5, &signals(2), &decision(3, Reason::Up), 3);
        assert_eq!((r.current_nodes, r.applied_nodes), (2, 3));
        assert_eq!(r.direction, Direction::Up);
        assert_eq!(r.reason, "up");
        assert_eq!(r.signals.arrivals_per_sec, 120.0);
        assert_eq!((r.signals.queued, r.signals.p99_ms), (7, Some(40.0)));
        let held = DecisionRecord::new(6, &signals(2), &decision(9, Reason::Up), 2);
        assert_eq!(held.direction, Direction::Hold, "max nodes held it");
    }

    #[test]
    fn the_log_keeps_the_newest_and_counts_every_decision() {
        let log = DecisionLog::default();
        let extra = 5;
        for i in 0..(MAX_RECENT_DECISIONS + extra) as u64 {
            let applied = if i % 2 == 0 { 3 } else { 1 };
            let reason = if i % 2 == 0 { Reason::Up } else { Reason::Down };
            log.record(DecisionRecord::new(
                i,
                &signals(2),
                &decision(applied, reason),
                applied,
            ));
        }
        let s = log.summary();
        assert_eq!(s.recent.len(), MAX_RECENT_DECISIONS);
        assert_eq!(s.recent[0].at_unix_ms, extra as u64, "the oldest dropped");
        assert_eq!(
            s.up + s.down + s.hold,
            (MAX_RECENT_DECISIONS + extra) as u64
        );
        assert_eq!(s.desired_nodes, Some(3), "the last decision wanted 3");
    }
}
