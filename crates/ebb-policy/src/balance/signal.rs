//! Which queue-length signal the queue-comparing policies (JSQ, power-of-d)
//! compare.

use super::NodeView;

/// The load a node is judged by.
///
/// `InFlight` is what this gateway knows for certain and is exact when it is
/// the only dispatcher. `InFlightPlusReported` adds the node's last reported
/// queue, which also counts other gateways' work but may be stale (and counts
/// this gateway's own requests twice once reported, which shifts every node
/// alike only when reports are fresh).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadSignal {
    #[default]
    InFlight,
    InFlightPlusReported,
}

impl LoadSignal {
    #[inline]
    pub fn load(self, v: &NodeView) -> u64 {
        match self {
            LoadSignal::InFlight => u64::from(v.in_flight),
            LoadSignal::InFlightPlusReported => {
                u64::from(v.in_flight) + u64::from(v.reported_queue)
            }
        }
    }

    /// Suffix used in policy names (`jsq:reported`).
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            LoadSignal::InFlight => "",
            LoadSignal::InFlightPlusReported => ":reported",
        }
    }
}
