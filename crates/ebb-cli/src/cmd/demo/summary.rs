//! The lines `ebb demo` prints when its runs are done: one per policy with
//! its requests, misses, latency and node cost, and one per policy with
//! the shared data's gets, puts and origin traffic, so the runs compare at
//! a glance before the report is opened.

use ebb_replay::demo::DemoOutcome;

/// Prints the runs' closing lines.
pub(super) fn print_runs(outcome: &DemoOutcome) {
    println!();
    for r in &outcome.runs {
        let s = &r.summary;
        println!(
            "{:<40} requests {:>6}  ok {:>6}  overloaded {:>5}  misses {:>6.2}%  p50 {:>6.1} ms  p99 {:>7.1} ms  node-seconds {:>6.0}  nodes {}..{}  scale actions {}",
            r.label,
            s.requests,
            s.ok,
            s.overloaded,
            100.0 * s.slo_miss_fraction,
            s.p50_ms,
            s.p99_ms,
            s.node_seconds,
            s.min_nodes,
            s.max_nodes,
            s.scale_actions
        );
    }
    for r in &outcome.runs {
        if let Some(d) = &r.summary.shared_data {
            println!(
                "{:<40} gets {}/{} ok, puts {}/{} ok, origin reads {} writes {}, gets served from node caches {}",
                r.label,
                d.gets_ok,
                d.gets,
                d.puts_ok,
                d.puts,
                d.origin_reads,
                d.origin_writes,
                d.served_from_cache
            );
        }
    }
}
