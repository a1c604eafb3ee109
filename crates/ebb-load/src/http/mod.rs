//! Sending over HTTP/1.1: `connections` keep-alive connections, each a
//! task of its own ([`conn`]) that takes the next waiting call from the
//! target's queue ([`queue`]) whenever it is free, so a request takes
//! any free connection (and waits for one when all are busy, which its
//! latency then shows), and a broken one is replaced on next use.
//!
//! The engine starts calls in place ([`crate::Starter`]): a batch of due
//! calls goes into the queue with one lock and wakes at most one idle
//! connection per call; no task and no future is made per call, and each
//! call's end is handed to the engine by the connection's task. Each call
//! gives up at its deadline plus [`CLIENT_GRACE_MS`], counted from when
//! its batch was handed over; its latency still runs from its scheduled
//! time (the engine's).
//!
//! Every request of a run is the same bytes, so they are encoded once
//! ([`request`]) and each call writes them as they are; the response is
//! parsed in place ([`response`], with `httparse`): its status, its
//! framing, whether the connection stays open, and only for an error its
//! body, whose JSON `error` kind classifies it. A general HTTP client
//! (hyper's) spent most of a call's instructions building and parsing
//! what never changes here.

mod conn;
mod queue;
mod request;
mod response;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ebb_core::Nanos;
use ebb_rpc::service::BoxFuture;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::{Ends, LoadError, Outcome, Starter, Target};
use queue::{Job, Queue, Reply};

/// How long past its deadline a request may go unanswered before the
/// generator counts it as `deadline_exceeded` itself; leaves the server
/// time to send its own 504.
pub const CLIENT_GRACE_MS: u64 = 200;
/// Largest response body read; longer ones count as `response_unreadable`.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// What every connection of a target shares: where to connect, the run's
/// request, and how many connections were opened after the first ones.
struct Shared {
    addr: String,
    request: Vec<u8>,
    /// Connection attempts after the start, successful or not: each
    /// replaces one the server closed, that broke, or that was dropped
    /// with an unanswered request.
    reconnects: AtomicU64,
}

pub struct HttpTarget {
    queue: Arc<Queue>,
    shared: Arc<Shared>,
    /// How long a call may take: its deadline and [`CLIENT_GRACE_MS`].
    limit: Duration,
}

impl HttpTarget {
    /// Opens `connections` connections to `addr` (so a wrong address fails
    /// here, before anything is sent) and starts their tasks, which then
    /// serve requests for `POST /rpc/{service}/{method}` with `args` as the
    /// body. Must run inside the tokio runtime that is to run the calls.
    pub async fn connect(
        addr: &str,
        connections: usize,
        service: &str,
        method: &str,
        args: &Value,
        deadline: Nanos,
    ) -> Result<HttpTarget, LoadError> {
        let body = args.to_string();
        let request =
            request::encode(addr, service, method, body.as_bytes(), deadline.as_millis())?;
        let connections = connections.max(1);
        let mut links = Vec::with_capacity(connections);
        for _ in 0..connections {
            let link = conn::open(addr)
                .await
                .map_err(|e| LoadError::Connect(addr.to_owned(), e))?;
            links.push(link);
        }
        let shared = Arc::new(Shared {
            addr: addr.to_owned(),
            request,
            reconnects: AtomicU64::new(0),
        });
        let queue = Arc::new(Queue::new(connections));
        for link in links {
            tokio::spawn(conn::serve(
                Arc::clone(&shared),
                Arc::clone(&queue),
                Some(link),
            ));
        }
        Ok(HttpTarget {
            queue,
            shared,
            limit: Duration::from(deadline) + Duration::from_millis(CLIENT_GRACE_MS),
        })
    }
}

impl Drop for HttpTarget {
    /// The connections' tasks end once the calls already queued are done.
    fn drop(&mut self) {
        self.queue.close();
    }
}

impl Target for HttpTarget {
    fn call(&self) -> BoxFuture<'_, Outcome> {
        let (tx, rx) = oneshot::channel();
        self.queue.push(std::iter::once(Job {
            reply: Reply::Once(tx),
            give_up: Instant::now() + self.limit,
        }));
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Outcome::Other("client_closed".into()))
        })
    }

    fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    fn starter(self: Arc<Self>, ends: Arc<dyn Ends>) -> Option<Box<dyn Starter>> {
        Some(Box::new(Batch {
            target: self,
            ends,
            held: Vec::new(),
        }))
    }
}

/// The engine's batches: the tokens of the calls started since the last
/// flush (at most the engine's batch bound), queued together at the flush.
struct Batch {
    target: Arc<HttpTarget>,
    ends: Arc<dyn Ends>,
    held: Vec<u64>,
}

impl Starter for Batch {
    fn start(&mut self, token: u64) {
        self.held.push(token);
    }

    fn flush(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let give_up = Instant::now() + self.target.limit;
        let ends = &self.ends;
        self.target.queue.push(self.held.drain(..).map(|token| Job {
            reply: Reply::Ends(Arc::clone(ends), token),
            give_up,
        }));
    }
}

impl Drop for Batch {
    /// Nothing stays held if the engine stops between a start and a flush.
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests;
