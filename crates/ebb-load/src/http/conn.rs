//! One HTTP/1.1 keep-alive connection as one task: it takes the next
//! waiting call from the queue, writes its request, reads its response to
//! the end and reports the outcome, one request at a time (HTTP/1.1
//! without pipelining: at most one request in flight per connection).
//!
//! The task polls hyper's connection itself, beside the call (and beside
//! the wait for the next call, so a connection the server closed is seen
//! at once): the response is read, handed over and classified in one
//! wake-up of one task, with no task spawned per call and no second task
//! per connection. A connection that broke, or whose request outlived its
//! deadline (it still carries that request), is dropped and a new one is
//! opened for the next call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::queue::Queue;
use super::{MAX_RESPONSE_BYTES, Template};
use crate::Outcome;

/// Where a connection's give-up timer first points, before its first
/// call moves it: far enough never to fire first.
const IDLE_TIMER_S: u64 = 24 * 3_600;

type Io = TokioIo<TcpStream>;
type Body = Full<Bytes>;

/// An open connection: the request side and hyper's connection future,
/// which this task polls.
pub(super) struct Link {
    sender: SendRequest<Body>,
    conn: Pin<Box<Connection<Io, Body>>>,
}

/// Opens a connection to `addr` and does the HTTP/1.1 handshake.
pub(super) async fn open(addr: &str) -> Result<Link, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Link {
        sender,
        conn: Box::pin(conn),
    })
}

/// The connection's task: calls from `queue` until it is closed and empty.
pub(super) async fn serve(template: Arc<Template>, queue: Arc<Queue>, mut link: Option<Link>) {
    // One give-up timer for all of the connection's calls, moved to each
    // call's time. A timer made per call would, after an idle spell with
    // none pending, wake the runtime's parked thread to say so (an eventfd
    // write and an extra `epoll_wait` per call); one that stays pending
    // and is only moved later does not.
    let give_up = tokio::time::sleep(Duration::from_secs(IDLE_TIMER_S));
    tokio::pin!(give_up);
    loop {
        let job = match link.as_mut() {
            // Waiting for a call while hyper reads the connection: a close
            // by the server ends the link now, not at the next request.
            Some(l) => tokio::select! {
                biased;
                _ = l.conn.as_mut() => {
                    link = None;
                    continue;
                }
                job = queue.next() => job,
            },
            None => queue.next().await,
        };
        let Some(job) = job else {
            return;
        };
        give_up.as_mut().reset(job.give_up.into());
        let outcome = tokio::select! {
            biased;
            outcome = call(&template, &mut link) => outcome,
            () = give_up.as_mut() => {
                // The connection still carries the unanswered request.
                link = None;
                Outcome::DeadlineExceeded
            }
        };
        job.reply.send(outcome);
    }
}

/// One request on `link` (opened first if there is none); leaves `link`
/// empty if the connection cannot carry another.
async fn call(template: &Template, link: &mut Option<Link>) -> Outcome {
    if link.is_none() {
        match open(&template.addr).await {
            Ok(l) => *link = Some(l),
            Err(_) => return Outcome::Other("connect_failed".into()),
        }
    }
    let Some(Link { sender, conn }) = link.as_mut() else {
        return Outcome::Other("connect_failed".into());
    };
    let (outcome, reusable) = alongside(conn, exchange(template, sender)).await;
    if !reusable {
        *link = None;
    }
    outcome
}

/// Runs `call` while polling `conn` (which does the connection's reads
/// and writes); says whether the connection is still open after it.
async fn alongside<F: Future<Output = (Outcome, bool)>>(
    conn: &mut Pin<Box<Connection<Io, Body>>>,
    call: F,
) -> (Outcome, bool) {
    tokio::pin!(call);
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            // The connection first: what it reads is then ready for the
            // call in the same wake-up.
            _ = conn.as_mut(), if open => open = false,
            (outcome, fine) = &mut call => return (outcome, fine && open),
        }
    }
}

/// Writes the run's request and reads its response; the flag says whether
/// the exchange left the connection fit for the next one.
async fn exchange(template: &Template, sender: &mut SendRequest<Body>) -> (Outcome, bool) {
    if sender.ready().await.is_err() {
        return (Outcome::Other("connect_failed".into()), false);
    }
    let mut request = Request::new(Full::new(template.body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = template.uri.clone();
    *request.headers_mut() = template.headers.clone();
    let response = match sender.send_request(request).await {
        Ok(r) => r,
        // The request may have been written before the connection broke.
        Err(_) => return (Outcome::OutcomeUnknown, false),
    };
    let status = response.status().as_u16();
    let body = response.into_body();
    if status == 200 {
        // Read to its end (so the connection can carry the next request),
        // not kept.
        return match drain(body).await {
            Ok(()) => (Outcome::Ok, true),
            Err(label) => (Outcome::Other(label.into()), false),
        };
    }
    match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
        Ok(b) => (Outcome::from_http(status, &b.to_bytes()), true),
        Err(_) => (Outcome::Other("response_unreadable".into()), false),
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
