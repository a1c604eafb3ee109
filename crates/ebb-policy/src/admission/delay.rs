//! Refusal by the gateway's own delay, the part of the wait the work-ahead
//! estimate cannot see: requests queued behind a saturated ingress or in
//! the held FIFO. Judged by how long they waited, not by how many there are
//! (the idea of CoDel).

use ebb_core::{Instant, Nanos};

use super::config::AdmissionConfig;
use super::decide::{Admit, Refusal};

/// The gateway's own delay as a request reaches its dispatch decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayDelay {
    /// When the request arrived at the gateway (as early as the ingress
    /// can tell).
    pub arrived: Instant,
    /// When the oldest request still in the held FIFO arrived, if any is.
    pub oldest_held: Option<Instant>,
}

/// Refuses a request at `now` when the gateway is behind: it waited in the
/// gateway, or the oldest held request has, longer than
/// `max_gateway_delay`. The hint to come back is that delay: by then what
/// is ahead now has been dispatched or refused.
pub fn admit_delay(cfg: &AdmissionConfig, delay: GatewayDelay, now: Instant) -> Admit {
    if !cfg.deadline_check {
        return Admit::Accept;
    }
    let own = now.saturating_since(delay.arrived);
    let held = delay
        .oldest_held
        .map_or(Nanos::ZERO, |at| now.saturating_since(at));
    let worst = own.max(held);
    if worst <= cfg.max_gateway_delay {
        return Admit::Accept;
    }
    Admit::Refuse {
        why: Refusal::GatewayBehind {
            delay: worst,
            limit: cfg.max_gateway_delay,
        },
        retry_after: worst,
    }
}
