//! Random: a uniformly random Ready node.
//!
//! State: none. Cost: O(1) expected and allocation-free (rejection sampling,
//! with an exact O(n) fallback when few nodes are Ready; see `sample`).
//! Origin: the baseline of the balls-into-bins and power-of-d literature
//! (Mitzenmacher 1996): with n nodes at load rho each node is an independent
//! M/M/1 queue, which is the yardstick the other policies beat.

use super::{Balancer, Choice, NodeView, RequestInfo, sample};
use ebb_core::{Nanos, Rng};

#[derive(Clone, Debug, Default)]
pub struct Random;

impl Random {
    pub fn new() -> Random {
        Random
    }
}

impl Balancer for Random {
    fn name(&self) -> String {
        "random".into()
    }

    #[inline]
    fn pick(
        &mut self,
        nodes: &[NodeView],
        _req: RequestInfo,
        _now: Nanos,
        rng: &mut Rng,
    ) -> Choice {
        match sample::random_ready(nodes, rng) {
            Some(i) => Choice::Node(i),
            None => Choice::Hold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::NodeState;
    use crate::balance::testutil::{NO_DEADLINE, pool};

    fn counts(seed: u64, nodes: &[NodeView], draws: usize) -> Vec<u64> {
        let mut r = Random::new();
        let mut rng = Rng::seeded(seed);
        let mut c = vec![0u64; nodes.len()];
        for _ in 0..draws {
            match r.pick(nodes, NO_DEADLINE, Nanos::ZERO, &mut rng) {
                Choice::Node(i) => c[i] += 1,
                Choice::Hold => panic!("seed {seed}: held with ready nodes"),
            }
        }
        c
    }

    #[test]
    fn uniform_over_ready_nodes() {
        // 10 nodes, 2 not Ready: 8 categories, 7 degrees of freedom. The
        // chi-square statistic has mean 7 and sd sqrt(14) ~ 3.7; 40 is more
        // than 8 sd out (p < 1e-5), so a correct sampler essentially never
        // fails while a biased one (say 5% off on one node at 80k draws,
        // contributing ~25) plus noise usually does.
        let mut nodes = pool(10);
        nodes[3].state = NodeState::Booting;
        nodes[7].state = NodeState::Draining;
        let seed = 11;
        let draws = 80_000;
        let c = counts(seed, &nodes, draws);
        assert_eq!(c[3] + c[7], 0, "seed {seed}: picked a non-ready node");
        let expected = draws as f64 / 8.0;
        let chi2: f64 = c
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 7)
            .map(|(_, &o)| (o as f64 - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 40.0, "seed {seed}: chi-square {chi2} counts {c:?}");
    }

    #[test]
    fn deterministic_per_seed() {
        let nodes = pool(17);
        assert_eq!(counts(5, &nodes, 1_000), counts(5, &nodes, 1_000));
        assert_ne!(counts(5, &nodes, 1_000), counts(6, &nodes, 1_000));
    }
}
