//! The live view: what the run is doing, once a second.
//!
//! On a terminal, a panel redrawn in place (indicatif, on stdout); when
//! stdout is not a terminal (CI, a pipe, a file), one plain line every
//! [`PLAIN_EVERY_SECS`], so logs stay readable and grep-able.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::record::Snapshot;

/// Period of plain lines when stdout is not a terminal.
pub const PLAIN_EVERY_SECS: f64 = 5.0;
/// Longest reason text shown; the report has the whole of it.
const MAX_REASON_CHARS: usize = 90;

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.1} ms"))
}

fn last_scaling(s: &Snapshot) -> String {
    match &s.last_event {
        None => "none yet".to_string(),
        Some(e) => {
            let mut detail: String = e.detail.chars().take(MAX_REASON_CHARS).collect();
            if e.detail.chars().count() > MAX_REASON_CHARS {
                detail.push('…');
            }
            format!(
                "{} → {} nodes at {:.0}s ({}) {detail}",
                e.from, e.to, e.t_secs, e.reason
            )
        }
    }
}

/// The first line of the panel: the latest complete second's calls, or,
/// before one is complete, that nothing is measured yet (a rate of 0/s
/// then would read as a load generator sending nothing).
fn calls_line(s: &Snapshot) -> String {
    let l = &s.last;
    if s.seconds_complete == 0 {
        return format!(
            "calls     {} sent so far, rates from the end of the first second",
            s.total_sent
        );
    }
    format!(
        "calls     {:>5}/s sent  {:>5}/s ok      p50 {:>9}  p99 {:>9}",
        l.offered,
        l.ok,
        ms(l.p50_ms),
        ms(l.p99_ms),
    )
}

/// The panel: four lines about the latest complete second and the totals.
pub fn panel(s: &Snapshot) -> String {
    let l = &s.last;
    format!(
        "{}\n\
         nodes     {:>3} ready  {:>3} booting  {:>3} draining\n\
         failures  {:>4}/s refused  {:>4}/s deadline  {:>4}/s slow   (total {} refused, {} deadline, {} other)\n\
         scaling   {}",
        calls_line(s),
        s.nodes.ready,
        s.nodes.booting,
        s.nodes.draining,
        l.overloaded,
        l.deadline_exceeded,
        l.slow,
        s.total_overloaded,
        s.total_deadline,
        s.total_other,
        last_scaling(s)
    )
}

/// One line with the same content, for logs.
pub fn plain_line(s: &Snapshot) -> String {
    let l = &s.last;
    format!(
        "[{:>4.0}s] sent {}/s ok {}/s p50 {} p99 {} | nodes {} ready {} booting {} draining | refused {}/s deadline {}/s slow {}/s | last scaling: {}",
        s.elapsed_secs,
        l.offered,
        l.ok,
        ms(l.p50_ms),
        ms(l.p99_ms),
        s.nodes.ready,
        s.nodes.booting,
        s.nodes.draining,
        l.overloaded,
        l.deadline_exceeded,
        l.slow,
        last_scaling(s)
    )
}

enum Mode {
    Panel(ProgressBar),
    Plain { next_at: f64 },
}

/// The view of one run.
pub struct Live {
    mode: Mode,
}

impl Live {
    /// A panel when stdout is a terminal, plain lines otherwise.
    /// `title` names the run; `total_secs` sizes the progress bar.
    pub fn new(title: &str, total_secs: u64) -> Live {
        Live::with_terminal(title, total_secs, std::io::stdout().is_terminal())
    }

    pub fn with_terminal(title: &str, total_secs: u64, terminal: bool) -> Live {
        if !terminal {
            println!("{title}");
            return Live {
                mode: Mode::Plain { next_at: 0.0 },
            };
        }
        let bar = ProgressBar::with_draw_target(Some(total_secs), ProgressDrawTarget::stdout());
        let style =
            ProgressStyle::with_template("{prefix} [{bar:32.cyan/blue}] {pos}/{len} s\n{msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(title.to_string());
        Live {
            mode: Mode::Panel(bar),
        }
    }

    pub fn update(&mut self, s: &Snapshot) {
        match &mut self.mode {
            Mode::Panel(bar) => {
                bar.set_position(s.elapsed_secs as u64);
                bar.set_message(panel(s));
            }
            Mode::Plain { next_at } => {
                // A log line is a record of a measured second: none is
                // written before the first second is complete.
                if s.seconds_complete > 0 && s.elapsed_secs >= *next_at {
                    println!("{}", plain_line(s));
                    let _ = std::io::stdout().flush();
                    *next_at = s.elapsed_secs + PLAIN_EVERY_SECS;
                }
            }
        }
    }

    /// Leaves the last panel on screen (or prints the last line).
    pub fn finish(&mut self, s: &Snapshot) {
        match &mut self.mode {
            Mode::Panel(bar) => {
                bar.set_position(s.elapsed_secs as u64);
                bar.set_message(panel(s));
                bar.abandon();
            }
            Mode::Plain { .. } => println!("{}", plain_line(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Nodes;
    use ebb_report::{Sample, ScaleEvent};

    fn snap() -> Snapshot {
        Snapshot {
            elapsed_secs: 12.0,
            last: Sample {
                offered: 198,
                ok: 190,
                overloaded: 3,
                slow: 2,
                p50_ms: Some(6.14),
                p99_ms: None,
                ..Sample::default()
            },
            seconds_complete: 11,
            nodes: Nodes {
                booting: 1,
                ready: 3,
                draining: 0,
            },
            last_event: Some(ScaleEvent {
                t_secs: 10.0,
                from: 2,
                to: 4,
                reason: "objective".into(),
                detail: "x".repeat(200),
            }),
            ..Snapshot::default()
        }
    }

    #[test]
    fn panel_and_line_show_rate_nodes_latency_failures_and_the_last_decision() {
        let s = snap();
        let common = [
            "198/s",
            "190/s",
            "6.1 ms",
            "3 ready",
            "1 booting",
            "2 → 4 nodes",
            "(objective)",
        ];
        for (text, refused) in [(panel(&s), "3/s refused"), (plain_line(&s), "refused 3/s")] {
            for want in common.iter().chain([&refused]) {
                assert!(text.contains(want), "{want} missing from {text}");
            }
            assert!(text.contains('…'), "long reasons are cut");
            assert!(text.chars().count() < 600);
        }
        assert_eq!(panel(&s).lines().count(), 4);
        assert_eq!(plain_line(&s).lines().count(), 1);
        let none = Snapshot::default();
        assert!(plain_line(&none).contains("last scaling: none yet"));
    }

    #[test]
    fn no_rate_is_shown_before_the_first_second_is_complete() {
        let early = Snapshot {
            elapsed_secs: 0.4,
            seconds_complete: 0,
            total_sent: 37,
            ..Snapshot::default()
        };
        let text = panel(&early);
        assert!(!text.contains("0/s sent"), "{text}");
        assert!(text.contains("37 sent so far"), "{text}");
        let mut live = Live::with_terminal("t", 10, false);
        live.update(&early);
        let Mode::Plain { next_at } = live.mode else {
            panic!("not a terminal: plain lines")
        };
        assert_eq!(next_at, 0.0, "no line was written for the early sample");
        live.update(&snap());
        let Mode::Plain { next_at } = live.mode else {
            panic!("not a terminal: plain lines")
        };
        assert_eq!(
            next_at,
            12.0 + PLAIN_EVERY_SECS,
            "a complete second is written"
        );
    }
}
