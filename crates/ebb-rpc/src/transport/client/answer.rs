//! Callers waiting for their calls' outcomes, without a channel per call.
//!
//! The link's state already has a lock and an entry per waiting caller, so
//! the outcome is left in that entry and the caller's task is woken to
//! take it: a oneshot channel per call cost an allocation (and its atomic
//! hand-shake) on every call. A caller that stops waiting (its future
//! dropped) removes its entry; its call goes on in the session and its
//! outcome is dropped when it comes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::link::{Link, Reply};
use crate::fast_map::FastMap;
use crate::service::CallSink;

/// Outcomes for sinks, gathered under the link's lock and handed over once
/// it is let go (a sink may start calls of its own).
pub(super) type Handed = Vec<(Arc<dyn CallSink>, u64, Reply)>;

/// One caller's entry: whom to wake, and the outcome once there.
#[derive(Debug, Default)]
struct Waiter {
    waker: Option<Waker>,
    outcome: Option<Reply>,
}

/// The callers waiting, by the session's call id, and the calls whose
/// outcome goes to a sink instead.
#[derive(Default)]
pub(super) struct Waiters {
    map: FastMap<u64, Waiter>,
    sinks: FastMap<u64, (Arc<dyn CallSink>, u64)>,
    /// Sinks' outcomes not yet handed over.
    pub(super) handed: Handed,
}

impl Waiters {
    /// `id`'s caller is about to wait.
    pub(super) fn expect(&mut self, id: u64) {
        self.map.insert(id, Waiter::default());
    }

    /// `id`'s outcome goes to `sink` with `token`.
    pub(super) fn expect_sink(&mut self, id: u64, sink: Arc<dyn CallSink>, token: u64) {
        self.sinks.insert(id, (sink, token));
    }

    /// Leaves `outcome` for `id`'s caller and wakes it; dropped if the
    /// caller stopped waiting. True if a caller was woken. A sink's outcome
    /// waits in `handed`.
    pub(super) fn complete(&mut self, id: u64, outcome: Reply) -> bool {
        if let Some((sink, token)) = self.sinks.remove(&id) {
            self.handed.push((sink, token, outcome));
            return false;
        }
        let Some(w) = self.map.get_mut(&id) else {
            return false;
        };
        w.outcome = Some(outcome);
        match w.waker.take() {
            Some(waker) => {
                waker.wake();
                true
            }
            None => false,
        }
    }

    /// `id`'s outcome if it is there; else remembers whom to wake.
    /// `Ready(None)`: the entry is gone (every caller was let go).
    fn poll(&mut self, id: u64, cx: &Context<'_>) -> Poll<Option<Reply>> {
        let Some(w) = self.map.get_mut(&id) else {
            return Poll::Ready(None);
        };
        if let Some(outcome) = w.outcome.take() {
            self.map.remove(&id);
            return Poll::Ready(Some(outcome));
        }
        match &mut w.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    fn forget(&mut self, id: u64) {
        self.map.remove(&id);
    }

    /// Lets every caller go: each is woken and finds its entry gone. The
    /// sinks are returned, to be told once the lock is let go.
    pub(super) fn release_all(&mut self) -> Vec<(Arc<dyn CallSink>, u64)> {
        let sinks = self.sinks.drain().map(|(_, s)| s).collect();
        self.release_callers();
        sinks
    }

    fn release_callers(&mut self) {
        for (_, w) in self.map.drain() {
            if let Some(waker) = w.waker {
                waker.wake();
            }
        }
    }
}

/// What a caller awaits: its call's outcome.
pub(super) struct Answer<'a> {
    link: &'a Link,
    state: AnswerState,
}

enum AnswerState {
    /// Known when the call started (refused, or ended at once).
    Now(Reply),
    Waiting(u64),
    Taken,
}

impl<'a> Answer<'a> {
    pub(super) fn now(link: &'a Link, outcome: Reply) -> Answer<'a> {
        Answer {
            link,
            state: AnswerState::Now(outcome),
        }
    }

    /// Waits for call `id`, whose entry is already in `link`'s waiters.
    pub(super) fn waiting(link: &'a Link, id: u64) -> Answer<'a> {
        Answer {
            link,
            state: AnswerState::Waiting(id),
        }
    }
}

impl Future for Answer<'_> {
    type Output = Reply;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        let this = self.get_mut();
        let polled = match &this.state {
            AnswerState::Now(_) => Poll::Ready(None),
            &AnswerState::Waiting(id) => this.link.with_waiters(|w| w.poll(id, cx)),
            AnswerState::Taken => Poll::Ready(Some(Err(this.link.shut_down(true)))),
        };
        let Poll::Ready(outcome) = polled else {
            return Poll::Pending;
        };
        let state = std::mem::replace(&mut this.state, AnswerState::Taken);
        Poll::Ready(match (outcome, state) {
            (Some(outcome), _) | (None, AnswerState::Now(outcome)) => outcome,
            // The driver ended with the call outstanding.
            (None, _) => Err(this.link.shut_down(true)),
        })
    }
}

impl Drop for Answer<'_> {
    fn drop(&mut self) {
        if let AnswerState::Waiting(id) = self.state {
            self.link.with_waiters(|w| w.forget(id));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::Bytes;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn outcomes_wait_for_their_callers_and_let_go_callers_are_woken() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let cx = Context::from_waker(&waker);
        let woken = || count.0.load(Ordering::Relaxed);
        let mut w = Waiters::default();
        for id in 1..=3 {
            w.expect(id);
        }
        // Waiting, then completed: woken once, and the outcome is taken.
        assert!(w.poll(1, &cx).is_pending());
        assert!(w.complete(1, Ok(Bytes::from_static(b"one"))));
        assert_eq!(woken(), 1);
        match w.poll(1, &cx) {
            Poll::Ready(Some(Ok(b))) => assert_eq!(&b[..], b"one"),
            other => panic!("expected the outcome, got {other:?}"),
        }
        assert!(!w.map.contains_key(&1), "a taken outcome leaves no entry");
        // A caller that stopped waiting: its outcome is dropped, not kept.
        w.forget(2);
        assert!(!w.complete(2, Ok(Bytes::from_static(b"two"))));
        assert!(!w.map.contains_key(&2));
        // Every caller let go (the driver ended): woken, and told so.
        assert!(w.poll(3, &cx).is_pending());
        w.release_all();
        assert_eq!(woken(), 2);
        assert!(matches!(w.poll(3, &cx), Poll::Ready(None)));
    }
}
