//! What a run measured: counts, rates and the latency of successful calls,
//! as one JSON object and as a table.

use std::collections::BTreeMap;
use std::fmt::Write;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::Outcome;

/// Latencies are recorded in microseconds, from 1 µs to an hour.
const MAX_LATENCY_US: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;
/// Distinct labels kept in `errors`; further ones are counted under `more`.
pub const MAX_ERROR_LABELS: usize = 32;

/// A histogram of microseconds, 1 µs to an hour, 3 significant digits:
/// latencies and send lags alike.
pub(crate) fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS)
        .expect("constant bounds are valid: 1 <= low, high >= 2 * low, 0..=5 digits")
}

/// Counts and latencies as requests complete.
pub struct Tally {
    pub ok: u64,
    pub overloaded: u64,
    pub deadline_exceeded: u64,
    pub outcome_unknown: u64,
    pub other_errors: u64,
    pub errors: BTreeMap<String, u64>,
    /// Latency of `ok` calls, µs, from the scheduled send time.
    pub latency_us: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            ok: 0,
            overloaded: 0,
            deadline_exceeded: 0,
            outcome_unknown: 0,
            other_errors: 0,
            errors: BTreeMap::new(),
            latency_us: micros_histogram(),
        }
    }
}

impl Tally {
    pub fn record(&mut self, outcome: Outcome, latency_us: u64) {
        let label = match outcome {
            Outcome::Ok => {
                self.ok += 1;
                self.latency_us.saturating_record(latency_us.max(1));
                return;
            }
            Outcome::Overloaded => {
                self.overloaded += 1;
                "overloaded".to_owned()
            }
            Outcome::DeadlineExceeded => {
                self.deadline_exceeded += 1;
                "deadline_exceeded".to_owned()
            }
            Outcome::OutcomeUnknown => {
                self.outcome_unknown += 1;
                "outcome_unknown".to_owned()
            }
            Outcome::Other(label) => {
                self.other_errors += 1;
                label
            }
        };
        let label = if self.errors.len() < MAX_ERROR_LABELS || self.errors.contains_key(&label) {
            label
        } else {
            "more".to_owned()
        };
        *self.errors.entry(label).or_default() += 1;
    }

    /// Adds `other`'s counts and latencies (another sender thread's);
    /// labels past [`MAX_ERROR_LABELS`] go under `more`, as in `record`.
    pub fn merge(&mut self, other: &Tally) {
        self.ok += other.ok;
        self.overloaded += other.overloaded;
        self.deadline_exceeded += other.deadline_exceeded;
        self.outcome_unknown += other.outcome_unknown;
        self.other_errors += other.other_errors;
        for (label, n) in &other.errors {
            let label = if self.errors.len() < MAX_ERROR_LABELS || self.errors.contains_key(label) {
                label.clone()
            } else {
                "more".to_owned()
            };
            *self.errors.entry(label).or_default() += n;
        }
        // Same bounds on both sides, so nothing is out of range.
        let _ = self.latency_us.add(&other.latency_us);
    }

    pub fn completed(&self) -> u64 {
        self.ok
            + self.overloaded
            + self.deadline_exceeded
            + self.outcome_unknown
            + self.other_errors
    }
}

/// The summary of one run (`ebb load --json`). Invariants: `scheduled =
/// sent + not_sent`; `sent = ok + overloaded + deadline_exceeded +
/// outcome_unknown + other_errors + unfinished`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub target: String,
    pub protocol: &'static str,
    pub method: String,
    pub seed: u64,
    /// Arrivals the schedule produced within the duration.
    pub scheduled: u64,
    pub sent: u64,
    /// Arrivals not sent because `max_outstanding` requests were already
    /// waiting: the generator's own bound, counted rather than hidden.
    pub not_sent: u64,
    pub ok: u64,
    pub overloaded: u64,
    pub deadline_exceeded: u64,
    pub outcome_unknown: u64,
    pub other_errors: u64,
    /// Sent but not ended when the run gave up waiting (should be 0: every
    /// request has a deadline).
    pub unfinished: u64,
    /// Failures by label (the classes above, or an ebb error kind).
    pub errors: BTreeMap<String, u64>,
    pub duration_s: f64,
    /// From the first arrival's time to the last completion.
    pub wall_s: f64,
    /// `scheduled / duration_s`.
    pub offered_rate: f64,
    /// `ok / wall_s`: successful calls per second.
    pub achieved_rate: f64,
    /// Latency of successful calls, from each request's scheduled send time.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Sender threads, each with its own runtime and connections.
    pub threads: usize,
    /// How late the generator sent requests (from each one's scheduled
    /// time to when it was written), ms: how far the generator itself fell
    /// behind. Counted in the latencies above (they run from the scheduled
    /// time), so a large lag is the generator's, not the target's.
    pub send_lag_p50_ms: f64,
    pub send_lag_p99_ms: f64,
    pub send_lag_max_ms: f64,
    /// `send_lag_p99_ms` exceeded [`crate::BEHIND_LAG_P99_MS`]: the
    /// generator did not offer the schedule it reports, and the figures
    /// above describe it as much as the target.
    pub generator_behind: bool,
}

/// The parts of a report that are not measured.
pub struct RunInfo {
    pub target: String,
    pub protocol: &'static str,
    pub method: String,
    pub seed: u64,
    pub duration_s: f64,
}

/// What the run measured, merged over its sender threads.
pub struct Measured<'a> {
    pub scheduled: u64,
    pub not_sent: u64,
    pub tally: &'a Tally,
    pub send_lag_us: &'a Histogram<u64>,
    pub wall_s: f64,
    pub threads: usize,
}

impl Report {
    pub fn new(info: RunInfo, m: Measured<'_>) -> Report {
        let Measured {
            scheduled,
            not_sent,
            tally,
            send_lag_us,
            wall_s,
            threads,
        } = m;
        let sent = scheduled - not_sent.min(scheduled);
        let ms = |q: f64| tally.latency_us.value_at_quantile(q) as f64 / 1_000.0;
        let lag_ms = |q: f64| send_lag_us.value_at_quantile(q) as f64 / 1_000.0;
        let send_lag_p99_ms = lag_ms(0.99);
        let per_sec = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        Report {
            scheduled,
            sent,
            not_sent,
            ok: tally.ok,
            overloaded: tally.overloaded,
            deadline_exceeded: tally.deadline_exceeded,
            outcome_unknown: tally.outcome_unknown,
            other_errors: tally.other_errors,
            unfinished: sent.saturating_sub(tally.completed()),
            errors: tally.errors.clone(),
            offered_rate: per_sec(scheduled, info.duration_s),
            achieved_rate: per_sec(tally.ok, wall_s),
            wall_s,
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: tally.latency_us.max() as f64 / 1_000.0,
            mean_ms: tally.latency_us.mean() / 1_000.0,
            threads,
            send_lag_p50_ms: lag_ms(0.5),
            send_lag_p99_ms,
            send_lag_max_ms: send_lag_us.max() as f64 / 1_000.0,
            generator_behind: send_lag_p99_ms > crate::BEHIND_LAG_P99_MS,
            target: info.target,
            protocol: info.protocol,
            method: info.method,
            seed: info.seed,
            duration_s: info.duration_s,
        }
    }

    /// A human-readable summary.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{} {} on {} for {:.1} s (seed {})",
            self.protocol, self.method, self.target, self.duration_s, self.seed
        );
        let rows: [(&str, u64); 9] = [
            ("scheduled", self.scheduled),
            ("sent", self.sent),
            ("not sent (outstanding bound)", self.not_sent),
            ("ok", self.ok),
            ("overloaded", self.overloaded),
            ("deadline exceeded", self.deadline_exceeded),
            ("outcome unknown", self.outcome_unknown),
            ("other errors", self.other_errors),
            ("unfinished", self.unfinished),
        ];
        for (name, n) in rows {
            let _ = writeln!(t, "  {name:<30} {n:>10}");
        }
        for (label, n) in &self.errors {
            let _ = writeln!(t, "    {label:<28} {n:>10}");
        }
        let _ = writeln!(
            t,
            "  offered {:.0}/s, achieved (ok) {:.0}/s",
            self.offered_rate, self.achieved_rate
        );
        let _ = writeln!(
            t,
            "  latency of ok calls (ms): p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.mean_ms
        );
        let _ = writeln!(
            t,
            "  send lag (ms, {} sender thread{}): p50 {:.3}  p99 {:.3}  max {:.3}",
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.send_lag_p50_ms,
            self.send_lag_p99_ms,
            self.send_lag_max_ms
        );
        if self.generator_behind {
            let _ = write!(
                t,
                "  the generator sent late (send lag p99 {:.3} ms, over {} ms): the latencies above\n  \
                 run from each request's scheduled time and include this lag, so they overstate\n  \
                 the target's. A lag that stays at a lower --rate is the generator waiting for a\n  \
                 CPU (a busy machine: free or pin a core); one that grows with --rate is a\n  \
                 saturated sender thread: add --threads (with cores for them) or lower --rate.\n",
                self.send_lag_p99_ms,
                crate::BEHIND_LAG_P99_MS
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_with_lag_us(lag_us: u64) -> Report {
        let mut tally = Tally::default();
        tally.record(Outcome::Ok, 300);
        let mut lag = micros_histogram();
        lag.saturating_record(lag_us);
        let info = RunInfo {
            target: "127.0.0.1:1".into(),
            protocol: "rpc",
            method: "Demo.echo".into(),
            seed: 1,
            duration_s: 1.0,
        };
        Report::new(
            info,
            Measured {
                scheduled: 1,
                not_sent: 0,
                tally: &tally,
                send_lag_us: &lag,
                wall_s: 1.0,
                threads: 1,
            },
        )
    }

    /// The note names the measured lag, says the latencies include it, and
    /// tells the two causes apart by what the user can try.
    #[test]
    fn late_generator_note_states_its_lag_and_what_to_do() {
        let late = report_with_lag_us(5_000);
        assert!(late.generator_behind);
        let t = late.table();
        assert!((late.send_lag_p99_ms - 5.0).abs() < 0.01);
        let stated = format!("send lag p99 {:.3} ms", late.send_lag_p99_ms);
        assert!(t.contains(&stated), "{t}");
        assert!(t.contains("include this lag"), "{t}");
        assert!(t.contains("--threads") && t.contains("lower --rate"), "{t}");

        let on_time = report_with_lag_us(200);
        assert!(!on_time.generator_behind);
        assert!(!on_time.table().contains("sent late"));
    }
}
