//! Decision cost of every balancing policy at n = 10, 1 000 and 10 000 nodes.
//!
//! Run: `cargo bench -p ebb-policy --bench balance`. One iteration is the
//! policy work one request costs the caller: `pick`, then `on_complete` and
//! `on_idle` for the chosen node. Loads are random and fixed, so the figure
//! is the cost of deciding, not of any particular queue dynamics.
//!
//! A plain timing loop rather than criterion: the numbers needed here are
//! orders of magnitude (is p2c O(1) and in the tens of nanoseconds?), and
//! keeping criterion's dependency tree out of `cargo clippy --all-targets`
//! saves every build of the workspace its compile time.
#![allow(clippy::unwrap_used)]

use ebb_core::{Nanos, Rng};
use ebb_policy::balance::{Choice, NodeView, RequestInfo, parse};
use std::hint::black_box;
use std::time::{Duration, Instant};

const SPECS: &[&str] = &[
    "rr",
    "random",
    "p2c",
    "pod:3",
    "jsq",
    "jiq",
    "central",
    "ewma",
    "ewma:scan",
    "cost",
];
const SIZES: &[u32] = &[10, 1_000, 10_000];
/// Time spent measuring each (policy, n) pair.
const MEASURE: Duration = Duration::from_millis(300);
const BATCH: u32 = 1_000;

fn pool(n: u32, rng: &mut Rng) -> Vec<NodeView> {
    (0..n)
        .map(|i| {
            let mut v = NodeView::ready(i);
            v.in_flight = rng.below(8) as u32;
            v.cost_per_sec_micros = rng.below(100);
            v
        })
        .collect()
}

fn main() {
    println!(
        "{:<10} {:>7} {:>12} {:>14}",
        "policy", "nodes", "ns/request", "M requests/s"
    );
    for spec in SPECS {
        for &n in SIZES {
            let mut rng = Rng::seeded(1);
            let nodes = pool(n, &mut rng);
            let mut b = parse(spec).unwrap();
            b.on_nodes_changed(&nodes);
            let req = RequestInfo { deadline: None };
            let mut now = ebb_core::Instant::EPOCH;
            let mut iters: u64 = 0;
            let start = Instant::now();
            while start.elapsed() < MEASURE {
                for _ in 0..BATCH {
                    now += Nanos(1_000);
                    if let Choice::Node(i) = b.pick(black_box(&nodes), req, now, &mut rng) {
                        b.on_complete(&nodes, i, Nanos(50_000 + (i as u64 % 7) * 1_000), now);
                        b.on_idle(&nodes, i, now);
                        black_box(i);
                    }
                }
                iters += u64::from(BATCH);
            }
            let ns = start.elapsed().as_nanos() as f64 / iters as f64;
            println!("{spec:<10} {n:>7} {ns:>12.1} {:>14.2}", 1e3 / ns);
        }
    }
}
