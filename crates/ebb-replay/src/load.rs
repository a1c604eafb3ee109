//! The open-loop load generator: sends the trace's calls at their times,
//! whether or not earlier ones have been answered (a closed loop would
//! slow down with the system and hide its overload).
//!
//! In second `i` the trace's `n` arrivals are placed at `n` sorted uniform
//! instants: a Poisson process given its count. Each call runs in its own
//! task, so a slow answer never delays the next send, and its latency is
//! measured from its scheduled instant, so a late send (a stalled
//! generator) shows in the latency instead of hiding (no coordinated
//! omission).

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use ebb_core::{Nanos, Rng};
use ebb_rpc::CallError;
use tokio::task::JoinSet;
use tokio::time::Instant as TokioInstant;

use crate::record::{Outcome, Recorder};
use crate::trace::Trace;

/// Calls outstanding at most; a send past it is counted as a client-side
/// failure (`other`) rather than queued, so memory stays bounded.
pub const MAX_OUTSTANDING_CALLS: usize = 20_000;

/// How a failed call counts. Refusals that say nothing ran are overload;
/// a passed deadline is its own kind; everything else is `Other`.
pub fn classify(e: &CallError) -> Outcome {
    match e {
        CallError::Refused { .. }
        | CallError::Overloaded { .. }
        | CallError::TooManyOutstanding { .. } => Outcome::Overloaded,
        CallError::DeadlineExceeded { .. } => Outcome::DeadlineExceeded,
        _ => Outcome::Other,
    }
}

/// The send instants of one second's `n` arrivals, as offsets from the
/// start of the trace.
pub fn arrivals_in(second: usize, n: u32, rng: &mut Rng) -> Vec<Nanos> {
    let base = second as f64;
    let mut v: Vec<f64> = (0..n).map(|_| base + rng.unit()).collect();
    v.sort_by(f64::total_cmp);
    v.into_iter().map(Nanos::from_secs_f64).collect()
}

/// Totals of one replay, beyond what the recorder holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
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

/// Replays `trace` from `start`, calling `call` for each arrival, until
/// the trace ends or `stop` resolves; then waits for the calls still
/// outstanding (each ends by its own deadline).
pub async fn replay<F, Fut>(
    trace: &Trace,
    seed: u64,
    start: TokioInstant,
    call: F,
    recorder: SharedRecorder,
    stop: impl Future<Output = ()>,
) -> ReplayStats
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), CallError>> + Send + 'static,
{
    let mut rng = Rng::seeded(seed);
    let mut stats = ReplayStats::default();
    let mut calls = JoinSet::new();
    tokio::pin!(stop);
    'trace: for (second, &n) in trace.per_sec.iter().enumerate() {
        for at in arrivals_in(second, n, &mut rng) {
            let scheduled = start + at.into();
            tokio::select! {
                () = tokio::time::sleep_until(scheduled) => {}
                () = &mut stop => {
                    stats.interrupted = true;
                    break 'trace;
                }
            }
            // Reap what has finished so the set holds only open calls.
            while calls.try_join_next().is_some() {}
            stats.sent += 1;
            let sent_at = since(start);
            lock(&recorder).sent(sent_at);
            if calls.len() >= MAX_OUTSTANDING_CALLS {
                stats.client_limited += 1;
                lock(&recorder).ended(sent_at, Outcome::Other);
                continue;
            }
            let fut = call();
            let rec = Arc::clone(&recorder);
            calls.spawn(async move {
                let outcome = match fut.await {
                    Ok(()) => Outcome::Ok {
                        latency: TokioInstant::now()
                            .saturating_duration_since(scheduled)
                            .into(),
                    },
                    Err(e) => classify(&e),
                };
                lock(&rec).ended(since(start), outcome);
            });
        }
    }
    if !stats.interrupted {
        // Let the last second run its course before the report is cut.
        let end = start + Nanos::from_secs(trace.per_sec.len() as u64).into();
        tokio::select! {
            () = tokio::time::sleep_until(end) => {}
            () = &mut stop => stats.interrupted = true,
        }
    }
    while calls.join_next().await.is_some() {}
    stats
}

fn since(start: TokioInstant) -> Nanos {
    TokioInstant::now().saturating_duration_since(start).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Trace;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn arrivals_are_sorted_inside_their_second() {
        let mut rng = Rng::seeded(3);
        let v = arrivals_in(4, 500, &mut rng);
        assert_eq!(v.len(), 500);
        assert!(v.windows(2).all(|w| w[0] <= w[1]));
        assert!(v[0] >= Nanos::from_secs(4) && v[499] < Nanos::from_secs(5));
    }

    #[test]
    fn errors_are_classified_once() {
        assert_eq!(
            classify(&CallError::Refused {
                reason: ebb_rpc::wire::Refusal::InFlight,
                message: "full".into(),
            }),
            Outcome::Overloaded
        );
        assert_eq!(
            classify(&CallError::DeadlineExceeded {
                elapsed: Nanos::from_millis(5),
                sent: true,
            }),
            Outcome::DeadlineExceeded
        );
        assert_eq!(
            classify(&CallError::ConnectionLost {
                sent: true,
                cause: "x".into(),
            }),
            Outcome::Other
        );
    }

    /// Paused tokio time: the replay's schedule runs without real waiting.
    #[tokio::test(start_paused = true)]
    async fn sends_every_arrival_and_records_every_outcome() {
        let trace = Trace {
            name: "t".into(),
            per_sec: vec![10, 0, 30],
        };
        let rec: SharedRecorder = Arc::new(Mutex::new(Recorder::new(Nanos::from_millis(50))));
        let n = Arc::new(AtomicU64::new(0));
        let call = || {
            let n = Arc::clone(&n);
            async move {
                let i = n.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(if i % 10 == 0 {
                    80
                } else {
                    5
                }))
                .await;
                if i % 7 == 0 {
                    Err(CallError::Refused {
                        reason: ebb_rpc::wire::Refusal::InFlight,
                        message: "held queue full".into(),
                    })
                } else {
                    Ok(())
                }
            }
        };
        let stats = replay(
            &trace,
            1,
            TokioInstant::now(),
            call,
            Arc::clone(&rec),
            std::future::pending(),
        )
        .await;
        assert_eq!(stats.sent, 40);
        assert!(!stats.interrupted);
        let run = Arc::try_unwrap(rec)
            .ok()
            .expect("tasks done")
            .into_inner()
            .expect("lock")
            .finish("t", &Default::default());
        let s = &run.summary;
        assert_eq!(s.requests, 40);
        assert_eq!(s.ok + s.overloaded, 40, "every call ended and was counted");
        assert_eq!(s.overloaded, 6, "calls 0, 7, 14, 21, 28, 35");
        let slow: u64 = run.samples.iter().map(|x| x.slow).sum();
        assert_eq!(
            slow, 3,
            "calls 10, 20 and 30 took 80 ms (call 0 too, but it was refused)"
        );
        assert_eq!(run.samples[1].offered, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_the_replay_and_waits_for_open_calls() {
        let trace = Trace {
            name: "t".into(),
            per_sec: vec![100; 10],
        };
        let rec: SharedRecorder = Arc::new(Mutex::new(Recorder::new(Nanos::from_millis(50))));
        let stop = tokio::time::sleep(std::time::Duration::from_millis(2_500));
        let call = || async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            Ok(())
        };
        let stats = replay(&trace, 1, TokioInstant::now(), call, Arc::clone(&rec), stop).await;
        assert!(stats.interrupted);
        assert!(stats.sent > 150 && stats.sent < 350, "sent {}", stats.sent);
        let s = lock(&rec).snapshot();
        assert_eq!(
            s.total_ok, stats.sent,
            "calls in flight at the stop were awaited"
        );
    }
}
