//! Arrival traces read from a file, once, before a run.
//!
//! Two formats, one number per line (blank lines and `#` comments skipped):
//! arrival timestamps in seconds, non-decreasing; or per-second arrival
//! counts (non-negative integers). `Auto` takes a file whose values never
//! decrease as timestamps and anything else as counts; a per-second count
//! file that happens never to decrease must say `,counts`.
//!
//! The trace is held in memory: its size is an input, not something that
//! grows with the length of the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to read a trace file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFormat {
    Auto,
    Timestamps,
    Counts,
}

impl TraceFormat {
    /// The suffix that selects this format in `trace:FILE[,ts|,counts]`.
    pub fn suffix(self) -> &'static str {
        match self {
            TraceFormat::Auto => "",
            TraceFormat::Timestamps => ",ts",
            TraceFormat::Counts => ",counts",
        }
    }
}

/// A loaded trace.
#[derive(Clone, Debug, PartialEq)]
pub enum Trace {
    /// Arrival instants in seconds, non-decreasing, at least two.
    Timestamps(Arc<[f64]>),
    /// Arrivals in each successive one-second interval; at least one arrival.
    Counts(Arc<[u32]>),
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read trace file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("trace file {path}, line {line}: `{text}` is {problem}")]
    BadLine {
        path: PathBuf,
        line: usize,
        text: String,
        problem: &'static str,
    },
    #[error(
        "trace file {path} has too few arrivals (need at least two timestamps spanning a positive time, or one count)"
    )]
    TooShort { path: PathBuf },
}

impl Trace {
    pub fn load(path: &Path, format: TraceFormat) -> Result<Trace, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Trace::parse(&text, path, format)
    }

    /// Parses file contents; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path, format: TraceFormat) -> Result<Trace, TraceError> {
        let bad = |line: usize, text: &str, problem| TraceError::BadLine {
            path: path.to_path_buf(),
            line,
            text: text.to_string(),
            problem,
        };
        let mut values = Vec::new();
        let mut decreasing = false;
        for (i, raw) in text.lines().enumerate() {
            let t = raw.split('#').next().unwrap_or("").trim();
            if t.is_empty() {
                continue;
            }
            let v: f64 = t.parse().map_err(|_| bad(i + 1, t, "not a number"))?;
            if !v.is_finite() || v < 0.0 {
                return Err(bad(i + 1, t, "not a finite non-negative number"));
            }
            if let Some((_, prev)) = values.last() {
                decreasing |= v < *prev;
                if decreasing && format == TraceFormat::Timestamps {
                    return Err(bad(i + 1, t, "smaller than the timestamp before it"));
                }
            }
            values.push((i + 1, v));
        }
        let counts = match format {
            TraceFormat::Counts => true,
            TraceFormat::Timestamps => false,
            TraceFormat::Auto => decreasing,
        };
        let too_short = || TraceError::TooShort {
            path: path.to_path_buf(),
        };
        if counts {
            let mut out = Vec::with_capacity(values.len());
            for (line, v) in values {
                if v.fract() != 0.0 || v > f64::from(u32::MAX) {
                    return Err(bad(line, &v.to_string(), "not a count (an integer)"));
                }
                out.push(v as u32);
            }
            if out.iter().all(|c| *c == 0) {
                return Err(too_short());
            }
            Ok(Trace::Counts(out.into()))
        } else {
            let ts: Vec<f64> = values.into_iter().map(|(_, v)| v).collect();
            match (ts.first(), ts.last()) {
                (Some(a), Some(b)) if b > a => Ok(Trace::Timestamps(ts.into())),
                _ => Err(too_short()),
            }
        }
    }

    /// Mean arrivals per second of trace time.
    pub fn mean_rate_per_unit(&self) -> f64 {
        match self {
            Trace::Timestamps(ts) => match (ts.first(), ts.last()) {
                (Some(a), Some(b)) if b > a => ts.len() as f64 / (b - a),
                _ => 1.0,
            },
            Trace::Counts(c) => {
                c.iter().map(|x| f64::from(*x)).sum::<f64>() / c.len().max(1) as f64
            }
        }
    }

    /// Number of arrivals the trace holds.
    pub fn len(&self) -> u64 {
        match self {
            Trace::Timestamps(ts) => ts.len() as u64,
            Trace::Counts(c) => c.iter().map(|x| u64::from(*x)).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str, f: TraceFormat) -> Result<Trace, TraceError> {
        Trace::parse(text, Path::new("t.txt"), f)
    }

    #[test]
    fn auto_detects_timestamps_and_counts() {
        let t = parse("# arrivals\n0.0\n0.5\n0.5\n2.0\n", TraceFormat::Auto).unwrap();
        assert!(matches!(t, Trace::Timestamps(_)));
        assert_eq!(t.len(), 4);
        assert!((t.mean_rate_per_unit() - 2.0).abs() < 1e-12);
        let c = parse("5\n3\n7\n", TraceFormat::Auto).unwrap();
        assert!(matches!(c, Trace::Counts(_)));
        assert_eq!(c.len(), 15);
        assert!((c.mean_rate_per_unit() - 5.0).abs() < 1e-12);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = parse("1\nx\n", TraceFormat::Auto).unwrap_err().to_string();
        assert!(e.contains("t.txt") && e.contains("line 2"), "{e}");
        let e = parse("1\n0.5\n", TraceFormat::Timestamps)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = parse("1.5\n0.5\n", TraceFormat::Auto)
            .unwrap_err()
            .to_string();
        assert!(e.contains("integer"), "{e}");
        assert!(parse("", TraceFormat::Auto).is_err());
    }
}
