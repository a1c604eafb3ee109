//! Simulator throughput: events per second of wall time for the cheap
//! policies at a small and a large pool. A benchmark, not a test: run with
//! `cargo bench -p ebb-sim --bench events` (optionally `-- REQUESTS`).

use ebb_sim::{SimConfig, run_spec};
use std::time::Instant;

fn main() {
    let requests: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5_000_000);
    println!(
        "{:<8} {:>7} {:>12} {:>12} {:>10} {:>14}",
        "policy", "nodes", "requests", "events", "wall s", "events/s"
    );
    for policy in ["random", "p2c"] {
        for nodes in [100, 10_000] {
            let cfg = SimConfig::new(nodes, 0.9, requests, 1);
            let start = Instant::now();
            let r = match run_spec(cfg, policy, &mut |_| {}) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{policy} on {nodes} nodes failed: {e}");
                    std::process::exit(1);
                }
            };
            let wall = start.elapsed().as_secs_f64();
            println!(
                "{:<8} {:>7} {:>12} {:>12} {:>10.3} {:>14.3e}",
                policy,
                nodes,
                r.requests,
                r.events,
                wall,
                r.events as f64 / wall
            );
        }
    }
}
