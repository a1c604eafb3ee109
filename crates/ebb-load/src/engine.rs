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
//! wake-up starts every arrival then due, as a batch. So a request costs
//! no thread hand-over and no sleep of its own; when the runtime is busy
//! with replies, the due arrivals are started as soon as it looks up from
//! them, and the delay counts in their latency.
//!
//! The engine keeps no figures of its own: an [`Observer`] hears of every
//! request (sent, not sent, ended) and keeps what its caller reports.

use std::future::Future;
use std::iter::Peekable;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ebb_core::Nanos;
use tokio::sync::{Notify, oneshot};

use crate::timer::Timer;
use crate::{Outcome, Target};

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
    /// The requests still running; each ends at its target's deadline.
    pub in_flight: Arc<InFlight>,
}

#[derive(Debug, Default)]
struct Counts {
    scheduled: u64,
    sent: u64,
    not_sent: u64,
    stopped: bool,
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
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let pacer = Pacer {
        target,
        observer,
        in_flight: Arc::clone(&in_flight),
        start,
        max_in_flight: max_in_flight as u64,
        counts: Counts::default(),
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
        in_flight,
    }
}

struct Pacer {
    target: Arc<dyn Target>,
    observer: Arc<dyn Observer>,
    in_flight: Arc<InFlight>,
    start: Instant,
    max_in_flight: u64,
    counts: Counts,
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
            }
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
        let target = Arc::clone(&self.target);
        let observer = Arc::clone(&self.observer);
        let in_flight = Arc::clone(&self.in_flight);
        let start = self.start;
        tokio::spawn(async move {
            let outcome = target.call().await;
            let at: Nanos = start.elapsed().into();
            observer.ended(offset, at, outcome);
            in_flight.end();
        });
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
