//! The accept loop: asks the session whether to take each connection (the
//! connection bounds, in total and per peer), refuses with a typed answer
//! or opens it (the TLS handshake within `TLS_HANDSHAKE_TIMEOUT_MS`), and
//! between accepts sweeps expired client sessions and silent connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::shared::Core;
use super::{MIN_SWEEP_INTERVAL_MS, Server, conn, refuse};
use crate::semantics::{ConnId, ConnRefusal};
use crate::service::ServiceDispatch;
use crate::transport::TransportError;
use crate::transport::stream;
use crate::transport::tls::TLS_HANDSHAKE_TIMEOUT_MS;
use crate::wire::ConnErrorKind;

impl<D: ServiceDispatch> Server<D> {
    /// Serves until accepting fails for good. Transient accept errors (a
    /// client that reset before we accepted, running out of descriptors)
    /// are skipped, not fatal. Idle client sessions are expired as it goes,
    /// every quarter of the configured session expiry, and silent
    /// connections are closed every quarter of the shorter of the
    /// handshake and idle timeouts.
    pub async fn run(self) -> Result<(), TransportError> {
        let config = *self.core.lock().session.config();
        let quarter = |n: ebb_core::Nanos| {
            (Duration::from(n) / 4).max(Duration::from_millis(MIN_SWEEP_INTERVAL_MS))
        };
        let mut sweeps = tokio::time::interval(quarter(config.session_expiry));
        let mut conn_sweeps =
            tokio::time::interval(quarter(config.handshake_timeout.min(config.idle_timeout)));
        loop {
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = sweeps.tick() => {
                    let now = self.core.now();
                    self.core.lock().session.expire_idle(now);
                    continue;
                }
                _ = conn_sweeps.tick() => {
                    self.core.close_silent();
                    continue;
                }
            };
            let (stream, peer) = match accepted {
                Ok(s) => s,
                Err(e) if is_transient(&e) => continue,
                Err(e) => return Err(TransportError::Accept(e)),
            };
            let now = self.core.now();
            let opened = self.core.lock().session.open_connection(peer.ip(), now);
            match opened {
                Ok(conn) => {
                    let core = Arc::clone(&self.core);
                    tokio::spawn(open_connection(stream, peer, core, conn));
                }
                Err(refusal) => {
                    let kind = match refusal {
                        ConnRefusal::ServerFull { .. } => ConnErrorKind::ServerFull,
                        ConnRefusal::PeerFull { .. } => ConnErrorKind::PeerFull,
                    };
                    refuse::refuse(stream, &self.core, kind, &refusal.to_string());
                }
            }
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

/// Runs the TLS handshake if the server has TLS, then serves. A failed
/// or slow handshake closes the connection: nothing was read from it.
async fn open_connection<D: ServiceDispatch>(
    stream: TcpStream,
    _peer: SocketAddr,
    core: Arc<Core<D>>,
    conn: ConnId,
) {
    let _ = stream.set_nodelay(true);
    let Some(tls) = core.tls.clone() else {
        let (read, write) = stream::tcp(stream);
        return conn::serve_connection(read, write, core, conn).await;
    };
    let limit = Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS);
    match tokio::time::timeout(limit, tls.acceptor().accept(stream)).await {
        Ok(Ok(tls_stream)) => {
            let (read, write) = stream::tls(tls_stream);
            conn::serve_connection(read, write, core, conn).await;
        }
        Ok(Err(_)) | Err(_) => core.lock().session.close_connection(conn),
    }
}
