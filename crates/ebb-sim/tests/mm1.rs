//! Random routing splits Poisson arrivals into independent M/M/1 queues.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestRandom, assert_within, run};
use ebb_sim::{SimConfig, theory};

/// Tolerance in standard errors: with batch-means errors roughly normal, a
/// correct simulator lands outside 4 of them with probability below 1e-4.
const K_SE: f64 = 4.0;

#[test]
fn random_routing_matches_mm1_mean_wait_and_p99() {
    let seed = 1;
    let rho = 0.7;
    let cfg = SimConfig::new(4, rho, 400_000, seed);
    let r = run(cfg, || Box::new(TestRandom));
    assert_within(
        "M/M/1 mean response",
        r.mean_response,
        r.mean_response_ci95,
        theory::mm1_mean_response(rho),
        K_SE,
        seed,
    );
    assert_within(
        "M/M/1 mean wait",
        r.mean_wait,
        r.mean_wait_ci95,
        theory::mm1_mean_wait(rho),
        K_SE,
        seed,
    );
    // p99 from a histogram of ~360,000 responses: the order statistic's
    // relative sd is about sqrt(0.01·0.99/n)/(0.01·ln 100) ≈ 3.6% of p99 for
    // independent samples; correlation widens it, so allow 3 such sds (10%).
    let want = theory::mm1_response_quantile(rho, 0.99);
    let rel = (r.p99 - want).abs() / want;
    assert!(rel < 0.10, "p99 {} vs {want} (seed {seed})", r.p99);
    assert!(
        (r.utilization - rho).abs() < 0.02,
        "utilization {}",
        r.utilization
    );
    assert!(
        (r.throughput / (4.0 * rho) - 1.0).abs() < 0.02,
        "throughput {}",
        r.throughput
    );
    assert_eq!(r.dropped_fraction, 0.0);
}
