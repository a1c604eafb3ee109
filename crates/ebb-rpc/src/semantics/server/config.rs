//! The bounds a server session enforces, gathered so a transport or a test
//! sets them in one value and every default is a named constant.

use ebb_core::Nanos;

use crate::semantics::{
    HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, MAX_CLIENTS, MAX_CLIENTS_PER_CONN, MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_PEER, MAX_IN_FLIGHT_PER_CONN, MAX_SAVED_REPLY_BYTES_PER_CLIENT,
    MAX_SAVED_REPLY_BYTES_TOTAL, MAX_SESSIONS_PER_PEER, OVERDUE_GRACE, SESSION_EXPIRY,
};

/// Bounds of a server's at-most-once state and of its connections; the
/// defaults are the named constants in [`crate::semantics`], documented with their
/// numbers in `docs/semantics.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub max_clients: usize,
    pub session_expiry: Nanos,
    pub max_sessions_per_peer: usize,
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    pub max_in_flight_per_conn: usize,
    pub max_clients_per_conn: usize,
    /// Payload bytes of saved replies one client session may hold; a reply
    /// beyond it is answered live but saved as `OutcomeUnknown`.
    pub max_saved_reply_bytes_per_client: usize,
    /// Payload bytes of saved replies all sessions together may hold; a
    /// reply beyond it is answered live but saved as `OutcomeUnknown`.
    pub max_saved_reply_bytes_total: usize,
    /// A connection that sends nothing this long after opening is closed.
    pub handshake_timeout: Nanos,
    /// A connection that sends nothing this long after its last message is
    /// closed.
    pub idle_timeout: Nanos,
    /// Calls one caller (its bearer token, else its peer address) may have
    /// executing at once, over all its connections; a new call beyond it is
    /// refused `CallerInFlight` (recorded). `None`: only the connection
    /// bounds apply (`max_connections_per_peer` × `max_in_flight_per_conn`
    /// per peer).
    pub max_in_flight_per_caller: Option<usize>,
    /// How long past its deadline a call may still run before it is
    /// cancelled (see `semantics::server::overdue`).
    pub overdue_grace: Nanos,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_clients: MAX_CLIENTS,
            session_expiry: SESSION_EXPIRY,
            max_sessions_per_peer: MAX_SESSIONS_PER_PEER,
            max_connections: MAX_CONNECTIONS,
            max_connections_per_peer: MAX_CONNECTIONS_PER_PEER,
            max_in_flight_per_conn: MAX_IN_FLIGHT_PER_CONN,
            max_clients_per_conn: MAX_CLIENTS_PER_CONN,
            max_saved_reply_bytes_per_client: MAX_SAVED_REPLY_BYTES_PER_CLIENT,
            max_saved_reply_bytes_total: MAX_SAVED_REPLY_BYTES_TOTAL,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            max_in_flight_per_caller: None,
            overdue_grace: OVERDUE_GRACE,
        }
    }
}
