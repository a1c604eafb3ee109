//! The engine against targets that only count and time their calls: the
//! in-flight bound, pacing with either timer, bounded batches and their
//! send lag, and a stop.

use super::*;
use crate::Starter;
use ebb_rpc::service::BoxFuture;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

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
        tokio::spawn(async move { drive(target, schedule, Instant::now(), 10, seen2, stop).await });
    // Stopped while the schedule waits for the second request.
    seen.on_sent.notified().await;
    let _ = tx.send(());
    let d = driving.await.expect("drive ends");
    assert!(d.stopped);
    assert_eq!((d.scheduled, d.sent), (1, 1));
    assert!(d.in_flight.drained(None).await);
}
