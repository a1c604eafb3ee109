//! One connection to the server as the link holds it: its output side,
//! where callers write, and its input side, the driver's alone; and how
//! one is opened (TCP, then TLS if configured).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::super::outbuf::OutBuf;
use super::super::stream::{self, ReadSide};
use super::super::tls::ClientTls;
use super::super::unacked::SocketQueue;
use super::readbuf::ReadBuf;
use crate::CallError;

/// The output side of the current connection, where callers write.
pub(super) struct ConnOut {
    pub(super) out: Arc<OutBuf>,
    /// Bytes of frames pushed beside the session's (Describe requests),
    /// left out of what the session is told was written.
    pub(super) own_bytes: u64,
}

impl Drop for ConnOut {
    fn drop(&mut self) {
        self.out.close();
    }
}

/// The input side of the current connection, the driver's alone.
pub(super) struct ConnIn {
    pub(super) read: ReadSide,
    pub(super) buf: ReadBuf,
    /// The socket's queue of bytes the server has not acknowledged (valid
    /// while `read` holds the socket open).
    pub(super) queue: SocketQueue,
}

/// Opens a connection to `addr`: TCP, then TLS if given.
pub(super) async fn open(
    addr: &str,
    tls: Option<&ClientTls>,
    timeout_ms: u64,
) -> Result<(ConnIn, ConnOut), CallError> {
    let cannot = |e: &dyn std::fmt::Display| CallError::ConnectionLost {
        sent: false,
        cause: format!("cannot connect to {addr}: {e}"),
    };
    let limit = Duration::from_millis(timeout_ms);
    let stream = tokio::time::timeout(limit, TcpStream::connect(addr))
        .await
        .map_err(|_| cannot(&format!("no answer within {timeout_ms} ms")))?
        .map_err(|e| cannot(&e))?;
    let _ = stream.set_nodelay(true);
    super::super::sockbuf::widen(&stream);
    let queue = SocketQueue::of(&stream);
    let (read, write) = match tls {
        None => stream::tcp(stream),
        Some(tls) => {
            let handshake = tls.connect(addr, stream);
            let tls_stream = tokio::time::timeout(limit, handshake)
                .await
                .map_err(|_| cannot(&format!("no TLS handshake within {timeout_ms} ms")))?
                .map_err(|e| cannot(&format!("TLS handshake failed: {e}")))?;
            stream::tls(tls_stream)
        }
    };
    let out = Arc::new(OutBuf::default());
    let writer = Arc::clone(&out);
    tokio::spawn(async move { writer.drain_in_place(write).await });
    let conn_in = ConnIn {
        read,
        buf: ReadBuf::default(),
        queue,
    };
    Ok((conn_in, ConnOut { out, own_bytes: 0 }))
}

/// What the driver needs besides the session to keep a connection.
pub(super) struct Dial {
    pub(super) tls: Option<ClientTls>,
    pub(super) connect_timeout_ms: u64,
}
