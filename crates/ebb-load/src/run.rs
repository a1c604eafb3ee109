//! `ebb load`'s run: the arrival schedule through the open-loop engine
//! ([`crate::engine`]), every end tallied, then a bounded wait for the
//! stragglers and the report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ebb_core::Nanos;

use crate::arrivals::{ArrivalSpec, Arrivals};
use crate::engine::{self, Observer};
use crate::report::{Report, RunInfo, Tally};
use crate::{Outcome, Target};

/// Past the last arrival, how long the run waits for the stragglers beyond
/// the deadline before it reports them as `unfinished`.
pub const DRAIN_GRACE_MS: u64 = 2_000;
/// Default bound on requests sent and not yet ended.
pub const DEFAULT_MAX_OUTSTANDING: usize = 10_000;

/// One run's parameters (the target is passed separately).
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub arrivals: ArrivalSpec,
    pub duration: Nanos,
    pub deadline: Nanos,
    pub seed: u64,
    /// Requests sent and not ended; an arrival finding this many is not
    /// sent and is counted as `not_sent`.
    pub max_outstanding: usize,
}

/// Counters a caller can watch while the run goes (for a progress bar).
#[derive(Debug, Default)]
pub struct Progress {
    pub scheduled: AtomicU64,
    pub sent: AtomicU64,
    pub not_sent: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub outstanding: AtomicU64,
}

/// The run's observer: the tally and the last end (under one lock, taken
/// once per ended request), and the progress counters.
struct Tallied {
    ends: Mutex<Ends>,
    progress: Arc<Progress>,
}

#[derive(Default)]
struct Ends {
    tally: Tally,
    last: Option<Nanos>,
}

impl Observer for Tallied {
    fn sent(&self, _due: Nanos) {
        let p = &self.progress;
        p.scheduled.fetch_add(1, Ordering::Relaxed);
        p.sent.fetch_add(1, Ordering::Relaxed);
        p.outstanding.fetch_add(1, Ordering::AcqRel);
    }

    fn not_sent(&self, _due: Nanos) {
        let p = &self.progress;
        p.scheduled.fetch_add(1, Ordering::Relaxed);
        p.not_sent.fetch_add(1, Ordering::Relaxed);
    }

    fn ended(&self, due: Nanos, at: Nanos, outcome: Outcome) {
        let latency_us = at.saturating_sub(due).as_nanos() / 1_000;
        let p = &self.progress;
        if outcome == Outcome::Ok {
            p.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            p.failed.fetch_add(1, Ordering::Relaxed);
        }
        {
            let mut ends = self.ends.lock().unwrap_or_else(PoisonError::into_inner);
            ends.tally.record(outcome, latency_us);
            ends.last = Some(ends.last.map_or(at, |l| l.max(at)));
        }
        p.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs the load against `target` and reports. Must be called inside a
/// tokio runtime, which runs the requests.
pub async fn run(
    target: Arc<dyn Target>,
    config: &LoadConfig,
    info: RunInfo,
    progress: Arc<Progress>,
) -> Report {
    run_until(target, config, info, progress, std::future::pending()).await
}

/// [`run`], sending nothing more once `stop` resolves (a user's Ctrl-C):
/// the requests already sent still end or reach their deadline, and the
/// report covers the time actually sent for, so its offered rate stays
/// true.
pub async fn run_until(
    target: Arc<dyn Target>,
    config: &LoadConfig,
    mut info: RunInfo,
    progress: Arc<Progress>,
    stop: impl std::future::Future<Output = ()>,
) -> Report {
    let observer = Arc::new(Tallied {
        ends: Mutex::new(Ends::default()),
        progress: Arc::clone(&progress),
    });
    let start = Instant::now();
    let schedule = Arrivals::new(&config.arrivals, config.duration, config.seed);
    let driven = engine::drive(
        target,
        schedule,
        start,
        config.max_outstanding,
        observer.clone(),
        stop,
    )
    .await;
    let sent_all = Instant::now();
    if driven.stopped {
        info.duration_s = sent_all.saturating_duration_since(start).as_secs_f64();
    }
    let give_up =
        sent_all + Duration::from(config.deadline) + Duration::from_millis(DRAIN_GRACE_MS);
    driven.in_flight.drained(Some(give_up)).await;
    let ends = observer.ends.lock().unwrap_or_else(PoisonError::into_inner);
    let end = ends
        .last
        .map_or(sent_all, |at| start + Duration::from(at))
        .max(sent_all);
    let wall_s = end.saturating_duration_since(start).as_secs_f64();
    Report::new(
        info,
        progress.scheduled.load(Ordering::Relaxed),
        progress.not_sent.load(Ordering::Relaxed),
        &ends.tally,
        wall_s,
    )
}
