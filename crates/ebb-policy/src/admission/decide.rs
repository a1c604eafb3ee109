//! The decision for one request against the work ahead: queue room first
//! (it protects the gateway's memory whatever the deadline), then capacity,
//! then the deadline against the estimated finish.

use ebb_core::{Instant, Nanos};

use super::config::{AdmissionConfig, UNMEASURED_RETRY_AFTER};
use super::load::{Load, expected_finish};

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The estimated finish is past the deadline.
    DeadlineUnmeetable { expected_finish: Instant },
    /// The held queue is full in requests.
    QueueFull { limit: usize },
    /// The held queue is full in bytes.
    QueueBytesFull { limit: usize },
    /// No node is ready and none is on its way.
    NoCapacity,
    /// Requests wait in the gateway itself longer than the bound.
    GatewayBehind { delay: Nanos, limit: Nanos },
    /// Every node's room is taken by calls it has answered and the gateway
    /// has not read yet: a request held now would wait for the gateway
    /// itself ([`admit_hold`](super::admit_hold)). Counted under the same
    /// rule as [`Refusal::GatewayBehind`]: the same bound to add capacity
    /// for.
    DispatchBehind,
}

impl Refusal {
    /// Every rule's name, in [`Refusal::rule`]'s order: what a metrics
    /// label can take.
    pub const RULES: [&'static str; 5] = [
        "deadline",
        "held_queue_full",
        "held_bytes",
        "no_capacity",
        "gateway_behind",
    ];

    /// The rule that refused, as a short stable name: which bound an
    /// operator would raise (or which capacity add) to refuse less.
    pub fn rule(&self) -> &'static str {
        let i = match self {
            Refusal::DeadlineUnmeetable { .. } => 0,
            Refusal::QueueFull { .. } => 1,
            Refusal::QueueBytesFull { .. } => 2,
            Refusal::NoCapacity => 3,
            Refusal::GatewayBehind { .. } | Refusal::DispatchBehind => 4,
        };
        Refusal::RULES[i]
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::DeadlineUnmeetable { .. } => {
                write!(f, "the deadline cannot be met given the work ahead")
            }
            Refusal::QueueFull { limit } => write!(f, "{limit} requests already held"),
            Refusal::QueueBytesFull { limit } => {
                write!(f, "{limit} bytes of requests already held")
            }
            Refusal::NoCapacity => write!(f, "no node is ready or booting"),
            Refusal::GatewayBehind { delay, limit } => write!(
                f,
                "requests wait {delay} in the gateway before dispatch, over its {limit} bound"
            ),
            Refusal::DispatchBehind => write!(
                f,
                "requests would wait in the gateway before dispatch: the nodes' room is \
                 taken by answers it has not read yet"
            ),
        }
    }
}

/// The decision for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Accept,
    /// Refuse now; the caller may try again after `retry_after`.
    Refuse {
        why: Refusal,
        retry_after: Nanos,
    },
}

/// Decides whether a request of `bytes` argument bytes with `deadline`,
/// arriving at `now`, is taken. A request that would be sent to a node at
/// once (`would_hold == false`) is never refused for queue room.
pub fn admit(
    cfg: &AdmissionConfig,
    load: &Load,
    bytes: usize,
    deadline: Instant,
    now: Instant,
    would_hold: bool,
) -> Admit {
    let hint = if load.service_time == Nanos::ZERO {
        UNMEASURED_RETRY_AFTER
    } else {
        load.service_time
    };
    if would_hold && load.held >= cfg.max_held_requests {
        let why = Refusal::QueueFull {
            limit: cfg.max_held_requests,
        };
        return Admit::Refuse {
            why,
            retry_after: hint,
        };
    }
    if would_hold && load.held_bytes.saturating_add(bytes) > cfg.max_held_bytes {
        let why = Refusal::QueueBytesFull {
            limit: cfg.max_held_bytes,
        };
        return Admit::Refuse {
            why,
            retry_after: hint,
        };
    }
    if load.ready == 0 && load.capacity_at.is_none() {
        return Admit::Refuse {
            why: Refusal::NoCapacity,
            retry_after: UNMEASURED_RETRY_AFTER,
        };
    }
    if !cfg.deadline_check {
        return Admit::Accept;
    }
    let expected_finish = expected_finish(load, now);
    if expected_finish <= deadline {
        return Admit::Accept;
    }
    Admit::Refuse {
        why: Refusal::DeadlineUnmeetable { expected_finish },
        // By then the work ahead of this request has been served.
        retry_after: expected_finish.saturating_since(now),
    }
}
