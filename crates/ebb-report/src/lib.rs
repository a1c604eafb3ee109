//! A run's per-second time series and summary, written as a report folder
//! that opens offline: `index.html` (plots inlined, no external assets),
//! one SVG per plot, a CSV of each run's series and `summary.json`.
//!
//! The report knows nothing about how a run was made: the real system
//! (`ebb demo`) and the simulator fill the same [`Run`], so their reports
//! compare line for line. Several runs on the same trace (say, an HPA-like
//! policy against ebb's) go side by side in one report.
//!
//! - [`series`]: [`Sample`] (one second), [`ScaleEvent`], [`Run`].
//! - [`summary`]: [`Summary`], the fields of `summary.json`, derived from a
//!   series plus whole-run latency percentiles.
//! - [`plot`]: the SVG charts (plotters' SVG backend, no fonts needed).
//! - [`html`]: the index page.
//! - [`write`]: [`write_report`], the folder.

pub mod html;
pub mod plot;
pub mod series;
pub mod summary;
pub mod write;

pub use series::{Run, Sample, ScaleEvent};
pub use summary::{Latency, RunInfo, SharedData, Summary};
pub use write::{ReportError, Written, write_report};
