//! Medians over repetitions, ratios against the peers, and the markdown and
//! JSON renderings of both.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::driver::Sample;
use crate::system::System;

/// (payload bytes, concurrency): the grid of one run.
pub type Cell = (usize, usize);

/// Medians of each metric over the repetitions of one cell and system.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Summary {
    pub calls_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub server_cpu_us_per_call: f64,
    pub client_cpu_us_per_call: f64,
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
    pub payload_bytes: usize,
    pub concurrency: usize,
    pub system: &'static str,
    #[serde(flatten)]
    pub summary: Summary,
}

pub fn rows(table: &BTreeMap<Cell, BTreeMap<System, Summary>>) -> Vec<Row> {
    let mut out = Vec::new();
    for (&(payload_bytes, concurrency), by_sys) in table {
        for (sys, s) in by_sys {
            out.push(Row {
                payload_bytes,
                concurrency,
                system: sys.name(),
                summary: *s,
            });
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

fn ratio(a: Option<&Summary>, b: Option<&Summary>, f: fn(&Summary) -> f64) -> String {
    match (a, b) {
        (Some(a), Some(b)) if f(b) > 0.0 => format!("{:.2}", f(a) / f(b)),
        _ => "–".into(),
    }
}

pub fn markdown(table: &BTreeMap<Cell, BTreeMap<System, Summary>>, floor: Option<Floor>) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| payload | concurrency | system | calls/s | p50 µs | p99 µs | server CPU µs/call | client CPU µs/call |"
    );
    let _ = writeln!(md, "|---|---:|---|---:|---:|---:|---:|---:|");
    for (&(p, c), by_sys) in table {
        for (sys, s) in by_sys {
            let _ = writeln!(
                md,
                "| {} | {c} | {} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} |",
                size(p),
                sys.name(),
                s.calls_per_sec,
                s.p50_us,
                s.p99_us,
                s.server_cpu_us_per_call,
                s.client_cpu_us_per_call
            );
        }
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "| payload | concurrency | calls/s ebb/tarpc | calls/s ebb/tonic | CPU/call ebb/tarpc | CPU/call ebb/tonic | p50 ebb/tarpc | p50 ebb/tonic |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for (&(p, c), by_sys) in table {
        let e = by_sys.get(&System::Ebb);
        let ta = by_sys.get(&System::Tarpc);
        let to = by_sys.get(&System::Tonic);
        let _ = writeln!(
            md,
            "| {} | {c} | {} | {} | {} | {} | {} | {} |",
            size(p),
            ratio(e, ta, |s| s.calls_per_sec),
            ratio(e, to, |s| s.calls_per_sec),
            ratio(e, ta, |s| s.server_cpu_us_per_call),
            ratio(e, to, |s| s.server_cpu_us_per_call),
            ratio(e, ta, |s| s.p50_us),
            ratio(e, to, |s| s.p50_us),
        );
    }
    if let Some(f) = floor {
        let _ = writeln!(md);
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

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}
