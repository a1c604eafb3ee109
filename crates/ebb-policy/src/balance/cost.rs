//! Cost-aware: fill the cheapest capacity first, spill to pricier nodes, and
//! never trade a deadline for money.
//!
//! A node's backlog after taking the request is `(in_flight + 1) / speed`, in
//! reference service times. The policy walks Ready nodes from cheapest to
//! priciest (`cost_per_sec_micros`, then faster first) and sends to the first
//! whose backlog stays within the target and that can meet the request's
//! deadline. If every node is past its target, the request goes to the node
//! with the least backlog among those that meet the deadline (cheaper on
//! ties); if none can meet it, to the node expected to finish it soonest
//! (admission, not balancing, decides whether to drop it).
//!
//! Expected completion is `now + backlog × mean service time`. The mean
//! service time is configured (`cost:TARGET:SERVICE`) or, failing that,
//! learned as an EWMA of `latency × speed` over completions; that is the
//! response time at reference speed, queueing included, so the learned value
//! errs on the safe side (deadline checks become stricter under load, never
//! laxer). Until something is known, deadlines cannot be judged and are not.
//!
//! State: the cost order (indices sorted by price, rebuilt on a pool change
//! — the caller must announce price changes the same way) and the service
//! estimate. Cost: O(k) per decision, k the position of the first node that
//! takes the request; O(n) when spilling; O(n log n) per pool change.
//! Origin: the lowest-price-first allocation that fleet managers apply to
//! instances (reserved before on-demand before burst capacity; EC2 Fleet's
//! `lowest-price` strategy, cluster-autoscaler's priority expander), applied
//! here per request, with the deadline as a hard constraint on top.

use super::parse::format_duration;
use super::{Balancer, Choice, NodeView, RequestInfo};
use ebb_core::{Instant, Nanos, Rng};

/// Default target backlog: the node works on one request and has one more
/// waiting, so the cheap node never idles between requests.
pub const DEFAULT_TARGET_BACKLOG: f64 = 2.0;

/// Weight of a new sample in the learned service estimate.
const SERVICE_EWMA_WEIGHT: f64 = 1.0 / 16.0;

#[derive(Clone, Debug)]
pub struct CostAware {
    target_backlog: f64,
    configured_service: Option<Nanos>,
    /// Learned `latency × speed`, in nanoseconds; 0 until the first sample.
    learned_service_ns: f64,
    /// Indices sorted cheapest first; valid while its length matches the pool.
    order: Vec<usize>,
}

impl CostAware {
    /// `target_backlog` is in reference service times (see the module doc);
    /// non-finite or non-positive values fall back to the default.
    pub fn new(target_backlog: f64, mean_service: Option<Nanos>) -> CostAware {
        let target_backlog = if target_backlog.is_finite() && target_backlog > 0.0 {
            target_backlog
        } else {
            DEFAULT_TARGET_BACKLOG
        };
        CostAware {
            target_backlog,
            configured_service: mean_service,
            learned_service_ns: 0.0,
            order: Vec::new(),
        }
    }

    fn service_ns(&self) -> Option<f64> {
        match self.configured_service {
            Some(s) => Some(s.as_nanos() as f64),
            None if self.learned_service_ns > 0.0 => Some(self.learned_service_ns),
            None => None,
        }
    }

    fn rebuild_order(&mut self, nodes: &[NodeView]) {
        self.order.clear();
        self.order.extend(0..nodes.len());
        self.order.sort_by(|&a, &b| {
            let (x, y) = (&nodes[a], &nodes[b]);
            x.cost_per_sec_micros
                .cmp(&y.cost_per_sec_micros)
                .then(y.speed.total_cmp(&x.speed))
                .then(a.cmp(&b))
        });
    }
}

impl Default for CostAware {
    fn default() -> CostAware {
        CostAware::new(DEFAULT_TARGET_BACKLOG, None)
    }
}

/// Backlog in reference service times once the request is added.
fn backlog(v: &NodeView) -> f64 {
    (f64::from(v.in_flight) + 1.0) / v.speed.max(f64::MIN_POSITIVE)
}

impl Balancer for CostAware {
    fn name(&self) -> String {
        let mut s = "cost".to_string();
        if self.target_backlog != DEFAULT_TARGET_BACKLOG || self.configured_service.is_some() {
            s.push_str(&format!(":{}", self.target_backlog));
        }
        if let Some(svc) = self.configured_service {
            s.push(':');
            s.push_str(&format_duration(svc));
        }
        s
    }

    fn pick(
        &mut self,
        nodes: &[NodeView],
        req: RequestInfo,
        now: Instant,
        _rng: &mut Rng,
    ) -> Choice {
        if self.order.len() != nodes.len() {
            self.rebuild_order(nodes);
        }
        let service = self.service_ns();
        let slack = req
            .deadline
            .map(|d| d.saturating_since(now).as_nanos() as f64);
        let finish = |b: f64| service.map(|s| b * s);
        let meets = |b: f64| match (slack, finish(b)) {
            (Some(slack), Some(f)) => f <= slack,
            _ => true,
        };
        let mut spill: Option<(usize, f64)> = None;
        let mut soonest: Option<(usize, f64)> = None;
        for &i in &self.order {
            let v = &nodes[i];
            if !v.is_ready() {
                continue;
            }
            let b = backlog(v);
            if meets(b) {
                if b <= self.target_backlog {
                    return Choice::Node(i);
                }
                if spill.is_none_or(|(_, sb)| b < sb) {
                    spill = Some((i, b));
                }
            }
            if soonest.is_none_or(|(_, sb)| b < sb) {
                soonest = Some((i, b));
            }
        }
        match spill.or(soonest) {
            Some((i, _)) => Choice::Node(i),
            None => Choice::Hold,
        }
    }

    fn on_complete(&mut self, nodes: &[NodeView], node: usize, latency: Nanos, _now: Instant) {
        let Some(v) = nodes.get(node) else { return };
        let sample = latency.as_nanos() as f64 * v.speed.max(0.0);
        self.learned_service_ns = if self.learned_service_ns == 0.0 {
            sample
        } else {
            self.learned_service_ns + SERVICE_EWMA_WEIGHT * (sample - self.learned_service_ns)
        };
    }

    fn on_nodes_changed(&mut self, nodes: &[NodeView]) {
        self.rebuild_order(nodes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testutil::{NO_DEADLINE, pool};

    /// Three reference nodes priced 30, 10, 20.
    fn priced() -> Vec<NodeView> {
        let mut nodes = pool(3);
        for (v, c) in nodes.iter_mut().zip([30, 10, 20]) {
            v.cost_per_sec_micros = c;
        }
        nodes
    }

    fn run(b: &mut CostAware, nodes: &mut [NodeView], req: RequestInfo, k: usize) -> Vec<usize> {
        let mut rng = Rng::seeded(1);
        (0..k)
            .map(|_| match b.pick(nodes, req, Instant::EPOCH, &mut rng) {
                Choice::Node(i) => {
                    nodes[i].in_flight += 1;
                    i
                }
                Choice::Hold => panic!("held"),
            })
            .collect()
    }

    #[test]
    fn fills_the_cheapest_to_its_target_then_spills_over() {
        let mut nodes = priced();
        let mut b = CostAware::new(2.0, None);
        b.on_nodes_changed(&nodes);
        let picks = run(&mut b, &mut nodes, NO_DEADLINE, 9);
        // Two each, cheapest first; then past every target, least backlog
        // (cheapest on ties).
        assert_eq!(picks, vec![1, 1, 2, 2, 0, 0, 1, 2, 0]);
    }

    #[test]
    fn a_faster_cheap_node_holds_more() {
        let mut nodes = priced();
        nodes[1].speed = 2.0;
        let mut b = CostAware::new(2.0, None);
        let picks = run(&mut b, &mut nodes, NO_DEADLINE, 5);
        assert_eq!(picks, vec![1, 1, 1, 1, 2]);
    }

    #[test]
    fn never_misses_a_deadline_to_save_money() {
        let mut nodes = priced();
        nodes[1].in_flight = 3; // cheap node: 4 ms until this request is done
        nodes[0].speed = 4.0; // priciest node: 0.25 ms
        let mut b = CostAware::new(10.0, Some(Nanos::from_millis(1)));
        let mut rng = Rng::seeded(1);
        let now = Instant::EPOCH + Nanos::from_secs(1);
        let tight = RequestInfo {
            deadline: Some(now + Nanos::from_millis(2)),
        };
        let loose = RequestInfo {
            deadline: Some(now + Nanos::from_millis(5)),
        };
        assert_eq!(b.pick(&nodes, loose, now, &mut rng), Choice::Node(1));
        // Node 2 (1 ms) is the cheapest that makes 2 ms.
        assert_eq!(b.pick(&nodes, tight, now, &mut rng), Choice::Node(2));
        let tighter = RequestInfo {
            deadline: Some(now + Nanos::from_micros(500)),
        };
        assert_eq!(b.pick(&nodes, tighter, now, &mut rng), Choice::Node(0));
        // Nobody can make 100 us: the soonest finisher still gets it.
        let hopeless = RequestInfo {
            deadline: Some(now + Nanos::from_micros(100)),
        };
        assert_eq!(b.pick(&nodes, hopeless, now, &mut rng), Choice::Node(0));
    }

    #[test]
    fn learns_the_service_time_from_completions() {
        let mut nodes = priced();
        nodes[1].in_flight = 3;
        let mut b = CostAware::new(10.0, None);
        let mut rng = Rng::seeded(1);
        let tight = RequestInfo {
            deadline: Some(Instant::EPOCH + Nanos::from_millis(2)),
        };
        // Nothing learned: the deadline cannot be judged, price decides.
        assert_eq!(
            b.pick(&nodes, tight, Instant::EPOCH, &mut rng),
            Choice::Node(1)
        );
        b.on_complete(&nodes, 2, Nanos::from_millis(1), Instant::EPOCH);
        assert_eq!(
            b.pick(&nodes, tight, Instant::EPOCH, &mut rng),
            Choice::Node(2)
        );
    }
}
