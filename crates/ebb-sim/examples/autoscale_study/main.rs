//! The autoscaling study behind `docs/autoscaling.md`: every built-in
//! trace, five seeds, each policy's main knob swept; Pareto fronts of
//! node-seconds against SLO misses; the scaling signals compared; nodes
//! needed against load; the hindsight-optimal schedule for one trace; and
//! what faster boot buys.
//!
//! ```sh
//! cargo run --release -p ebb-sim --example autoscale_study -- docs
//! cargo run --release -p ebb-sim --example autoscale_study -- docs boot   # one section
//! ```
//!
//! Writes `autoscaling-<trace>.svg` and `autoscaling-boot-<trace>.svg` into
//! the directory given (default `.`) and prints the doc's tables as
//! Markdown on stdout. Sections after the directory (`pareto`, `signals`,
//! `sublinear`, `hindsight`, `boot`) run only those. Runs in parallel on
//! every core; each run is single-threaded and a function of its seed.
//!
//! The study's fixed load (rate, service time, objective, boot) is set
//! here; `runs.rs` makes a run and spreads many over the cores; each other
//! file is one section.

mod boot;
mod hindsight;
mod pareto;
mod runs;
mod signals;

use boot::boot_times;
use hindsight::hindsight;
use pareto::pareto;
use signals::{signals, sub_linear};

/// Mean arrival rate, per second.
const RATE: f64 = 300.0;
/// Mean service time, seconds: 300/s × 20 ms = 6 erlangs on average.
const SERVICE: f64 = 0.02;
/// The objective: 10 mean service times.
const OBJECTIVE: f64 = 0.2;
/// Boot time of the main study: a cold VM as measured (docs/isolation.md).
const BOOT: f64 = 5.0;
const TRACE_SECS: u32 = 1200;
const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];
const INITIAL_NODES: u32 = 8;
const MAX_NODES: u32 = 400;
const COST_PER_NODE_SEC: u64 = 100;
/// Misses below this are drawn at it on the log axis.
const PLOT_FLOOR: f64 = 1e-5;

/// The study's sections, by the name that selects one.
const SECTIONS: [&str; 5] = ["pareto", "signals", "sublinear", "hindsight", "boot"];

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".".into());
    let only: Vec<String> = args.collect();
    for s in &only {
        if !SECTIONS.contains(&s.as_str()) {
            eprintln!("unknown section {s:?}; accepted: {}", SECTIONS.join(", "));
            std::process::exit(2);
        }
    }
    let wanted = |s: &str| only.is_empty() || only.iter().any(|o| o == s);
    let wall = std::time::Instant::now();
    if wanted("pareto") {
        pareto(&dir);
    }
    if wanted("signals") {
        signals();
    }
    if wanted("sublinear") {
        sub_linear();
    }
    if wanted("hindsight") {
        hindsight();
    }
    if wanted("boot") {
        boot_times(&dir);
    }
    eprintln!("study done in {:.0} s wall", wall.elapsed().as_secs_f64());
}
