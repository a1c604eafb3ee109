//! What the autoscaler decided, and the pool's nodes by state, as the
//! gateway runs them.
//!
//! The gateway's pool manager asks its `ScalePolicy` once per scale tick.
//! [`Logged`] wraps that policy, unchanged, and copies each decision (with
//! the pool size it was made at) into a bounded [`DecisionLog`] for the
//! live view and the report. [`NodeTally`] follows the pool's node changes
//! (booting, ready, draining, gone) as the gateway reports them, so the
//! node counts are exact at any moment, not only at scale ticks.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ebb_core::{Instant, Rng};
use ebb_policy::scale::{Decision, NodeCounts, ScalePolicy, Signals};

/// Decisions kept in the log for the reader to drain; older ones are
/// dropped (and counted) if nobody drains.
pub const MAX_LOGGED_DECISIONS: usize = 4_096;

/// One decision as logged.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedDecision {
    /// When it was made, on the wall clock (the report's time base).
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
}

impl DecisionLog {
    pub fn push(&mut self, d: LoggedDecision) {
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
}

pub type SharedLog = Arc<Mutex<DecisionLog>>;

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A policy whose decisions are also written to a log. It decides exactly
/// what the policy it wraps decides.
pub struct Logged {
    inner: Box<dyn ScalePolicy + Send>,
    log: SharedLog,
}

impl Logged {
    pub fn new(inner: Box<dyn ScalePolicy + Send>) -> (Logged, SharedLog) {
        let log = SharedLog::default();
        (
            Logged {
                inner,
                log: Arc::clone(&log),
            },
            log,
        )
    }
}

impl ScalePolicy for Logged {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn decide(&mut self, signals: &Signals, now: Instant, rng: &mut Rng) -> Decision {
        let decision = self.inner.decide(signals, now, rng);
        lock(&self.log).push(LoggedDecision {
            at: std::time::Instant::now(),
            current: signals.nodes.current(),
            decision: decision.clone(),
        });
        decision
    }
}

/// A node's state as the tally counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Booting,
    Ready,
    Draining,
    Gone,
}

/// Nodes by state, kept from the pool's change reports.
#[derive(Clone, Debug, Default)]
pub struct NodeTally(Arc<Mutex<NodeCounts>>);

impl NodeTally {
    /// One node went from `from` (`None`: it is new) to `to`.
    pub fn change(&self, from: Option<State>, to: State) {
        let mut n = lock(&self.0);
        for (s, up) in [(from, false), (Some(to), true)] {
            let slot = match s {
                Some(State::Booting) => &mut n.booting,
                Some(State::Ready) => &mut n.ready,
                Some(State::Draining) => &mut n.draining,
                Some(State::Gone) | None => continue,
            };
            *slot = if up {
                slot.saturating_add(1)
            } else {
                slot.saturating_sub(1)
            };
        }
    }

    pub fn counts(&self) -> NodeCounts {
        *lock(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_core::Nanos;
    use ebb_policy::scale::Limits;

    #[test]
    fn the_wrapped_policy_decides_and_every_decision_is_logged() {
        let (mut p, log) = Logged::new(ebb_policy::scale::parse("queue").expect("spec"));
        let mut plain = ebb_policy::scale::parse("queue").expect("spec");
        assert_eq!(p.name(), plain.name());
        let s = Signals {
            tick: Nanos::from_secs(1),
            arrivals: 600,
            completions: 600,
            busy: Nanos::from_secs(6),
            nodes: NodeCounts {
                ready: 1,
                ..NodeCounts::default()
            },
            capacity_per_node: 1,
            objective: Some(Nanos::from_millis(100)),
            limits: Limits {
                min_nodes: 1,
                max_nodes: 16,
                max_capacity_per_node: 1,
            },
            ..Signals::default()
        };
        let (mut r1, mut r2) = (Rng::seeded(1), Rng::seeded(1));
        let mut now = Instant::EPOCH;
        for _ in 0..3 {
            now += Nanos::from_secs(1);
            assert_eq!(p.decide(&s, now, &mut r1), plain.decide(&s, now, &mut r2));
        }
        let logged = lock(&log).drain();
        assert_eq!(logged.len(), 3);
        // 600/s × 10 ms = 6 erlangs on one node: the pool must grow.
        assert!(logged[2].changes_pool(), "{}", logged[2].decision);
        assert!(logged[2].decision.target_nodes >= 7);
        assert!(lock(&log).drain().is_empty(), "drained");
        assert!(
            lock(&log).last().is_some(),
            "the last decision stays for the view"
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
    }

    #[test]
    fn the_tally_follows_a_node_through_its_life() {
        let t = NodeTally::default();
        t.change(None, State::Booting);
        t.change(None, State::Booting);
        t.change(Some(State::Booting), State::Ready);
        assert_eq!(
            t.counts(),
            NodeCounts {
                booting: 1,
                ready: 1,
                draining: 0
            }
        );
        t.change(Some(State::Ready), State::Draining);
        t.change(Some(State::Booting), State::Gone);
        t.change(Some(State::Draining), State::Gone);
        assert_eq!(t.counts(), NodeCounts::default());
        // A report out of order never wraps around.
        t.change(Some(State::Ready), State::Gone);
        assert_eq!(t.counts(), NodeCounts::default());
    }
}
