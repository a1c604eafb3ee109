//! Built-in load shapes for autoscaling studies, generated from the run's
//! seed: the same name and seed give the same trace on every machine.
//!
//! A shape is one rate multiplier per second, normalised to mean 1; the run
//! scales it to its average rate and draws a Poisson process with that
//! piecewise-constant rate. The run ends when the shape does.

use ebb_core::Rng;
use std::fmt;
use std::str::FromStr;

/// Default length of a built-in trace, seconds.
pub const DEFAULT_TRACE_SECS: u32 = 3600;
/// Longest built-in trace, seconds (a week); the shape is held in memory.
pub const MAX_TRACE_SECS: u32 = 7 * 86_400;

/// The names [`BuiltinTrace::from_str`] accepts.
pub const BUILTIN_NAMES: &str = "steady, diurnal, step, flash, mmpp";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltinTrace {
    /// Constant rate: Poisson arrivals.
    Steady,
    /// One slow cycle over the trace, ±60%, starting at a random phase,
    /// with 5% second-to-second noise: a day compressed.
    Diurnal,
    /// A lasting jump: 0.6× until a random point in the middle third, then
    /// 1.6×: persistent overload for a pool sized for the first part.
    Step,
    /// Flash crowds: a baseline with three surges at random times, each
    /// rising to 5× within 5 s and decaying over about a minute: temporary
    /// overload.
    Flash,
    /// A long-tailed two-state MMPP: a quiet and a busy (3×) state whose
    /// sojourns are Pareto (α = 1.5, mean 30 s), so some busy spells are
    /// very long and many are short.
    Mmpp,
}

pub const ALL_BUILTIN: [BuiltinTrace; 5] = [
    BuiltinTrace::Steady,
    BuiltinTrace::Diurnal,
    BuiltinTrace::Step,
    BuiltinTrace::Flash,
    BuiltinTrace::Mmpp,
];

/// A trace name that is not one of [`BUILTIN_NAMES`]; the message lists
/// them, since it reaches the user as the flag's error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown built-in trace `{name}` (accepted: {BUILTIN_NAMES})")]
pub struct UnknownTrace {
    pub name: String,
}

impl FromStr for BuiltinTrace {
    type Err = UnknownTrace;

    fn from_str(s: &str) -> Result<Self, UnknownTrace> {
        Ok(match s {
            "steady" => BuiltinTrace::Steady,
            "diurnal" => BuiltinTrace::Diurnal,
            "step" => BuiltinTrace::Step,
            "flash" => BuiltinTrace::Flash,
            "mmpp" => BuiltinTrace::Mmpp,
            _ => {
                return Err(UnknownTrace { name: s.to_owned() });
            }
        })
    }
}

impl fmt::Display for BuiltinTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BuiltinTrace::Steady => "steady",
            BuiltinTrace::Diurnal => "diurnal",
            BuiltinTrace::Step => "step",
            BuiltinTrace::Flash => "flash",
            BuiltinTrace::Mmpp => "mmpp",
        })
    }
}

/// Sojourn of the long-tailed MMPP: Pareto with this shape…
const MMPP_ALPHA: f64 = 1.5;
/// …and this mean, seconds.
const MMPP_MEAN_SOJOURN_SECS: f64 = 30.0;
const MMPP_BUSY_FACTOR: f64 = 3.0;
const FLASH_SURGES: usize = 3;
const FLASH_PEAK: f64 = 5.0;
const FLASH_RISE_SECS: f64 = 5.0;
const FLASH_DECAY_SECS: f64 = 60.0;

impl BuiltinTrace {
    /// Rate multipliers, one per second, mean exactly 1.
    pub fn shape(self, seconds: u32, rng: &mut Rng) -> Vec<f64> {
        let n = seconds.max(1) as usize;
        let len = n as f64;
        let mut m: Vec<f64> = match self {
            BuiltinTrace::Steady => vec![1.0; n],
            BuiltinTrace::Diurnal => {
                let phase = rng.unit() * std::f64::consts::TAU;
                (0..n)
                    .map(|t| {
                        let x = std::f64::consts::TAU * t as f64 / len + phase;
                        (1.0 + 0.6 * x.sin()) * (1.0 + 0.05 * (2.0 * rng.unit() - 1.0))
                    })
                    .collect()
            }
            BuiltinTrace::Step => {
                let at = ((1.0 + rng.unit()) * len / 3.0) as usize;
                (0..n).map(|t| if t < at { 0.6 } else { 1.6 }).collect()
            }
            BuiltinTrace::Flash => {
                let starts: Vec<f64> = (0..FLASH_SURGES).map(|_| rng.unit() * len * 0.9).collect();
                (0..n)
                    .map(|t| {
                        let t = t as f64;
                        let extra: f64 = starts
                            .iter()
                            .map(|s| {
                                let d = t - s;
                                if d < 0.0 {
                                    0.0
                                } else if d < FLASH_RISE_SECS {
                                    d / FLASH_RISE_SECS
                                } else {
                                    (-(d - FLASH_RISE_SECS) / FLASH_DECAY_SECS).exp()
                                }
                            })
                            .sum();
                        1.0 + (FLASH_PEAK - 1.0) * extra
                    })
                    .collect()
            }
            BuiltinTrace::Mmpp => {
                // Pareto with mean μ: scale = μ (α − 1) / α.
                let scale = MMPP_MEAN_SOJOURN_SECS * (MMPP_ALPHA - 1.0) / MMPP_ALPHA;
                let mut busy = rng.chance(0.5);
                let mut left = 0.0;
                (0..n)
                    .map(|_| {
                        while left <= 0.0 {
                            busy = !busy;
                            left += scale / (1.0 - rng.unit()).powf(1.0 / MMPP_ALPHA);
                        }
                        left -= 1.0;
                        if busy { MMPP_BUSY_FACTOR } else { 1.0 }
                    })
                    .collect()
            }
        };
        let mean = m.iter().sum::<f64>() / len;
        for x in &mut m {
            *x /= mean;
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_have_mean_one_and_depend_on_the_seed() {
        for t in ALL_BUILTIN {
            let a = t.shape(1800, &mut Rng::seeded(1));
            let mean = a.iter().sum::<f64>() / a.len() as f64;
            assert!((mean - 1.0).abs() < 1e-9, "{t}: {mean}");
            assert!(a.iter().all(|x| *x >= 0.0 && x.is_finite()));
            assert_eq!(a, t.shape(1800, &mut Rng::seeded(1)), "{t}");
            if t != BuiltinTrace::Steady {
                assert_ne!(a, t.shape(1800, &mut Rng::seeded(2)), "{t}");
            }
            assert_eq!(t.to_string().parse::<BuiltinTrace>(), Ok(t));
        }
    }

    #[test]
    fn each_shape_has_its_character() {
        let peak = |t: BuiltinTrace| {
            let s = t.shape(3600, &mut Rng::seeded(3));
            s.iter().copied().fold(0.0, f64::max) / s.iter().copied().fold(f64::MAX, f64::min)
        };
        assert!((peak(BuiltinTrace::Steady) - 1.0).abs() < 1e-12);
        // Step: 1.6 / 0.6.
        assert!((peak(BuiltinTrace::Step) - 1.6 / 0.6).abs() < 1e-9);
        // Flash crowds reach at least 5× the baseline.
        assert!(peak(BuiltinTrace::Flash) >= 4.9);
        assert!((peak(BuiltinTrace::Mmpp) - 3.0).abs() < 1e-9);
        // Diurnal: (1.6 · 1.05) / (0.4 · 0.95) at most.
        assert!((3.0..4.5).contains(&peak(BuiltinTrace::Diurnal)));
    }
}
