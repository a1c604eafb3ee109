//! What the queue-comparing policies (JSQ, power-of-d) compare.

use super::NodeView;

/// The queue length a node is judged by.
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
}

/// The key a queue-comparing policy minimises: a [`LoadSignal`], optionally
/// turned into the expected delay `(load + 1) / speed`.
///
/// Raw queue length treats a node twice as fast like any other, which on a
/// mixed pool sends the slow nodes as much as the fast ones. Dividing by
/// speed is the shortest-expected-delay rule (SED; Whitt 1986, Banawan &
/// Zahorjan 1987): the `+ 1` counts the new request, so among idle nodes the
/// fastest wins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueMeasure {
    pub signal: LoadSignal,
    pub per_speed: bool,
}

impl QueueMeasure {
    #[inline]
    pub fn key(self, v: &NodeView) -> f64 {
        let load = self.signal.load(v) as f64;
        if self.per_speed {
            (load + 1.0) / v.speed.max(f64::MIN_POSITIVE)
        } else {
            load
        }
    }

    /// Suffix used in policy names (`jsq:reported:speed`).
    pub(crate) fn suffix(self) -> &'static str {
        match (self.signal, self.per_speed) {
            (LoadSignal::InFlight, false) => "",
            (LoadSignal::InFlight, true) => ":speed",
            (LoadSignal::InFlightPlusReported, false) => ":reported",
            (LoadSignal::InFlightPlusReported, true) => ":reported:speed",
        }
    }
}

impl From<LoadSignal> for QueueMeasure {
    fn from(signal: LoadSignal) -> QueueMeasure {
        QueueMeasure {
            signal,
            per_speed: false,
        }
    }
}
