//! Outlier ejection: a node whose calls keep failing is taken out of
//! rotation for a while, then probed before it gets its share again.
//!
//! A slow node is handled by the balancers (it gets less work); a node that
//! fails fast would otherwise *attract* work (its queue stays short). After
//! `consecutive_failures` failures in a row with no success between, the
//! node is ejected for `base_ejection` × the number of times it has been
//! ejected (a node that keeps failing stays out longer). When the time is
//! up it is probed: it takes work again, but one more failure ejects it at
//! once. Ejection never takes out more than `max_ejected_fraction` of the
//! nodes, so a fault that hits every node (a bad deploy, a dead origin)
//! does not empty the pool. Origin: Envoy's outlier detection
//! (`consecutive_5xx`, `base_ejection_time`, `max_ejection_percent`).
//!
//! State: per node a failure count, an ejection count and the end of the
//! current ejection, kept for the nodes that exist (the caller forgets a
//! node that is gone). Cost: O(n) per failure (to count ejected nodes).

use ebb_core::{Instant, Nanos, NodeId};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutlierConfig {
    /// Failures in a row that eject a node.
    pub consecutive_failures: u32,
    /// First ejection's length; the n-th lasts n times this.
    pub base_ejection: Nanos,
    /// Ejected nodes never exceed this fraction of all nodes.
    pub max_ejected_fraction: f64,
}

/// The longest ejection, however often a node was ejected.
pub const MAX_EJECTION: Nanos = Nanos::from_secs(300);

impl Default for OutlierConfig {
    /// Envoy's defaults: 5 in a row, 30 s, at most 10 % (here at most half:
    /// pools are small, and with 10 % a pool under 10 nodes ejects none).
    fn default() -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: 5,
            base_ejection: Nanos::from_secs(30),
            max_ejected_fraction: 0.5,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct NodeRecord {
    failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
}

#[derive(Clone, Debug)]
pub struct Outliers {
    cfg: OutlierConfig,
    nodes: Vec<(NodeId, NodeRecord)>,
}

/// What a failure led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Eject { until: Instant },
}

impl Outliers {
    pub fn new(cfg: OutlierConfig) -> Outliers {
        Outliers {
            cfg,
            nodes: Vec::new(),
        }
    }

    fn record(&mut self, node: NodeId) -> &mut NodeRecord {
        let i = match self.nodes.iter().position(|(id, _)| *id == node) {
            Some(i) => i,
            None => {
                self.nodes.push((node, NodeRecord::default()));
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[i].1
    }

    pub fn on_success(&mut self, node: NodeId) {
        self.record(node).failures = 0;
    }

    /// A call on `node` failed at `now`; `pool` is how many nodes exist.
    pub fn on_failure(&mut self, node: NodeId, pool: usize, now: Instant) -> Verdict {
        let ejected = self.ejected_count(now);
        let cfg = self.cfg;
        let r = self.record(node);
        if r.ejected_until.is_some_and(|u| u > now) {
            return Verdict::Keep;
        }
        r.failures = r.failures.saturating_add(1);
        if r.failures < cfg.consecutive_failures {
            return Verdict::Keep;
        }
        let allowed = (pool as f64 * cfg.max_ejected_fraction).floor() as usize;
        if ejected + 1 > allowed {
            return Verdict::Keep;
        }
        r.ejections = r.ejections.saturating_add(1);
        let span = Nanos(
            cfg.base_ejection
                .as_nanos()
                .saturating_mul(u64::from(r.ejections)),
        )
        .min(MAX_EJECTION);
        let until = now + span;
        r.ejected_until = Some(until);
        // On its return one failure is enough to eject it again.
        r.failures = cfg.consecutive_failures.saturating_sub(1);
        Verdict::Eject { until }
    }

    /// Whether `node` is out of rotation at `now`.
    pub fn is_ejected(&self, node: NodeId, now: Instant) -> bool {
        self.nodes
            .iter()
            .any(|(id, r)| *id == node && r.ejected_until.is_some_and(|u| u > now))
    }

    pub fn ejected_count(&self, now: Instant) -> usize {
        self.nodes
            .iter()
            .filter(|(_, r)| r.ejected_until.is_some_and(|u| u > now))
            .count()
    }

    /// The node is gone: its record goes too.
    pub fn forget(&mut self, node: NodeId) {
        self.nodes.retain(|(id, _)| *id != node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant::EPOCH;
    const A: NodeId = NodeId(1);
    const B: NodeId = NodeId(2);

    fn cfg() -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: 3,
            base_ejection: Nanos::from_secs(10),
            max_ejected_fraction: 0.5,
        }
    }

    #[test]
    fn failures_in_a_row_eject_and_a_success_resets_the_count() {
        let mut o = Outliers::new(cfg());
        assert_eq!(o.on_failure(A, 2, T0), Verdict::Keep);
        assert_eq!(o.on_failure(A, 2, T0), Verdict::Keep);
        o.on_success(A);
        assert_eq!(o.on_failure(A, 2, T0), Verdict::Keep);
        assert_eq!(o.on_failure(A, 2, T0), Verdict::Keep);
        let until = T0 + Nanos::from_secs(10);
        assert_eq!(o.on_failure(A, 2, T0), Verdict::Eject { until });
        assert!(o.is_ejected(A, T0));
        assert!(
            !o.is_ejected(A, until),
            "back in rotation when the time is up"
        );
    }

    #[test]
    fn a_probed_node_that_fails_again_is_ejected_at_once_and_longer() {
        let mut o = Outliers::new(cfg());
        for _ in 0..3 {
            o.on_failure(A, 2, T0);
        }
        let back = T0 + Nanos::from_secs(10);
        assert_eq!(
            o.on_failure(A, 2, back),
            Verdict::Eject {
                until: back + Nanos::from_secs(20)
            }
        );
    }

    #[test]
    fn never_more_than_the_allowed_fraction_is_ejected() {
        let mut o = Outliers::new(cfg());
        for _ in 0..3 {
            o.on_failure(A, 2, T0);
        }
        assert!(o.is_ejected(A, T0));
        for _ in 0..10 {
            assert_eq!(o.on_failure(B, 2, T0), Verdict::Keep, "half of 2 is 1");
        }
        // A pool of one never ejects its node.
        let mut solo = Outliers::new(cfg());
        for _ in 0..10 {
            assert_eq!(solo.on_failure(A, 1, T0), Verdict::Keep);
        }
        o.forget(A);
        assert_eq!(o.ejected_count(T0), 0);
    }
}
