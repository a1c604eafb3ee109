//! What admission is told by the operator: whose figures it trusts, how
//! much the held queue may hold, and how far behind the gateway may fall.
//! Kept apart from the decisions so a config can be read, printed and
//! compared without any load in sight.

use ebb_core::Nanos;

/// Whose figures the estimated wait is made of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceTimeSource {
    /// The nodes' own reports ([`from_nodes`](super::from_nodes)): calls executing and the
    /// service time each measured itself.
    #[default]
    Nodes,
    /// The gateway's own count of calls in flight and its own timing of
    /// calls that had their node to themselves, its queueing included.
    /// What admission judged by before nodes reported; kept to compare.
    Gateway,
}

impl ServiceTimeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceTimeSource::Nodes => "nodes",
            ServiceTimeSource::Gateway => "gateway",
        }
    }
}

/// How the held queue is bounded, and whether deadlines are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Check deadlines against the estimated wait. The queue bounds apply
    /// either way: they protect the gateway's memory, not the caller.
    pub deadline_check: bool,
    /// Whose figures the estimated wait is made of.
    pub service_time_from: ServiceTimeSource,
    /// Requests that may be held (waiting for a node) at once.
    pub max_held_requests: usize,
    /// Argument bytes that may be held at once.
    pub max_held_bytes: usize,
    /// Longest a request may have waited inside the gateway (from its
    /// arrival to its dispatch decision, or in the held FIFO) before new
    /// requests are refused ([`admit_delay`](super::admit_delay)). Applies with
    /// `deadline_check`.
    pub max_gateway_delay: Nanos,
}

impl Default for AdmissionConfig {
    fn default() -> AdmissionConfig {
        AdmissionConfig {
            deadline_check: true,
            service_time_from: ServiceTimeSource::Nodes,
            max_held_requests: DEFAULT_MAX_HELD_REQUESTS,
            max_held_bytes: DEFAULT_MAX_HELD_BYTES,
            max_gateway_delay: DEFAULT_MAX_GATEWAY_DELAY,
        }
    }
}

/// [`AdmissionConfig::max_gateway_delay`] when the config sets none: long
/// beside the gateway's own cost per request (tens of microseconds), short
/// beside the deadlines callers give (hundreds of milliseconds and up).
pub const DEFAULT_MAX_GATEWAY_DELAY: Nanos = Nanos::from_millis(20);

/// Held requests when the config sets none.
pub const DEFAULT_MAX_HELD_REQUESTS: usize = 10_000;
/// Held argument bytes when the config sets none (64 MiB).
pub const DEFAULT_MAX_HELD_BYTES: usize = 64 << 20;
/// The retry-after hint when no figure to base it on exists yet.
pub const UNMEASURED_RETRY_AFTER: Nanos = Nanos::from_millis(100);
