//! Arrival processes: when the next request reaches the gateways.
//!
//! Every process is scaled so that its long-run average rate is the rate
//! `--load` asks for, except `step` and `ramp`, whose multipliers apply to it
//! (the load before the step, or at multiplier 1). Time-varying rates use
//! thinning (Lewis–Shedler): candidates at the peak rate, each kept with
//! probability rate(t) / peak, which is exact for any bounded rate function.

use crate::builtin::{BuiltinTrace, DEFAULT_TRACE_SECS, MAX_TRACE_SECS, UnknownTrace};
use crate::dist::{SpecError, split_spec};
use crate::trace::{Trace, TraceFormat};
use std::fmt;
use std::str::FromStr;

/// The forms [`ArrivalSpec::from_str`] accepts.
pub const ARRIVAL_FORMS: &str = "poisson, mmpp:R1,R2,S12,S21, step:AT,FACTOR, \
     ramp:FROM,TO,OVER, diurnal:PERIOD,AMPLITUDE, trace:FILE[,ts|,counts], \
     builtin:NAME[,SECONDS] (NAME one of steady, diurnal, step, flash, mmpp; generated from --seed; default 3600 s)";

/// An arrival process as given on the command line.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrivalSpec {
    /// Exponential gaps: the M in M/M/k.
    Poisson,
    /// Two-state Markov-modulated Poisson: relative rates `r1`, `r2` in the two
    /// states, switching rates `s12` (1→2) and `s21` (2→1) per second. The
    /// relative rates are rescaled so the stationary mean is the `--load` rate.
    Mmpp {
        r1: f64,
        r2: f64,
        s12: f64,
        s21: f64,
    },
    /// The `--load` rate until second `at`, then `factor` times it.
    Step { at: f64, factor: f64 },
    /// Multiplier moving linearly from `from` to `to` over the first `over`
    /// seconds, then staying at `to`.
    Ramp { from: f64, to: f64, over: f64 },
    /// rate × (1 + amplitude × sin(2πt / period)); amplitude in [0, 1].
    Diurnal { period: f64, amplitude: f64 },
    /// Replay of a file, stretched in time so its mean rate is the `--load` rate.
    Trace { path: String, format: TraceFormat },
    /// A built-in shape `seconds` long, generated from the run's seed.
    Builtin { trace: BuiltinTrace, seconds: u32 },
}

impl FromStr for ArrivalSpec {
    type Err = SpecError;

    fn from_str(input: &str) -> Result<ArrivalSpec, SpecError> {
        const WHAT: &str = "arrival process";
        let err = |reason: &str| SpecError {
            what: WHAT,
            input: input.to_string(),
            reason: reason.to_string(),
            accepted: ARRIVAL_FORMS,
        };
        if let Some(rest) = input.strip_prefix("builtin:") {
            let (name, secs) = rest.split_once(',').unwrap_or((rest, ""));
            let trace: BuiltinTrace = name
                .parse()
                .map_err(|e: UnknownTrace| err(&e.to_string()))?;
            let seconds = if secs.is_empty() {
                DEFAULT_TRACE_SECS
            } else {
                secs.parse::<u32>()
                    .ok()
                    .filter(|s| (1..=MAX_TRACE_SECS).contains(s))
                    .ok_or_else(|| err("SECONDS must be a whole number from 1 to 604800"))?
            };
            return Ok(ArrivalSpec::Builtin { trace, seconds });
        }
        if let Some(rest) = input.strip_prefix("trace:") {
            let (path, format) = match rest.rsplit_once(',') {
                Some((p, "ts")) => (p, TraceFormat::Timestamps),
                Some((p, "counts")) => (p, TraceFormat::Counts),
                _ => (rest, TraceFormat::Auto),
            };
            if path.is_empty() {
                return Err(err("missing FILE"));
            }
            return Ok(ArrivalSpec::Trace {
                path: path.to_string(),
                format,
            });
        }
        let (kind, p) = split_spec(input, WHAT, ARRIVAL_FORMS)?;
        if p.iter().any(|x| *x < 0.0) {
            return Err(err("parameters must be at least 0"));
        }
        let spec = match (kind.as_str(), p.as_slice()) {
            ("poisson", []) => ArrivalSpec::Poisson,
            ("mmpp", [r1, r2, s12, s21]) => {
                if *s12 <= 0.0 || *s21 <= 0.0 {
                    return Err(err("switching rates must be greater than 0"));
                }
                if *r1 + *r2 <= 0.0 {
                    return Err(err("at least one state needs a positive rate"));
                }
                ArrivalSpec::Mmpp {
                    r1: *r1,
                    r2: *r2,
                    s12: *s12,
                    s21: *s21,
                }
            }
            ("step", [at, factor]) => ArrivalSpec::Step {
                at: *at,
                factor: *factor,
            },
            ("ramp", [from, to, over]) => ArrivalSpec::Ramp {
                from: *from,
                to: *to,
                over: *over,
            },
            ("diurnal", [period, amplitude]) => {
                if *period <= 0.0 || *amplitude > 1.0 {
                    return Err(err("PERIOD must be > 0 and AMPLITUDE in [0, 1]"));
                }
                ArrivalSpec::Diurnal {
                    period: *period,
                    amplitude: *amplitude,
                }
            }
            ("poisson" | "mmpp" | "step" | "ramp" | "diurnal", _) => {
                return Err(err("wrong number of parameters"));
            }
            _ => return Err(err("unknown kind")),
        };
        Ok(spec)
    }
}

impl fmt::Display for ArrivalSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArrivalSpec::Poisson => write!(f, "poisson"),
            ArrivalSpec::Mmpp { r1, r2, s12, s21 } => write!(f, "mmpp:{r1},{r2},{s12},{s21}"),
            ArrivalSpec::Step { at, factor } => write!(f, "step:{at},{factor}"),
            ArrivalSpec::Ramp { from, to, over } => write!(f, "ramp:{from},{to},{over}"),
            ArrivalSpec::Diurnal { period, amplitude } => {
                write!(f, "diurnal:{period},{amplitude}")
            }
            ArrivalSpec::Trace { path, format } => write!(f, "trace:{path}{}", format.suffix()),
            ArrivalSpec::Builtin { trace, seconds } => write!(f, "builtin:{trace},{seconds}"),
        }
    }
}

/// A ready-to-run arrival process: the spec with any trace file loaded, so
/// that a run itself does no I/O and sweeps read the file once.
#[derive(Clone, Debug)]
pub enum Arrivals {
    Poisson,
    Mmpp {
        r1: f64,
        r2: f64,
        s12: f64,
        s21: f64,
    },
    Step {
        at: f64,
        factor: f64,
    },
    Ramp {
        from: f64,
        to: f64,
        over: f64,
    },
    Diurnal {
        period: f64,
        amplitude: f64,
    },
    Trace(Trace),
    Builtin {
        trace: BuiltinTrace,
        seconds: u32,
    },
}

impl Arrivals {
    /// Loads the trace file, if the spec names one.
    pub fn load(spec: &ArrivalSpec) -> Result<Arrivals, crate::trace::TraceError> {
        Ok(match spec {
            ArrivalSpec::Poisson => Arrivals::Poisson,
            ArrivalSpec::Mmpp { r1, r2, s12, s21 } => Arrivals::Mmpp {
                r1: *r1,
                r2: *r2,
                s12: *s12,
                s21: *s21,
            },
            ArrivalSpec::Step { at, factor } => Arrivals::Step {
                at: *at,
                factor: *factor,
            },
            ArrivalSpec::Ramp { from, to, over } => Arrivals::Ramp {
                from: *from,
                to: *to,
                over: *over,
            },
            ArrivalSpec::Diurnal { period, amplitude } => Arrivals::Diurnal {
                period: *period,
                amplitude: *amplitude,
            },
            ArrivalSpec::Trace { path, format } => {
                Arrivals::Trace(Trace::load(path.as_ref(), *format)?)
            }
            ArrivalSpec::Builtin { trace, seconds } => Arrivals::Builtin {
                trace: *trace,
                seconds: *seconds,
            },
        })
    }

    /// How many arrivals the process can produce at most (a trace's length).
    pub fn max_arrivals(&self) -> Option<u64> {
        match self {
            Arrivals::Trace(t) => Some(t.len()),
            _ => None,
        }
    }

    /// True when the process ends by itself (a trace, a built-in shape).
    pub fn is_finite(&self) -> bool {
        matches!(self, Arrivals::Trace(_) | Arrivals::Builtin { .. })
    }

    pub fn is_poisson(&self) -> bool {
        matches!(self, Arrivals::Poisson)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parse_accepts_every_form_and_rejects_with_the_accepted_list() {
        for s in [
            "poisson",
            "mmpp:4,1,0.1,0.05",
            "step:100,2",
            "ramp:0.5,1.5,1000",
            "diurnal:86400,0.5",
            "trace:a,b.txt,counts",
            "builtin:flash,1800",
        ] {
            let a: ArrivalSpec = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
        }
        assert_eq!(
            "builtin:step".parse::<ArrivalSpec>().unwrap().to_string(),
            "builtin:step,3600"
        );
        for s in [
            "uniform",
            "mmpp:1,2",
            "diurnal:10,2",
            "step:-1,2",
            "trace:",
            "builtin:tsunami",
            "builtin:step,0",
        ] {
            let e = s.parse::<ArrivalSpec>().unwrap_err().to_string();
            assert!(e.contains(ARRIVAL_FORMS), "{e}");
        }
    }
}
