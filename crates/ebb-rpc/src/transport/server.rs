//! The TCP server runtime: accept loop, one reader per connection feeding
//! decoded requests to dispatch tasks, one coalescing writer per connection.
//!
//! A bad frame hurts only its own connection: it gets a typed error frame and
//! that connection is closed; the accept loop and other connections go on.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::TransportError;
use super::frame::{self, Frame, NO_CALL};
use super::outbuf::OutBuf;
use crate::CallError;
use crate::service::ServiceDispatch;

/// Connections served at once; further ones are closed on accept.
pub const MAX_CONNECTIONS: usize = 1024;
/// Requests one connection may have running at once; beyond it a request is
/// answered with `Rejected` without running.
pub const MAX_IN_FLIGHT_PER_CONN: usize = 1024;
/// Read buffer growth step per connection.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A bound server, ready to [`run`](Server::run).
pub struct Server<D> {
    listener: TcpListener,
    dispatch: Arc<D>,
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
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
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
            tokio::spawn(async move {
                serve_connection(stream, dispatch).await;
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

async fn serve_connection<D: ServiceDispatch>(stream: TcpStream, dispatch: Arc<D>) {
    let _ = stream.set_nodelay(true);
    let (mut read, write) = stream.into_split();
    let out = Arc::new(OutBuf::default());
    let writer = {
        let out = Arc::clone(&out);
        tokio::spawn(async move { out.drain_into(write).await })
    };
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
            let request = match frame::decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(Frame::Request {
                    call, method, args, ..
                })) => (call, method, args),
                Ok(Some(_)) => {
                    let err = CallError::BadRequest("a server accepts only request frames".into());
                    let _ = out.push_with(|b| frame::encode_error(b, NO_CALL, &err));
                    break 'conn;
                }
                Err(e) => {
                    // The stream cannot be resynchronised after a bad
                    // length: say why, then close this connection only.
                    let err = CallError::BadRequest(e.to_string());
                    let _ = out.push_with(|b| frame::encode_error(b, NO_CALL, &err));
                    break 'conn;
                }
            };
            let (call, method, args) = request;
            let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
                let err = CallError::Rejected(format!(
                    "over {MAX_IN_FLIGHT_PER_CONN} requests in flight on this connection"
                ));
                let _ = out.push_with(|b| frame::encode_error(b, call, &err));
                continue;
            };
            let dispatch = Arc::clone(&dispatch);
            let out = Arc::clone(&out);
            tokio::spawn(async move {
                let result = dispatch.dispatch(method, args).await;
                // A closed connection means the client will learn the
                // outcome another way (or not at all); nothing to do here.
                let _ = out.push_with(|b| match result {
                    Ok(reply) => frame::encode_reply(b, call, &reply),
                    Err(e) => frame::encode_error(b, call, &CallError::from(e)),
                });
                drop(permit);
            });
        }
    }
    out.close();
    let _ = writer.await;
}
