//! The simulator's hot loop alone, for profiling (`perf record`,
//! `valgrind --tool=callgrind`) without the CLI around it: the same run as
//! `ebb sim --balance p2c --nodes 10000 --load 0.9 --requests N --json`
//! (with `scale`, plus `--scale queue --min-nodes 10000 --max-nodes 20000`:
//! the hook runs every tick and the pool stays at 10,000 nodes), printing the
//! report as one JSON line so two builds can be checked for equal results.
//!
//! `cargo run --release -p ebb-sim --example hot_loop -- [REQUESTS] [scale]`

use ebb_core::Nanos;
use ebb_policy::scale::Limits;
use ebb_sim::{Autoscaler, ScaleSetup, SimConfig, run_scaled, run_spec};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let requests: u64 = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(5_000_000);
    let scaled = args.iter().any(|a| a == "scale");
    let mut cfg = SimConfig::new(10_000, 0.9, requests, 1);
    cfg.costs_per_sec_micros = vec![100];
    let start = std::time::Instant::now();
    let result = if scaled {
        cfg.warmup = 0.0;
        let policy = match ebb_policy::scale::parse("queue") {
            Ok(p) => p,
            Err(e) => {
                eprintln!("queue policy: {e}");
                std::process::exit(1);
            }
        };
        let setup = ScaleSetup {
            limits: Limits {
                min_nodes: 10_000,
                max_nodes: 20_000,
                max_capacity_per_node: 1,
            },
            boot_time: Nanos::ZERO,
            cost_per_node_sec_micros: 100,
            objective: None,
        };
        let mut scaler = Autoscaler::new(policy, setup);
        run_scaled(cfg, "p2c", &mut scaler, &mut |_| {})
    } else {
        run_spec(cfg, "p2c", &mut |_| {})
    };
    let mut r = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("run failed: {e}");
            std::process::exit(1);
        }
    };
    r.wall_secs = start.elapsed().as_secs_f64();
    r.events_per_sec = r.events as f64 / r.wall_secs;
    match serde_json::to_string(&r) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("{e}"),
    }
}
