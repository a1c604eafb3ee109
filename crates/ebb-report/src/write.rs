//! The report folder.
//!
//! Layout (a contract: `ebb demo` users and scripts read it):
//! - `index.html`: everything inline, opens offline;
//! - `summary.json`: the first run's [`Summary`](crate::Summary) fields at
//!   the top level, and `runs`: every run's summary with its `label` and
//!   `scale_events`;
//! - `N-LABEL-{load,nodes,latency,misses}.svg` per run, `compare-*.svg`
//!   when there are several runs, `N-LABEL-timeline.csv` per run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::html;
use crate::plot::{self, PlotError};
use crate::series::Run;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("a report needs at least one run")]
    NoRuns,
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error("cannot encode summary.json: {0}")]
    Json(#[from] serde_json::Error),
}

/// What was written, for the caller to print.
#[derive(Clone, Debug)]
pub struct Written {
    pub index: PathBuf,
    pub summary: PathBuf,
    pub files: Vec<PathBuf>,
}

/// A file-name part from a label: lowercase ASCII letters, digits and `-`.
pub fn slug(label: &str) -> String {
    let mut s = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    let s = s.trim_matches('-');
    // Bounded so a long spec cannot make a name the file system refuses.
    s.chars().take(40).collect()
}

fn put(
    dir: &Path,
    name: &str,
    body: &str,
    files: &mut Vec<PathBuf>,
) -> Result<PathBuf, ReportError> {
    let path = dir.join(name);
    std::fs::write(&path, body).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    files.push(path.clone());
    Ok(path)
}

/// The per-second series as CSV (empty cells for seconds without answers).
pub fn timeline_csv(run: &Run) -> String {
    let mut out = String::from(
        "t_secs,offered,ok,slow,overloaded,deadline_exceeded,other_errors,booting,ready,draining,p50_ms,p99_ms\n",
    );
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    for s in &run.samples {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            s.t_secs,
            s.offered,
            s.ok,
            s.slow,
            s.overloaded,
            s.deadline_exceeded,
            s.other_errors,
            s.booting,
            s.ready,
            s.draining,
            opt(s.p50_ms),
            opt(s.p99_ms)
        );
    }
    out
}

/// `summary.json` for these runs (see the module doc).
pub fn summary_json(runs: &[Run]) -> Result<Value, ReportError> {
    let first = runs.first().ok_or(ReportError::NoRuns)?;
    let mut top = serde_json::to_value(&first.summary)?;
    let mut all = Vec::with_capacity(runs.len());
    for r in runs {
        let mut v = serde_json::to_value(&r.summary)?;
        if let Value::Object(m) = &mut v {
            m.insert("label".into(), json!(r.label));
            m.insert("scale_events".into(), serde_json::to_value(&r.events)?);
        }
        all.push(v);
    }
    if let Value::Object(m) = &mut top {
        m.insert("runs".into(), Value::Array(all));
    }
    Ok(top)
}

/// Writes the report for `runs` (the first is the headline run) into `dir`,
/// creating it; files of an earlier report with the same names are replaced.
pub fn write_report(dir: &Path, title: &str, runs: &[Run]) -> Result<Written, ReportError> {
    if runs.is_empty() {
        return Err(ReportError::NoRuns);
    }
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    let refs: Vec<&Run> = runs.iter().collect();
    let mut charts = Vec::with_capacity(runs.len());
    for (i, run) in runs.iter().enumerate() {
        let prefix = format!("{}-{}", i + 1, slug(&run.label));
        let cs = plot::run_charts(run)?;
        for c in &cs {
            put(dir, &format!("{prefix}-{}.svg", c.name), &c.svg, &mut files)?;
        }
        put(
            dir,
            &format!("{prefix}-timeline.csv"),
            &timeline_csv(run),
            &mut files,
        )?;
        charts.push(cs);
    }
    let compare = if runs.len() > 1 {
        let cs = plot::compare_charts(&refs)?;
        for c in &cs {
            put(dir, &format!("{}.svg", c.name), &c.svg, &mut files)?;
        }
        cs
    } else {
        Vec::new()
    };
    let summary = serde_json::to_string_pretty(&summary_json(runs)?)?;
    let summary = put(dir, "summary.json", &summary, &mut files)?;
    let index = put(
        dir,
        "index.html",
        &html::page(title, &refs, &charts, &compare),
        &mut files,
    )?;
    Ok(Written {
        index,
        summary,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_name_safe() {
        assert_eq!(
            slug("queue:objective=0.2,miss=0.01"),
            "queue-objective-0-2-miss-0-01"
        );
        assert_eq!(slug("  HPA  "), "hpa");
        assert!(slug(&"x".repeat(100)).len() <= 40);
    }
}
