//! Connection lifetime as the session sees it: accepted or refused at the
//! bounds, closed for silence, closed by the transport, kept alive by
//! partial frames. Kept apart from the per-message rules because none of
//! it touches a client session.

use std::net::IpAddr;

use ebb_core::Instant;

use super::ServerSession;
use crate::semantics::conns::{ConnId, ConnRefusal};

impl ServerSession {
    /// A transport accepted a connection from `peer`: admit it, or refuse it
    /// (then the transport sends the refusal and closes; nothing from it is
    /// read, so nothing runs).
    pub fn open_connection(&mut self, peer: IpAddr, now: Instant) -> Result<ConnId, ConnRefusal> {
        let opened = self.conns.open(
            peer,
            now,
            self.config.max_connections,
            self.config.max_connections_per_peer,
        );
        if opened.is_err() {
            self.stats.refused_connections += 1;
        }
        opened
    }

    /// Connections to close at `now` for silence (no handshake within
    /// `handshake_timeout`, nothing within `idle_timeout`), already closed
    /// here: the transport tells each why and drops it. Call it now and
    /// then; it walks every connection.
    pub fn close_silent(&mut self, now: Instant) -> Vec<ConnId> {
        let idle = if self.planted_handshake_timeout_when_idle {
            self.config.handshake_timeout
        } else {
            self.config.idle_timeout
        };
        let silent = self.conns.silent(now, self.config.handshake_timeout, idle);
        for &id in &silent {
            self.conns.close(id);
        }
        self.stats.closed_silent += silent.len() as u64;
        silent
    }

    /// The connection is gone. Its running calls still complete (and are
    /// recorded); their replies wait for the client to ask again.
    pub fn close_connection(&mut self, conn: ConnId) {
        self.conns.close(conn);
    }

    /// A closed connection's transport gave up writing its last replies to
    /// a peer that did not take them: counted here so the one stats record
    /// shows it beside the other connection ends. The calls were recorded
    /// already; their clients ask again elsewhere.
    pub fn count_close_flush_abandoned(&mut self) {
        self.stats.close_flushes_abandoned += 1;
    }

    /// Bytes of a message not yet whole arrived on `conn`: the peer is
    /// sending, so the connection is not idle. A large request crossing a
    /// slow link takes longer than the idle timeout, and its sender cannot
    /// ping meanwhile: its pings queue behind it in the stream.
    pub fn handle_progress(&mut self, conn: ConnId, now: Instant) {
        self.conns.heard(conn, now);
    }
}
