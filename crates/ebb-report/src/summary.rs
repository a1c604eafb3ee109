//! `summary.json`: one object per run.
//!
//! Counts, node-seconds and node extremes come from the series, so the
//! summary and the plots cannot disagree; latency percentiles over the whole
//! run cannot be recovered from per-second ones, so the caller measures them
//! ([`Latency`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::series::{Sample, ScaleEvent};

/// Whole-run latency of successful answers, from the caller's histogram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// The run in numbers. Field names are a contract: extend, never rename.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The scaling policy's spec.
    pub policy: String,
    /// Node kind (`process`, `thread`, ...) or `sim`.
    pub kind: String,
    pub trace: String,
    pub duration_secs: f64,
    /// A request answered later than this, or not answered, is a miss.
    pub objective_ms: f64,
    pub requests: u64,
    pub ok: u64,
    pub overloaded: u64,
    pub deadline_exceeded: u64,
    pub other_errors: u64,
    /// `other_errors` by kind, with `ebb load`'s labels: an ebb error kind
    /// (`unknown_method`, `node_lost` when the call provably never ran ...),
    /// `outcome_unknown`, `connect_failed`, `http_<status>`, or `not_sent`
    /// (the generator's own outstanding bound). Bounded like `ebb load`'s
    /// `errors`: past its label bound the rest count under `more`.
    #[serde(default)]
    pub other_errors_by_kind: BTreeMap<String, u64>,
    /// Misses (slow, refused, timed out, failed) over requests; 0 if none.
    pub slo_miss_fraction: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Nodes alive (booting, ready or draining) integrated over the run.
    pub node_seconds: f64,
    pub min_nodes: u32,
    pub max_nodes: u32,
    pub mean_nodes: f64,
    /// Target changes the policy made.
    pub scale_actions: u64,
    /// The shared-data calls of the run and what reached the origin store,
    /// when the nodes share one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_data: Option<SharedData>,
}

/// `get`/`put` calls through the nodes' lease caches, and the origin
/// store's side of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedData {
    pub gets: u64,
    pub gets_ok: u64,
    pub puts: u64,
    pub puts_ok: u64,
    /// Reads that reached the origin: node-cache misses and revalidations.
    pub origin_reads: u64,
    /// Writes the origin applied.
    pub origin_writes: u64,
    /// Successful gets a node answered from its cache under a lease: each
    /// get reaches the origin at most once, so this is `gets_ok` minus
    /// `origin_reads` (at least 0).
    pub served_from_cache: u64,
}

impl SharedData {
    pub fn new(gets: (u64, u64), puts: (u64, u64), origin_reads: u64, origin_writes: u64) -> Self {
        SharedData {
            gets: gets.0,
            gets_ok: gets.1,
            puts: puts.0,
            puts_ok: puts.1,
            origin_reads,
            origin_writes,
            served_from_cache: gets.1.saturating_sub(origin_reads),
        }
    }
}

/// What the summary is about, beyond the series.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    pub policy: String,
    pub kind: String,
    pub trace: String,
    pub objective_ms: f64,
}

impl Summary {
    /// Derives every count from the series; each sample stands for one second.
    pub fn from_series(
        info: &RunInfo,
        samples: &[Sample],
        events: &[ScaleEvent],
        latency: Latency,
    ) -> Summary {
        let sum = |f: fn(&Sample) -> u64| samples.iter().map(f).sum::<u64>();
        let requests = sum(|s| s.offered);
        let misses = sum(Sample::misses);
        let node_seconds: f64 = samples.iter().map(|s| f64::from(s.nodes())).sum();
        let duration_secs = samples.len() as f64;
        Summary {
            policy: info.policy.clone(),
            kind: info.kind.clone(),
            trace: info.trace.clone(),
            duration_secs,
            objective_ms: info.objective_ms,
            requests,
            ok: sum(|s| s.ok),
            overloaded: sum(|s| s.overloaded),
            deadline_exceeded: sum(|s| s.deadline_exceeded),
            other_errors: sum(|s| s.other_errors),
            // Kinds are counted over the run, not per second: the caller's.
            other_errors_by_kind: BTreeMap::new(),
            slo_miss_fraction: if requests > 0 {
                (misses as f64 / requests as f64).min(1.0)
            } else {
                0.0
            },
            p50_ms: latency.p50_ms,
            p99_ms: latency.p99_ms,
            p999_ms: latency.p999_ms,
            max_ms: latency.max_ms,
            node_seconds,
            min_nodes: samples.iter().map(Sample::nodes).min().unwrap_or(0),
            max_nodes: samples.iter().map(Sample::nodes).max().unwrap_or(0),
            mean_nodes: if duration_secs > 0.0 {
                node_seconds / duration_secs
            } else {
                0.0
            },
            scale_actions: events.len() as u64,
            shared_data: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_series_is_all_zero_not_nan() {
        let s = Summary::from_series(&RunInfo::default(), &[], &[], Latency::default());
        assert_eq!(s.requests, 0);
        assert_eq!(s.slo_miss_fraction, 0.0);
        assert_eq!(s.mean_nodes, 0.0);
        assert_eq!((s.min_nodes, s.max_nodes), (0, 0));
    }

    #[test]
    fn counts_misses_and_node_seconds_from_the_series() {
        let a = Sample {
            offered: 10,
            ok: 8,
            slow: 1,
            overloaded: 2,
            ready: 2,
            booting: 1,
            ..Sample::default()
        };
        let b = Sample {
            offered: 10,
            ok: 10,
            ready: 1,
            ..Sample::default()
        };
        let s = Summary::from_series(&RunInfo::default(), &[a, b], &[], Latency::default());
        assert_eq!(s.requests, 20);
        assert_eq!(s.ok, 18);
        assert!((s.slo_miss_fraction - 3.0 / 20.0).abs() < 1e-12);
        assert_eq!(s.node_seconds, 4.0);
        assert_eq!((s.min_nodes, s.max_nodes), (1, 3));
        assert_eq!(s.mean_nodes, 2.0);
    }
}
