//! Features beyond the textbook: several gateways, traces, scaling, bursts.
#![allow(clippy::unwrap_used)]

mod common;

use common::run_policy;
use ebb_core::{Instant, Rng};
use ebb_sim::arrivals::{ArrivalSpec, Arrivals};
use ebb_sim::{PoolSignals, ScaleAction, ScaleHook, Schedule, Sim, SimConfig};

#[test]
fn several_gateways_share_the_pool_and_lose_to_one_with_local_views() {
    let seed = 11;
    let mut one = SimConfig::new(20, 0.9, 100_000, seed);
    one.gateways = 1;
    let mut four = one.clone();
    four.gateways = 4;
    let a = run_policy(one, "jsq");
    let b = run_policy(four, "jsq");
    for r in [&a, &b] {
        assert_eq!(r.misrouted, 0);
        assert_eq!(r.completed, r.measured, "nothing dropped without deadlines");
        assert!(
            (r.throughput / 18.0 - 1.0).abs() < 0.03,
            "throughput {}",
            r.throughput
        );
    }
    // Each gateway sees only its own in-flight work: JSQ degrades.
    assert!(
        b.mean_response > a.mean_response + 2.0 * (a.mean_response_ci95 + b.mean_response_ci95),
        "4 gateways {} vs 1 gateway {}",
        b.mean_response,
        a.mean_response
    );
}

#[test]
fn count_trace_replays_every_arrival_at_the_asked_load() {
    let guard = tempfile::Builder::new()
        .prefix("ebb-sim-trace-")
        .tempdir()
        .unwrap();
    let dir = guard.path();
    let path = dir.join("counts.txt");
    // 200 intervals alternating 10 and 30 arrivals: 4,000 arrivals.
    let text: String = (0..200)
        .map(|i| if i % 2 == 0 { "10\n" } else { "30\n" })
        .collect();
    std::fs::write(&path, text).unwrap();
    let spec: ArrivalSpec = format!("trace:{},counts", path.display()).parse().unwrap();
    let mut cfg = SimConfig::new(5, 0.5, 1_000_000, 12);
    cfg.arrivals = Arrivals::load(&spec).unwrap();
    let r = run_policy(cfg, "p2c");
    assert_eq!(r.requests, 4_000, "the trace, not --requests, ends the run");
    // Mean rate 20 per trace interval rescaled to 0.5 × 5 = 2.5 per second.
    let expected_secs = 4_000.0 / 2.5;
    assert!(
        (r.sim_secs / expected_secs - 1.0).abs() < 0.02,
        "{}",
        r.sim_secs
    );
}

#[test]
fn mmpp_bursts_hurt_response_time_at_equal_average_load() {
    let seed = 13;
    let poisson = SimConfig::new(10, 0.7, 100_000, seed);
    let mut bursty = poisson.clone();
    bursty.arrivals = Arrivals::load(&"mmpp:3,0.5,0.05,0.05".parse().unwrap()).unwrap();
    let p = run_policy(poisson, "p2c");
    let b = run_policy(bursty, "p2c");
    assert!(
        (b.utilization - p.utilization).abs() < 0.05,
        "{} vs {}",
        b.utilization,
        p.utilization
    );
    assert!(
        b.p99 > 2.0 * p.p99,
        "bursty p99 {} vs Poisson {}",
        b.p99,
        p.p99
    );
}

/// Records what the hook saw, then follows a schedule.
struct Watch {
    plan: Schedule,
    ready: Vec<u32>,
    booting_seen: bool,
}

impl ScaleHook for Watch {
    fn on_tick(&mut self, s: &PoolSignals, now: Instant, rng: &mut Rng) -> ScaleAction {
        self.ready.push(s.ready);
        self.booting_seen |= s.booting > 0;
        self.plan.on_tick(s, now, rng)
    }
}

#[test]
fn scale_hook_adds_booting_nodes_and_drains_removed_ones() {
    let mut cfg = SimConfig::new(4, 0.5, 20_000, 14);
    cfg.boot_secs = 5.0;
    cfg.tick_secs = 1.0;
    // 4 nodes at rate 2/s: the run lasts about 10,000 s.
    let mut hook = Watch {
        plan: Schedule::new(vec![
            (1_000.0, ScaleAction::Add(4)),
            (3_000.0, ScaleAction::Remove(6)),
        ]),
        ready: Vec::new(),
        booting_seen: false,
    };
    let balancers = vec![ebb_policy::balance::parse("jsq").unwrap()];
    let r = Sim::new(cfg, balancers)
        .unwrap()
        .with_scale_hook(&mut hook)
        .run(&mut |_| {})
        .unwrap();
    assert!(hook.booting_seen, "added nodes boot first");
    assert_eq!(hook.ready.iter().max(), Some(&8));
    assert_eq!(hook.ready.last(), Some(&2), "six removed, two left");
    assert_eq!(r.misrouted, 0);
    assert_eq!(r.completed, r.measured);
    // Up time: 2 nodes all run, 2 until ~3,000 s, 4 from 1,000 s to ~3,000 s.
    let t = r.sim_secs;
    let want = 2.0 * t + 2.0 * 3_000.0 + 4.0 * 2_000.0;
    assert!(
        (r.node_seconds - want).abs() < 6.0 * 2.0,
        "node-seconds {} vs {want}",
        r.node_seconds
    );
}

#[test]
fn evenly_spaced_timestamp_trace_with_fixed_service_never_waits() {
    let guard = tempfile::Builder::new()
        .prefix("ebb-sim-ts-")
        .tempdir()
        .unwrap();
    let dir = guard.path();
    let path = dir.join("ts.txt");
    let text: String = (0..1000)
        .map(|i| format!("{}\n", f64::from(i) * 0.25))
        .collect();
    std::fs::write(&path, text).unwrap();
    let spec: ArrivalSpec = format!("trace:{}", path.display()).parse().unwrap();
    // D/D/1 at load 0.8: gaps of 1.25 s (rescaled), service exactly 1 s.
    let mut cfg = SimConfig::new(1, 0.8, 1_000_000, 15);
    cfg.arrivals = Arrivals::load(&spec).unwrap();
    cfg.service = "det:1".parse().unwrap();
    let r = run_policy(cfg, "rr");
    assert_eq!(r.requests, 1000);
    assert_eq!(r.measured, 900, "warm-up is 10% of the trace");
    assert_eq!(r.mean_wait, 0.0);
    assert!((r.mean_response - 1.0).abs() < 1e-9, "{}", r.mean_response);
    assert!((r.utilization - 0.8).abs() < 0.01, "{}", r.utilization);
}

/// Holds everything and never takes an idle node: a broken policy.
struct HoldForever;

impl ebb_policy::balance::Balancer for HoldForever {
    fn name(&self) -> String {
        "hold-forever".into()
    }
    fn pick(
        &mut self,
        _: &[ebb_policy::balance::NodeView],
        _: ebb_policy::balance::RequestInfo,
        _: Instant,
        _: &mut Rng,
    ) -> ebb_policy::balance::Choice {
        ebb_policy::balance::Choice::Hold
    }
}

#[test]
fn a_policy_that_never_dispatches_ends_the_run_with_everything_dropped() {
    let cfg = SimConfig::new(2, 0.5, 1_000, 16);
    let r = ebb_sim::run_with(cfg, &mut || Box::new(HoldForever), &mut |_| {}).unwrap();
    assert_eq!(r.completed, 0);
    assert_eq!(r.dropped_fraction, 1.0);
}
