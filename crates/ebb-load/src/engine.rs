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

use std::future::Future;
use std::iter::Peekable;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ebb_core::Nanos;
use hdrhistogram::Histogram;
use tokio::sync::{Notify, oneshot};

use crate::report::micros_histogram;
use crate::timer::Timer;
use crate::{Ends, Outcome, Starter, Target};

/// Calls started before the pacer flushes them: a pacer far behind its
/// schedule writes what it has every this many calls rather than holding
/// an unbounded batch.
pub const MAX_BATCH_CALLS: usize = 256;

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

/// Requests sent and not yet ended, and a wake-up when none is left.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicU64,
    idle: Notify,
}

impl InFlight {
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    fn begin(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    fn end(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Waits until no request is in flight, or until `give_up` (if any)
    /// passes; says whether none is left.
    pub async fn drained(&self, give_up: Option<Instant>) -> bool {
        loop {
            // Registered before the check: an end between the check and
            // the wait still wakes it.
            let idle = self.idle.notified();
            if self.count() == 0 {
                return true;
            }
            match give_up {
                Some(t) => {
                    if tokio::time::timeout_at(t.into(), idle).await.is_err() {
                        return self.count() == 0;
                    }
                }
                None => idle.await,
            }
        }
    }
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

#[derive(Debug)]
struct Counts {
    scheduled: u64,
    sent: u64,
    not_sent: u64,
    stopped: bool,
    send_lag_us: Histogram<u64>,
}

impl Default for Counts {
    fn default() -> Counts {
        Counts {
            scheduled: 0,
            sent: 0,
            not_sent: 0,
            stopped: false,
            send_lag_us: micros_histogram(),
        }
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

/// Where every request's end goes, however it was started: the observer
/// hears it with the request's due offset (the token), and the in-flight
/// count drops.
struct EngineEnds {
    observer: Arc<dyn Observer>,
    in_flight: Arc<InFlight>,
    start: Instant,
}

impl Ends for EngineEnds {
    fn ended(&self, token: u64, outcome: Outcome) {
        let at: Nanos = self.start.elapsed().into();
        self.observer.ended(Nanos(token), at, outcome);
        self.in_flight.end();
    }
}

struct Pacer {
    target: Arc<dyn Target>,
    starter: Option<Box<dyn Starter>>,
    ends: Arc<EngineEnds>,
    observer: Arc<dyn Observer>,
    in_flight: Arc<InFlight>,
    start: Instant,
    max_in_flight: u64,
    counts: Counts,
    /// The due offsets of the requests started and not yet flushed; at
    /// most [`MAX_BATCH_CALLS`].
    batch: Vec<Nanos>,
}

impl Pacer {
    async fn run<S: Iterator<Item = Nanos>>(
        mut self,
        mut timer: Timer,
        mut schedule: Peekable<S>,
        mut stop: oneshot::Receiver<()>,
    ) -> Counts {
        loop {
            // Every arrival due by now, as one batch.
            let now = Instant::now();
            while let Some(offset) = schedule.next_if(|o| self.due(*o) <= now) {
                self.start_one(offset);
                if self.batch.len() >= MAX_BATCH_CALLS {
                    self.flush();
                }
            }
            self.flush();
            let Some(next) = schedule.peek() else {
                break;
            };
            let due = self.due(*next);
            tokio::select! {
                biased;
                // A stop (or its sender gone: the caller gave up) ends the
                // schedule at once.
                _ = &mut stop => {
                    self.counts.stopped = true;
                    break;
                }
                () = timer.until(due) => {}
            }
        }
        self.counts
    }

    fn due(&self, offset: Nanos) -> Instant {
        self.start + Duration::from(offset)
    }

    fn start_one(&mut self, offset: Nanos) {
        self.counts.scheduled += 1;
        if self.in_flight.count() >= self.max_in_flight {
            self.counts.not_sent += 1;
            self.observer.not_sent(offset);
            return;
        }
        self.counts.sent += 1;
        self.in_flight.begin();
        self.observer.sent(offset);
        self.batch.push(offset);
        if let Some(starter) = self.starter.as_mut() {
            starter.start(offset.as_nanos());
            return;
        }
        let target = Arc::clone(&self.target);
        let ends = Arc::clone(&self.ends);
        tokio::spawn(async move {
            let outcome = target.call().await;
            ends.ended(offset.as_nanos(), outcome);
        });
    }

    /// Sends the batch and records how late each of its requests left.
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        if let Some(starter) = self.starter.as_mut() {
            starter.flush();
        }
        let sent = Instant::now();
        for offset in self.batch.drain(..) {
            let due = self.start + Duration::from(offset);
            let lag_us = sent.saturating_duration_since(due).as_micros();
            self.counts
                .send_lag_us
                .saturating_record(u64::try_from(lag_us).unwrap_or(u64::MAX).max(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_rpc::service::BoxFuture;
    use std::sync::Mutex;

    /// Ends each call after `hold`, and counts the calls it saw.
    struct Slow {
        hold: Duration,
        calls: AtomicU64,
    }

    impl Target for Slow {
        fn call(&self) -> BoxFuture<'_, Outcome> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move {
                tokio::time::sleep(self.hold).await;
                Outcome::Ok
            })
        }
    }

    #[derive(Default)]
    struct Seen {
        /// A permit per request sent.
        on_sent: Notify,
        sent: Mutex<Vec<Nanos>>,
        /// Each sent request's due offset and when it was seen sent.
        sent_at: Mutex<Vec<(Nanos, Instant)>>,
        not_sent: Mutex<Vec<Nanos>>,
        ended: Mutex<Vec<(Nanos, Nanos)>>,
    }

    impl Observer for Seen {
        fn sent(&self, due: Nanos) {
            self.sent.lock().expect("not poisoned").push(due);
            self.sent_at
                .lock()
                .expect("not poisoned")
                .push((due, Instant::now()));
            self.on_sent.notify_one();
        }
        fn not_sent(&self, due: Nanos) {
            self.not_sent.lock().expect("not poisoned").push(due);
        }
        fn ended(&self, due: Nanos, at: Nanos, _: Outcome) {
            self.ended.lock().expect("not poisoned").push((due, at));
        }
    }

    /// 40 requests 1 ms apart, each held 30 ms, at most 10 in flight: the
    /// bound is met, and the requests past it are not sent.
    async fn every_due_request_is_sent_or_counted(timer: Timer) {
        let precise = timer.is_precise();
        let target = Arc::new(Slow {
            hold: Duration::from_millis(30),
            calls: AtomicU64::new(0),
        });
        let seen = Arc::new(Seen::default());
        let schedule = (0..40).map(Nanos::from_millis);
        let start = Instant::now();
        let d = drive_with(
            timer,
            target.clone(),
            schedule,
            start,
            10,
            seen.clone(),
            std::future::pending(),
        )
        .await;
        assert!(d.in_flight.drained(None).await);
        assert!(!d.stopped);
        assert_eq!(d.scheduled, 40);
        assert_eq!(d.sent + d.not_sent, 40);
        assert!(d.not_sent > 0, "the in-flight bound refused some: {d:?}");
        assert_eq!(target.calls.load(Ordering::Relaxed), d.sent);
        let ended = seen.ended.lock().expect("not poisoned");
        assert_eq!(ended.len() as u64, d.sent);
        assert!(ended.iter().all(|(due, at)| at > due));
        assert_eq!(
            seen.not_sent.lock().expect("not poisoned").len() as u64,
            d.not_sent
        );
        // Never sent early: each request was started at or after its due
        // time (its send is seen after the pacer woke for it).
        let sent_at = seen.sent_at.lock().expect("not poisoned");
        assert_eq!(sent_at.len() as u64, d.sent);
        assert!(
            sent_at
                .iter()
                .all(|(due, at)| start + Duration::from(*due) <= *at),
            "precise timer: {precise}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_due_request_is_sent_or_counted_and_ends_after_its_due_time() {
        let timer = Timer::new();
        assert!(timer.is_precise(), "timerfd is available on Linux");
        every_due_request_is_sent_or_counted(timer).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_coarse_timer_fallback_paces_the_same_schedule() {
        every_due_request_is_sent_or_counted(Timer::coarse()).await;
    }

    /// Starts calls through a [`Starter`] and ends each at the flush of
    /// its batch; keeps the size of every batch flushed.
    #[derive(Default)]
    struct Batching {
        batches: Mutex<Vec<usize>>,
        calls: AtomicU64,
    }

    struct BatchStarter {
        target: Arc<Batching>,
        ends: Arc<dyn Ends>,
        held: Vec<u64>,
    }

    impl Target for Batching {
        fn call(&self) -> BoxFuture<'_, Outcome> {
            unreachable!("a target with a starter is not called through futures")
        }

        fn starter(self: Arc<Self>, ends: Arc<dyn Ends>) -> Option<Box<dyn Starter>> {
            Some(Box::new(BatchStarter {
                target: self,
                ends,
                held: Vec::new(),
            }))
        }
    }

    impl Starter for BatchStarter {
        fn start(&mut self, token: u64) {
            self.target.calls.fetch_add(1, Ordering::Relaxed);
            self.held.push(token);
        }

        fn flush(&mut self) {
            self.target
                .batches
                .lock()
                .expect("not poisoned")
                .push(self.held.len());
            for token in self.held.drain(..) {
                self.ends.ended(token, Outcome::Ok);
            }
        }
    }

    /// 600 requests due at once, started 50 ms after they were due: they
    /// leave in bounded batches, each flushed, and every one's send lag is
    /// recorded as at least those 50 ms.
    #[tokio::test(flavor = "current_thread")]
    async fn requests_due_together_leave_in_bounded_batches_and_their_lag_is_kept() {
        let target = Arc::new(Batching::default());
        let seen = Arc::new(Seen::default());
        let start = Instant::now()
            .checked_sub(Duration::from_millis(50))
            .expect("the monotonic clock is past 50 ms");
        let schedule = std::iter::repeat_n(Nanos::ZERO, 600);
        let d = drive(
            target.clone(),
            schedule,
            start,
            1_000,
            seen.clone(),
            std::future::pending(),
        )
        .await;
        assert!(d.in_flight.drained(None).await);
        assert_eq!((d.scheduled, d.sent, d.not_sent), (600, 600, 0));
        assert_eq!(target.calls.load(Ordering::Relaxed), 600);
        let batches = target.batches.lock().expect("not poisoned").clone();
        assert_eq!(batches.iter().sum::<usize>(), 600, "{batches:?}");
        assert!(batches.len() >= 3, "{batches:?}");
        assert!(batches.iter().all(|b| *b <= MAX_BATCH_CALLS), "{batches:?}");
        assert_eq!(seen.ended.lock().expect("not poisoned").len(), 600);
        assert_eq!(d.send_lag_us.len(), 600);
        assert!(d.send_lag_us.min() >= 50_000, "{}", d.send_lag_us.min());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_ends_the_schedule_at_once() {
        let target = Arc::new(Slow {
            hold: Duration::from_millis(1),
            calls: AtomicU64::new(0),
        });
        let seen = Arc::new(Seen::default());
        // One request now, the next an hour later: only a stop ends this.
        let schedule = [Nanos::ZERO, Nanos::from_secs(3_600)].into_iter();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stop = async move {
            let _ = rx.await;
        };
        let seen2 = Arc::clone(&seen);
        let driving =
            tokio::spawn(
                async move { drive(target, schedule, Instant::now(), 10, seen2, stop).await },
            );
        // Stopped while the schedule waits for the second request.
        seen.on_sent.notified().await;
        let _ = tx.send(());
        let d = driving.await.expect("drive ends");
        assert!(d.stopped);
        assert_eq!((d.scheduled, d.sent), (1, 1));
        assert!(d.in_flight.drained(None).await);
    }
}
