//! Service-time distributions, parsed from the command line's `KIND:PARAMS`.
//!
//! All parameters are in the simulator's time unit (one second of simulated
//! time); a distribution with mean 1 makes every reported time read as "in
//! units of the mean service time".

use crate::exp_sampler;
use ebb_core::Rng;
use std::fmt;
use std::str::FromStr;

/// The forms [`ServiceDist::from_str`] accepts, for error messages and `--help`.
pub const SERVICE_FORMS: &str = "exp:MEAN, det:X, lognormal:MEAN,CV, bimodal:P,A,B";

/// A bad distribution (or other `KIND:PARAMS`) specification.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {what} `{input}`: {reason} (accepted: {accepted})")]
pub struct SpecError {
    /// Which input was being parsed, e.g. "service distribution".
    pub what: &'static str,
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
    /// The accepted forms.
    pub accepted: &'static str,
}

/// Splits `KIND:A,B,...` and parses every parameter as a finite float.
pub(crate) fn split_spec(
    input: &str,
    what: &'static str,
    accepted: &'static str,
) -> Result<(String, Vec<f64>), SpecError> {
    let err = |reason: String| SpecError {
        what,
        input: input.to_string(),
        reason,
        accepted,
    };
    let (kind, rest) = match input.split_once(':') {
        Some((k, r)) => (k.trim().to_ascii_lowercase(), r),
        None => (input.trim().to_ascii_lowercase(), ""),
    };
    let mut params = Vec::new();
    if !rest.trim().is_empty() {
        for part in rest.split(',') {
            let v: f64 = part
                .trim()
                .parse()
                .map_err(|_| err(format!("`{}` is not a number", part.trim())))?;
            if !v.is_finite() {
                return Err(err(format!("`{}` is not finite", part.trim())));
            }
            params.push(v);
        }
    }
    Ok((kind, params))
}

/// How long a request takes to serve on a reference node (speed 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ServiceDist {
    /// Exponential with this mean: the M in M/M/k.
    Exp { mean: f64 },
    /// Always exactly this long.
    Det { value: f64 },
    /// Log-normal with this mean and coefficient of variation (sd / mean).
    LogNormal { mean: f64, cv: f64 },
    /// `a` with probability `p`, otherwise `b`: a few slow requests among many
    /// fast ones, the case where balancing on queue length misleads most.
    Bimodal { p: f64, a: f64, b: f64 },
}

impl ServiceDist {
    pub fn mean(&self) -> f64 {
        match *self {
            ServiceDist::Exp { mean } => mean,
            ServiceDist::Det { value } => value,
            ServiceDist::LogNormal { mean, .. } => mean,
            ServiceDist::Bimodal { p, a, b } => p * a + (1.0 - p) * b,
        }
    }

    /// One service time on a reference node, in seconds.
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> f64 {
        match *self {
            ServiceDist::Exp { mean } => exp_sampler::exp(rng, mean),
            ServiceDist::Det { value } => value,
            ServiceDist::LogNormal { mean, cv } => {
                let s2 = (1.0 + cv * cv).ln();
                let mu = mean.ln() - s2 / 2.0;
                (mu + s2.sqrt() * standard_normal(rng)).exp()
            }
            ServiceDist::Bimodal { p, a, b } => {
                if rng.chance(p) {
                    a
                } else {
                    b
                }
            }
        }
    }

    /// True when the distribution is exponential, the case the closed-form
    /// queueing results assume.
    pub fn is_exponential(&self) -> bool {
        matches!(self, ServiceDist::Exp { .. })
    }
}

/// Box–Muller; one normal per call keeps the draw count per sample fixed,
/// which keeps streams aligned across runs that differ only downstream.
#[inline]
pub(crate) fn standard_normal(rng: &mut Rng) -> f64 {
    let u1 = 1.0 - rng.unit(); // (0, 1]: ln is finite
    let u2 = rng.unit();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl FromStr for ServiceDist {
    type Err = SpecError;

    fn from_str(input: &str) -> Result<ServiceDist, SpecError> {
        const WHAT: &str = "service distribution";
        let err = |reason: &str| SpecError {
            what: WHAT,
            input: input.to_string(),
            reason: reason.to_string(),
            accepted: SERVICE_FORMS,
        };
        let (kind, p) = split_spec(input, WHAT, SERVICE_FORMS)?;
        let d = match (kind.as_str(), p.as_slice()) {
            ("exp", [m]) => ServiceDist::Exp { mean: *m },
            ("det", [x]) => ServiceDist::Det { value: *x },
            ("lognormal", [m, cv]) => {
                if *cv < 0.0 {
                    return Err(err("CV must be at least 0"));
                }
                ServiceDist::LogNormal { mean: *m, cv: *cv }
            }
            ("bimodal", [p, a, b]) => {
                if !(0.0..=1.0).contains(p) {
                    return Err(err("P must lie in [0, 1]"));
                }
                if *a < 0.0 || *b < 0.0 {
                    return Err(err("A and B must be at least 0"));
                }
                ServiceDist::Bimodal {
                    p: *p,
                    a: *a,
                    b: *b,
                }
            }
            ("exp" | "det" | "lognormal" | "bimodal", _) => {
                return Err(err("wrong number of parameters"));
            }
            _ => return Err(err("unknown kind")),
        };
        if d.mean() <= 0.0 {
            return Err(err("the mean must be greater than 0"));
        }
        Ok(d)
    }
}

impl fmt::Display for ServiceDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ServiceDist::Exp { mean } => write!(f, "exp:{mean}"),
            ServiceDist::Det { value } => write!(f, "det:{value}"),
            ServiceDist::LogNormal { mean, cv } => write!(f, "lognormal:{mean},{cv}"),
            ServiceDist::Bimodal { p, a, b } => write!(f, "bimodal:{p},{a},{b}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_every_form_and_round_trips() {
        for s in ["exp:1", "det:0.5", "lognormal:1,2", "bimodal:0.9,0.5,5.5"] {
            let d: ServiceDist = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
        }
        let d: ServiceDist = "bimodal:0.9,0.5,5.5".parse().unwrap();
        assert!((d.mean() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bad_input_names_the_input_and_the_accepted_forms() {
        for s in [
            "gamma:1",
            "exp",
            "exp:x",
            "exp:-1",
            "bimodal:2,1,1",
            "det:1,2",
        ] {
            let e = s.parse::<ServiceDist>().unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(s), "{msg}");
            assert!(msg.contains(SERVICE_FORMS), "{msg}");
        }
    }

    #[test]
    fn lognormal_samples_have_the_requested_mean_and_cv() {
        let d = ServiceDist::LogNormal { mean: 2.0, cv: 0.5 };
        let mut rng = Rng::seeded(3);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| d.sample(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        // sd of the sample mean is 1/sqrt(n) = 0.0022; allow 5 of them.
        assert!((mean - 2.0).abs() < 0.011, "mean {mean}");
        let cv = var.sqrt() / mean;
        assert!((cv - 0.5).abs() < 0.02, "cv {cv}");
    }
}
