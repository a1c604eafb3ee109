//! TLS: a stream written only through `&mut` and an async context, so one
//! writer at a time writes everything pending. On a client that is the
//! connection's writer task, which swaps out whatever has accumulated and
//! writes it at once, many frames per record and per syscall under load
//! (two buffers swapped back and forth, so steady state allocates nothing).
//!
//! A server connection has no writer task: the task that reads requests
//! and runs calls also writes their replies, as plain TCP does in place,
//! without a task switch per batch. It hands the read's replies to rustls
//! (which turns them into records at once, holding at most its buffer limit
//! of them while the socket is full) and flushes when the batch is done;
//! what other threads push (a worker's or a deferred reply) wakes it to
//! write. What the socket does not take stays in the buffer, so memory is
//! bounded by `MAX_PENDING_WRITE_BYTES` plus rustls's limit (64 KiB by
//! default), and the reader pauses as on plain TCP.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{INITIAL_BUF_BYTES, OutBuf, Pending};
use crate::transport::framebuf::{FrameBuf, MAX_SLICES_PER_WRITE};
use crate::transport::stream::WriteSide;

impl OutBuf {
    /// TLS: this task writes everything, swapping the pending buffer out.
    pub(super) async fn drain_swapping(&self, mut sock: WriteSide) -> io::Result<()> {
        let mut spare = FrameBuf::with_capacity(INITIAL_BUF_BYTES);
        let result = loop {
            {
                let Ok(mut pending) = self.lock() else {
                    break Ok(());
                };
                std::mem::swap(&mut pending.buf, &mut spare);
            }
            if spare.is_empty() {
                if self.is_closed() {
                    break Ok(());
                }
                self.wake.notified().await;
                continue;
            }
            if let Err(e) = write_frames(&mut sock, &spare, &self.written).await {
                break Err(e);
            }
            // TLS may hold back records until flushed.
            if let Err(e) = sock.flush().await {
                break Err(e);
            }
            if self.recycle {
                spare.clear_recycling();
            } else {
                spare.clear();
            }
            self.drained.notify_waiters();
        };
        let _ = sock.shutdown().await;
        result
    }
}

/// Writes all of `frames`: with one `write` when they are contiguous, else
/// with vectored writes of the headers and the shared payloads in place
/// (a stream without vectored writes, such as TLS, takes one slice per
/// call, which is still correct).
async fn write_frames(
    sock: &mut WriteSide,
    frames: &FrameBuf,
    counted: &AtomicU64,
) -> io::Result<()> {
    if let Some(bytes) = frames.contiguous() {
        sock.write_all(bytes).await?;
        counted.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        return Ok(());
    }
    let total = frames.len();
    let mut written = 0;
    while written < total {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES_PER_WRITE];
        let n = frames.slices_from(written, &mut slices);
        match sock.write_vectored(&slices[..n]).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            k => {
                written += k;
                counted.fetch_add(k as u64, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

/// The writes of a connection whose own task is its only writer (a TLS
/// server connection). Every method keeps its progress in the buffer, so a
/// write the task abandons for something else (a `select!` branch dropped)
/// loses nothing and the next call goes on where it stopped.
impl OutBuf {
    /// Writes what is pending as far as `sock` takes it now, then flushes.
    /// Ready once everything pushed is written and flushed; pending (with
    /// `cx` registered) while the socket is full.
    pub fn poll_write_here(
        &self,
        sock: &mut WriteSide,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let Ok(mut pending) = self.lock() else {
            return Poll::Ready(Ok(()));
        };
        let Pending {
            buf,
            written,
            unflushed,
            ..
        } = &mut *pending;
        while *written < buf.len() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES_PER_WRITE];
            let n = buf.slices_from(*written, &mut slices);
            match ready!(Pin::new(&mut *sock).poll_write_vectored(cx, &slices[..n]))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                k => {
                    *written += k;
                    *unflushed = true;
                    self.written.fetch_add(k as u64, Ordering::Relaxed);
                }
            }
        }
        if !buf.is_empty() {
            if self.recycle {
                buf.clear_recycling();
            } else {
                buf.clear();
            }
            *written = 0;
        }
        if *unflushed {
            ready!(Pin::new(&mut *sock).poll_flush(cx))?;
            *unflushed = false;
        }
        drop(pending);
        self.drained.notify_waiters();
        Poll::Ready(Ok(()))
    }

    /// Writes without waiting: as much as `sock` takes now. What remains
    /// is left for [`OutBuf::write_here`].
    pub async fn try_write_here(&self, sock: &mut WriteSide) -> io::Result<()> {
        std::future::poll_fn(|cx| match self.poll_write_here(sock, cx) {
            Poll::Pending => Poll::Ready(Ok(())),
            Poll::Ready(done) => Poll::Ready(done),
        })
        .await
    }

    /// Waits until something is to be written (pushed by another thread,
    /// or left by a socket that was full), then writes all of it, waiting
    /// for room. Returns once everything is written and flushed, or the
    /// stream failed.
    pub async fn write_here(&self, sock: &mut WriteSide) -> io::Result<()> {
        loop {
            let wake = self.wake.notified();
            tokio::pin!(wake);
            // Registered before the check, so a push in between still
            // wakes us.
            wake.as_mut().enable();
            if self.lock().is_ok_and(|p| p.unwritten() > 0 || p.unflushed) {
                break;
            }
            wake.await;
        }
        std::future::poll_fn(|cx| self.poll_write_here(sock, cx)).await
    }

    /// The end of a connection whose task wrote its output: writes what is
    /// left (a last connection error among it), shuts the stream's write
    /// side (TLS's close notification) and marks the buffer ended.
    pub async fn close_here(&self, mut sock: WriteSide) -> io::Result<()> {
        self.close();
        let written = std::future::poll_fn(|cx| self.poll_write_here(&mut sock, cx)).await;
        let shut = sock.shutdown().await;
        self.writer_ended();
        written.and(shut)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use rcgen::{CertificateParams, KeyPair};
    use tokio::io::AsyncReadExt;

    use super::super::testing::{FRAME_BYTES, FRAMES, frame, small_buffered_pair};
    use super::*;
    use crate::transport::stream;
    use crate::transport::tls::{ClientTls, ServerTls};

    /// A server's and a client's TLS over one small-buffered socket pair:
    /// the server's end first.
    async fn tls_pair(
        dir: &std::path::Path,
    ) -> (
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    ) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let server = ServerTls::from_pem_files(&cert_path, &key_path, None).unwrap();
        let client = ClientTls::from_pem_files(&cert_path, None).unwrap();
        let (sending, receiving) = small_buffered_pair().await;
        let accepting = tokio::spawn(async move { server.acceptor().accept(sending).await });
        let client_end = client.connect("127.0.0.1:1", receiving).await.unwrap();
        (accepting.await.unwrap().unwrap(), client_end)
    }

    /// A connection that writes its own TLS output: frames go to rustls
    /// until the socket and rustls's buffer are full, the rest waits in the
    /// buffer and leaves once the peer reads; a frame another producer
    /// pushes while nothing is pending wakes the waiting writer; the peer
    /// gets every byte in order, then the close.
    #[tokio::test]
    async fn own_tls_writes_wait_for_room_and_are_woken_by_other_producers() {
        let dir = tempfile::tempdir().unwrap();
        let (server_end, mut client_end) = tls_pair(dir.path()).await;
        let (_read, mut write) = stream::tls(server_end);
        let out = Arc::new(OutBuf::default());
        let held_back = |out: &OutBuf| {
            let p = out.pending.lock().unwrap();
            p.unwritten() > 0 || p.unflushed
        };
        let mut want = Vec::with_capacity(FRAMES * FRAME_BYTES);
        let mut i = 0;
        // Nobody reads yet: the socket and rustls's buffer fill.
        while !held_back(&out) {
            let f = frame(i);
            out.append_with(|b| b.head_mut().extend_from_slice(&f))
                .unwrap();
            want.extend_from_slice(&f);
            i += 1;
            out.try_write_here(&mut write).await.unwrap();
            assert!(i < FRAMES, "the socket never filled");
        }
        assert!(i > 1, "nothing was written before the socket filled");
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client_end.read_to_end(&mut got).await.unwrap();
            got
        });
        // The peer reads: what was held back leaves.
        out.write_here(&mut write).await.unwrap();
        assert!(!held_back(&out));
        // Nothing is pending, so the writer waits until another producer
        // pushes.
        let last = frame(i);
        want.extend_from_slice(&last);
        let producer = {
            let out = Arc::clone(&out);
            async move {
                tokio::task::yield_now().await;
                out.push_with(|b| b.head_mut().extend_from_slice(&last))
                    .unwrap();
            }
        };
        let (wrote, ()) = tokio::join!(out.write_here(&mut write), producer);
        wrote.unwrap();
        assert!(!held_back(&out));
        assert_eq!(out.written(), want.len() as u64);
        out.close_here(write).await.unwrap();
        assert!(out.is_closed());
        let got = reader.await.unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes reordered or corrupted");
    }
}
