//! The TCP server runtime: accept loop, one reader per connection feeding
//! decoded requests to dispatch tasks, one coalescing writer per connection.
//!
//! A bad frame hurts only its own connection: it gets a typed error frame and
//! that connection is closed; the accept loop and other connections go on.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::TransportError;
use super::frames;
use super::outbuf::OutBuf;
use crate::service::ServiceDispatch;
use crate::wire::{FrameCodec, FrameKind, Status};

/// Connections served at once; further ones are closed on accept.
pub const MAX_CONNECTIONS: usize = 1024;
/// Requests one connection may have waiting on their method at once; beyond
/// it a request is answered with `Rejected` without running.
pub const MAX_IN_FLIGHT_PER_CONN: usize = 1024;
/// Read buffer growth step per connection.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A bound server, ready to [`run`](Server::run).
pub struct Server<D> {
    listener: TcpListener,
    dispatch: Arc<D>,
    incarnation: u64,
}

impl<D: ServiceDispatch> Server<D> {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: &str, dispatch: D) -> Result<Server<D>, TransportError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TransportError::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        Ok(Server {
            listener,
            dispatch: Arc::new(dispatch),
            // Never 0, which clients read as "unknown".
            incarnation: frames::os_random_u64().max(1),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// This server process's incarnation: replies carry it so clients can
    /// tell a restarted server (which lost its state) from the same one.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Serves until accepting fails for good. Transient accept errors (a
    /// client that reset before we accepted, running out of descriptors)
    /// are skipped, not fatal.
    pub async fn run(self) -> Result<(), TransportError> {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let stream = match self.listener.accept().await {
                Ok((s, _)) => s,
                Err(e) if is_transient(&e) => continue,
                Err(e) => return Err(TransportError::Accept(e)),
            };
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let dispatch = Arc::clone(&self.dispatch);
            let incarnation = self.incarnation;
            tokio::spawn(async move {
                serve_connection(stream, dispatch, incarnation).await;
                drop(permit);
            });
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || e.raw_os_error().is_some_and(|c| c == 23 || c == 24) // ENFILE, EMFILE
}

async fn serve_connection<D: ServiceDispatch>(
    stream: TcpStream,
    dispatch: Arc<D>,
    incarnation: u64,
) {
    let _ = stream.set_nodelay(true);
    let (mut read, write) = stream.into_split();
    let out = Arc::new(OutBuf::default());
    let writer = {
        let out = Arc::clone(&out);
        tokio::spawn(async move { out.drain_into(write).await })
    };
    let codec = FrameCodec::default();
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_CONN));
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    'conn: loop {
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        loop {
            let frame = match codec.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(f)) => f,
                Err(e) => {
                    // Past a bad length the stream cannot be resynchronised,
                    // and a bad header names no call: say why, then close
                    // this connection only.
                    let err = frames::connection_error(incarnation, e.to_string());
                    let _ = out.push_with(|b| frames::append(&codec, &err, b));
                    break 'conn;
                }
            };
            match frame.kind {
                FrameKind::Request => {}
                FrameKind::Ping => {
                    let pong = frames::pong(&frame, incarnation);
                    let _ = out.push_with(|b| frames::append(&codec, &pong, b));
                    continue;
                }
                FrameKind::Reply | FrameKind::Pong => {
                    let err = frames::refuse(
                        &frame,
                        incarnation,
                        Status::BadRequest,
                        "a server accepts only requests and pings".into(),
                    );
                    let _ = out.push_with(|b| frames::append(&codec, &err, b));
                    break 'conn;
                }
            }
            // Only this reader takes permits, so one seen here is still
            // there if the call has to move to a task below.
            if in_flight.available_permits() == 0 {
                let err = frames::refuse(
                    &frame,
                    incarnation,
                    Status::Rejected,
                    format!("over {MAX_IN_FLIGHT_PER_CONN} requests in flight on this connection"),
                );
                let _ = out.push_with(|b| frames::append(&codec, &err, b));
                continue;
            }
            let dispatch = Arc::clone(&dispatch);
            let mut call = Box::pin(async move {
                let outcome = dispatch.dispatch(frame.method, frame.payload.clone()).await;
                frames::reply(&frame, incarnation, outcome)
            });
            // Most calls finish without waiting: answer those inline, which
            // saves a task per call and lets their replies share one write.
            // A pending call moves to its own task, which polls it again
            // with a real waker.
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready(reply) = call.as_mut().poll(&mut cx) {
                let _ = out.push_with(|b| frames::append(&codec, &reply, b));
                continue;
            }
            let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
                // Unreachable by the check above; dropping the call is the
                // safe answer (the client's deadline ends it).
                continue;
            };
            let out = Arc::clone(&out);
            tokio::spawn(async move {
                let reply = call.await;
                // A closed connection means the client will learn the
                // outcome another way (or not at all); nothing to do here.
                let _ = out.push_with(|b| frames::append(&codec, &reply, b));
                drop(permit);
            });
        }
    }
    out.close();
    let _ = writer.await;
}
