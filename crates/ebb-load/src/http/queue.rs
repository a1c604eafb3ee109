//! The calls waiting for a connection: one queue per target, from which
//! whichever connection is free takes the oldest call (so a slow
//! connection holds up only its own request).
//!
//! Calls are put in by the batch (one lock and at most one wake-up per
//! connection for a whole batch); an idle connection waits on a shared
//! `Notify`, registered before it looks at the queue, so no call put in
//! meanwhile is missed. The queue holds only calls already counted in
//! flight by the engine, so its length is bounded by the engine's
//! in-flight bound (`--max-outstanding`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::{Notify, oneshot};

use crate::{Ends, Outcome};

/// One call to make, and where its end goes.
pub(super) struct Job {
    pub(super) reply: Reply,
    /// When the generator stops waiting for it (its deadline and a grace),
    /// counted from when it was handed to the connections.
    pub(super) give_up: Instant,
}

/// Where a call's outcome goes: the engine's sink, by its token, or the
/// future of a [`crate::Target::call`].
pub(super) enum Reply {
    Ends(Arc<dyn Ends>, u64),
    Once(oneshot::Sender<Outcome>),
}

impl Reply {
    pub(super) fn send(self, outcome: Outcome) {
        match self {
            Reply::Ends(ends, token) => ends.ended(token, outcome),
            // The caller gave up waiting; nobody is left to tell.
            Reply::Once(tx) => {
                let _ = tx.send(outcome);
            }
        }
    }
}

pub(super) struct Queue {
    state: Mutex<State>,
    /// Idle connections wait here.
    wake: Notify,
    /// Connections taking calls from the queue: a batch wakes no more.
    connections: usize,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Job>,
    closed: bool,
}

impl Queue {
    pub(super) fn new(connections: usize) -> Queue {
        Queue {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            connections: connections.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays whole across a panic: each change is one push or pop.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `jobs` in order and wakes an idle connection for each (up to
    /// all of them). After [`Queue::close`], ends each at once.
    pub(super) fn push(&self, jobs: impl Iterator<Item = Job>) {
        let added = {
            let mut state = self.lock();
            if state.closed {
                drop(state);
                for job in jobs {
                    job.reply.send(Outcome::Other("client_closed".into()));
                }
                return;
            }
            let before = state.waiting.len();
            state.waiting.extend(jobs);
            state.waiting.len() - before
        };
        for _ in 0..added.min(self.connections) {
            self.wake.notify_one();
        }
    }

    /// The oldest waiting call, waiting for one if none is; `None` once
    /// the queue is closed and empty. Cancel-safe: a wake-up this wait
    /// received and did not use goes to another waiting connection.
    pub(super) async fn next(&self) -> Option<Job> {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            // Registered before the look, so a push between the look and
            // the wait still wakes this connection.
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(job) = state.waiting.pop_front() {
                    return Some(job);
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// No more calls: waiting connections end once the queue is empty.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn job(tx: oneshot::Sender<Outcome>) -> Job {
        Job {
            reply: Reply::Once(tx),
            give_up: Instant::now() + Duration::from_secs(1),
        }
    }

    /// Two connections wait; a batch of three wakes both, they take the
    /// calls in order, and the third waits for the first free one.
    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_wakes_the_idle_connections_and_keeps_its_order() {
        let queue = Arc::new(Queue::new(2));
        let mut takers = Vec::new();
        for _ in 0..2 {
            let q = Arc::clone(&queue);
            takers.push(tokio::spawn(async move { q.next().await.is_some() }));
        }
        // Both connections are waiting before the batch comes.
        tokio::task::yield_now().await;
        let (txs, mut rxs): (Vec<_>, Vec<_>) = (0..3).map(|_| oneshot::channel()).unzip();
        queue.push(txs.into_iter().map(job));
        for t in takers {
            assert!(t.await.expect("the taker ends"));
        }
        let third = queue
            .next()
            .await
            .expect("the third call waits in the queue");
        third.reply.send(Outcome::Ok);
        assert_eq!(rxs.pop().expect("three").await, Ok(Outcome::Ok));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_queue_ends_its_waiters_and_new_calls() {
        let queue = Arc::new(Queue::new(1));
        let q = Arc::clone(&queue);
        let waiter = tokio::spawn(async move { q.next().await.is_none() });
        tokio::task::yield_now().await;
        queue.close();
        assert!(waiter.await.expect("the waiter ends"));
        let (tx, rx) = oneshot::channel();
        queue.push(std::iter::once(job(tx)));
        assert_eq!(rx.await, Ok(Outcome::Other("client_closed".into())));
    }
}
