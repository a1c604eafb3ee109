//! Sending over HTTP/1.1: a pool of `connections` keep-alive connections;
//! a request takes any free one (and waits for one when all are busy, which
//! its latency then shows), and a broken one is replaced on next use.
//!
//! Every request of a run is the same, so its URI and headers are parsed
//! once and each request clones them (reference counts, no parsing); a
//! successful reply's body is read and dropped, not gathered, since only an
//! error body is looked at.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use ebb_core::Nanos;
use ebb_rpc::service::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::{LoadError, Outcome, Target};

/// How long past its deadline a request may go unanswered before the
/// generator counts it as `deadline_exceeded` itself; leaves the server
/// time to send its own 504.
pub const CLIENT_GRACE_MS: u64 = 200;
/// Largest response body read; longer ones count as `response_unreadable`.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

type Sender = SendRequest<Full<Bytes>>;

pub struct HttpTarget {
    addr: String,
    uri: Uri,
    headers: HeaderMap,
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
        let first = open(addr)
            .await
            .map_err(|e| LoadError::Connect(addr.to_owned(), e))?;
        Ok(HttpTarget {
            addr: addr.to_owned(),
            uri,
            headers,
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
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            // The request may have been written before the connection broke.
            Err(_) => return Outcome::OutcomeUnknown,
        };
        let status = response.status().as_u16();
        let body = response.into_body();
        let outcome = if status == 200 {
            // Read to its end (so the connection can carry the next
            // request), not kept.
            match drain(body).await {
                Ok(()) => Outcome::Ok,
                Err(label) => return Outcome::Other(label.into()),
            }
        } else {
            match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
                Ok(b) => Outcome::from_http(status, &b.to_bytes()),
                Err(_) => return Outcome::Other("response_unreadable".into()),
            }
        };
        self.put_back(sender);
        outcome
    }
}

/// Reads `body` to its end, holding none of it; longer than
/// [`MAX_RESPONSE_BYTES`] is an error, as for a gathered body.
async fn drain(mut body: Incoming) -> Result<(), &'static str> {
    let mut read = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| "response_unreadable")?;
        if let Some(data) = frame.data_ref() {
            read += data.len();
            if read > MAX_RESPONSE_BYTES {
                return Err("response_unreadable");
            }
        }
    }
    Ok(())
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
