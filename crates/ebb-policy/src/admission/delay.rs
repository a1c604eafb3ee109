//! Refusal by the gateway's own delay, the part of the wait the work-ahead
//! estimate cannot see: requests queued behind a saturated ingress, or held
//! while the gateway has not yet used room the nodes already have. Judged
//! by how long they waited, not by how many there are (the idea of CoDel).
//!
//! Two waits, two owners:
//! - from the instant the ingress read a request to its dispatch decision,
//!   the request waited for the gateway alone: always its own delay;
//! - in the held FIFO, a request waits either for a node (every node busy:
//!   the nodes' wait, which the work-ahead estimate already judges and
//!   refuses as `deadline` or the held bounds) or for the gateway (a node
//!   has a free slot the gateway has not handed out yet because it has not
//!   read the reply that freed it). Only the second is the gateway's own
//!   delay ([`dispatch_behind`]); counting the first would name the gateway
//!   as the cause when the pool is short of capacity.

use ebb_core::{Instant, Nanos};

use super::config::AdmissionConfig;
use super::decide::{Admit, Refusal};

/// The gateway's own delay as a request reaches its dispatch decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayDelay {
    /// When the ingress read the request: the read of the socket that
    /// brought its frame (native RPC), or the instant the HTTP server
    /// handed it over. Not the start of its dispatch, which would hide
    /// every wait in between.
    pub arrived: Instant,
    /// When the oldest request still in the held FIFO was held, if any is.
    pub oldest_held: Option<Instant>,
    /// Whether a node has a free slot the gateway has not used yet
    /// ([`dispatch_behind`]): only then does the held FIFO's age count.
    pub dispatch_behind: bool,
}

/// One ready node's calls, as the gateway counts them and as the node last
/// reported them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeCalls {
    /// Calls the gateway has sent there and not seen answered.
    pub in_flight: u32,
    /// Calls the node said it was executing in the last reply the gateway
    /// read (other callers' included); `None` if it never said.
    pub reported: Option<u32>,
}

/// Whether held requests wait for the gateway rather than for the nodes:
/// some ready node has answered calls the gateway still counts in flight
/// there, i.e. it reported executing fewer than the gateway counts, by more
/// than the one call the gateway sends in the slot each read reply frees
/// (in steady state a busy node reports one less than the gateway counts:
/// the reply that carried the report freed a slot the gateway refilled).
/// Those answers wait unread in the gateway: dispatch is behind, and the
/// held FIFO's age is the gateway's own delay. A node that never reported
/// is no evidence either way, and counts as busy.
pub fn dispatch_behind(nodes: impl IntoIterator<Item = NodeCalls>) -> bool {
    nodes.into_iter().any(|n| {
        n.reported
            .is_some_and(|executing| n.in_flight > executing.saturating_add(1))
    })
}

/// Whether a new request that finds no node with room may wait in the held
/// FIFO. Not while dispatch is behind ([`dispatch_behind`]): the room it
/// would wait for is taken by answers the gateway has not read, so it
/// would wait for the gateway itself, and a saturated gateway that holds
/// work spends more on each held request than on a forwarded one (a
/// timer, a hand-over, a task of its own) and falls further behind: its
/// held FIFO ages past the bound, new requests are refused for that, and
/// goodput is only what it slowly serves of the held ones. Refused at once
/// it costs the gateway less than a forward, which keeps goodput near its
/// most past saturation. A FIFO that waits for busy nodes (they
/// say they execute what the gateway counts) holds as before; a retry
/// was admitted once already and is not asked.
pub fn admit_hold(cfg: &AdmissionConfig, dispatch_behind: bool) -> Admit {
    if !cfg.deadline_check || !dispatch_behind {
        return Admit::Accept;
    }
    Admit::Refuse {
        why: Refusal::DispatchBehind,
        // By then the gateway has read what is waiting, or refuses again.
        retry_after: cfg.max_gateway_delay,
    }
}

/// Refuses a request at `now` when the gateway is behind: the request
/// waited longer than `max_gateway_delay` from its read to this decision,
/// or, while dispatch is behind ([`GatewayDelay::dispatch_behind`]), the
/// oldest held request has. A held FIFO that waits for busy nodes is left
/// to the work-ahead estimate ([`admit`](super::admit)). The hint to come
/// back is the delay: by then what is ahead now has been dispatched or
/// refused.
pub fn admit_delay(cfg: &AdmissionConfig, delay: GatewayDelay, now: Instant) -> Admit {
    if !cfg.deadline_check {
        return Admit::Accept;
    }
    let own = now.saturating_since(delay.arrived);
    let held = match delay.oldest_held {
        Some(at) if delay.dispatch_behind => now.saturating_since(at),
        _ => Nanos::ZERO,
    };
    let worst = own.max(held);
    if worst <= cfg.max_gateway_delay {
        return Admit::Accept;
    }
    debug_assert!(own > cfg.max_gateway_delay || delay.dispatch_behind);
    Admit::Refuse {
        why: Refusal::GatewayBehind {
            delay: worst,
            limit: cfg.max_gateway_delay,
        },
        retry_after: worst,
    }
}
