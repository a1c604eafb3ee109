//! Least load by peak-EWMA latency × (outstanding + 1).
//!
//! State: one [`PeakEwma`] per node (keyed by node id across pool changes)
//! and one for the whole fleet. Cost: O(1) per decision with the default
//! power-of-two sampling (two `exp` calls), O(n) with `ewma:scan`; O(1) per
//! completion. A node's cost is its latency estimate at `now` times its
//! in-flight count plus one, so a node that answers fast but already has
//! much outstanding loses to a slightly slower idle one. A node not measured
//! yet is costed with the fleet's estimate (or the gateway's
//! `NodeView::ewma_latency`, if it filled one in), so a fresh node gets a
//! fair share instead of a flood.
//!
//! Origin: Finagle's `P2CPeakEwma`, also in linkerd and tower's
//! `balance::p2c` + `load::PeakEwma`; default time constant 10 s as there.
//! One deliberate difference: those decay an unrefreshed estimate toward
//! zero, here it decays toward the fleet's estimate. Both retry a node that
//! once looked slow, but decaying to zero also makes a node that stopped
//! answering look ever cheaper while requests pile up on it; decaying to the
//! fleet average leaves it costed like an average node with a long queue.

use super::argmin::RandomArgMin;
use super::parse::format_duration;
use super::sample::{self, MAX_SAMPLES};
use super::{Balancer, Choice, NodeView, RequestInfo};
use ebb_core::{Instant, Nanos, NodeId, Rng};
use std::collections::HashMap;

/// Default decay time constant, as in Finagle and tower.
pub const DEFAULT_TAU: Nanos = Nanos::from_secs(10);

/// A latency estimate that jumps to a new peak at once and otherwise moves
/// toward observations with time constant τ.
///
/// Observing `x` when the estimate `v` is lower sets `v = x` (be pessimistic
/// about a node the moment it slows down). Otherwise
/// `v ← v·w + x·(1−w)` with `w = e^{−Δt/τ}`, Δt the time since the last
/// observation: samples far apart count more than a burst of samples. Read
/// at `now` the estimate relaxes toward a resting value `r` (zero in
/// [`PeakEwma::estimate`]): `r + (v − r)·e^{−(now−t)/τ}`, so without fresh
/// samples a node that once looked slow is tried again.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PeakEwma {
    /// Nanoseconds; zero until the first observation.
    value: f64,
    stamp: Instant,
    measured: bool,
}

impl PeakEwma {
    pub fn is_measured(&self) -> bool {
        self.measured
    }

    fn decay(since: Instant, now: Instant, tau: Nanos) -> f64 {
        let dt = now.saturating_since(since).as_nanos() as f64;
        (-dt / tau.as_nanos().max(1) as f64).exp()
    }

    pub fn observe(&mut self, latency: Nanos, now: Instant, tau: Nanos) {
        let x = latency.as_nanos() as f64;
        self.value = if !self.measured || x >= self.value {
            x
        } else {
            let w = Self::decay(self.stamp, now, tau);
            self.value * w + x * (1.0 - w)
        };
        self.stamp = self.stamp.max(now);
        self.measured = true;
    }

    /// The estimate as of its last observation, in nanoseconds: what
    /// [`PeakEwma::estimate`] gives at that instant, without an `exp`.
    pub fn latest(&self) -> f64 {
        self.value
    }

    /// The estimate at `now`, in nanoseconds, decayed toward zero.
    pub fn estimate(&self, now: Instant, tau: Nanos) -> f64 {
        self.estimate_toward(now, tau, 0.0)
    }

    /// The estimate at `now`, in nanoseconds, decayed toward `rest`.
    pub fn estimate_toward(&self, now: Instant, tau: Nanos, rest: f64) -> f64 {
        rest + (self.value - rest) * Self::decay(self.stamp, now, tau)
    }
}

/// How candidates are chosen before comparing costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Candidates {
    /// Two distinct random Ready nodes (Finagle's default): O(1), and the
    /// randomness keeps many gateways from herding onto one fast node.
    #[default]
    TwoRandom,
    /// Every Ready node: O(n), the cheapest node always wins.
    Scan,
}

#[derive(Clone, Debug)]
pub struct PeakEwmaBalancer {
    tau: Nanos,
    candidates: Candidates,
    per_node: Vec<(NodeId, PeakEwma)>,
    fleet: PeakEwma,
}

impl PeakEwmaBalancer {
    pub fn new(tau: Nanos, candidates: Candidates) -> PeakEwmaBalancer {
        PeakEwmaBalancer {
            tau: tau.max(Nanos(1)),
            candidates,
            per_node: Vec::new(),
            fleet: PeakEwma::default(),
        }
    }

    /// This policy's latency estimate for `nodes[i]` at `now`, for
    /// dashboards and tests.
    pub fn estimate(&self, i: usize, now: Instant) -> Option<Nanos> {
        self.per_node
            .get(i)
            .filter(|(_, e)| e.is_measured())
            .map(|(_, e)| Nanos(e.estimate(now, self.tau) as u64))
    }

    /// `fleet` is the fleet estimate at `now`, computed once per pick.
    fn cost(&self, nodes: &[NodeView], i: usize, now: Instant, fleet: f64) -> f64 {
        let v = &nodes[i];
        let latency = match self.per_node.get(i) {
            Some((id, e)) if *id == v.id && e.is_measured() => {
                e.estimate_toward(now, self.tau, fleet)
            }
            _ if v.ewma_latency > Nanos::ZERO => v.ewma_latency.as_nanos() as f64,
            _ if self.fleet.is_measured() => fleet,
            _ => 1.0,
        };
        latency * (f64::from(v.in_flight) + 1.0)
    }

    /// Lines `per_node` up with `nodes`, keeping estimates of nodes that
    /// stayed (by id).
    fn realign(&mut self, nodes: &[NodeView]) {
        // Fast path: the old pool is a prefix of the new one (nodes added at
        // the end, or only states changed); keep everything, no map.
        let prefix = self.per_node.len() <= nodes.len()
            && self
                .per_node
                .iter()
                .zip(nodes)
                .all(|((id, _), v)| *id == v.id);
        if prefix {
            let known = self.per_node.len();
            self.per_node
                .extend(nodes[known..].iter().map(|v| (v.id, PeakEwma::default())));
            return;
        }
        let old: HashMap<NodeId, PeakEwma> = self.per_node.drain(..).collect();
        self.per_node = nodes
            .iter()
            .map(|v| (v.id, old.get(&v.id).copied().unwrap_or_default()))
            .collect();
    }
}

impl Default for PeakEwmaBalancer {
    fn default() -> PeakEwmaBalancer {
        PeakEwmaBalancer::new(DEFAULT_TAU, Candidates::TwoRandom)
    }
}

impl Balancer for PeakEwmaBalancer {
    fn name(&self) -> String {
        let mut s = "ewma".to_string();
        if self.tau != DEFAULT_TAU {
            s.push(':');
            s.push_str(&format_duration(self.tau));
        }
        if self.candidates == Candidates::Scan {
            s.push_str(":scan");
        }
        s
    }

    fn pick(
        &mut self,
        nodes: &[NodeView],
        _req: RequestInfo,
        now: Instant,
        rng: &mut Rng,
    ) -> Choice {
        let mut best = RandomArgMin::default();
        let fleet = self.fleet.estimate(now, self.tau);
        match self.candidates {
            Candidates::TwoRandom => {
                let mut buf = [0usize; MAX_SAMPLES];
                let k = sample::without_replacement(nodes, 2, rng, &mut buf);
                for &i in &buf[..k] {
                    best.offer(i, self.cost(nodes, i, now, fleet), rng);
                }
            }
            Candidates::Scan => {
                for i in (0..nodes.len()).filter(|&i| nodes[i].is_ready()) {
                    best.offer(i, self.cost(nodes, i, now, fleet), rng);
                }
            }
        }
        match best.index() {
            Some(i) => Choice::Node(i),
            None => Choice::Hold,
        }
    }

    fn on_complete(&mut self, nodes: &[NodeView], node: usize, latency: Nanos, now: Instant) {
        let Some(v) = nodes.get(node) else { return };
        if self.per_node.len() != nodes.len()
            || self.per_node.get(node).is_some_and(|(id, _)| *id != v.id)
        {
            self.realign(nodes);
        }
        if let Some((_, e)) = self.per_node.get_mut(node) {
            e.observe(latency, now, self.tau);
        }
        self.fleet.observe(latency, now, self.tau);
    }

    fn on_nodes_changed(&mut self, nodes: &[NodeView]) {
        self.realign(nodes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testutil::{NO_DEADLINE, pool};

    const MS: Instant = Instant::from_epoch(Nanos::from_millis(1));
    const TAU: Nanos = Nanos::from_millis(100);

    #[test]
    fn jumps_to_a_peak_then_decays_toward_observed_latencies() {
        let mut e = PeakEwma::default();
        e.observe(Nanos::from_millis(10), Instant::EPOCH, TAU);
        e.observe(Nanos::from_millis(100), MS, TAU);
        assert_eq!(e.estimate(MS, TAU), 100e6, "peak is taken at once");
        // 10 ms samples every 10 ms for 1 s (10 τ): the estimate comes down
        // to them, staying above them (it approaches from above).
        let mut now = MS;
        for _ in 0..100 {
            now += Nanos::from_millis(10);
            e.observe(Nanos::from_millis(10), now, TAU);
        }
        let est = e.estimate(now, TAU);
        assert!((10e6..10.5e6).contains(&est), "estimate {est}");
        // Without samples it decays toward zero: after 5 τ, below 1%.
        let later = now + Nanos::from_millis(500);
        assert!(e.estimate(later, TAU) < 0.01 * est);
    }

    #[test]
    fn the_latest_estimate_is_the_estimate_at_the_last_observation() {
        let mut e = PeakEwma::default();
        e.observe(Nanos::from_millis(100), MS, TAU);
        // Lower than the peak: decayed toward it, through `exp`.
        let t = MS + Nanos::from_millis(50);
        e.observe(Nanos::from_millis(10), t, TAU);
        assert!(e.latest() < 100e6 && e.latest() > 10e6, "{}", e.latest());
        assert_eq!(e.latest(), e.estimate(t, TAU));
        // An observation stamped before the last one (clocks read on other
        // threads) keeps the later stamp: still the estimate then.
        e.observe(Nanos::from_millis(5), MS, TAU);
        assert_eq!(e.latest(), e.estimate(MS, TAU));
        assert_eq!(e.latest(), e.estimate(t, TAU));
    }

    #[test]
    fn a_node_that_stopped_answering_does_not_attract_traffic() {
        let mut nodes = pool(2);
        let mut b = PeakEwmaBalancer::new(TAU, Candidates::Scan);
        b.on_complete(&nodes, 0, Nanos::from_millis(10), MS);
        b.on_complete(&nodes, 1, Nanos::from_millis(10), MS);
        // Node 1 hangs with 5 requests; node 0 keeps answering for 10 τ.
        nodes[1].in_flight = 5;
        let mut now = MS;
        for _ in 0..100 {
            now += Nanos::from_millis(10);
            b.on_complete(&nodes, 0, Nanos::from_millis(10), now);
        }
        let mut rng = Rng::seeded(8);
        assert_eq!(b.pick(&nodes, NO_DEADLINE, now, &mut rng), Choice::Node(0));
    }

    #[test]
    fn prefers_the_faster_node() {
        let nodes = pool(2);
        let mut b = PeakEwmaBalancer::new(TAU, Candidates::TwoRandom);
        b.on_nodes_changed(&nodes);
        b.on_complete(&nodes, 0, Nanos::from_millis(50), MS);
        b.on_complete(&nodes, 1, Nanos::from_millis(5), MS);
        let mut rng = Rng::seeded(8);
        for _ in 0..20 {
            assert_eq!(b.pick(&nodes, NO_DEADLINE, MS, &mut rng), Choice::Node(1));
        }
    }

    #[test]
    fn outstanding_requests_outweigh_a_small_latency_edge() {
        let mut nodes = pool(2);
        let mut b = PeakEwmaBalancer::new(TAU, Candidates::Scan);
        b.on_complete(&nodes, 0, Nanos::from_millis(10), MS);
        b.on_complete(&nodes, 1, Nanos::from_millis(8), MS);
        nodes[1].in_flight = 3; // 8 × 4 = 32 > 10 × 1
        let mut rng = Rng::seeded(8);
        assert_eq!(b.pick(&nodes, NO_DEADLINE, MS, &mut rng), Choice::Node(0));
    }

    #[test]
    fn unmeasured_node_is_costed_at_the_fleet_estimate() {
        let mut nodes = pool(3);
        let mut b = PeakEwmaBalancer::new(TAU, Candidates::Scan);
        b.on_complete(&nodes, 0, Nanos::from_millis(20), MS);
        b.on_complete(&nodes, 1, Nanos::from_millis(20), MS);
        nodes[0].in_flight = 1;
        nodes[1].in_flight = 1;
        nodes[2].in_flight = 4; // new node, already loaded: must not look free
        let mut rng = Rng::seeded(8);
        let c = b.pick(&nodes, NO_DEADLINE, MS, &mut rng);
        assert!(matches!(c, Choice::Node(0 | 1)), "{c:?}");
    }

    #[test]
    fn estimates_follow_their_node_across_reordering() {
        let nodes = pool(2);
        let mut b = PeakEwmaBalancer::default();
        b.on_complete(&nodes, 0, Nanos::from_millis(40), MS);
        let swapped = vec![nodes[1].clone(), nodes[0].clone()];
        b.on_nodes_changed(&swapped);
        assert_eq!(b.estimate(0, MS), None);
        assert!(b.estimate(1, MS).is_some());
    }
}
