//! The trace's calls through `ebb-load`'s open-loop engine: each is sent at
//! its time whether or not earlier ones have been answered (a closed loop
//! would slow down with the system and hide its overload), and its latency
//! runs from its scheduled instant, so a late send (a stalled generator)
//! shows in the latency instead of hiding (no coordinated omission).
//!
//! In second `i` the trace's `n` arrivals are placed at `n` uniform
//! instants (a Poisson process given its count), as `ebb load` places a
//! trace's: the same schedule code ([`ebb_load::Arrivals`]). What is
//! special here is only where the outcomes go: into the per-second
//! [`Recorder`].

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use ebb_core::Nanos;
use ebb_load::{ArrivalSpec, Arrivals, Observer, Target};
use ebb_rpc::CallError;

use crate::record::{Outcome, Recorder};
use crate::trace::Trace;

/// The kind of a send refused at [`MAX_OUTSTANDING_CALLS`].
pub const NOT_SENT: &str = "not_sent";
/// Calls outstanding at most; a send past it is counted as a client-side
/// failure (`other`) rather than queued, so memory stays bounded.
pub const MAX_OUTSTANDING_CALLS: usize = 20_000;

/// How a failed call counts: `ebb-load`'s classification (refusals that
/// say nothing ran are overload; a passed deadline is its own kind), with
/// everything else as `Other`.
pub fn classify(e: CallError) -> Outcome {
    from_load(ebb_load::Outcome::from_call_error(e), Nanos::ZERO)
}

/// An engine outcome as the recorder counts it; `latency` is kept for a
/// success.
fn from_load(o: ebb_load::Outcome, latency: Nanos) -> Outcome {
    match o {
        ebb_load::Outcome::Ok => Outcome::Ok { latency },
        ebb_load::Outcome::Overloaded { .. } => Outcome::Overloaded,
        ebb_load::Outcome::DeadlineExceeded => Outcome::DeadlineExceeded,
        other @ (ebb_load::Outcome::OutcomeUnknown | ebb_load::Outcome::Other(_)) => {
            Outcome::Other(other.label().unwrap_or_default().to_owned())
        }
    }
}

/// Totals of one replay, beyond what the recorder holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Arrivals that came due (sent, or refused here).
    pub sent: u64,
    /// Sends refused here because [`MAX_OUTSTANDING_CALLS`] were open.
    pub client_limited: u64,
    /// The replay was stopped before the trace ended.
    pub interrupted: bool,
}

pub type SharedRecorder = Arc<Mutex<Recorder>>;

pub fn lock(r: &SharedRecorder) -> std::sync::MutexGuard<'_, Recorder> {
    r.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Puts the engine's events into the per-second record: a call counts as
/// offered in the second it was due, and as ended in the second it ended.
struct Recording(SharedRecorder);

impl Observer for Recording {
    fn sent(&self, due: Nanos) {
        lock(&self.0).sent(due);
    }

    fn not_sent(&self, due: Nanos) {
        let mut r = lock(&self.0);
        r.sent(due);
        // Named as `ebb load` names the count of such arrivals.
        r.ended(due, Outcome::Other(NOT_SENT.to_owned()));
    }

    fn ended(&self, due: Nanos, at: Nanos, outcome: ebb_load::Outcome) {
        lock(&self.0).ended(at, from_load(outcome, at.saturating_sub(due)));
    }
}

/// Replays `trace` from `start`, sending each arrival to `target`, until
/// the trace ends or `stop` resolves; then waits for the calls still
/// outstanding (each ends by its own deadline).
pub async fn replay(
    trace: &Trace,
    seed: u64,
    start: Instant,
    target: Arc<dyn Target>,
    recorder: SharedRecorder,
    stop: impl Future<Output = ()>,
) -> ReplayStats {
    let secs = trace.per_sec.len() as u64;
    let spec = ArrivalSpec::Trace(ebb_sim::trace::Trace::Counts(Arc::from(
        trace.per_sec.as_slice(),
    )));
    let schedule = Arrivals::new(&spec, Nanos::from_secs(secs), seed);
    tokio::pin!(stop);
    let driven = ebb_load::drive(
        target,
        schedule,
        start,
        MAX_OUTSTANDING_CALLS,
        Arc::new(Recording(recorder)),
        &mut stop,
    )
    .await;
    let mut interrupted = driven.stopped;
    if !interrupted {
        // Let the last second run its course before the report is cut.
        let end = start + std::time::Duration::from(Nanos::from_secs(secs));
        tokio::select! {
            () = tokio::time::sleep_until(end.into()) => {}
            () = &mut stop => interrupted = true,
        }
    }
    driven.in_flight.drained(None).await;
    ReplayStats {
        sent: driven.scheduled,
        client_limited: driven.not_sent,
        interrupted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Trace;
    use ebb_rpc::service::BoxFuture;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[test]
    fn errors_are_classified_once() {
        assert_eq!(
            classify(CallError::Refused {
                reason: ebb_rpc::wire::Refusal::InFlight,
                message: "full".into(),
            }),
            Outcome::Overloaded
        );
        assert_eq!(
            classify(CallError::DeadlineExceeded {
                elapsed: Nanos::from_millis(5),
                sent: true,
            }),
            Outcome::DeadlineExceeded
        );
        assert_eq!(
            classify(CallError::ConnectionLost {
                sent: true,
                cause: "x".into(),
            }),
            Outcome::Other("outcome_unknown".into())
        );
        assert_eq!(
            classify(CallError::ConnectionLost {
                sent: false,
                cause: "refused".into(),
            }),
            Outcome::Other("connect_failed".into())
        );
    }

    /// Call `i` takes 80 ms when `i % 10 == 0`, else 5 ms, and is refused
    /// when `i % 7 == 0`.
    struct Scripted {
        n: AtomicU64,
    }

    impl Target for Scripted {
        fn call(&self) -> BoxFuture<'_, ebb_load::Outcome> {
            let i = self.n.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let ms = if i % 10 == 0 { 80 } else { 5 };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                if i % 7 == 0 {
                    classify_load(CallError::Refused {
                        reason: ebb_rpc::wire::Refusal::InFlight,
                        message: "held queue full".into(),
                    })
                } else {
                    ebb_load::Outcome::Ok
                }
            })
        }
    }

    fn classify_load(e: CallError) -> ebb_load::Outcome {
        ebb_load::Outcome::from_call_error(e)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sends_every_arrival_and_records_every_outcome() {
        let trace = Trace {
            name: "t".into(),
            per_sec: vec![10, 0, 30],
        };
        let rec: SharedRecorder = Arc::new(Mutex::new(Recorder::new(Nanos::from_millis(50))));
        let target = Arc::new(Scripted {
            n: AtomicU64::new(0),
        });
        let stats = replay(
            &trace,
            1,
            Instant::now(),
            target,
            Arc::clone(&rec),
            std::future::pending(),
        )
        .await;
        assert_eq!(stats.sent, 40);
        assert!(!stats.interrupted);
        let run = std::mem::replace(&mut *lock(&rec), Recorder::new(Nanos::from_millis(50)))
            .finish("t", &Default::default());
        let s = &run.summary;
        assert_eq!(s.requests, 40);
        assert_eq!(s.ok + s.overloaded, 40, "every call ended and was counted");
        assert_eq!(s.overloaded, 6, "calls 0, 7, 14, 21, 28, 35");
        // Calls 10, 20 and 30 took 80 ms, over the 50 ms objective (call 0
        // too, but it was refused); latency runs from each call's due
        // time, so a late start could only add to it.
        let slow: u64 = run.samples.iter().map(|x| x.slow).sum();
        assert!(slow >= 3, "at least calls 10, 20 and 30 were slow: {slow}");
        assert_eq!(run.samples[1].offered, 0);
        assert_eq!(run.samples[0].offered + run.samples[2].offered, 40);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stop_ends_the_replay_and_waits_for_open_calls() {
        /// Holds every call 300 ms, and signals the first.
        struct Held {
            first: tokio::sync::Notify,
        }
        impl Target for Held {
            fn call(&self) -> BoxFuture<'_, ebb_load::Outcome> {
                self.first.notify_one();
                Box::pin(async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    ebb_load::Outcome::Ok
                })
            }
        }
        let trace = Trace {
            name: "t".into(),
            per_sec: vec![100; 3_600],
        };
        let rec: SharedRecorder = Arc::new(Mutex::new(Recorder::new(Nanos::from_millis(50))));
        let target = Arc::new(Held {
            first: tokio::sync::Notify::new(),
        });
        let started = Arc::clone(&target);
        // Stopped once calls are flowing, long before the hour-long trace
        // ends.
        let stop = async move { started.first.notified().await };
        let stats = replay(&trace, 1, Instant::now(), target, Arc::clone(&rec), stop).await;
        assert!(stats.interrupted);
        assert!(
            stats.sent >= 1 && stats.sent < 360_000,
            "sent {}",
            stats.sent
        );
        let s = lock(&rec).snapshot();
        assert_eq!(
            s.total_ok, stats.sent,
            "calls in flight at the stop were awaited"
        );
    }
}
