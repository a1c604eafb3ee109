//! Turning a connection away at the connection bounds with a typed answer
//! ("server full" or "peer full"), over plain TCP and over TLS alike.
//!
//! A plain peer gets the connection error written straight to the socket,
//! without waiting. A TLS peer could not read plain bytes (it would see a
//! broken handshake), so the server finishes the TLS handshake first and
//! sends the error inside it. That costs a handshake per refused
//! connection, so at most [`MAX_TLS_REFUSALS_IN_FLIGHT`] run at once and
//! each within `TLS_HANDSHAKE_TIMEOUT_MS`; beyond that bound a TLS peer is
//! closed without an answer (it sees the connection drop, as a peer that
//! cannot take the plain bytes does). Nothing a refused peer sends is read,
//! so nothing it sent runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::shared::Core;
use crate::transport::frames;
use crate::transport::tls::TLS_HANDSHAKE_TIMEOUT_MS;
use crate::wire::ConnErrorKind;

/// TLS handshakes a server runs at once only to refuse their connections;
/// further refused TLS peers are closed without an answer, so a flood of
/// connections beyond the bound cannot buy unbounded handshake work.
pub const MAX_TLS_REFUSALS_IN_FLIGHT: usize = 64;

/// Refused TLS connections being answered now, per server.
#[derive(Debug, Default)]
pub(super) struct TlsRefusals {
    in_flight: AtomicUsize,
}

/// Holds one of the [`MAX_TLS_REFUSALS_IN_FLIGHT`] places until dropped.
struct Slot<D>(Arc<Core<D>>);

impl<D> Drop for Slot<D> {
    fn drop(&mut self) {
        self.0
            .tls_refusals
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Tells a refused connection why and closes it; never waits in the
/// accept loop.
pub(super) fn refuse<D: Send + Sync + 'static>(
    stream: TcpStream,
    core: &Arc<Core<D>>,
    kind: ConnErrorKind,
    why: &str,
) {
    let mut bytes = BytesMut::new();
    let err = frames::connection_error(core.incarnation, kind, why.to_owned());
    // Far below any limit.
    let _ = core.codec.encode(&err, &mut bytes);
    let Some(tls) = core.tls.clone() else {
        // The few bytes fit an empty socket buffer; a peer that cannot
        // take them learns from the close instead.
        let _ = stream.try_write(&bytes);
        return;
    };
    let refusals = &core.tls_refusals;
    if refusals.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_TLS_REFUSALS_IN_FLIGHT {
        refusals.in_flight.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let slot = Slot(Arc::clone(core));
    tokio::spawn(async move {
        let answer = async {
            let mut tls_stream = tls.acceptor().accept(stream).await?;
            tls_stream.write_all(&bytes).await?;
            tls_stream.shutdown().await
        };
        // A peer that fails the handshake (no or a bad certificate) or is
        // too slow is dropped: it learns from the close.
        let limit = Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS);
        let _ = tokio::time::timeout(limit, answer).await;
        drop(slot);
    });
}
