//! Random: a uniformly random Ready node.
//!
//! State: none. Cost: O(1) expected and allocation-free (rejection sampling,
//! with an exact O(n) fallback when few nodes are Ready; see `sample`).
//! Origin: the baseline of the balls-into-bins and power-of-d literature
//! (Mitzenmacher 1996): with n nodes at load rho each node is an independent
//! M/M/1 queue, which is the yardstick the other policies beat.

use super::{Balancer, Choice, NodeView, RequestInfo, sample};
use ebb_core::{Instant, Rng};

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
        _now: Instant,
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
            match r.pick(nodes, NO_DEADLINE, Instant::EPOCH, &mut rng) {
                Choice::Node(i) => c[i] += 1,
                Choice::Hold => panic!("seed {seed}: held with ready nodes"),
            }
        }
        c
    }

    #[test]
    fn uniform_over_ready_nodes() {
        // 10 nodes, 2 not Ready: 8 categories of probability p = 1/8 each.
        // Each count is Binomial(N, p) with sd sqrt(N p (1-p)) ~ 94 at
        // N = 80 000; no count may stray 5 sd from N p. The chi-square
        // statistic over the 8 counts has 7 degrees of freedom (mean 7, sd
        // ~3.7); 40 is beyond its 1e-5 quantile (~35.3). A node favoured by
        // 5% (+500 draws, ~5 sd) fails both.
        let mut nodes = pool(10);
        nodes[3].state = NodeState::Booting;
        nodes[7].state = NodeState::Draining;
        let seed = 11;
        let draws = 80_000;
        let c = counts(seed, &nodes, draws);
        assert_eq!(c[3] + c[7], 0, "seed {seed}: picked a non-ready node");
        let p = 1.0 / 8.0;
        let expected = draws as f64 * p;
        let sd = (draws as f64 * p * (1.0 - p)).sqrt();
        let ready = || {
            c.iter()
                .enumerate()
                .filter(|(i, _)| *i != 3 && *i != 7)
                .map(|(_, &o)| o as f64)
        };
        for o in ready() {
            assert!(
                (o - expected).abs() < 5.0 * sd,
                "seed {seed}: count {o}, counts {c:?}"
            );
        }
        let chi2: f64 = ready().map(|o| (o - expected).powi(2) / expected).sum();
        assert!(chi2 < 40.0, "seed {seed}: chi-square {chi2} counts {c:?}");
    }

    #[test]
    fn deterministic_per_seed() {
        let nodes = pool(17);
        assert_eq!(counts(5, &nodes, 1_000), counts(5, &nodes, 1_000));
        assert_ne!(counts(5, &nodes, 1_000), counts(6, &nodes, 1_000));
    }
}
