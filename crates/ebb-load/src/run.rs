//! The open-loop driver. A dedicated thread walks the schedule and starts
//! each request at its due time on the runtime, whatever happened to the
//! ones before it; each request's latency is measured from its due time, so
//! a stall anywhere (server, network, this process) shows in the figures
//! rather than delaying later sends (no coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ebb_core::Nanos;
use tokio::sync::Notify;

use crate::arrivals::{ArrivalSpec, Arrivals};
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

struct Shared {
    tally: Mutex<Tally>,
    progress: Arc<Progress>,
    last_end: Mutex<Option<Instant>>,
    /// Wakes the waiter when `outstanding` reaches zero.
    idle: Notify,
}

impl Shared {
    fn finish(&self, outcome: Outcome, due: Instant) {
        let now = Instant::now();
        let latency_us = now.saturating_duration_since(due).as_micros() as u64;
        let p = &self.progress;
        if outcome == Outcome::Ok {
            p.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            p.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(outcome, latency_us);
        *self.last_end.lock().unwrap_or_else(PoisonError::into_inner) = Some(now);
        if p.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// Runs the load against `target` and reports. Must be called inside a
/// tokio runtime, which runs the requests; the schedule runs on its own
/// thread so its timing does not depend on how busy the runtime is.
pub async fn run(
    target: Arc<dyn Target>,
    config: &LoadConfig,
    info: RunInfo,
    progress: Arc<Progress>,
) -> Report {
    let shared = Arc::new(Shared {
        tally: Mutex::new(Tally::default()),
        progress: Arc::clone(&progress),
        last_end: Mutex::new(None),
        idle: Notify::new(),
    });
    let handle = tokio::runtime::Handle::current();
    let start = Instant::now();
    let schedule = Arrivals::new(&config.arrivals, config.duration, config.seed);
    let max_outstanding = config.max_outstanding as u64;
    let sched_shared = Arc::clone(&shared);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let p = &sched_shared.progress;
        for offset in schedule {
            let due = start + Duration::from(offset);
            let wait = due.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            p.scheduled.fetch_add(1, Ordering::Relaxed);
            if p.outstanding.load(Ordering::Acquire) >= max_outstanding {
                p.not_sent.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            p.outstanding.fetch_add(1, Ordering::AcqRel);
            p.sent.fetch_add(1, Ordering::Relaxed);
            let target = Arc::clone(&target);
            let shared = Arc::clone(&sched_shared);
            handle.spawn(async move {
                let outcome = target.call().await;
                shared.finish(outcome, due);
            });
        }
        let _ = done_tx.send(());
    });
    let _ = done_rx.await;
    let sent_all = Instant::now();
    let give_up =
        sent_all + Duration::from(config.deadline) + Duration::from_millis(DRAIN_GRACE_MS);
    loop {
        let idle = shared.idle.notified();
        if progress.outstanding.load(Ordering::Acquire) == 0 {
            break;
        }
        if tokio::time::timeout_at(give_up.into(), idle).await.is_err() {
            break;
        }
    }
    let end = shared
        .last_end
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .unwrap_or(sent_all)
        .max(sent_all);
    let wall_s = end.saturating_duration_since(start).as_secs_f64();
    let tally = shared.tally.lock().unwrap_or_else(PoisonError::into_inner);
    Report::new(
        info,
        progress.scheduled.load(Ordering::Relaxed),
        progress.not_sent.load(Ordering::Relaxed),
        &tally,
        wall_s,
    )
}
