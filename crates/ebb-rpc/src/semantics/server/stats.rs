//! Counts of every decision the server session takes, so metrics and the
//! tests that must show a rare path ran read them from one place.

use crate::wire::Refusal;

/// Counts of the decisions taken, for metrics and for tests that must show
/// a rare path ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub executed: u64,
    /// Duplicates answered from a saved reply (completion or refusal).
    pub saved_replies: u64,
    /// Duplicates of a running call that waited for it.
    pub waits: u64,
    /// Requests below their client session's floor: a retransmit of a
    /// call whose record was already forgotten, answered `OutcomeUnknown`
    /// (it may have run) and never run again.
    pub too_old: u64,
    pub refused_deadline: u64,
    /// Admitted calls that waited for a worker past their deadline and so
    /// did not start (refused `DeadlinePassed`, recorded).
    pub refused_deadline_before_start: u64,
    /// Calls still running past their deadline plus the grace, cancelled
    /// (recorded as `OutcomeUnknown`).
    pub cancelled_overdue: u64,
    pub refused_in_flight: u64,
    pub refused_clients_per_conn: u64,
    pub refused_handshakes: u64,
    pub refused_connections: u64,
    /// Connections closed for silence (handshake or idle timeout).
    pub closed_silent: u64,
    /// Calls whose method panicked.
    pub panicked: u64,
    /// Replies sent but saved as `OutcomeUnknown`: over the saved-reply
    /// bytes of their session or of the whole table.
    pub replies_not_kept: u64,
    /// Handshakes whose secret did not prove their client id (a peer
    /// forging another client's id), refused without touching a session.
    pub refused_forged_handshakes: u64,
    /// At-most-once requests on a connection that had not proven their
    /// client id, refused without touching a session.
    pub refused_unproven_requests: u64,
    /// Handshakes without an accepted bearer token, on a server that
    /// requires one.
    pub refused_unauthorized_handshakes: u64,
    /// Requests on a connection that presented no accepted bearer token.
    pub refused_unauthorized_requests: u64,
    /// Describe requests on a connection that presented no accepted bearer
    /// token, on a server that requires one: left unanswered.
    pub refused_unauthorized_describes: u64,
    /// Resize requests on a connection whose credentials were not accepted
    /// (no accepted bearer token where one is required, or no proven client
    /// id): left unanswered, nothing changed.
    pub refused_unauthorized_resizes: u64,
    /// Resize requests answered (applied, or answered that this server does
    /// not resize).
    pub resizes: u64,
    /// New calls refused over their caller's in-flight bound.
    pub refused_caller_in_flight: u64,
    /// Connections closed with replies still unwritten that their peer
    /// did not take within the transport's close-flush bound
    /// (`CLOSE_FLUSH_TIMEOUT_MS`): the rest was dropped, the socket reset.
    /// Counted for the transport, which owns that timer
    /// ([`super::ServerSession::count_close_flush_abandoned`]).
    pub close_flushes_abandoned: u64,
}

/// Counts a refused new call under its reason.
pub(super) fn count_refusal(stats: &mut ServerStats, refusal: Refusal) {
    let n = match refusal {
        Refusal::DeadlinePassed => &mut stats.refused_deadline,
        Refusal::InFlight => &mut stats.refused_in_flight,
        Refusal::CallerInFlight => &mut stats.refused_caller_in_flight,
        _ => &mut stats.refused_clients_per_conn,
    };
    *n += 1;
}
