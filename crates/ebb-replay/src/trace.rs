//! What the load generator replays: arrivals per second.
//!
//! Built-in traces are generated from a seed, so a run (and the simulator
//! replaying the same counts) is repeatable. A file holds one count per
//! line, the format `ebb sim --arrivals trace:FILE,counts` reads, so the
//! same trace can be judged in the simulator and run for real.

use std::path::Path;

use ebb_core::Rng;
use ebb_sim::trace::{Trace as SimTrace, TraceFormat};

/// Longest trace replayed, in seconds (one second per count).
pub const MAX_TRACE_SECS: usize = 3_600;
/// Highest arrival count in one second the generator is asked to send.
pub const MAX_RATE_PER_SEC: u32 = 20_000;

/// The built-in trace names `--trace` accepts besides a file.
pub const BUILTIN_TRACES: &[&str] = &["bursty", "step", "steady"];

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(
        "unknown trace `{0}`: give one of {names} or a file of per-second counts",
        names = BUILTIN_TRACES.join(", ")
    )]
    Unknown(String),
    /// Its message already names the file.
    #[error(transparent)]
    File(#[from] ebb_sim::trace::TraceError),
    #[error("trace `{0}` holds timestamps; ebb demo replays per-second counts")]
    NotCounts(String),
    #[error("trace `{name}` has {secs} seconds; at most {MAX_TRACE_SECS} are replayed")]
    TooLong { name: String, secs: usize },
    #[error("trace `{name}` asks for {rate} calls in one second; at most {MAX_RATE_PER_SEC}")]
    TooFast { name: String, rate: u32 },
}

/// Arrivals in each successive second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    pub name: String,
    pub per_sec: Vec<u32>,
}

/// The shape of a built-in trace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    pub seconds: u32,
    /// Mean arrivals per second outside bursts.
    pub base_rate: f64,
    /// Mean arrivals per second at the top of a burst.
    pub peak_rate: f64,
}

/// Mean rate at fraction `x` (0..1) of a bursty run: quiet, a long burst,
/// quiet, a short sharper one, then quiet for almost half the run, long
/// enough to scale back in.
fn bursty_mean(x: f64, s: &Shape) -> f64 {
    match x {
        x if (0.13..0.35).contains(&x) => s.peak_rate,
        x if (0.45..0.53).contains(&x) => s.peak_rate * 1.2,
        _ => s.base_rate,
    }
}

/// A Poisson count with mean `mean` (Knuth's product method below 30, a
/// rounded normal above, where it is indistinguishable at this scale).
fn poisson(mean: f64, rng: &mut Rng) -> u32 {
    if mean <= 0.0 {
        return 0;
    }
    if mean < 30.0 {
        let limit = (-mean).exp();
        let mut p = rng.unit();
        let mut k = 0u32;
        while p > limit && k < MAX_RATE_PER_SEC {
            p *= rng.unit();
            k += 1;
        }
        return k;
    }
    // Box–Muller from two uniforms.
    let (u1, u2) = (rng.unit().max(f64::MIN_POSITIVE), rng.unit());
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    (mean + z * mean.sqrt())
        .round()
        .clamp(0.0, f64::from(MAX_RATE_PER_SEC)) as u32
}

/// A built-in trace by name, its per-second counts drawn from `seed`.
pub fn builtin(name: &str, shape: &Shape, seed: u64) -> Result<Trace, TraceError> {
    let mut rng = Rng::seeded(seed);
    let n = shape.seconds.max(1);
    let mean: Box<dyn Fn(f64) -> f64> = match name {
        "bursty" => Box::new(|x| bursty_mean(x, shape)),
        "step" => Box::new(|x| {
            if x < 0.3 {
                shape.base_rate
            } else {
                shape.peak_rate
            }
        }),
        "steady" => Box::new(|_| shape.base_rate),
        other => return Err(TraceError::Unknown(other.to_string())),
    };
    let per_sec = (0..n)
        .map(|i| poisson(mean(f64::from(i) / f64::from(n)), &mut rng))
        .collect();
    check(Trace {
        name: name.to_string(),
        per_sec,
    })
}

/// A built-in name, or a file of per-second counts.
pub fn resolve(spec: &str, shape: &Shape, seed: u64) -> Result<Trace, TraceError> {
    if BUILTIN_TRACES.contains(&spec) {
        return builtin(spec, shape, seed);
    }
    let path = Path::new(spec);
    if !path.exists() {
        return Err(TraceError::Unknown(spec.to_string()));
    }
    match SimTrace::load(path, TraceFormat::Counts)? {
        SimTrace::Counts(c) => check(Trace {
            name: spec.to_string(),
            per_sec: c.to_vec(),
        }),
        SimTrace::Timestamps(_) => Err(TraceError::NotCounts(spec.to_string())),
    }
}

fn check(t: Trace) -> Result<Trace, TraceError> {
    if t.per_sec.len() > MAX_TRACE_SECS {
        return Err(TraceError::TooLong {
            name: t.name,
            secs: t.per_sec.len(),
        });
    }
    if let Some(&rate) = t.per_sec.iter().find(|&&r| r > MAX_RATE_PER_SEC) {
        return Err(TraceError::TooFast { name: t.name, rate });
    }
    Ok(t)
}

impl Trace {
    /// The trace as a counts file (`ebb sim --arrivals trace:FILE,counts`).
    pub fn to_counts_file(&self) -> String {
        let mut s = format!("# ebb trace `{}`: calls per second\n", self.name);
        for c in &self.per_sec {
            s.push_str(&c.to_string());
            s.push('\n');
        }
        s
    }

    /// Only the first `secs` seconds.
    pub fn truncated(mut self, secs: usize) -> Trace {
        self.per_sec.truncate(secs);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        seconds: 60,
        base_rate: 20.0,
        peak_rate: 200.0,
    };

    #[test]
    fn bursty_is_quiet_then_bursts_then_quiet_and_repeats_by_seed() {
        let a = builtin("bursty", &SHAPE, 7).expect("built-in");
        assert_eq!(a, builtin("bursty", &SHAPE, 7).expect("built-in"));
        assert_ne!(a, builtin("bursty", &SHAPE, 8).expect("built-in"));
        assert_eq!(a.per_sec.len(), 60);
        let mean = |r: std::ops::Range<usize>| {
            let n = r.len() as f64;
            a.per_sec[r].iter().map(|&c| f64::from(c)).sum::<f64>() / n
        };
        assert!(mean(0..7) < 40.0, "quiet start");
        assert!(mean(9..20) > 150.0, "long burst");
        assert!(mean(28..31) > 180.0, "short sharp burst");
        assert!(mean(33..60) < 40.0, "quiet end, time to scale in");
    }

    #[test]
    fn poisson_counts_have_the_right_mean() {
        let mut rng = Rng::seeded(1);
        for mean in [0.5, 5.0, 300.0] {
            let n = 4_000;
            let sum: u64 = (0..n).map(|_| u64::from(poisson(mean, &mut rng))).sum();
            let got = sum as f64 / f64::from(n);
            assert!((got - mean).abs() < 0.1 * mean + 0.05, "mean {mean}: {got}");
        }
    }

    #[test]
    fn names_and_files_resolve_and_bad_input_is_named() {
        let err = resolve("flashy", &SHAPE, 1).expect_err("unknown name");
        assert!(err.to_string().contains("flashy") && err.to_string().contains("bursty"));
        let scratch = tempfile::tempdir().expect("temp dir");
        let file = scratch.path().join("t.txt");
        let t = builtin("step", &SHAPE, 3).expect("built-in");
        std::fs::write(&file, t.to_counts_file()).expect("write");
        let back = resolve(file.to_str().expect("utf-8 path"), &SHAPE, 1).expect("file");
        assert_eq!(back.per_sec, t.per_sec, "a written trace reads back");
        std::fs::write(&file, "1\n99999\n").expect("write");
        let err = resolve(file.to_str().expect("utf-8"), &SHAPE, 1).expect_err("too fast");
        assert!(matches!(err, TraceError::TooFast { rate: 99_999, .. }));
    }
}
