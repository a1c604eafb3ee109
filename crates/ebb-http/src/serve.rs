//! Serving a router on a TCP listener with a bound on connections.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Pause after a failed `accept` (out of descriptors, mostly), so the loop
/// does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE_MS: u64 = 50;

/// Serves `router` on `listener` until the future is dropped, with at most
/// `max_connections` open at once; further connections wait in the kernel's
/// accept backlog until one closes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
) -> io::Result<()> {
    axum::serve(BoundedListener::new(listener, max_connections), router).await
}

/// A listener that holds at most `max_connections` accepted connections at
/// once, for servers that hand axum their own per-connection service (the
/// gateway's front) and so cannot use [`serve`]; past the bound, connections
/// wait in the kernel's accept backlog instead of each costing a task.
pub struct BoundedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl BoundedListener {
    pub fn new(listener: TcpListener, max_connections: usize) -> Self {
        Self {
            inner: listener,
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
        }
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = Counted;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Counted, std::net::SocketAddr) {
        // The semaphore is never closed, so acquiring cannot fail; should it
        // ever, serving without a permit beats stopping.
        let permit = Arc::clone(&self.permits).acquire_owned().await.ok();
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    // Replies are small and latency matters more than packets.
                    let _ = stream.set_nodelay(true);
                    let io = Counted {
                        stream,
                        _permit: permit,
                    };
                    return (io, addr);
                }
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(ACCEPT_ERROR_PAUSE_MS))
                        .await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that gives its slot back when it closes.
pub struct Counted {
    stream: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Serves each connection `listener` accepts with hyper's HTTP/1 server
/// and the service `front` makes for its peer, until the future is
/// dropped. For a server that routes some requests itself (the gateway's
/// calls): `axum::serve` would wrap each request for tower (a clone of the
/// connection's service, a boxed body, a oneshot), which this does not.
pub async fn serve_http1<F, S, B>(mut listener: BoundedListener, mut front: F)
where
    F: FnMut(std::net::SocketAddr) -> S,
    S: hyper::service::Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::http::Response<B>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut http1 = hyper::server::conn::http1::Builder::new();
    // A response is written out whole with one `write` (its head and a
    // small JSON body copied together) rather than gathered with `writev`,
    // and pipelined requests' responses are flushed together.
    //
    // Half-closed connections are allowed: otherwise, while a request is
    // being answered, hyper reads the socket to see whether its client
    // hung up, which costs a `read` per request and, with the request's
    // bytes still in use, a fresh 8 KiB read buffer. A client that shuts
    // its side down now gets its answer; one that is gone is noticed when
    // its answer is written, and its call, not cancelled early, ends by
    // its deadline as any call does.
    http1.writev(false).pipeline_flush(true).half_close(true);
    loop {
        let (io, peer) = axum::serve::Listener::accept(&mut listener).await;
        let service = front(peer);
        let conn = http1.serve_connection(hyper_util::rt::TokioIo::new(io), service);
        tokio::spawn(async move {
            // A connection's end, orderly or not, concerns only itself.
            let _ = conn.await;
        });
    }
}
