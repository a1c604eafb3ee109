//! Sending over HTTP/1.1: a pool of `connections` keep-alive connections;
//! a request takes any free one (and waits for one when all are busy, which
//! its latency then shows), and a broken one is replaced on next use.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use ebb_core::Nanos;
use ebb_rpc::service::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::{LoadError, Outcome, Target};

/// How long past its deadline a request may go unanswered before the
/// generator counts it as `deadline_exceeded` itself; leaves the server
/// time to send its own 504.
pub const CLIENT_GRACE_MS: u64 = 200;
/// Largest response body read; longer ones count as `response_too_large`.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

type Sender = SendRequest<Full<Bytes>>;

pub struct HttpTarget {
    addr: String,
    path: String,
    body: Bytes,
    deadline: Nanos,
    free: Mutex<Vec<Sender>>,
    slots: Semaphore,
}

impl HttpTarget {
    /// Checks that `addr` accepts connections, then serves requests for
    /// `POST /rpc/{service}/{method}` with `args` as the body.
    pub async fn connect(
        addr: &str,
        connections: usize,
        service: &str,
        method: &str,
        args: &Value,
        deadline: Nanos,
    ) -> Result<HttpTarget, LoadError> {
        let first = open(addr)
            .await
            .map_err(|e| LoadError::Connect(addr.to_owned(), e))?;
        Ok(HttpTarget {
            addr: addr.to_owned(),
            path: format!("/rpc/{service}/{method}"),
            body: Bytes::from(args.to_string()),
            deadline,
            free: Mutex::new(vec![first]),
            slots: Semaphore::new(connections.max(1)),
        })
    }

    fn take_free(&self) -> Option<Sender> {
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(s) = free.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put_back(&self, sender: Sender) {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(sender);
    }

    async fn send(&self) -> Outcome {
        let Ok(_slot) = self.slots.acquire().await else {
            return Outcome::Other("client_closed".into());
        };
        let mut sender = match self.take_free() {
            Some(s) => s,
            None => match open(&self.addr).await {
                Ok(s) => s,
                Err(_) => return Outcome::Other("connect_failed".into()),
            },
        };
        if sender.ready().await.is_err() {
            return Outcome::Other("connect_failed".into());
        }
        let request = Request::post(&self.path)
            .header(header::HOST, &self.addr)
            .header(header::CONTENT_TYPE, "application/json")
            .header(ebb_http::DEADLINE_HEADER, self.deadline.as_millis().max(1))
            .body(Full::new(self.body.clone()));
        let Ok(request) = request else {
            return Outcome::Other("bad_request_built".into());
        };
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            // The request may have been written before the connection broke.
            Err(_) => return Outcome::OutcomeUnknown,
        };
        let status = response.status().as_u16();
        let body = match Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return Outcome::Other("response_unreadable".into()),
        };
        self.put_back(sender);
        Outcome::from_http(status, &body)
    }
}

async fn open(addr: &str) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        // Ends when the connection closes; the sender then reports closed.
        let _ = conn.await;
    });
    Ok(sender)
}

impl Target for HttpTarget {
    fn call(&self) -> BoxFuture<'_, Outcome> {
        let limit = Duration::from(self.deadline) + Duration::from_millis(CLIENT_GRACE_MS);
        Box::pin(async move {
            tokio::time::timeout(limit, self.send())
                .await
                .unwrap_or(Outcome::DeadlineExceeded)
        })
    }
}
