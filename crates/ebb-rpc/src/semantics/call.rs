//! A client call's bookkeeping and the client's configuration.

use bytes::Bytes;
use ebb_core::{Instant, Nanos};

use super::{
    HEARTBEAT_INTERVAL, HEARTBEAT_SILENCE, MAX_OUTSTANDING_CALLS, MAX_RETRANSMIT_INTERVAL,
    MAX_RETRANSMITS, RETRANSMIT_AFTER,
};
use crate::wire::Incarnation;

/// Timers and bounds of a client session; the defaults are the named
/// constants in [`super`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    pub max_outstanding_calls: usize,
    /// First resend delay (also the handshake ping retry interval).
    pub retransmit_after: Nanos,
    pub max_retransmit_interval: Nanos,
    /// Resends of one call per connection.
    pub max_retransmits: u32,
    pub heartbeat_interval: Nanos,
    pub heartbeat_silence: Nanos,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            max_outstanding_calls: MAX_OUTSTANDING_CALLS,
            retransmit_after: RETRANSMIT_AFTER,
            max_retransmit_interval: MAX_RETRANSMIT_INTERVAL,
            max_retransmits: MAX_RETRANSMITS,
            heartbeat_interval: HEARTBEAT_INTERVAL,
            heartbeat_silence: HEARTBEAT_SILENCE,
        }
    }
}

impl ClientConfig {
    /// Delay before the resend after `retransmits` earlier resends:
    /// exponential, capped.
    pub fn backoff(&self, retransmits: u32) -> Nanos {
        let factor = 1u64 << retransmits.min(32);
        Nanos(self.retransmit_after.0.saturating_mul(factor)).min(self.max_retransmit_interval)
    }
}

/// Where a session's connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// No connection: calls wait (and end `ConnectionLost` at the deadline).
    Disconnected,
    /// Connected, ping sent, pong not yet received: only idempotent calls go.
    Handshaking,
    /// The server's incarnation is confirmed for this connection.
    Ready,
}

/// What a call is, apart from its arguments: the method, and how it may be
/// sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallSpec {
    pub method: u16,
    /// May run more than once: resent freely, no server state.
    pub idempotent: bool,
    /// Arguments and reply are JSON, translated by the server's adapter.
    pub json: bool,
}

/// An idempotent call taken out of one session to be started on another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedCall {
    pub method: u16,
    pub json: bool,
    pub payload: Bytes,
    /// Absolute, as given to `start_call`.
    pub deadline: Instant,
}

#[derive(Debug)]
pub(super) struct Call {
    pub spec: CallSpec,
    pub payload: Bytes,
    pub started: Instant,
    pub deadline: Instant,
    /// Some copy has gone out (on this or an earlier connection).
    pub sent: bool,
    /// The incarnation named when first sent (`None`: not known then).
    pub sent_to: Option<Incarnation>,
    /// Resends on the current connection.
    pub retransmits: u32,
    /// Sent on an earlier connection than the current one, so it may have
    /// run even if the current connection is refused unread.
    pub sent_before: bool,
    /// Armed while in flight on the current connection.
    pub retransmit_at: Option<Instant>,
    /// Where its latest copy ends in the bytes handed to the current
    /// connection (see `ClientSession::handle_written`): until the
    /// transport has written that many, the copy is still leaving.
    pub copy_end: u64,
    /// The resend timer last found the copy still leaving. When it next
    /// finds the copy gone, the copy left only just now, so the server gets
    /// a whole resend interval from then, as a small request sent then
    /// would, instead of whatever was left of the postponed one.
    pub was_leaving: bool,
}

impl Call {
    pub fn new(spec: CallSpec, payload: Bytes, started: Instant, deadline: Instant) -> Call {
        Call {
            spec,
            payload,
            started,
            deadline,
            sent: false,
            sent_to: None,
            retransmits: 0,
            sent_before: false,
            retransmit_at: None,
            copy_end: 0,
            was_leaving: false,
        }
    }
}
