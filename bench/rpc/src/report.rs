//! Medians over repetitions, ratios against the peers, and the markdown and
//! JSON renderings of both.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::driver::Sample;
use crate::flavour::Flavour;
use crate::system::System;

/// How the clients and servers of a run are set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scenario {
    /// The runtime flavour of both the client and the server process.
    pub flavour: Flavour,
    /// Connections the calls are spread over (one client each).
    pub conns: usize,
    pub tls: bool,
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} client and server, {} connection{}, {}",
            self.flavour,
            self.conns,
            if self.conns == 1 { "" } else { "s" },
            if self.tls { "TLS" } else { "plain TCP" }
        )
    }
}

/// (scenario, payload bytes, concurrency): the grid of one run.
pub type Cell = (Scenario, usize, usize);

/// Medians of each metric over the repetitions of one cell and system.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Summary {
    pub calls_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub server_cpu_us_per_call: f64,
    pub client_cpu_us_per_call: f64,
    pub server_allocs_per_call: f64,
    pub client_allocs_per_call: f64,
    pub reps: usize,
}

pub fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if !xs.len().is_multiple_of(2) {
        xs[m]
    } else {
        (xs[m - 1] + xs[m]) / 2.0
    }
}

pub fn summarize(samples: &[Sample]) -> Summary {
    let pick = |f: fn(&Sample) -> f64| median(&mut samples.iter().map(f).collect::<Vec<_>>());
    Summary {
        calls_per_sec: pick(|s| s.calls_per_sec),
        p50_us: pick(|s| s.p50_us),
        p99_us: pick(|s| s.p99_us),
        server_cpu_us_per_call: pick(|s| s.server_cpu_us_per_call),
        client_cpu_us_per_call: pick(|s| s.client_cpu_us_per_call),
        server_allocs_per_call: pick(|s| s.server_allocs_per_call),
        client_allocs_per_call: pick(|s| s.client_allocs_per_call),
        reps: samples.len(),
    }
}

/// Medians of the raw TCP floor.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Floor {
    pub ping_pong_us: f64,
    pub pipelined_msgs_per_sec: f64,
}

#[derive(Serialize)]
pub struct Row {
    pub flavour: String,
    pub conns: usize,
    pub tls: bool,
    pub payload_bytes: usize,
    pub concurrency: usize,
    pub system: &'static str,
    #[serde(flatten)]
    pub summary: Summary,
}

pub fn rows(table: &BTreeMap<Cell, BTreeMap<System, Summary>>) -> Vec<Row> {
    let mut out = Vec::new();
    for (&(sc, payload_bytes, concurrency), by_sys) in table {
        for (sys, s) in by_sys {
            out.push(Row {
                flavour: sc.flavour.to_string(),
                conns: sc.conns,
                tls: sc.tls,
                payload_bytes,
                concurrency,
                system: sys.name(),
                summary: *s,
            });
        }
    }
    out
}

/// Paired ratios of ebb against each peer, per cell, for the JSON report.
#[derive(Serialize)]
pub struct Ratios {
    pub flavour: String,
    pub conns: usize,
    pub tls: bool,
    pub payload_bytes: usize,
    pub concurrency: usize,
    pub peer: &'static str,
    pub calls_per_sec: Option<f64>,
    pub server_cpu_us_per_call: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
}

pub fn ratios(samples: &BTreeMap<Cell, BTreeMap<System, Vec<Sample>>>) -> Vec<Ratios> {
    let mut out = Vec::new();
    for (&(sc, payload_bytes, concurrency), by_sys) in samples {
        let Some(e) = by_sys.get(&System::Ebb) else {
            continue;
        };
        for peer in [System::Tarpc, System::Tonic] {
            if let Some(p) = by_sys.get(&peer) {
                out.push(Ratios {
                    flavour: sc.flavour.to_string(),
                    conns: sc.conns,
                    tls: sc.tls,
                    payload_bytes,
                    concurrency,
                    peer: peer.name(),
                    calls_per_sec: paired_ratio(e, p, |s| s.calls_per_sec),
                    server_cpu_us_per_call: paired_ratio(e, p, |s| s.server_cpu_us_per_call),
                    p50_us: paired_ratio(e, p, |s| s.p50_us),
                    p99_us: paired_ratio(e, p, |s| s.p99_us),
                });
            }
        }
    }
    out
}

fn size(b: usize) -> String {
    if b >= 1024 && b.is_multiple_of(1024) {
        format!("{} KiB", b / 1024)
    } else {
        format!("{b} B")
    }
}

/// Median over repetitions of the per-repetition ratio `f(a) / f(b)`.
///
/// Systems run back to back within a repetition, so a ratio taken inside one
/// repetition compares runs that met the same machine; on a shared machine
/// whose speed swings between repetitions this is far steadier than a ratio
/// of medians.
pub fn paired_ratio(a: &[Sample], b: &[Sample], f: fn(&Sample) -> f64) -> Option<f64> {
    let mut rs: Vec<f64> = a
        .iter()
        .zip(b)
        .filter(|(_, y)| f(y) > 0.0)
        .map(|(x, y)| f(x) / f(y))
        .collect();
    (!rs.is_empty()).then(|| median(&mut rs))
}

/// The lowest and highest per-repetition ratio `f(a) / f(b)`: on a shared
/// machine one repetition can fall far from the others (a process waiting
/// for a CPU), and the median alone hides how far.
pub fn paired_range(a: &[Sample], b: &[Sample], f: fn(&Sample) -> f64) -> Option<(f64, f64)> {
    a.iter()
        .zip(b)
        .filter(|(_, y)| f(y) > 0.0)
        .map(|(x, y)| f(x) / f(y))
        .fold(None, |range, r| match range {
            None => Some((r, r)),
            Some((lo, hi)) => Some((r.min(lo), r.max(hi))),
        })
}

fn ratio(a: Option<&Vec<Sample>>, b: Option<&Vec<Sample>>, f: fn(&Sample) -> f64) -> String {
    match (a, b) {
        (Some(a), Some(b)) => paired_ratio(a, b, f).map_or("–".into(), |r| format!("{r:.2}")),
        _ => "–".into(),
    }
}

/// [`ratio`] followed by the range over repetitions, for calls/s.
fn ratio_with_range(
    a: Option<&Vec<Sample>>,
    b: Option<&Vec<Sample>>,
    f: fn(&Sample) -> f64,
) -> String {
    match (a, b) {
        (Some(a), Some(b)) => match (paired_ratio(a, b, f), paired_range(a, b, f)) {
            (Some(r), Some((lo, hi))) => format!("{r:.2} ({lo:.2}–{hi:.2})"),
            _ => "–".into(),
        },
        _ => "–".into(),
    }
}

pub fn markdown(
    table: &BTreeMap<Cell, BTreeMap<System, Summary>>,
    samples: &BTreeMap<Cell, BTreeMap<System, Vec<Sample>>>,
    floor: Option<Floor>,
) -> String {
    let mut md = String::new();
    let mut scenarios: Vec<Scenario> = table.keys().map(|c| c.0).collect();
    scenarios.dedup();
    for sc in scenarios {
        let _ = writeln!(md, "**{sc}**\n");
        let _ = writeln!(
            md,
            "| payload | concurrency | system | calls/s | p50 µs | p99 µs | server CPU µs/call | client CPU µs/call | server allocs/call | client allocs/call |"
        );
        let _ = writeln!(md, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        for (&(_, p, c), by_sys) in table.range((sc, 0, 0)..=(sc, usize::MAX, usize::MAX)) {
            for (sys, s) in by_sys {
                let _ = writeln!(
                    md,
                    "| {} | {c} | {} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} |",
                    size(p),
                    sys.name(),
                    s.calls_per_sec,
                    s.p50_us,
                    s.p99_us,
                    s.server_cpu_us_per_call,
                    s.client_cpu_us_per_call,
                    s.server_allocs_per_call,
                    s.client_allocs_per_call,
                );
            }
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "| payload | concurrency | calls/s ebb/tarpc (range over repetitions) | calls/s ebb/tonic (range) | server CPU/call ebb/tarpc | server CPU/call ebb/tonic | p50 ebb/tarpc | p50 ebb/tonic |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for (&(_, p, c), by_sys) in samples.range((sc, 0, 0)..=(sc, usize::MAX, usize::MAX)) {
            let e = by_sys.get(&System::Ebb);
            let ta = by_sys.get(&System::Tarpc);
            let to = by_sys.get(&System::Tonic);
            let _ = writeln!(
                md,
                "| {} | {c} | {} | {} | {} | {} | {} | {} |",
                size(p),
                ratio_with_range(e, ta, |s| s.calls_per_sec),
                ratio_with_range(e, to, |s| s.calls_per_sec),
                ratio(e, ta, |s| s.server_cpu_us_per_call),
                ratio(e, to, |s| s.server_cpu_us_per_call),
                ratio(e, ta, |s| s.p50_us),
                ratio(e, to, |s| s.p50_us),
            );
        }
        let _ = writeln!(md);
    }
    tls_cost(&mut md, samples);
    if let Some(f) = floor {
        let _ = writeln!(md, "| floor (raw TCP, 64 B) | value |");
        let _ = writeln!(md, "|---|---:|");
        let _ = writeln!(
            md,
            "| blocking ping-pong, µs per round trip | {:.1} |",
            f.ping_pong_us
        );
        let _ = writeln!(
            md,
            "| pipelined echo, messages/s | {:.0} |",
            f.pipelined_msgs_per_sec
        );
    }
    md
}

/// What TLS costs each system: per cell that ran both ways, the paired
/// ratio TLS / plain TCP of calls/s and of CPU per call on each side.
fn tls_cost(md: &mut String, samples: &BTreeMap<Cell, BTreeMap<System, Vec<Sample>>>) {
    let mut rows = Vec::new();
    for (&(sc, p, c), by_sys) in samples {
        if sc.tls {
            continue;
        }
        let Some(tls) = samples.get(&(Scenario { tls: true, ..sc }, p, c)) else {
            continue;
        };
        for (sys, plain) in by_sys {
            if let Some(t) = tls.get(sys) {
                rows.push(format!(
                    "| {} | {} | {c} | {} | {} | {} | {} |",
                    sc.flavour,
                    size(p),
                    sys.name(),
                    fmt_ratio(paired_ratio(t, plain, |s| s.calls_per_sec)),
                    fmt_ratio(paired_ratio(t, plain, |s| s.server_cpu_us_per_call)),
                    fmt_ratio(paired_ratio(t, plain, |s| s.client_cpu_us_per_call)),
                ));
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(md, "**TLS cost: TLS / plain TCP, paired**\n");
    let _ = writeln!(
        md,
        "| flavour | payload | concurrency | system | calls/s | server CPU/call | client CPU/call |"
    );
    let _ = writeln!(md, "|---|---|---:|---|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(md, "{r}");
    }
    let _ = writeln!(md);
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.2}"))
}

#[cfg(test)]
mod tests {
    use super::{median, paired_range, paired_ratio};
    use crate::driver::Sample;

    fn at(calls_per_sec: f64) -> Sample {
        Sample {
            calls_per_sec,
            p50_us: 1.0,
            p99_us: 1.0,
            server_cpu_us_per_call: 1.0,
            client_cpu_us_per_call: 1.0,
            server_allocs_per_call: 1.0,
            client_allocs_per_call: 1.0,
        }
    }

    #[test]
    fn paired_ratio_compares_within_each_repetition() {
        // The machine halves its speed in the second repetition: per
        // repetition a is twice b every time.
        let a = [at(200.0), at(100.0), at(220.0)];
        let b = [at(100.0), at(50.0), at(110.0)];
        assert_eq!(paired_ratio(&a, &b, |s| s.calls_per_sec), Some(2.0));
        assert_eq!(paired_ratio(&[], &[], |s| s.calls_per_sec), None);
    }

    #[test]
    fn paired_range_shows_the_repetition_that_fell() {
        // One repetition in which a waited for a CPU: the median hides it,
        // the range does not.
        let a = [at(200.0), at(10.0), at(220.0)];
        let b = [at(100.0), at(100.0), at(110.0)];
        assert_eq!(paired_ratio(&a, &b, |s| s.calls_per_sec), Some(2.0));
        assert_eq!(paired_range(&a, &b, |s| s.calls_per_sec), Some((0.1, 2.0)));
        assert_eq!(paired_range(&[], &[], |s| s.calls_per_sec), None);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}
