//! A pure, seeded world for the fault simulation: clients, servers, a lossy
//! network, crashes. No tokio, no threads, no wall clock; every map whose
//! order matters is a `BTreeMap`, so a seed replays exactly.

pub mod world;

use ebb_core::Nanos;

/// Fault and workload knobs of one run, drawn from the seed.
#[derive(Clone, Debug)]
pub struct Faults {
    pub drop: f64,
    pub duplicate: f64,
    pub max_delay: Nanos,
    /// Mean time between connection resets per connection.
    pub reset_every: Nanos,
    /// Mean time between crashes per server.
    pub crash_every: Nanos,
    /// Probability a client is told at once that a crashed server's
    /// connection broke (otherwise only heartbeat silence tells it).
    pub crash_notified: f64,
}

/// Counts over a run, summed over seeds to show the run was not vacuous.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub calls: u64,
    pub ok: u64,
    pub outcome_unknown: u64,
    pub deadline: u64,
    pub connection_lost: u64,
    pub unresponsive: u64,
    pub rejected: u64,
    pub other_err: u64,
    pub executions: u64,
    pub crashes: u64,
    pub resets: u64,
    pub moves: u64,
    pub frames: u64,
    /// Server answered a duplicate from its saved replies.
    pub saved_replies: u64,
    /// Server refused an at-most-once request `OutcomeUnknown`.
    pub orphans_refused: u64,
    /// Duplicate of a running call: waited instead of running again.
    pub waits: u64,
    pub dropped_below_ack: u64,
    /// Calls that ended `Panicked`.
    pub panicked: u64,
    /// At-most-once requests the server answered `Rejected`.
    pub refusals: u64,
    /// Later copies of a refused at-most-once call, answered the recorded
    /// refusal again (not run).
    pub refusals_repeated: u64,
    /// Connections the server turned away unread.
    pub conns_refused: u64,
    /// Replies sent but saved as `OutcomeUnknown` (a byte bound met).
    pub replies_not_kept: u64,
    /// Connections closed for sending nothing within the handshake timeout.
    pub closed_handshake: u64,
    /// Connections closed for silence past the idle timeout.
    pub closed_idle: u64,
    /// Of those, clients' connections (told `Timeout`, then closed).
    pub clients_timed_out: u64,
    /// `Timeout` connection errors that reached a client.
    pub timeout_notices: u64,
    /// Handshakes by a peer without the client's secret, refused.
    pub forged_handshakes_refused: u64,
    /// Of those, ones naming a session the server held (a forged resume).
    pub forged_resumes_refused: u64,
    /// Copies of a client's at-most-once request sent by a forger, refused.
    pub forged_requests_refused: u64,
    /// Handshakes without an accepted bearer token (an outsider's, or a
    /// forger's), refused `Unauthorized`.
    pub unauthorized_handshakes: u64,
    /// Requests on a connection without an accepted token, refused
    /// `Unauthorized`, not run.
    pub unauthorized_requests: u64,
    /// Calls of an outsider (no or a wrong token) that ended `Refused
    /// (Unauthorized)`.
    pub outsider_calls_refused: u64,
    /// Describe requests on a connection without an accepted token, left
    /// unanswered.
    pub describes_refused: u64,
    /// New calls refused `CallerInFlight`: their caller (a token shared by
    /// several clients) was at its bound.
    pub caller_refusals: u64,
    /// Calls that started running while another caller on the same server
    /// was at its bound: one caller full does not block the others.
    pub served_beside_full_caller: u64,
    /// Blocking calls that waited for a worker past their due and were
    /// refused at their start, recorded (did not run).
    pub refused_before_start: u64,
    /// Calls still running past their due plus the grace, cancelled and
    /// recorded `OutcomeUnknown`.
    pub cancelled_overdue: u64,
    /// Late copies of calls refused at their start, answered the recorded
    /// refusal (not run).
    pub refused_copies_answered: u64,
    /// Late copies of cancelled calls, answered the recorded
    /// `OutcomeUnknown` (not run again).
    pub cancelled_copies_answered: u64,
    /// Resizes answered and applied to the server's workers.
    pub resizes_applied: u64,
    /// Of those, ones that asked past the server's bound, cut to it.
    pub resizes_cut_to_bound: u64,
    /// Resizes answered that the server does not resize.
    pub resizes_not_resizable: u64,
    /// Resizes left unanswered: their connection's handshake was not
    /// accepted (yet, or ever).
    pub resizes_unanswered: u64,
    /// `Resized` frames a client sent to a server, dropped.
    pub resized_dropped: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.calls += o.calls;
        self.ok += o.ok;
        self.outcome_unknown += o.outcome_unknown;
        self.deadline += o.deadline;
        self.connection_lost += o.connection_lost;
        self.unresponsive += o.unresponsive;
        self.rejected += o.rejected;
        self.other_err += o.other_err;
        self.executions += o.executions;
        self.crashes += o.crashes;
        self.resets += o.resets;
        self.moves += o.moves;
        self.frames += o.frames;
        self.saved_replies += o.saved_replies;
        self.orphans_refused += o.orphans_refused;
        self.waits += o.waits;
        self.dropped_below_ack += o.dropped_below_ack;
        self.panicked += o.panicked;
        self.refusals += o.refusals;
        self.refusals_repeated += o.refusals_repeated;
        self.conns_refused += o.conns_refused;
        self.replies_not_kept += o.replies_not_kept;
        self.closed_handshake += o.closed_handshake;
        self.closed_idle += o.closed_idle;
        self.clients_timed_out += o.clients_timed_out;
        self.timeout_notices += o.timeout_notices;
        self.forged_handshakes_refused += o.forged_handshakes_refused;
        self.forged_resumes_refused += o.forged_resumes_refused;
        self.forged_requests_refused += o.forged_requests_refused;
        self.unauthorized_handshakes += o.unauthorized_handshakes;
        self.unauthorized_requests += o.unauthorized_requests;
        self.outsider_calls_refused += o.outsider_calls_refused;
        self.describes_refused += o.describes_refused;
        self.caller_refusals += o.caller_refusals;
        self.served_beside_full_caller += o.served_beside_full_caller;
        self.refused_before_start += o.refused_before_start;
        self.cancelled_overdue += o.cancelled_overdue;
        self.refused_copies_answered += o.refused_copies_answered;
        self.cancelled_copies_answered += o.cancelled_copies_answered;
        self.resizes_applied += o.resizes_applied;
        self.resizes_cut_to_bound += o.resizes_cut_to_bound;
        self.resizes_not_resizable += o.resizes_not_resizable;
        self.resizes_unanswered += o.resizes_unanswered;
        self.resized_dropped += o.resized_dropped;
    }
}
