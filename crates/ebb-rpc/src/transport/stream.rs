//! The two halves of a connection, plain TCP or TLS, as one type each.
//!
//! An enum, not a boxed trait object: the plain-TCP path costs one
//! predictable branch per read or write call (each of which is a system
//! call), no allocation and no virtual call, and the readers and writers
//! stay one concrete type whichever way a connection was opened.
//! Plain TCP halves are tokio's owned halves (no lock between them); a TLS
//! stream is one state machine, so its halves share it through
//! `tokio::io::split`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::TlsStream;

/// A connection's read side.
#[derive(Debug)]
pub enum ReadSide {
    Tcp(OwnedReadHalf),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

/// A TLS connection's write side. It keeps the socket's descriptor too:
/// the TLS stream owns the socket and its halves do not lend it out, yet a
/// writer that gives up on its peer must reach it to make the close a
/// reset ([`TlsWriteHalf::reset_on_close`]).
#[derive(Debug)]
pub struct TlsWriteHalf {
    half: WriteHalf<TlsStream<TcpStream>>,
    /// The descriptor of the socket inside `half`'s stream, open as long
    /// as either half lives.
    fd: RawFd,
}

impl TlsWriteHalf {
    /// Makes the socket's close (when both halves are gone) a reset: the
    /// kernel drops what it still holds for the peer instead of retrying
    /// it for minutes, and the peer learns at once that the connection
    /// ended, whether it reads or not.
    pub fn reset_on_close(&self) -> io::Result<()> {
        // SAFETY: `fd` is the descriptor of the socket inside the stream
        // that `self.half` shares; the stream, and so the descriptor,
        // stays open at least as long as `self`, which this borrow does
        // not outlive.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO))
    }
}

/// A connection's write side.
#[derive(Debug)]
pub enum WriteSide {
    Tcp(OwnedWriteHalf),
    Tls(TlsWriteHalf),
}

/// Splits a plain TCP connection.
pub fn tcp(stream: TcpStream) -> (ReadSide, WriteSide) {
    let (r, w) = stream.into_split();
    (ReadSide::Tcp(r), WriteSide::Tcp(w))
}

/// Splits an established TLS connection.
pub fn tls(stream: impl Into<TlsStream<TcpStream>>) -> (ReadSide, WriteSide) {
    let stream = stream.into();
    let fd = stream.get_ref().0.as_raw_fd();
    let (r, half) = tokio::io::split(stream);
    (ReadSide::Tls(r), WriteSide::Tls(TlsWriteHalf { half, fd }))
}

impl AsyncRead for ReadSide {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadSide::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ReadSide::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteSide {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            WriteSide::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Tcp(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            WriteSide::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    /// Plain TCP writes slices with one `writev`; TLS says what its stream
    /// does (a stream without vectored writes takes the first slice per
    /// call).
    fn is_write_vectored(&self) -> bool {
        match self {
            WriteSide::Tcp(w) => w.is_write_vectored(),
            WriteSide::Tls(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSide::Tcp(w) => Pin::new(w).poll_flush(cx),
            WriteSide::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSide::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            WriteSide::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

impl AsyncWrite for TlsWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().half).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().half).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.half.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().half).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().half).poll_shutdown(cx)
    }
}
