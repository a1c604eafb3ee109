//! The autoscaling policies of `ebb-policy` driving simulated pools.
#![allow(clippy::unwrap_used)]

use ebb_core::Nanos;
use ebb_policy::scale::Limits;
use ebb_sim::trace::{Trace, TraceFormat};
use ebb_sim::{Arrivals, Autoscaler, Report, ScaleSetup, ServiceDist, SimConfig};
use std::path::Path;

/// Per-second counts: `(seconds, rate)` segments.
fn trace(segments: &[(u32, u32)]) -> Arrivals {
    let text: String = segments
        .iter()
        .flat_map(|(secs, rate)| (0..*secs).map(move |_| format!("{rate}\n")))
        .collect();
    Arrivals::Trace(Trace::parse(&text, Path::new("test"), TraceFormat::Counts).unwrap())
}

fn config(arrivals: Arrivals, nodes: u32, seed: u64) -> SimConfig {
    let rate = match &arrivals {
        Arrivals::Trace(t) => t.mean_rate_per_unit(),
        _ => 100.0,
    };
    let mut cfg = SimConfig::new(nodes, 0.5, u64::MAX, seed);
    cfg.service = ServiceDist::Exp { mean: 0.02 };
    cfg.arrivals = arrivals;
    cfg.rate_per_sec = Some(rate);
    cfg.warmup = 0.0;
    cfg.objective_secs = Some(0.2);
    cfg.boot_secs = 2.0;
    cfg.costs_per_sec_micros = vec![100];
    cfg
}

fn run(cfg: SimConfig, spec: &str) -> (Report, Autoscaler) {
    let setup = ScaleSetup {
        limits: Limits {
            min_nodes: 1,
            max_nodes: 200,
            max_capacity_per_node: 1,
        },
        boot_time: Nanos::from_secs_f64(cfg.boot_secs),
        cost_per_node_sec_micros: 100,
        objective: cfg.objective_secs.map(Nanos::from_secs_f64),
    };
    let seed = cfg.seed;
    let mut scaler =
        Autoscaler::new(ebb_policy::scale::parse(spec).unwrap(), setup).with_timeline();
    let r = ebb_sim::run_scaled(cfg, "jsq", &mut scaler, &mut |_| {})
        .unwrap_or_else(|e| panic!("{spec}, seed {seed}: {e}"));
    (r, scaler)
}

#[test]
fn every_policy_scales_out_under_a_lasting_surge_and_back_in_after() {
    // 4 erlangs, then 20 for two minutes, then 4 again for seven.
    let arrivals = trace(&[(60, 200), (120, 1000), (420, 200)]);
    for spec in ["queue", "hpa:util=0.7", "kpa"] {
        let (r, s) = run(config(arrivals.clone(), 6, 3), spec);
        let tl = s.timeline();
        let peak = tl.iter().map(|row| row.ready).max().unwrap();
        let end = tl.last().unwrap();
        assert!(peak >= 20, "{spec}: peak {peak} ready nodes for 20 erlangs");
        assert!(
            end.ready + end.booting < peak / 2,
            "{spec}: still {} nodes at the end",
            end.ready
        );
        assert_eq!(
            r.max_nodes,
            Some(
                tl.iter()
                    .map(|r| r.ready + r.booting + r.draining)
                    .max()
                    .unwrap()
                    .max(r.max_nodes.unwrap())
            )
        );
        assert!(
            r.scale_actions.unwrap() >= 2,
            "{spec}: {:?}",
            r.scale_actions
        );
        assert!(r.min_nodes.unwrap() <= 6 && r.max_nodes.unwrap() >= peak);
        let mean = r.mean_nodes.unwrap();
        assert!((mean - r.node_seconds / r.sim_secs).abs() < 1e-9);
        eprintln!(
            "{spec}: misses {:?}, node-s {:.0}, peak {peak}",
            r.slo_miss_fraction, r.node_seconds
        );
    }
}

#[test]
fn none_keeps_the_pool_and_counts_misses() {
    let arrivals = trace(&[(60, 200), (60, 1000), (60, 200)]);
    let (r, s) = run(config(arrivals, 6, 4), "none");
    assert_eq!(
        (r.min_nodes, r.max_nodes, r.scale_actions),
        (Some(6), Some(6), Some(0))
    );
    assert!(
        s.timeline()
            .iter()
            .all(|row| row.target == 6 && row.reason == "hold")
    );
    // 20 erlangs on 6 nodes for a minute: most of those requests miss.
    assert!(
        r.slo_miss_fraction.unwrap() > 0.3,
        "{:?}",
        r.slo_miss_fraction
    );
}

#[test]
fn the_queue_policy_misses_less_than_a_fixed_pool_of_its_mean_size() {
    let arrivals = trace(&[(60, 200), (120, 1000), (120, 200)]);
    let (q, _) = run(config(arrivals.clone(), 6, 5), "queue");
    let mean = q.mean_nodes.unwrap().round() as u32;
    let (fixed, _) = run(config(arrivals, mean, 5), "none");
    assert!(
        q.slo_miss_fraction.unwrap() < fixed.slo_miss_fraction.unwrap() / 2.0,
        "queue {:?} on {mean} nodes on average vs fixed {:?}",
        q.slo_miss_fraction,
        fixed.slo_miss_fraction
    );
}

#[test]
fn slo_misses_on_mm1_match_the_exponential_tail() {
    // Random routing to 10 nodes at ρ = 0.5 is 10 M/M/1 queues; the
    // response time is exponential with rate 1 − ρ, so P(T > 4) = e^(−2).
    let mut cfg = SimConfig::new(10, 0.5, 400_000, 6);
    cfg.objective_secs = Some(4.0);
    let r = ebb_sim::run_spec(cfg, "random", &mut |_| {}).unwrap();
    let want = (-2.0f64).exp();
    let got = r.slo_miss_fraction.unwrap();
    // Binomial sd over 360,000 measured requests is 0.0006; correlation
    // inflates it: allow 0.005.
    assert!((got - want).abs() < 0.005, "{got} vs {want}, seed 6");
    assert!(r.scale_actions.is_none() && r.mean_nodes.is_none());
}

#[test]
fn dropped_requests_count_as_misses() {
    let mut cfg = SimConfig::new(2, 0.9, 50_000, 7);
    cfg.objective_secs = Some(1e9);
    cfg.deadline_secs = Some(0.5);
    let r = ebb_sim::run_spec(cfg, "random", &mut |_| {}).unwrap();
    assert!(r.dropped_fraction > 0.1);
    assert!((r.slo_miss_fraction.unwrap() - r.dropped_fraction).abs() < 1e-12);
}

#[test]
fn scaling_up_raises_capacity_before_adding_nodes() {
    let arrivals = trace(&[(60, 200), (120, 1000), (60, 200)]);
    let mut cfg = config(arrivals, 6, 8);
    cfg.boot_secs = 30.0;
    let setup = ScaleSetup {
        limits: Limits {
            min_nodes: 1,
            max_nodes: 200,
            max_capacity_per_node: 8,
        },
        boot_time: Nanos::from_secs(30),
        cost_per_node_sec_micros: 100,
        objective: Some(Nanos::from_millis(200)),
    };
    let mut scaler =
        Autoscaler::new(ebb_policy::scale::parse("queue").unwrap(), setup).with_timeline();
    let r = ebb_sim::run_scaled(cfg, "jsq", &mut scaler, &mut |_| {}).unwrap();
    let tl = scaler.timeline();
    let max_cap = tl.iter().map(|row| row.capacity).max().unwrap();
    assert!(max_cap >= 3, "capacity peaked at {max_cap}");
    // Capacity rose before any node was added, and nodes were added only
    // once capacity was at its limit.
    let first_up = tl.iter().position(|row| row.capacity > 1).unwrap();
    let first_out = tl.iter().position(|row| row.target > 6);
    if let Some(out) = first_out {
        assert!(
            first_up < out,
            "capacity at tick {first_up}, nodes at {out}"
        );
        assert_eq!(tl[out].capacity, 8, "nodes added before capacity was maxed");
    }
    assert!(
        r.slo_miss_fraction.unwrap() < 0.05,
        "{:?}",
        r.slo_miss_fraction
    );
    // A node of capacity c costs c times as much: the bill exceeds the
    // node-seconds at the base price.
    assert!(
        r.cost_micros > 100.0 * r.node_seconds * 1.2,
        "{} vs {}",
        r.cost_micros,
        r.node_seconds
    );
}

#[test]
fn a_scaled_run_is_a_function_of_its_seed() {
    let arrivals = trace(&[(30, 200), (30, 800), (30, 200)]);
    let (a, _) = run(config(arrivals.clone(), 4, 9), "queue");
    let (b, _) = run(config(arrivals.clone(), 4, 9), "queue");
    let (c, _) = run(config(arrivals, 4, 10), "queue");
    let key = |r: &Report| (r.node_seconds, r.slo_miss_fraction, r.p99, r.scale_actions);
    assert_eq!(key(&a), key(&b));
    assert_ne!(key(&a), key(&c));
}
