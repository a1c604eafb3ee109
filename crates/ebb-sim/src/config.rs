//! What a run is: pool, load, distributions, and the knobs of the model.

use crate::arrivals::Arrivals;
use crate::dist::{ServiceDist, SpecError, split_spec};
use ebb_core::Rng;
use std::fmt;
use std::str::FromStr;

/// Most nodes a run may hold at once (initial plus added by a scale hook).
pub const MAX_NODES: u32 = 1 << 20;
/// Most gateways a run may have.
pub const MAX_GATEWAYS: u32 = 1 << 12;
/// Most gateway × node view entries (about 1 GiB of `NodeView`s).
pub const MAX_VIEW_ENTRIES: u64 = 1 << 24;
/// Default bound on requests queued anywhere at once; beyond it the run
/// stops with [`SimError::Overloaded`] instead of eating the machine's memory.
pub const DEFAULT_MAX_IN_SYSTEM: u64 = 10_000_000;

/// The forms [`SpeedSpec::from_str`] accepts.
pub const SPEED_FORMS: &str =
    "a list S1,S2,... (repeated over the nodes), uniform:LO,HI, lognormal:MEAN,CV";

/// Node speeds: how fast each node serves relative to the reference node.
#[derive(Clone, Debug, PartialEq)]
pub enum SpeedSpec {
    /// Node `i` gets `list[i % len]`.
    List(Vec<f64>),
    /// Each node draws a speed uniformly from `[lo, hi]`.
    Uniform { lo: f64, hi: f64 },
    /// Each node draws a log-normal speed.
    LogNormal { mean: f64, cv: f64 },
}

impl Default for SpeedSpec {
    fn default() -> Self {
        SpeedSpec::List(vec![1.0])
    }
}

impl SpeedSpec {
    /// Speeds of `n` nodes; draws from `rng` only for the random forms.
    pub fn speeds(&self, n: usize, rng: &mut Rng) -> Vec<f64> {
        (0..n).map(|i| self.speed_of(i, rng)).collect()
    }

    /// Speed of the node in slot `i`.
    pub fn speed_of(&self, i: usize, rng: &mut Rng) -> f64 {
        let s = match self {
            SpeedSpec::List(l) => l.get(i % l.len().max(1)).copied().unwrap_or(1.0),
            SpeedSpec::Uniform { lo, hi } => lo + (hi - lo) * rng.unit(),
            SpeedSpec::LogNormal { mean, cv } => ServiceDist::LogNormal {
                mean: *mean,
                cv: *cv,
            }
            .sample(rng),
        };
        // A node must make progress; clamp pathological draws.
        s.max(1e-6)
    }

    /// True when every node has speed 1 (what the closed forms assume).
    pub fn is_homogeneous(&self) -> bool {
        matches!(self, SpeedSpec::List(l) if l.iter().all(|s| *s == 1.0))
    }
}

impl FromStr for SpeedSpec {
    type Err = SpecError;

    fn from_str(input: &str) -> Result<SpeedSpec, SpecError> {
        const WHAT: &str = "node speeds";
        let err = |reason: &str| SpecError {
            what: WHAT,
            input: input.to_string(),
            reason: reason.to_string(),
            accepted: SPEED_FORMS,
        };
        let spec = if input.contains(':') {
            let (kind, p) = split_spec(input, WHAT, SPEED_FORMS)?;
            match (kind.as_str(), p.as_slice()) {
                ("uniform", [lo, hi]) if *lo > 0.0 && hi >= lo => {
                    SpeedSpec::Uniform { lo: *lo, hi: *hi }
                }
                ("lognormal", [m, cv]) if *m > 0.0 && *cv >= 0.0 => {
                    SpeedSpec::LogNormal { mean: *m, cv: *cv }
                }
                _ => return Err(err("unknown kind or bad parameters")),
            }
        } else {
            let (_, list) = split_spec(&format!("list:{input}"), WHAT, SPEED_FORMS)
                .map_err(|e| err(&e.reason))?;
            if list.is_empty() || list.iter().any(|s| *s <= 0.0) {
                return Err(err("speeds must be greater than 0"));
            }
            SpeedSpec::List(list)
        };
        Ok(spec)
    }
}

impl fmt::Display for SpeedSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpeedSpec::List(l) => {
                let parts: Vec<String> = l.iter().map(|s| s.to_string()).collect();
                write!(f, "{}", parts.join(","))
            }
            SpeedSpec::Uniform { lo, hi } => write!(f, "uniform:{lo},{hi}"),
            SpeedSpec::LogNormal { mean, cv } => write!(f, "lognormal:{mean},{cv}"),
        }
    }
}

/// One simulation run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Nodes at the start, all ready.
    pub nodes: u32,
    /// Average arrival rate over total service capacity, where capacity is
    /// Σ speed / mean service time of the initial nodes.
    pub load: f64,
    pub service: ServiceDist,
    pub arrivals: Arrivals,
    /// Arrivals to simulate (fewer if a trace ends first).
    pub requests: u64,
    pub seed: u64,
    /// Gateways, each with its own balancer and view; arrivals pick one
    /// uniformly at random.
    pub gateways: u32,
    pub speeds: SpeedSpec,
    /// Cost of each node per second of being up, micro-dollars; repeated over
    /// the nodes like a speed list.
    pub costs_per_sec_micros: Vec<u64>,
    /// Relative deadline in seconds; a request still queued after it is dropped.
    pub deadline_secs: Option<f64>,
    /// Fraction of the first requests left out of every statistic.
    pub warmup: f64,
    /// Period of the control tick in seconds (views refreshed, scale hook
    /// called); 0 turns the tick off.
    pub tick_secs: f64,
    /// Time a node added by the scale hook spends booting.
    pub boot_secs: f64,
    /// Bound on requests queued or in service anywhere at once.
    pub max_in_system: u64,
    /// Response-time objective in seconds: a measured request slower than
    /// this, or dropped, is a miss (`slo_miss_fraction`).
    pub objective_secs: Option<f64>,
    /// Average arrival rate per second, overriding `load` (which is then
    /// reported as this rate over the initial pool's capacity).
    pub rate_per_sec: Option<f64>,
}

impl SimConfig {
    /// A run of `requests` Poisson arrivals with exponential(1) service on
    /// `nodes` reference nodes at `load`, one gateway, 10% warm-up.
    pub fn new(nodes: u32, load: f64, requests: u64, seed: u64) -> SimConfig {
        SimConfig {
            nodes,
            load,
            service: ServiceDist::Exp { mean: 1.0 },
            arrivals: Arrivals::Poisson,
            requests,
            seed,
            gateways: 1,
            speeds: SpeedSpec::default(),
            costs_per_sec_micros: vec![0],
            deadline_secs: None,
            warmup: 0.1,
            tick_secs: 1.0,
            boot_secs: 0.0,
            max_in_system: DEFAULT_MAX_IN_SYSTEM,
            objective_secs: None,
            rate_per_sec: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), crate::SimError> {
        let bad = |field: &'static str, accepted: &'static str, value: String| {
            Err(crate::SimError::Config {
                field,
                value,
                accepted,
            })
        };
        if self.nodes == 0 || self.nodes > MAX_NODES {
            return bad("nodes", "1 to 1048576", self.nodes.to_string());
        }
        if self.gateways == 0 || self.gateways > MAX_GATEWAYS {
            return bad("gateways", "1 to 4096", self.gateways.to_string());
        }
        if u64::from(self.gateways) * u64::from(self.nodes) > MAX_VIEW_ENTRIES {
            return bad(
                "gateways",
                "at most 16777216 gateways × nodes in total",
                self.gateways.to_string(),
            );
        }
        if !(self.load > 0.0 && self.load.is_finite()) {
            return bad("load", "a number greater than 0", self.load.to_string());
        }
        if self.requests == 0 {
            return bad("requests", "at least 1", self.requests.to_string());
        }
        if !(0.0..1.0).contains(&self.warmup) {
            return bad("warmup", "a fraction in [0, 1)", self.warmup.to_string());
        }
        if !(self.tick_secs >= 0.0 && self.tick_secs.is_finite()) {
            return bad("tick", "seconds, 0 or more", self.tick_secs.to_string());
        }
        if !(self.boot_secs >= 0.0 && self.boot_secs.is_finite()) {
            return bad(
                "boot-time",
                "seconds, 0 or more",
                self.boot_secs.to_string(),
            );
        }
        if let Some(o) = self.objective_secs {
            if !(o > 0.0 && o.is_finite()) {
                return bad("objective", "seconds greater than 0", o.to_string());
            }
        }
        if let Some(r) = self.rate_per_sec {
            if !(r > 0.0 && r.is_finite()) {
                return bad("rate", "arrivals per second, greater than 0", r.to_string());
            }
        }
        if let Some(d) = self.deadline_secs {
            if !(d > 0.0 && d.is_finite()) {
                return bad("deadline", "seconds greater than 0", d.to_string());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn speed_lists_repeat_and_distributions_draw() {
        let s: SpeedSpec = "1,2".parse().unwrap();
        let mut rng = Rng::seeded(1);
        assert_eq!(s.speeds(5, &mut rng), vec![1.0, 2.0, 1.0, 2.0, 1.0]);
        let u: SpeedSpec = "uniform:0.5,1.5".parse().unwrap();
        assert!(
            u.speeds(100, &mut rng)
                .iter()
                .all(|x| (0.5..=1.5).contains(x))
        );
        assert!(SpeedSpec::default().is_homogeneous());
        for bad in ["0,1", "x", "uniform:2,1", "gamma:1,1"] {
            let e = bad.parse::<SpeedSpec>().unwrap_err().to_string();
            assert!(e.contains(SPEED_FORMS), "{e}");
        }
    }
}
