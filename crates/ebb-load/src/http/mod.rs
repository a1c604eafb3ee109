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
//! Every request of a run is the same, so its URI and headers are parsed
//! once and each request clones them (reference counts, no parsing); a
//! successful reply's body is read and dropped, not gathered, since only an
//! error body is looked at.

mod conn;
mod queue;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ebb_core::Nanos;
use ebb_rpc::service::BoxFuture;
use hyper::Uri;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
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

/// The request every call of a run sends, parsed once.
struct Template {
    addr: String,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

pub struct HttpTarget {
    queue: Arc<Queue>,
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
        let path = format!("/rpc/{service}/{method}");
        let uri = Uri::try_from(&path)
            .map_err(|e| LoadError::Method(format!("{service}.{method} makes no URI path: {e}")))?;
        let host = HeaderValue::try_from(addr)
            .map_err(|e| LoadError::Connect(addr.to_owned(), e.to_string()))?;
        let mut headers = HeaderMap::with_capacity(3);
        headers.insert(header::HOST, host);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            // A lower-case constant, a valid header name.
            HeaderName::from_static(ebb_http::DEADLINE_HEADER),
            HeaderValue::from(deadline.as_millis().max(1)),
        );
        let connections = connections.max(1);
        let mut links = Vec::with_capacity(connections);
        for _ in 0..connections {
            let link = conn::open(addr)
                .await
                .map_err(|e| LoadError::Connect(addr.to_owned(), e))?;
            links.push(link);
        }
        let template = Arc::new(Template {
            addr: addr.to_owned(),
            uri,
            headers,
            body: Bytes::from(args.to_string()),
        });
        let queue = Arc::new(Queue::new(connections));
        for link in links {
            tokio::spawn(conn::serve(
                Arc::clone(&template),
                Arc::clone(&queue),
                Some(link),
            ));
        }
        Ok(HttpTarget {
            queue,
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
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::Notify;

    /// Every end, by token, and a wake-up per end.
    #[derive(Default)]
    struct Seen {
        ends: Mutex<Vec<(u64, Outcome)>>,
        on_end: Notify,
    }

    impl Ends for Seen {
        fn ended(&self, token: u64, outcome: Outcome) {
            self.ends
                .lock()
                .expect("not poisoned")
                .push((token, outcome));
            self.on_end.notify_one();
        }
    }

    impl Seen {
        async fn wait_for(&self, n: usize) -> Vec<(u64, Outcome)> {
            loop {
                let notified = self.on_end.notified();
                {
                    let ends = self.ends.lock().expect("not poisoned");
                    if ends.len() >= n {
                        return ends.clone();
                    }
                }
                notified.await;
            }
        }
    }

    /// A server on loopback that counts the connections it accepted and
    /// answers each request with `200` when `answer`, else never.
    async fn server(answer: bool) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound").to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut seen = Vec::new();
                    loop {
                        let Ok(n) = stream.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        // Each request is a head and a 2-byte body (`{}`).
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            let whole = end + 4 + 2;
                            if seen.len() < whole {
                                break;
                            }
                            seen.drain(..whole);
                            if answer {
                                let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n1";
                                if stream.write_all(reply).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    async fn target(addr: &str, connections: usize, deadline: Nanos) -> Arc<HttpTarget> {
        let args = serde_json::json!({});
        let t = HttpTarget::connect(addr, connections, "Demo", "echo", &args, deadline)
            .await
            .expect("the server listens");
        Arc::new(t)
    }

    /// 200 calls started as 4 batches over 3 connections: each ends once,
    /// answered, on the 3 connections opened at the start (no connection,
    /// task or future per call).
    #[tokio::test(flavor = "current_thread")]
    async fn batched_calls_share_the_connections_and_each_ends_once() {
        let (addr, accepted) = server(true).await;
        let target = target(&addr, 3, Nanos::from_secs(30)).await;
        let seen = Arc::new(Seen::default());
        let mut starter = Arc::clone(&target)
            .starter(Arc::clone(&seen) as Arc<dyn Ends>)
            .expect("HTTP calls start in place");
        for batch in 0..4u64 {
            for i in 0..50 {
                starter.start(batch * 50 + i);
            }
            starter.flush();
        }
        let mut ends = seen.wait_for(200).await;
        ends.sort_by_key(|(token, _)| *token);
        let tokens: Vec<u64> = ends.iter().map(|(t, _)| *t).collect();
        assert_eq!(tokens, (0..200).collect::<Vec<_>>());
        assert!(ends.iter().all(|(_, o)| *o == Outcome::Ok), "{ends:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    /// A server that never answers: the call ends `deadline_exceeded` at
    /// its deadline plus the grace, and its connection, still carrying
    /// the request, is replaced for the next call.
    #[tokio::test(flavor = "current_thread")]
    async fn an_unanswered_call_ends_at_its_deadline_and_its_connection_is_replaced() {
        let (addr, accepted) = server(false).await;
        let target = target(&addr, 1, Nanos::from_millis(1)).await;
        let seen = Arc::new(Seen::default());
        let mut starter = Arc::clone(&target)
            .starter(Arc::clone(&seen) as Arc<dyn Ends>)
            .expect("HTTP calls start in place");
        starter.start(7);
        starter.flush();
        assert_eq!(seen.wait_for(1).await, vec![(7, Outcome::DeadlineExceeded)]);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        starter.start(8);
        starter.flush();
        let ends = seen.wait_for(2).await;
        assert_eq!(ends[1], (8, Outcome::DeadlineExceeded));
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "a new connection");
    }

    /// [`Target::call`] goes through the same connections.
    #[tokio::test(flavor = "current_thread")]
    async fn a_call_future_is_answered_through_the_queue() {
        let (addr, accepted) = server(true).await;
        let target = target(&addr, 2, Nanos::from_secs(30)).await;
        assert_eq!(target.call().await, Outcome::Ok);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
