//! Helpers shared by the theory tests.
#![allow(dead_code, clippy::unwrap_used)]

use ebb_core::{Instant, Rng};
use ebb_policy::balance::{Balancer, Choice, NodeView, RequestInfo};
use ebb_sim::{Report, SimConfig};

/// Uniformly random ready node: the engine's reference policy, independent of
/// ebb-policy's implementations.
pub struct TestRandom;

impl Balancer for TestRandom {
    fn name(&self) -> String {
        "test-random".into()
    }
    fn pick(&mut self, nodes: &[NodeView], _: RequestInfo, _: Instant, rng: &mut Rng) -> Choice {
        Choice::Node(rng.below(nodes.len() as u64) as usize)
    }
}

/// Runs `cfg` with a fresh `make()` per gateway.
pub fn run(cfg: SimConfig, make: impl Fn() -> Box<dyn Balancer + Send>) -> Report {
    let seed = cfg.seed;
    ebb_sim::run_with(cfg, &mut || make(), &mut |_| {})
        .unwrap_or_else(|e| panic!("run with seed {seed} failed: {e}"))
}

/// Asserts `got` lies within `k` standard errors (from the 95% batch-means
/// half-width) of `want`, printing the seed and every figure on failure.
pub fn assert_within(what: &str, got: f64, ci95: f64, want: f64, k: f64, seed: u64) {
    let se = ci95 / 1.96;
    let err = (got - want).abs();
    assert!(
        err <= k * se,
        "{what}: simulated {got:.5} vs theory {want:.5}: error {err:.5} exceeds {k} standard errors \
         ({se:.5} each, from batch means); seed {seed}"
    );
    eprintln!(
        "{what}: simulated {got:.5}, theory {want:.5}, relative error {:.3}%, {:.1} standard errors",
        100.0 * err / want,
        err / se
    );
}

/// Runs `cfg` with the ebb-policy balancer named `spec`.
pub fn run_policy(cfg: SimConfig, spec: &str) -> Report {
    let seed = cfg.seed;
    ebb_sim::run_spec(cfg, spec, &mut |_| {})
        .unwrap_or_else(|e| panic!("{spec} with seed {seed} failed: {e}"))
}

/// Mean and standard error over independent replications.
pub fn mean_and_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}
