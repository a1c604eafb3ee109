//! The run's record: per-second buckets of what was sent, how each call
//! ended, the nodes by state and the scaling decisions.
//!
//! Time is an argument (a span since the start of the run), never read
//! here, so the record is tested without a clock. Arrivals are counted in
//! the second they were sent, outcomes in the second they ended.

use std::collections::BTreeMap;

use ebb_core::Nanos;
use ebb_report::{Latency, Run, RunInfo, Sample, ScaleEvent, Summary};
use hdrhistogram::Histogram;

/// Seconds recorded at most; later events are counted in the last one.
pub const MAX_RECORDED_SECS: usize = 4 * 3_600;
/// Scaling decisions kept; later ones are counted but not listed.
pub const MAX_SCALE_EVENTS: usize = 10_000;
/// Latency range the histograms cover (longer calls count as this).
pub const MAX_LATENCY_MICROS: u64 = 600_000_000;
/// Seconds whose latency histogram is still open: a call ending now may
/// be reported a little after the second turned.
const OPEN_SECS: usize = 2;

/// How one call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok {
        latency: Nanos,
    },
    /// Refused without running: admission, a full queue, no capacity.
    Overloaded,
    /// Its deadline passed before an answer.
    DeadlineExceeded,
    /// Anything else (connection lost, outcome unknown, a remote error),
    /// by its kind in `ebb load`'s vocabulary ([`ebb_load::Outcome::label`]).
    Other(String),
}

/// Nodes by state at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Nodes {
    pub booting: u32,
    pub ready: u32,
    pub draining: u32,
}

#[derive(Default)]
struct Bucket {
    sample: Sample,
    /// Open until the second is [`OPEN_SECS`] behind; then its
    /// percentiles go into the sample and the histogram is dropped.
    hist: Option<Histogram<u64>>,
    nodes_seen: bool,
}

fn histogram() -> Histogram<u64> {
    // 2 significant digits: percentiles within 1%, a few KB per open second.
    Histogram::new_with_max(MAX_LATENCY_MICROS, 2).expect("bounds are valid constants")
}

/// A view of the latest complete second, for the live display.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub elapsed_secs: f64,
    /// Seconds closed so far; until one is, `last` holds nothing measured.
    pub seconds_complete: usize,
    pub last: Sample,
    pub total_sent: u64,
    pub total_ok: u64,
    pub total_overloaded: u64,
    pub total_deadline: u64,
    pub total_other: u64,
    pub nodes: Nodes,
    pub last_event: Option<ScaleEvent>,
}

pub struct Recorder {
    objective: Nanos,
    buckets: Vec<Bucket>,
    closed_below: usize,
    whole: Histogram<u64>,
    events: Vec<ScaleEvent>,
    events_dropped: u64,
    /// `Other` outcomes by kind over the whole run, bounded as `ebb load`
    /// bounds its labels ([`ebb_load::MAX_ERROR_LABELS`]).
    other_kinds: BTreeMap<String, u64>,
    nodes: Nodes,
    last_event: Option<ScaleEvent>,
    now: Nanos,
}

impl Recorder {
    /// A successful call slower than `objective` is a miss.
    pub fn new(objective: Nanos) -> Recorder {
        Recorder {
            objective,
            buckets: Vec::new(),
            closed_below: 0,
            whole: Histogram::new_with_max(MAX_LATENCY_MICROS, 3)
                .expect("bounds are valid constants"),
            events: Vec::new(),
            events_dropped: 0,
            other_kinds: BTreeMap::new(),
            nodes: Nodes::default(),
            last_event: None,
            now: Nanos::ZERO,
        }
    }

    fn bucket(&mut self, at: Nanos) -> &mut Bucket {
        self.now = self.now.max(at);
        let i = ((at.as_nanos() / 1_000_000_000) as usize).min(MAX_RECORDED_SECS - 1);
        while self.buckets.len() <= i {
            let t = self.buckets.len();
            // A second with no node report yet carries the last known pool.
            let n = self.nodes;
            self.buckets.push(Bucket {
                sample: Sample {
                    t_secs: t as f64,
                    booting: n.booting,
                    ready: n.ready,
                    draining: n.draining,
                    ..Sample::default()
                },
                hist: None,
                nodes_seen: false,
            });
        }
        &mut self.buckets[i]
    }

    pub fn sent(&mut self, at: Nanos) {
        self.bucket(at).sample.offered += 1;
    }

    pub fn ended(&mut self, at: Nanos, outcome: Outcome) {
        let objective = self.objective;
        let b = self.bucket(at);
        match outcome {
            Outcome::Ok { latency } => {
                b.sample.ok += 1;
                if latency > objective {
                    b.sample.slow += 1;
                }
                let us = latency.as_micros().clamp(1, MAX_LATENCY_MICROS);
                let second = b.hist.get_or_insert_with(histogram).record(us);
                debug_assert!(second.is_ok(), "latency clamped into the histogram's range");
                let whole = self.whole.record(us);
                debug_assert!(whole.is_ok(), "latency clamped into the histogram's range");
            }
            Outcome::Overloaded => b.sample.overloaded += 1,
            Outcome::DeadlineExceeded => b.sample.deadline_exceeded += 1,
            Outcome::Other(kind) => {
                b.sample.other_errors += 1;
                ebb_load::count_label(&mut self.other_kinds, &kind, 1);
            }
        }
    }

    /// The pool as counted at `at`; the last report in a second stands for it.
    pub fn nodes(&mut self, at: Nanos, n: Nodes) {
        let b = self.bucket(at);
        b.sample.booting = n.booting;
        b.sample.ready = n.ready;
        b.sample.draining = n.draining;
        b.nodes_seen = true;
        self.nodes = n;
    }

    pub fn scaled(&mut self, event: ScaleEvent) {
        self.bucket(Nanos::from_secs_f64(event.t_secs.max(0.0)));
        self.last_event = Some(event.clone());
        if self.events.len() < MAX_SCALE_EVENTS {
            self.events.push(event);
        } else {
            self.events_dropped += 1;
        }
    }

    /// Fills in the percentiles of seconds that can no longer change.
    pub fn close_until(&mut self, at: Nanos) {
        self.bucket(at);
        let current = ((at.as_nanos() / 1_000_000_000) as usize).min(MAX_RECORDED_SECS - 1);
        let upto = current.saturating_sub(OPEN_SECS - 1);
        for b in &mut self.buckets[self.closed_below.min(upto)..upto] {
            close(b);
        }
        self.closed_below = self.closed_below.max(upto);
    }

    /// The latest complete second and the totals so far.
    pub fn snapshot(&mut self) -> Snapshot {
        let now = self.now;
        self.close_until(now);
        let complete = self.closed_below.checked_sub(1);
        let last = complete
            .and_then(|i| self.buckets.get(i))
            .map(|b| b.sample.clone())
            .unwrap_or_default();
        let sum = |f: fn(&Sample) -> u64| self.buckets.iter().map(|b| f(&b.sample)).sum::<u64>();
        Snapshot {
            elapsed_secs: now.as_secs_f64(),
            seconds_complete: self.closed_below,
            last,
            total_sent: sum(|s| s.offered),
            total_ok: sum(|s| s.ok),
            total_overloaded: sum(|s| s.overloaded),
            total_deadline: sum(|s| s.deadline_exceeded),
            total_other: sum(|s| s.other_errors),
            nodes: self.nodes,
            last_event: self.last_event.clone(),
        }
    }

    /// Scaling decisions recorded past [`MAX_SCALE_EVENTS`].
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// The run so far as a report run; every second is closed.
    pub fn finish(mut self, label: &str, info: &RunInfo) -> Run {
        for b in &mut self.buckets {
            close(b);
        }
        let samples: Vec<Sample> = self.buckets.into_iter().map(|b| b.sample).collect();
        let ms = |q: f64| self.whole.value_at_quantile(q) as f64 / 1_000.0;
        let latency = if self.whole.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50_ms: ms(0.5),
                p99_ms: ms(0.99),
                p999_ms: ms(0.999),
                max_ms: self.whole.max() as f64 / 1_000.0,
            }
        };
        let mut summary = Summary::from_series(info, &samples, &self.events, latency);
        summary.scale_actions += self.events_dropped;
        summary.other_errors_by_kind = self.other_kinds;
        Run {
            label: label.to_string(),
            samples,
            events: self.events,
            summary,
        }
    }
}

fn close(b: &mut Bucket) {
    if let Some(h) = b.hist.take() {
        b.sample.p50_ms = Some(h.value_at_quantile(0.5) as f64 / 1_000.0);
        b.sample.p99_ms = Some(h.value_at_quantile(0.99) as f64 / 1_000.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(m: u64) -> Nanos {
        Nanos::from_millis(m)
    }

    #[test]
    fn outcomes_land_in_their_second_and_percentiles_close_behind() {
        let mut r = Recorder::new(ms(100));
        for i in 0..100 {
            r.sent(ms(10 * i));
            let latency = ms(if i < 98 { 10 } else { 150 });
            r.ended(ms(10 * i + 5), Outcome::Ok { latency });
        }
        r.ended(ms(1_500), Outcome::Overloaded);
        r.ended(ms(1_600), Outcome::DeadlineExceeded);
        r.nodes(
            ms(1_700),
            Nodes {
                booting: 1,
                ready: 2,
                draining: 0,
            },
        );
        let s = r.snapshot();
        assert_eq!(s.total_sent, 100);
        assert_eq!(s.last, Sample::default(), "second 0 is still open at 1.7 s");
        r.close_until(ms(2_100));
        let s = r.snapshot();
        assert_eq!(s.last.offered, 100);
        assert_eq!(s.last.slow, 2);
        let p50 = s.last.p50_ms.expect("closed");
        assert!((p50 - 10.0).abs() < 0.1, "p50 {p50}");
        assert!(s.last.p99_ms.expect("closed") >= 149.0);
        let run = r.finish("queue", &RunInfo::default());
        assert_eq!(run.samples.len(), 3);
        assert_eq!(run.samples[1].overloaded, 1);
        assert_eq!(run.samples[1].deadline_exceeded, 1);
        assert_eq!(run.samples[1].ready, 2);
        assert_eq!(
            run.samples[2].ready, 2,
            "a second without a report keeps the pool"
        );
        assert_eq!(run.samples[1].p50_ms, None, "no successes in second 1");
        assert_eq!(run.summary.requests, 100);
        assert!((run.summary.p50_ms - 10.0).abs() < 0.1);
    }

    /// Other failures keep their kind into the summary, and add up to
    /// `other_errors`.
    #[test]
    fn other_failures_are_counted_by_kind() {
        let mut r = Recorder::new(ms(100));
        for (i, kind) in ["connect_failed", "outcome_unknown", "connect_failed"]
            .into_iter()
            .enumerate()
        {
            r.sent(ms(10 * i as u64));
            r.ended(ms(10 * i as u64 + 5), Outcome::Other(kind.into()));
        }
        let run = r.finish("x", &RunInfo::default());
        assert_eq!(run.summary.other_errors, 3);
        let kinds: Vec<(&str, u64)> = run
            .summary
            .other_errors_by_kind
            .iter()
            .map(|(k, n)| (k.as_str(), *n))
            .collect();
        assert_eq!(kinds, [("connect_failed", 2), ("outcome_unknown", 1)]);
    }

    #[test]
    fn events_beyond_the_bound_are_counted_not_kept() {
        let mut r = Recorder::new(ms(100));
        for i in 0..(MAX_SCALE_EVENTS + 3) {
            r.scaled(ScaleEvent {
                t_secs: 1.0,
                from: 1,
                to: 2,
                reason: format!("e{i}"),
                detail: String::new(),
            });
        }
        assert_eq!(r.events_dropped(), 3);
        let run = r.finish("x", &RunInfo::default());
        assert_eq!(run.events.len(), MAX_SCALE_EVENTS);
        assert_eq!(run.summary.scale_actions, (MAX_SCALE_EVENTS + 3) as u64);
    }

    #[test]
    fn far_future_times_go_to_the_last_bucket() {
        let mut r = Recorder::new(ms(100));
        r.sent(Nanos::from_secs(10 * MAX_RECORDED_SECS as u64));
        let run = r.finish("x", &RunInfo::default());
        assert_eq!(run.samples.len(), MAX_RECORDED_SECS);
        assert_eq!(run.summary.requests, 1);
    }
}
