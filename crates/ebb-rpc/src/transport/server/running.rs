//! The calls of one connection still running after their first poll,
//! polled by that connection's task: no task (and no allocation for one)
//! per call, and the replies of the calls one wake-up finishes leave in one
//! write. Each carries the instant the session set for cancelling it
//! (`Incoming::overdue_at`); one timer per connection, armed for the
//! earliest, drops the future of every call still running by then, and the
//! call ends as cancelled for the session to record.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use ebb_core::Instant;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Sleep;

use super::calls::{Run, panicked};
use crate::semantics::server::CallKey;
use crate::transport::clock::RuntimeClock;
use crate::transport::frames;
use crate::wire::Outcome;

/// A call taken out of the running set: its method's end, or its
/// cancellation.
pub(super) struct Finished {
    pub(super) key: CallKey,
    pub(super) ending: Ending,
}

pub(super) enum Ending {
    /// The method returned (or panicked): its outcome.
    Ran(Outcome, bytes::Bytes),
    /// Still running at its `overdue_at`: its future was dropped.
    Cancelled,
}

/// One connection's running calls and its overdue timer.
pub(super) struct RunningCalls<'a> {
    set: FuturesUnordered<Pending<'a>>,
    timer: OverdueTimer,
}

impl<'a> RunningCalls<'a> {
    pub(super) fn new(clock: RuntimeClock) -> RunningCalls<'a> {
        RunningCalls {
            set: FuturesUnordered::new(),
            timer: OverdueTimer {
                clock,
                sleep: None,
                armed: None,
            },
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Adds a started call that did not finish at its first poll.
    pub(super) fn push(&mut self, key: CallKey, overdue_at: Instant, run: Run<'a>) {
        self.timer.watch(overdue_at);
        self.set.push(Pending {
            key,
            overdue_at,
            run: Some(run),
            cancelled: false,
            waker: None,
        });
    }

    /// The next call to end: its method finished, or it was still running
    /// at its overdue instant and is cancelled. Pending while none is
    /// running.
    pub(super) async fn next(&mut self) -> Finished {
        loop {
            tokio::select! {
                biased;
                Some(done) = self.set.next(), if !self.set.is_empty() => return done,
                now = self.timer.fired() => self.cancel_overdue(now),
            }
        }
    }

    /// A call that has ended by now, if any, without waiting.
    pub(super) async fn ready_now(&mut self) -> Option<Finished> {
        std::future::poll_fn(|cx| match self.set.poll_next_unpin(cx) {
            Poll::Ready(done) => Poll::Ready(done),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }

    /// Cancels every call whose overdue instant is `now` or earlier (each
    /// ends at its next poll, which its wake-up brings), and arms the timer
    /// for the earliest of the rest.
    fn cancel_overdue(&mut self, now: Instant) {
        let mut next: Option<Instant> = None;
        for call in self.set.iter_mut() {
            if call.cancelled {
                continue;
            }
            if call.overdue_at <= now {
                call.cancel();
            } else {
                next = Some(next.map_or(call.overdue_at, |n| n.min(call.overdue_at)));
            }
        }
        if let Some(at) = next {
            self.timer.watch(at);
        }
    }
}

/// Fires at the earliest overdue instant of a connection's running calls.
/// Made at the first call that waits and reset, not remade, after that.
struct OverdueTimer {
    clock: RuntimeClock,
    sleep: Option<Pin<Box<Sleep>>>,
    /// The instant it fires at, if armed.
    armed: Option<Instant>,
}

impl OverdueTimer {
    /// Makes sure the timer fires by `at`.
    fn watch(&mut self, at: Instant) {
        if self.armed.is_some_and(|armed| armed <= at) {
            return;
        }
        self.armed = Some(at);
        let when = self.clock.to_tokio(at);
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().reset(when),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(when))),
        }
    }

    /// Waits until the armed instant and disarms; pending while unarmed.
    /// Returns the instant it fired at, as the sessions count time.
    async fn fired(&mut self) -> Instant {
        match (&mut self.sleep, self.armed) {
            (Some(sleep), Some(_)) => sleep.as_mut().await,
            _ => std::future::pending().await,
        }
        self.armed = None;
        use ebb_core::Clock;
        self.clock.now()
    }
}

/// One started call that did not finish at its first poll.
struct Pending<'a> {
    key: CallKey,
    overdue_at: Instant,
    /// `None` once cancelled: the method's future is dropped.
    run: Option<Run<'a>>,
    cancelled: bool,
    /// The waker of its last pending poll, so a cancellation can make the
    /// running set poll it again.
    waker: Option<Waker>,
}

impl Pending<'_> {
    fn cancel(&mut self) {
        self.cancelled = true;
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

impl Future for Pending<'_> {
    type Output = Finished;

    /// A panic in any poll still ends the call, as the method's outcome; a
    /// cancelled call's future is dropped here (a panic in its drop too is
    /// caught: the call is over either way).
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Finished> {
        let key = self.key;
        if self.cancelled {
            let run = self.run.take();
            let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(run)));
            return Poll::Ready(Finished {
                key,
                ending: Ending::Cancelled,
            });
        }
        let Some(run) = self.run.as_mut() else {
            // Polled after it ended: a set never does that.
            return Poll::Pending;
        };
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(cx)));
        let (outcome, payload) = match polled {
            Ok(Poll::Pending) => {
                match &mut self.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            Ok(Poll::Ready(result)) => frames::outcome_of(result),
            Err(_) => panicked(),
        };
        self.run = None;
        Poll::Ready(Finished {
            key,
            ending: Ending::Ran(outcome, payload),
        })
    }
}
