//! How far an `ebb sim` run has got, on stderr, for a person watching.
//!
//! A bar only when stderr is a terminal and the output is not `--json`:
//! a script reading JSON, or a log file, gets the result and nothing else.
//! The engine reports every million events or so, so a short run never
//! draws at all.

use std::io::IsTerminal;

use ebb_sim::{Progress, SimConfig};
use indicatif::{ProgressBar, ProgressStyle};

/// Whether a run shows progress: a person at a terminal, not a script
/// reading JSON.
pub fn wanted(json: bool, stderr_is_terminal: bool) -> bool {
    stderr_is_terminal && !json
}

/// A bar counting `what` up to `len`, with its rate and time left.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    let style = ProgressStyle::with_template(&format!(
        "{{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, eta {{eta}})"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    b.set_style(style);
    b
}

/// Progress of one run: a bar over its arrivals when their number is
/// known (`--requests`, a trace file), a counter of arrivals and simulated
/// time when it is not (a built-in shape runs to its own end).
pub struct RunProgress(Option<(ProgressBar, bool)>);

impl RunProgress {
    pub fn new(cfg: &SimConfig, json: bool) -> RunProgress {
        if !wanted(json, std::io::stderr().is_terminal()) {
            return RunProgress(None);
        }
        let len = match (cfg.requests, cfg.arrivals.max_arrivals()) {
            (u64::MAX, None) => None,
            (u64::MAX, Some(n)) => Some(n),
            (r, n) => Some(n.map_or(r, |n| n.min(r))),
        };
        let b = match len {
            Some(len) => (bar(len, "requests"), true),
            None => {
                let b = ProgressBar::new_spinner();
                b.set_style(
                    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                (b, false)
            }
        };
        RunProgress(Some(b))
    }

    pub fn update(&self, p: &Progress) {
        match &self.0 {
            Some((b, true)) => b.set_position(p.arrived),
            Some((b, false)) => b.set_message(format!(
                "{} requests, {:.0} time units simulated",
                p.arrived, p.sim_secs
            )),
            None => {}
        }
    }

    /// Clears the bar before the result is printed.
    pub fn finish(self) {
        if let Some((b, _)) = self.0 {
            b.finish_and_clear();
        }
    }
}
