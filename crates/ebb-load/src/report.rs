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
/// Longest wait a refusal's retry-after is recorded at, ms (a day); longer
/// ones count as this.
const MAX_RETRY_AFTER_MS: u64 = 86_400_000;

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
    /// The waits `overloaded` answers asked for before a retry, ms, of
    /// those that named one (exact to 2047 ms, within 0.1 % above).
    pub retry_after_ms: Histogram<u64>,
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
            retry_after_ms: Histogram::new_with_bounds(1, MAX_RETRY_AFTER_MS, SIGNIFICANT_DIGITS)
                .expect("constant bounds are valid: 1 <= low, high >= 2 * low, 0..=5 digits"),
        }
    }
}

impl Tally {
    pub fn record(&mut self, outcome: Outcome, latency_us: u64) {
        match &outcome {
            Outcome::Ok => {
                self.ok += 1;
                self.latency_us.saturating_record(latency_us.max(1));
                return;
            }
            Outcome::Overloaded { retry_after } => {
                self.overloaded += 1;
                if let Some(wait) = retry_after {
                    self.retry_after_ms.saturating_record(wait.as_millis());
                }
            }
            Outcome::DeadlineExceeded => self.deadline_exceeded += 1,
            Outcome::OutcomeUnknown => self.outcome_unknown += 1,
            Outcome::Other(_) => self.other_errors += 1,
        }
        let label = outcome.label().unwrap_or_default();
        count_label(&mut self.errors, label, 1);
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
            count_label(&mut self.errors, label, *n);
        }
        // Same bounds on both sides, so nothing is out of range.
        let _ = self.latency_us.add(&other.latency_us);
        let _ = self.retry_after_ms.add(&other.retry_after_ms);
    }

    pub fn completed(&self) -> u64 {
        self.ok
            + self.overloaded
            + self.deadline_exceeded
            + self.outcome_unknown
            + self.other_errors
    }
}

/// Adds `n` under `label`, or under `more` once [`MAX_ERROR_LABELS`]
/// distinct labels are kept, so one that names something variable cannot
/// grow the map without bound.
pub fn count_label(counts: &mut BTreeMap<String, u64>, label: &str, n: u64) {
    if let Some(c) = counts.get_mut(label) {
        *c += n;
    } else if counts.len() < MAX_ERROR_LABELS {
        counts.insert(label.to_owned(), n);
    } else {
        *counts.entry("more".to_owned()).or_default() += n;
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
    /// `scheduled / duration_s`: the rate of the arrivals the schedule
    /// drew, which for a Poisson process is a random count around
    /// `requested_rate`, not a shortfall of the generator's (that is
    /// `not_sent`, and the send lag).
    pub offered_rate: f64,
    /// The mean rate asked for (`--rate`); `None` (JSON `null`) for a
    /// trace, whose arrivals are its own.
    pub requested_rate: Option<f64>,
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
    /// Connections opened at the start, over all sender threads.
    pub connections: usize,
    /// Connection attempts after the start, successful or not, over all
    /// sender threads: connections closed by the target (an HTTP
    /// `Connection: close`), broken, or dropped by the generator with an
    /// unanswered request, and opened again.
    pub reconnects: u64,
    /// How late the generator sent requests (from each one's scheduled
    /// time to when it was written), ms: how far the generator itself fell
    /// behind. Counted in the latencies above (they run from the scheduled
    /// time), so a large lag is the generator's, not the target's.
    pub send_lag_p50_ms: f64,
    pub send_lag_p99_ms: f64,
    pub send_lag_max_ms: f64,
    /// `overloaded` answers that named a wait before a retry (ebb's
    /// `retry_after_ms`, a `Retry-After` of seconds, an RPC refusal's);
    /// the median and longest of those waits, ms (`null` when none did).
    /// Reported only: the schedule never slows down for them.
    pub retry_after_named: u64,
    pub retry_after_p50_ms: Option<f64>,
    pub retry_after_max_ms: Option<f64>,
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
    /// The Poisson rate asked for, per second; `None` for a trace.
    pub requested_rate: Option<f64>,
}

/// What the run measured, merged over its sender threads.
pub struct Measured<'a> {
    pub scheduled: u64,
    pub not_sent: u64,
    pub tally: &'a Tally,
    pub send_lag_us: &'a Histogram<u64>,
    pub wall_s: f64,
    pub threads: usize,
    /// Connections opened at the start, summed over the threads.
    pub connections: usize,
    /// Connection attempts after the start, summed over the threads.
    pub reconnects: u64,
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
            connections,
            reconnects,
        } = m;
        let sent = scheduled - not_sent.min(scheduled);
        let ms = |q: f64| tally.latency_us.value_at_quantile(q) as f64 / 1_000.0;
        let lag_ms = |q: f64| send_lag_us.value_at_quantile(q) as f64 / 1_000.0;
        let send_lag_p99_ms = lag_ms(0.99);
        let per_sec = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let waits = &tally.retry_after_ms;
        let named = waits.len();
        let wait_ms = |v: u64| (named > 0).then_some(v as f64);
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
            requested_rate: info.requested_rate,
            achieved_rate: per_sec(tally.ok, wall_s),
            wall_s,
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: tally.latency_us.max() as f64 / 1_000.0,
            mean_ms: tally.latency_us.mean() / 1_000.0,
            threads,
            connections,
            reconnects,
            send_lag_p50_ms: lag_ms(0.5),
            send_lag_p99_ms,
            send_lag_max_ms: send_lag_us.max() as f64 / 1_000.0,
            retry_after_named: named,
            retry_after_p50_ms: wait_ms(waits.value_at_quantile(0.5)),
            retry_after_max_ms: wait_ms(waits.max()),
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
        let drawn = match self.requested_rate {
            Some(rate) => format!("a Poisson draw at the requested {rate:.0}/s"),
            None => "the trace's".to_owned(),
        };
        let _ = writeln!(
            t,
            "  scheduled arrivals {:.0}/s ({drawn}), achieved (ok) {:.0}/s",
            self.offered_rate, self.achieved_rate
        );
        let _ = writeln!(
            t,
            "  latency of ok calls (ms): p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.mean_ms
        );
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let _ = write!(
            t,
            "  {} connection{} at the start, over {} sender thread{}",
            self.connections,
            plural(self.connections),
            self.threads,
            plural(self.threads),
        );
        let _ = match self.reconnects {
            0 => writeln!(t, "; no reconnects"),
            n => writeln!(
                t,
                "; {n} reconnect{} (a connection closed by the target, broken, or dropped with an unanswered request)",
                plural(n as usize)
            ),
        };
        if let (Some(p50), Some(max)) = (self.retry_after_p50_ms, self.retry_after_max_ms) {
            let _ = writeln!(
                t,
                "  retry-after asked by {} of {} overloaded answers (ms): median {p50:.0}  max {max:.0}\n  \
                 (reported only: the schedule does not slow down for it)",
                self.retry_after_named, self.overloaded
            );
        }
        let _ = writeln!(
            t,
            "  send lag (ms): p50 {:.3}  p99 {:.3}  max {:.3}",
            self.send_lag_p50_ms, self.send_lag_p99_ms, self.send_lag_max_ms
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

    /// A run of one second: `scheduled` arrivals, all answered, each sent
    /// `lag_us` late.
    fn report(
        scheduled: u64,
        lag_us: u64,
        requested_rate: Option<f64>,
        threads: usize,
        connections: usize,
    ) -> Report {
        let mut tally = Tally::default();
        let mut lag = micros_histogram();
        for _ in 0..scheduled {
            tally.record(Outcome::Ok, 300);
            lag.saturating_record(lag_us);
        }
        let info = RunInfo {
            target: "127.0.0.1:1".into(),
            protocol: "rpc",
            method: "Demo.echo".into(),
            seed: 1,
            duration_s: 1.0,
            requested_rate,
        };
        Report::new(
            info,
            Measured {
                scheduled,
                not_sent: 0,
                tally: &tally,
                send_lag_us: &lag,
                wall_s: 1.0,
                threads,
                connections,
                reconnects: 0,
            },
        )
    }

    fn report_with_lag_us(lag_us: u64) -> Report {
        report(1, lag_us, Some(1.0), 1, 1)
    }

    /// 491 arrivals drawn for a requested 500/s: the table calls them
    /// scheduled arrivals of the Poisson process next to the rate asked
    /// for, not "offered"; the JSON keeps `offered_rate` and adds
    /// `requested_rate` (null for a trace).
    #[test]
    fn the_drawn_arrival_rate_is_labelled_against_the_requested_rate() {
        let r = report(491, 200, Some(500.0), 1, 8);
        let t = r.table();
        assert!(
            t.contains("scheduled arrivals 491/s (a Poisson draw at the requested 500/s)"),
            "{t}"
        );
        assert!(!t.contains("offered"), "{t}");
        let json = serde_json::to_value(&r).expect("a report serializes");
        assert_eq!(json["offered_rate"], 491.0, "{json}");
        assert_eq!(json["requested_rate"], 500.0, "{json}");

        let trace = report(491, 200, None, 1, 8);
        assert!(
            trace
                .table()
                .contains("scheduled arrivals 491/s (the trace's)"),
            "{}",
            trace.table()
        );
        let json = serde_json::to_value(&trace).expect("a report serializes");
        assert!(json["requested_rate"].is_null(), "{json}");
    }

    /// The keys a caller already reads are all still there, beside the new
    /// ones.
    #[test]
    fn the_json_keeps_every_earlier_key() {
        let json =
            serde_json::to_value(report(10, 200, Some(10.0), 2, 8)).expect("a report serializes");
        for key in [
            "target",
            "protocol",
            "method",
            "seed",
            "scheduled",
            "sent",
            "not_sent",
            "ok",
            "overloaded",
            "deadline_exceeded",
            "outcome_unknown",
            "other_errors",
            "unfinished",
            "errors",
            "duration_s",
            "wall_s",
            "offered_rate",
            "achieved_rate",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
            "mean_ms",
            "threads",
            "send_lag_p50_ms",
            "send_lag_p99_ms",
            "send_lag_max_ms",
            "generator_behind",
            "requested_rate",
            "connections",
            "reconnects",
            "retry_after_named",
            "retry_after_p50_ms",
            "retry_after_max_ms",
        ] {
            assert!(json.get(key).is_some(), "{key} missing in {json}");
        }
    }

    /// With several sender threads the table says how many connections
    /// were opened at the start, over how many threads, and how often one
    /// was opened again.
    #[test]
    fn the_table_counts_the_connections_and_reconnects_over_all_threads() {
        let r = report(10, 200, Some(10.0), 3, 8);
        let t = r.table();
        assert!(
            t.contains("8 connections at the start, over 3 sender threads; no reconnects\n"),
            "{t}"
        );
        assert_eq!(r.connections, 8);
        let mut one = report(10, 200, Some(10.0), 1, 1);
        one.reconnects = 992;
        let t = one.table();
        assert!(
            t.contains("1 connection at the start, over 1 sender thread; 992 reconnects ("),
            "{t}"
        );
        let json = serde_json::to_value(&one).expect("a report serializes");
        assert_eq!(json["reconnects"], 992, "{json}");
        assert_eq!(json["connections"], 1, "{json}");
    }

    /// Overloaded answers that named a wait (over two sender threads'
    /// tallies) are summed up as the median and the longest asked, in the
    /// table and the JSON; one that named none is counted as overloaded and
    /// left out of them; a run without any reports `null` and no line.
    #[test]
    fn the_waits_overloaded_answers_asked_for_are_reported() {
        let wait = |ms| Outcome::Overloaded {
            retry_after: Some(ebb_core::Nanos::from_millis(ms)),
        };
        let mut one = Tally::default();
        one.record(wait(250), 0);
        one.record(wait(250), 0);
        one.record(Outcome::Overloaded { retry_after: None }, 0);
        let mut two = Tally::default();
        two.record(wait(2_000), 0);
        one.merge(&two);
        let mut lag = micros_histogram();
        lag.saturating_record(100);
        let info = RunInfo {
            target: "127.0.0.1:1".into(),
            protocol: "http",
            method: "Demo.echo".into(),
            seed: 1,
            duration_s: 1.0,
            requested_rate: Some(4.0),
        };
        let r = Report::new(
            info,
            Measured {
                scheduled: 4,
                not_sent: 0,
                tally: &one,
                send_lag_us: &lag,
                wall_s: 1.0,
                threads: 2,
                connections: 2,
                reconnects: 0,
            },
        );
        assert_eq!((r.overloaded, r.retry_after_named), (4, 3));
        assert_eq!(r.retry_after_p50_ms, Some(250.0));
        assert_eq!(r.retry_after_max_ms, Some(2_000.0));
        let t = r.table();
        assert!(
            t.contains("retry-after asked by 3 of 4 overloaded answers (ms): median 250  max 2000"),
            "{t}"
        );
        assert!(t.contains("does not slow down"), "{t}");
        let json = serde_json::to_value(&r).expect("a report serializes");
        assert_eq!(json["retry_after_max_ms"], 2_000.0, "{json}");

        let none = report(3, 200, Some(3.0), 1, 1);
        assert_eq!(none.retry_after_named, 0);
        assert!(!none.table().contains("retry-after"));
        let json = serde_json::to_value(&none).expect("a report serializes");
        assert!(json["retry_after_p50_ms"].is_null(), "{json}");
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
