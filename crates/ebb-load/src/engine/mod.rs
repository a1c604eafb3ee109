//! The open-loop engine, the one both `ebb load` ([`crate::run`]) and the
//! demo's trace replay drive. A pacer task walks the schedule and starts
//! each request at its due time, whatever happened to the ones before it;
//! each request's end is reported with its due time, so its latency runs
//! from when it should have been sent and a stall anywhere (server,
//! network, this process) shows in the figures rather than delaying later
//! sends (no coordinated omission).
//!
//! The pacer runs on the runtime that runs the requests and sleeps on a
//! `timerfd` ([`crate::timer`]) the runtime's event loop watches: each
//! wake-up starts every arrival then due, as a batch. A target with a
//! [`Starter`] starts each call in place (no task, no future) and is told
//! when the batch ends, so the batch's requests on one connection leave in
//! one write; any other target's calls run as tasks. When the runtime is
//! busy with replies, the due arrivals are started as soon as it looks up
//! from them, and the delay counts in their latency.
//!
//! How late each request left (its send lag: when the batch holding it
//! was written, less its due time) is kept in a histogram, so a run can
//! tell when the generator itself could not keep the schedule.
//!
//! The engine keeps no figures of its own besides that: an [`Observer`]
//! hears of every request (sent, not sent, ended) and keeps what its caller
//! reports.

mod in_flight;
mod pacer;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use ebb_core::Nanos;
use hdrhistogram::Histogram;
use tokio::sync::oneshot;

use crate::timer::Timer;
use crate::{Ends, Outcome, Target};
use in_flight::EngineEnds;
use pacer::{Counts, Pacer};

pub use in_flight::InFlight;
pub use pacer::MAX_BATCH_CALLS;

/// Hears of every request the engine is due to send. Times are offsets
/// from the run's start; a request is named by its due offset.
pub trait Observer: Send + Sync + 'static {
    /// The request due at `due` was sent.
    fn sent(&self, due: Nanos);
    /// The request due at `due` was not sent: the in-flight bound was
    /// reached. It never reaches the target.
    fn not_sent(&self, due: Nanos);
    /// The request due at `due` ended at `at` (so its latency is
    /// `at - due`).
    fn ended(&self, due: Nanos, at: Nanos, outcome: Outcome);
}

/// What the engine did with the schedule.
#[derive(Debug)]
pub struct Driven {
    /// Requests that came due (sent or not).
    pub scheduled: u64,
    pub sent: u64,
    /// Requests not sent because [`drive`]'s in-flight bound was reached.
    pub not_sent: u64,
    /// The schedule was cut short by the stop signal.
    pub stopped: bool,
    /// How late each sent request left, µs: from its due time to when the
    /// batch holding it was written (for a target without a [`Starter`],
    /// to when its task was started).
    pub send_lag_us: Histogram<u64>,
    /// The requests still running; each ends at its target's deadline.
    pub in_flight: Arc<InFlight>,
    /// The target, kept open while its calls run: calls started through a
    /// [`Starter`] hold no reference to it, and dropping its connections
    /// would end them all unanswered.
    _keep_open: Arc<dyn Target>,
}

impl std::fmt::Debug for dyn Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Target")
    }
}

/// Sends each request of `schedule` (offsets from `start`, non-decreasing)
/// to `target` at its due time, with at most `max_in_flight` running, until
/// the schedule ends or `stop` resolves. Returns once nothing more will be
/// sent; the requests still running keep going (see
/// [`Driven::in_flight`]). Must be called inside a tokio runtime with I/O
/// and time enabled, which runs the pacer and the requests.
pub async fn drive(
    target: Arc<dyn Target>,
    schedule: impl Iterator<Item = Nanos> + Send + 'static,
    start: Instant,
    max_in_flight: usize,
    observer: Arc<dyn Observer>,
    stop: impl Future<Output = ()>,
) -> Driven {
    drive_with(
        Timer::new(),
        target,
        schedule,
        start,
        max_in_flight,
        observer,
        stop,
    )
    .await
}

async fn drive_with(
    timer: Timer,
    target: Arc<dyn Target>,
    schedule: impl Iterator<Item = Nanos> + Send + 'static,
    start: Instant,
    max_in_flight: usize,
    observer: Arc<dyn Observer>,
    stop: impl Future<Output = ()>,
) -> Driven {
    let in_flight = Arc::new(InFlight::default());
    let ends = Arc::new(EngineEnds {
        observer: Arc::clone(&observer),
        in_flight: Arc::clone(&in_flight),
        start,
    });
    let starter = Arc::clone(&target).starter(Arc::clone(&ends) as Arc<dyn Ends>);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let pacer = Pacer {
        target: Arc::clone(&target),
        starter,
        ends,
        observer,
        in_flight: Arc::clone(&in_flight),
        start,
        max_in_flight: max_in_flight as u64,
        counts: Counts::default(),
        batch: Vec::with_capacity(MAX_BATCH_CALLS),
    };
    // A task of its own, so it runs on a worker thread beside the
    // requests, wherever the caller polls this future from.
    let pacing = tokio::spawn(pacer.run(timer, schedule.peekable(), stop_rx));
    tokio::pin!(pacing);
    let counts = tokio::select! {
        c = &mut pacing => c,
        () = stop => {
            let _ = stop_tx.send(());
            pacing.await
        }
    }
    // The pacer always returns its counts; a default is for a panic in
    // an observer, which has then reported nothing more.
    .unwrap_or_default();
    Driven {
        scheduled: counts.scheduled,
        sent: counts.sent,
        not_sent: counts.not_sent,
        stopped: counts.stopped,
        send_lag_us: counts.send_lag_us,
        in_flight,
        _keep_open: target,
    }
}

#[cfg(test)]
mod tests;
