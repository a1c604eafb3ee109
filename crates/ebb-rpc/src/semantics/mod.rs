//! Call semantics as sans-IO state machines.
//!
//! [`client::ClientSession`] and [`server::ServerSession`] take frames, `now`
//! and connection events in, and give frames to send, call outcomes and the
//! next timer instant out. They never read a clock or touch a socket, so the
//! tokio transport and the deterministic fault simulation
//! (`tests/fault_sim.rs`) drive the very same code. The rules and the reasons
//! for each bound are in `docs/semantics.md`.

mod call;
pub mod client;
pub mod conns;
pub mod reply_table;
pub mod server;
pub mod service_time;
mod timers;
mod window;

use ebb_core::Nanos;

pub use call::{CallSpec, ClientConfig, LinkState, MovedCall};
pub use client::{CallOutcome, ClientSession};
pub use conns::{Caller, ConnId, ConnRefusal};
pub use reply_table::{NotKept, ReplyTable, Session, TableFull};
pub use server::{
    Action, CallKey, Incoming, ServerConfig, ServerSession, ServerStats, random_incarnation,
};

/// Protocol constant: a client never sends an at-most-once request with
/// `seq >= ack_below + MAX_REPLIES_PER_CLIENT`, so a server holds at most this
/// many saved replies and in-progress markers per client. Both sides must
/// agree on it, which is why it is a constant and not configuration.
pub const MAX_REPLIES_PER_CLIENT: u64 = 256;

/// Default bound on calls a client session has outstanding at once; beyond
/// it `start_call` refuses with `CallError::TooManyOutstanding`.
pub const MAX_OUTSTANDING_CALLS: usize = 1024;

/// Default first retransmission delay; it doubles per resend up to
/// [`MAX_RETRANSMIT_INTERVAL`].
pub const RETRANSMIT_AFTER: Nanos = Nanos::from_millis(200);

/// Default cap on the retransmission backoff.
pub const MAX_RETRANSMIT_INTERVAL: Nanos = Nanos::from_secs(2);

/// Default bound on resends of one call on one connection; after it the call
/// waits for its reply or its deadline. A reconnect starts a fresh count
/// (the old connection's frames are gone), so the total is bounded by this
/// times the reconnects that fit before the deadline.
pub const MAX_RETRANSMITS: u32 = 8;

/// Default interval after which an idle client pings the server.
pub const HEARTBEAT_INTERVAL: Nanos = Nanos::from_secs(1);

/// Default silence (nothing at all heard from the server on a live
/// connection) after which the server is declared unresponsive.
pub const HEARTBEAT_SILENCE: Nanos = Nanos::from_secs(5);

/// Default bound on client sessions a server keeps at-most-once state for.
pub const MAX_CLIENTS: usize = 4096;

/// Default bound on the payload bytes of the replies one client session
/// has saved (for resends). With `MAX_CLIENTS` sessions the table's saved
/// payloads stay below 4 GiB (plus at most 256 entries' fixed overhead per
/// session); a reply that does not fit is sent but saved as
/// `OutcomeUnknown`, so a resend learns the call ran and will not run
/// again.
pub const MAX_SAVED_REPLY_BYTES_PER_CLIENT: usize = 1024 * 1024;

/// Default bound on the payload bytes of the replies all client sessions
/// together have saved. The per-session bound alone allows
/// `MAX_CLIENTS` × 1 MiB = 4 GiB; this caps the table at 256 MiB. A reply
/// that does not fit is handled as at the per-session bound: sent, but
/// saved as `OutcomeUnknown`, so a resend learns the call ran and will not
/// run again. New calls are not refused at this bound: saved replies of
/// idle sessions go only when those sessions expire, and refusing every
/// caller meanwhile would let one peer's idle sessions deny service to all.
pub const MAX_SAVED_REPLY_BYTES_TOTAL: usize = 256 * 1024 * 1024;

/// Default bound on client sessions opened from one peer (IP address), so
/// one caller cannot fill the table and hold every at-most-once call of
/// everyone else off until its sessions expire.
pub const MAX_SESSIONS_PER_PEER: usize = 1024;

/// Default bound on connections a server holds at once; further ones are
/// answered "server full" and closed without reading.
pub const MAX_CONNECTIONS: usize = 1024;

/// Default bound on connections from one peer (IP address).
pub const MAX_CONNECTIONS_PER_PEER: usize = 256;

/// Default bound on requests of one connection executing at once; a new
/// call beyond it is refused (`Refused`, recorded) without running.
pub const MAX_IN_FLIGHT_PER_CONN: usize = 1024;

/// Default bound on distinct client ids one connection may speak for (a
/// client process uses one; a gateway multiplexing its callers a few).
/// Frames from further ids get no reply route and are refused, so the route
/// table stays bounded by connections times this.
pub const MAX_CLIENTS_PER_CONN: usize = 64;

/// Default time a call may go on running past its deadline (as the server
/// counts it, from when it read the request) before it is cancelled: by
/// then its caller has been answered, and the work serves nobody. Short,
/// so an overloaded node stops spending on abandoned calls soon; not zero,
/// so a call about to finish is not cut off for a tick of the timer.
pub const OVERDUE_GRACE: Nanos = Nanos::from_millis(100);

/// Default time a new connection has to send its first message (the
/// handshake ping); a connection silent that long is closed, so sockets
/// that never speak cannot hold connection slots.
pub const HANDSHAKE_TIMEOUT: Nanos = Nanos::from_secs(5);

/// Default time a connection may stay silent after its handshake before it
/// is closed. Live clients ping every `HEARTBEAT_INTERVAL` (1 s), so only a
/// gone or stuck client reaches it.
pub const IDLE_TIMEOUT: Nanos = Nanos::from_secs(30);

/// Default idle time after which a client's session on a server may be
/// evicted to make room for another. Safe because the server then answers
/// that client's old calls `OutcomeUnknown` (see `docs/semantics.md`).
pub const SESSION_EXPIRY: Nanos = Nanos::from_secs(60);

/// Identifies a call within one [`client::ClientSession`]: its sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);
