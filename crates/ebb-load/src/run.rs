//! `ebb load`'s run: the arrival schedule split over sender threads, each
//! driving its share through the open-loop engine ([`crate::engine`]) on a
//! current-thread runtime of its own with connections of its own; every
//! end tallied per thread, then a bounded wait for the stragglers, and one
//! report merged from all threads.
//!
//! The threads share nothing on the way of a request but the progress
//! counters: each generates its own share of the schedule
//! ([`Arrivals::share`]), so together they offer exactly the requested
//! process from one common start instant, taken once every thread has
//! connected.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ebb_core::Nanos;
use ebb_rpc::service::BoxFuture;
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, oneshot, watch};

use crate::arrivals::{ArrivalSpec, Arrivals};
use crate::engine::{self, Observer};
use crate::report::{Measured, Report, RunInfo, Tally, micros_histogram};
use crate::{LoadError, Outcome, Target};

/// Past the last arrival, how long the run waits for the stragglers beyond
/// the deadline before it reports them as `unfinished`.
pub const DRAIN_GRACE_MS: u64 = 2_000;
/// Default bound on requests sent and not yet ended.
pub const DEFAULT_MAX_OUTSTANDING: usize = 10_000;
/// The most sender threads a run may have.
pub const MAX_THREADS: usize = 64;
/// A run whose send lag at p99 exceeds this, in ms, is reported as the
/// generator having fallen behind (`generator_behind`): its timer's own
/// slack is 0.05 ms, a wake-up on a loaded machine a few tenths.
pub const BEHIND_LAG_P99_MS: f64 = 1.0;

/// One run's parameters (the target is connected per thread).
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub arrivals: ArrivalSpec,
    pub duration: Nanos,
    pub deadline: Nanos,
    pub seed: u64,
    /// Requests sent and not ended, over all threads (each thread gets its
    /// part); an arrival finding its thread's part reached is not sent and
    /// is counted as `not_sent`.
    pub max_outstanding: usize,
    /// Sender threads, 1 to [`MAX_THREADS`].
    pub threads: usize,
    /// Connections over all threads, at least one per thread.
    pub connections: usize,
}

impl LoadConfig {
    /// Thread `index`'s part of `total`: the even part, the remainder to
    /// the first threads.
    fn part(&self, total: usize, index: usize) -> usize {
        let n = self.threads.max(1);
        (total / n + usize::from(index < total % n)).max(1)
    }
}

/// How a sender thread gets its target: called on that thread, inside its
/// runtime (which then hosts the target's connections), with the number
/// of connections it is to open.
pub type Connect =
    Arc<dyn Fn(usize) -> BoxFuture<'static, Result<Arc<dyn Target>, LoadError>> + Send + Sync>;

/// Counters a caller can watch while the run goes (for a progress bar),
/// summed over the sender threads.
#[derive(Debug, Default)]
pub struct Progress {
    pub scheduled: AtomicU64,
    pub sent: AtomicU64,
    pub not_sent: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub outstanding: AtomicU64,
}

/// One thread's observer: its tally and its last end (under one lock,
/// taken once per ended request, by that thread only), and the shared
/// progress counters.
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

/// What one sender thread hands back.
struct ThreadReport {
    scheduled: u64,
    not_sent: u64,
    stopped: bool,
    send_lag_us: Histogram<u64>,
    tally: Tally,
    /// Offsets from the run's start: the last end, and when the thread
    /// stopped sending.
    last_end: Option<Nanos>,
    sent_all: Nanos,
    /// Connections the thread opened at its start.
    connections: usize,
    /// Connection attempts after the start (its target's reconnects).
    reconnects: u64,
}

/// The start signal: every thread connected, go at this instant; or one
/// could not connect, and none sends.
#[derive(Clone, Copy, Debug)]
enum Go {
    Wait,
    At(Instant),
    Abort,
}

/// Runs the load and reports. Must be called inside a tokio runtime
/// (which only waits; the requests run on the sender threads).
pub async fn run(
    connect: Connect,
    config: &LoadConfig,
    info: RunInfo,
    progress: Arc<Progress>,
) -> Result<Report, LoadError> {
    run_until(connect, config, info, progress, std::future::pending()).await
}

/// [`run`], sending nothing more once `stop` resolves (a user's Ctrl-C):
/// the requests already sent still end or reach their deadline, and the
/// report covers the time actually sent for, so its offered rate stays
/// true.
pub async fn run_until(
    connect: Connect,
    config: &LoadConfig,
    mut info: RunInfo,
    progress: Arc<Progress>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Report, LoadError> {
    let threads = config.threads.clamp(1, MAX_THREADS);
    let (ready_tx, mut ready_rx) = mpsc::channel::<Result<(), LoadError>>(threads);
    let (go_tx, go_rx) = watch::channel(Go::Wait);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut reports = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        let (report_tx, report_rx) = oneshot::channel();
        reports.push(report_rx);
        let sender = Sender {
            index,
            connect: Arc::clone(&connect),
            config: config.clone(),
            progress: Arc::clone(&progress),
            ready: ready_tx.clone(),
            go: go_rx.clone(),
            stop: stop_rx.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("ebb-load-{index}"))
            .spawn(move || {
                if let Some(report) = sender.run() {
                    let _ = report_tx.send(report);
                }
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                let _ = go_tx.send(Go::Abort);
                join(handles);
                return Err(LoadError::Thread {
                    index,
                    why: format!("cannot start it: {e}"),
                });
            }
        }
    }
    drop(ready_tx);
    // Every thread connects (or fails to) before any sends.
    for _ in 0..threads {
        let failed = match ready_rx.recv().await {
            Some(Ok(())) => continue,
            Some(Err(e)) => e,
            None => LoadError::Thread {
                index: 0,
                why: "ended before connecting".into(),
            },
        };
        let _ = go_tx.send(Go::Abort);
        join(handles);
        return Err(failed);
    }
    let start = Instant::now();
    let _ = go_tx.send(Go::At(start));
    tokio::pin!(stop);
    let mut stopping = false;
    let mut done = Vec::with_capacity(threads);
    for (index, mut rx) in reports.into_iter().enumerate() {
        let report = loop {
            tokio::select! {
                r = &mut rx => break r,
                () = &mut stop, if !stopping => {
                    stopping = true;
                    let _ = stop_tx.send(true);
                }
            }
        };
        match report {
            Ok(r) => done.push(r),
            Err(_) => {
                let _ = stop_tx.send(true);
                join(handles);
                return Err(LoadError::Thread {
                    index,
                    why: "ended without its report (it panicked)".into(),
                });
            }
        }
    }
    join(handles);
    Ok(merge(&mut info, done, threads))
}

fn join(handles: Vec<std::thread::JoinHandle<()>>) {
    for h in handles {
        let _ = h.join();
    }
}

/// One report from the threads' own: counts and histograms summed, the
/// run's end the latest of theirs.
fn merge(info: &mut RunInfo, done: Vec<ThreadReport>, threads: usize) -> Report {
    let mut tally = Tally::default();
    let mut send_lag_us = micros_histogram();
    let (mut scheduled, mut not_sent, mut stopped, mut connections) = (0, 0, false, 0);
    let mut reconnects = 0;
    let (mut sent_all, mut end) = (Nanos::ZERO, Nanos::ZERO);
    for r in &done {
        tally.merge(&r.tally);
        // Same bounds on both sides, so nothing is out of range.
        let _ = send_lag_us.add(&r.send_lag_us);
        scheduled += r.scheduled;
        not_sent += r.not_sent;
        stopped |= r.stopped;
        connections += r.connections;
        reconnects += r.reconnects;
        sent_all = sent_all.max(r.sent_all);
        end = end.max(r.sent_all).max(r.last_end.unwrap_or(Nanos::ZERO));
    }
    if stopped {
        info.duration_s = sent_all.as_secs_f64();
    }
    let info = RunInfo {
        target: std::mem::take(&mut info.target),
        protocol: info.protocol,
        method: std::mem::take(&mut info.method),
        seed: info.seed,
        duration_s: info.duration_s,
        requested_rate: info.requested_rate,
    };
    Report::new(
        info,
        Measured {
            scheduled,
            not_sent,
            tally: &tally,
            send_lag_us: &send_lag_us,
            wall_s: end.as_secs_f64(),
            threads,
            connections,
            reconnects,
        },
    )
}

/// One sender thread's part of the run.
struct Sender {
    index: usize,
    connect: Connect,
    config: LoadConfig,
    progress: Arc<Progress>,
    ready: mpsc::Sender<Result<(), LoadError>>,
    go: watch::Receiver<Go>,
    stop: watch::Receiver<bool>,
}

impl Sender {
    /// Connects, waits for the common start, drives this thread's share of
    /// the schedule and waits for its requests; `None` if the run was
    /// called off before it started.
    fn run(self) -> Option<ThreadReport> {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let why = format!("cannot start its runtime: {e}");
                let index = self.index;
                let _ = self
                    .ready
                    .blocking_send(Err(LoadError::Thread { index, why }));
                return None;
            }
        };
        rt.block_on(self.drive())
    }

    async fn drive(mut self) -> Option<ThreadReport> {
        let cfg = &self.config;
        let (index, of) = (self.index, cfg.threads.clamp(1, MAX_THREADS));
        let connections = cfg.part(cfg.connections, index);
        let target = match (self.connect)(connections).await {
            Ok(t) => t,
            Err(e) => {
                let _ = self.ready.send(Err(e)).await;
                return None;
            }
        };
        let _ = self.ready.send(Ok(())).await;
        // Kept to read its reconnects once its calls have ended.
        let counted = Arc::clone(&target);
        let start = match self
            .go
            .wait_for(|g| !matches!(g, Go::Wait))
            .await
            .map(|g| *g)
        {
            Ok(Go::At(start)) => start,
            _ => return None,
        };
        let observer = Arc::new(Tallied {
            ends: Mutex::new(Ends::default()),
            progress: Arc::clone(&self.progress),
        });
        let schedule = Arrivals::share(&cfg.arrivals, cfg.duration, cfg.seed, index, of);
        let mut stop = self.stop.clone();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let driven = engine::drive(
            target,
            schedule,
            start,
            cfg.part(cfg.max_outstanding, index),
            observer.clone(),
            stopped,
        )
        .await;
        let sent_all = Instant::now();
        let give_up =
            sent_all + Duration::from(cfg.deadline) + Duration::from_millis(DRAIN_GRACE_MS);
        driven.in_flight.drained(Some(give_up)).await;
        let ends =
            std::mem::take(&mut *observer.ends.lock().unwrap_or_else(PoisonError::into_inner));
        Some(ThreadReport {
            scheduled: driven.scheduled,
            not_sent: driven.not_sent,
            stopped: driven.stopped,
            send_lag_us: driven.send_lag_us,
            tally: ends.tally,
            last_end: ends.last,
            sent_all: sent_all.saturating_duration_since(start).into(),
            connections,
            reconnects: counted.reconnects(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(threads: usize, connections: usize, max_outstanding: usize) -> LoadConfig {
        LoadConfig {
            arrivals: ArrivalSpec::Poisson { rate_per_sec: 1.0 },
            duration: Nanos::from_secs(1),
            deadline: Nanos::from_secs(1),
            seed: 1,
            max_outstanding,
            threads,
            connections,
        }
    }

    #[test]
    fn connections_and_the_outstanding_bound_are_split_over_the_threads() {
        let c = config(3, 8, 10_000);
        let conns: Vec<usize> = (0..3).map(|i| c.part(c.connections, i)).collect();
        assert_eq!(conns, vec![3, 3, 2]);
        let bound: Vec<usize> = (0..3).map(|i| c.part(c.max_outstanding, i)).collect();
        assert_eq!(bound.iter().sum::<usize>(), 10_000);
        // Every thread gets at least one, even from a smaller total.
        let c = config(4, 2, 3);
        assert!((0..4).all(|i| c.part(c.connections, i) >= 1));
    }
}
