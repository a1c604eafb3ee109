//! What a run is given and what it gives back: the parameters (with the
//! bounds a run is judged against), the planted bugs the checker must
//! catch, and the counters that show which rare paths a run took.

use ebb_core::Nanos;
use ebb_policy::lease::LeaseTerm;

use crate::lease::check::Op;

/// A bug planted on purpose, to show the checker catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// The holder serves until `request_sent + T`, forgetting drift.
    IgnoreEpsilon,
    /// The origin applies a write without waiting for holders.
    WriteSkipsHolders,
    /// The holder serves a cached entry whatever its lease says.
    ServePastExpiry,
    /// A restarted origin does not wait out the term it may have granted.
    ForgetTermBound,
}

/// One run's parameters.
#[derive(Clone, Debug)]
pub struct ProtocolConfig {
    pub seed: u64,
    pub nodes: u32,
    pub keys: u64,
    pub term: LeaseTerm,
    pub epsilon: Nanos,
    /// Mean pause between one client's operations (exponential).
    pub mean_think: Nanos,
    pub write_fraction: f64,
    pub delay_min: Nanos,
    pub delay_max: Nanos,
    /// Probability that a message is lost / delivered twice (fault phase).
    pub loss: f64,
    pub duplication: f64,
    /// Crashes per second of simulated time, per node and for the origin.
    pub node_crash_per_s: f64,
    pub origin_crash_per_s: f64,
    pub down_min: Nanos,
    pub down_max: Nanos,
    /// How long the fault phase (and new operations) lasts.
    pub fault_phase: Nanos,
    /// Resend interval of nodes (reads, writes) and the origin
    /// (invalidations, resets).
    pub retry: Nanos,
    /// How long the failure detector takes to declare a crashed node dead.
    pub detect: Nanos,
    pub bug: Option<PlantedBug>,
}

impl ProtocolConfig {
    /// A small, fault-heavy default for tests: 4 nodes on 3 keys, term
    /// 300 ms, ε 60 ms.
    pub fn stress(seed: u64, term: LeaseTerm) -> ProtocolConfig {
        ProtocolConfig {
            seed,
            nodes: 4,
            keys: 3,
            term,
            epsilon: Nanos::from_millis(60),
            mean_think: Nanos::from_millis(20),
            write_fraction: 0.25,
            delay_min: Nanos::from_micros(200),
            delay_max: Nanos::from_millis(8),
            loss: 0.05,
            duplication: 0.05,
            node_crash_per_s: 0.1,
            origin_crash_per_s: 0.1,
            down_min: Nanos::from_millis(10),
            down_max: Nanos::from_millis(300),
            fault_phase: Nanos::from_secs(5),
            retry: Nanos::from_millis(40),
            detect: Nanos::from_millis(100),
            bug: None,
        }
    }

    /// The longest a write may take after healing: the recovery gate, then
    /// every node's write on the same key in turn, each waiting out a term
    /// (or the failure detector, for callbacks) plus resends.
    pub fn liveness_bound(&self) -> Nanos {
        let drift_slack = self.term.span().as_nanos() / 50;
        let wait = if self.term.is_callback() {
            self.detect + self.retry
        } else {
            self.term.span() + Nanos(drift_slack)
        };
        let per_write =
            wait + Nanos(self.retry.as_nanos() * 3) + Nanos(self.delay_max.as_nanos() * 4);
        let gate = if self.term.is_callback() {
            self.detect + Nanos(self.retry.as_nanos() * 2) + Nanos(self.delay_max.as_nanos() * 2)
        } else {
            self.term.span() + self.epsilon + Nanos(drift_slack)
        };
        gate + Nanos(
            per_write
                .as_nanos()
                .saturating_mul(u64::from(self.nodes) + 1),
        )
    }

    /// The largest clock rate error, in parts per million, that keeps two
    /// clocks within ε of each other over one term (with a margin).
    pub(super) fn max_ppm(&self) -> i64 {
        let t = self.term.span();
        if t == Nanos::ZERO || t == Nanos::MAX {
            return 1_000;
        }
        let ppm = (self.epsilon.as_nanos() as f64 / t.as_nanos() as f64) * 1e6 / 2.5;
        ppm.min(100_000.0) as i64
    }
}

/// Counters showing which paths a run took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub reads_from_cache: u64,
    pub reads_from_origin: u64,
    pub writes: u64,
    pub invalidations_sent: u64,
    pub acks: u64,
    /// Writes that completed although some holder never acknowledged (its
    /// lease ran out, or it was declared dead).
    pub writes_past_silent_holder: u64,
    pub no_lease_write_pending: u64,
    pub refused_recovering: u64,
    pub poisoned_fetches: u64,
    pub node_crashes: u64,
    pub origin_crashes: u64,
    pub declared_dead: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub resets: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.reads_from_cache += o.reads_from_cache;
        self.reads_from_origin += o.reads_from_origin;
        self.writes += o.writes;
        self.invalidations_sent += o.invalidations_sent;
        self.acks += o.acks;
        self.writes_past_silent_holder += o.writes_past_silent_holder;
        self.no_lease_write_pending += o.no_lease_write_pending;
        self.refused_recovering += o.refused_recovering;
        self.poisoned_fetches += o.poisoned_fetches;
        self.node_crashes += o.node_crashes;
        self.origin_crashes += o.origin_crashes;
        self.declared_dead += o.declared_dead;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.resets += o.resets;
    }
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub history: Vec<Op>,
    pub stats: Stats,
    /// When faults stopped and every machine was up again (real time, ns).
    pub healed_at: u64,
    /// Writes of live clients still unfinished at the end of the run.
    pub unfinished_writes: usize,
    /// The latest completion of a write, and the bound it had to meet.
    pub last_write_done: u64,
    pub deadline: u64,
}
