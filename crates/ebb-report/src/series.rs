//! What a run recorded, one sample per second.

use serde::{Deserialize, Serialize};

use crate::summary::Summary;

/// One second of a run. Arrivals are counted when sent; outcomes when they
/// end, so a second's outcomes may belong to requests sent earlier.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Start of the second, from the start of the run.
    pub t_secs: f64,
    /// Requests sent (offered load).
    pub offered: u64,
    /// Requests answered successfully (throughput).
    pub ok: u64,
    /// Of `ok`, those slower than the objective: answered, but a miss.
    pub slow: u64,
    /// Refused because the pool was overloaded (admission, held queue full).
    pub overloaded: u64,
    /// Ended by their deadline without an answer.
    pub deadline_exceeded: u64,
    /// Any other failure (connection lost, outcome unknown, ...).
    pub other_errors: u64,
    pub booting: u32,
    pub ready: u32,
    pub draining: u32,
    /// Latency percentiles of the second's successful answers.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Sample {
    /// Requests that missed the objective: slow, refused, timed out or failed.
    pub fn misses(&self) -> u64 {
        self.slow + self.overloaded + self.deadline_exceeded + self.other_errors
    }

    /// Nodes alive in any state: what the second costs.
    pub fn nodes(&self) -> u32 {
        self.booting + self.ready + self.draining
    }
}

/// A change of the pool's target, with why the policy wanted it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleEvent {
    pub t_secs: f64,
    pub from: u32,
    pub to: u32,
    /// The policy's reason (`objective`, `up`, `down-stabilised`, ...).
    pub reason: String,
    /// The values the decision was computed from, as the policy printed them.
    pub detail: String,
}

impl ScaleEvent {
    pub fn is_up(&self) -> bool {
        self.to > self.from
    }
}

/// One run: a policy on a trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// What the reader sees as this run's title (usually the policy spec).
    pub label: String,
    pub samples: Vec<Sample>,
    pub events: Vec<ScaleEvent>,
    pub summary: Summary,
}
