//! While a run goes: every [`SAMPLE_EVERY_MS`] the autoscaler's decisions
//! and the node counts move into the record, and the live view is redrawn
//! from it; once more when the run ends, so the last view is the final one.

use std::sync::Arc;
use std::time::Duration;

use ebb_core::Nanos;
use ebb_report::ScaleEvent;
use tokio::sync::watch;

use super::config::{DemoConfig, SAMPLE_EVERY_MS};
use super::one_run::Seen;
use crate::control::{self, NodeTally, SharedLog};
use crate::live::Live;
use crate::load::{self, SharedRecorder};
use crate::record::Nodes;

/// The sampling task of one run.
pub(super) struct Sampler {
    done: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `recorder` and what the gateway told `seen`, the
    /// view titled `title`, times counted from `wall_start`.
    pub(super) fn spawn(
        cfg: &DemoConfig,
        title: &str,
        recorder: &SharedRecorder,
        seen: &Seen,
        wall_start: std::time::Instant,
    ) -> Sampler {
        let mut live = match cfg.terminal {
            Some(t) => Live::with_terminal(title, cfg.trace.per_sec.len() as u64, t),
            None => Live::new(title, cfg.trace.per_sec.len() as u64),
        };
        let (done, mut done_rx) = watch::channel(false);
        let rec = Arc::clone(recorder);
        let log = Arc::clone(&seen.log);
        let tally = seen.tally.clone();
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(SAMPLE_EVERY_MS));
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = done_rx.changed() => break,
                }
                let snap = sample(&rec, &log, &tally, wall_start);
                live.update(&snap);
            }
            let snap = sample(&rec, &log, &tally, wall_start);
            live.finish(&snap);
        });
        Sampler { done, task }
    }

    /// Takes the last sample, draws the final view and waits for the task.
    pub(super) async fn finish(self) {
        let _ = self.done.send(true);
        let _ = self.task.await;
    }
}

/// Moves the autoscaler's decisions and the node counts into the recorder
/// and returns the view.
fn sample(
    rec: &SharedRecorder,
    log: &SharedLog,
    tally: &NodeTally,
    wall_start: std::time::Instant,
) -> crate::record::Snapshot {
    let decisions = control::lock(log).drain();
    let nodes = tally.counts();
    let mut r = load::lock(rec);
    let now: Nanos = wall_start.elapsed().into();
    for d in decisions.into_iter().filter(|d| d.changes_pool()) {
        let at: Nanos = d.at.saturating_duration_since(wall_start).into();
        r.scaled(ScaleEvent {
            t_secs: at.as_secs_f64(),
            from: d.current,
            to: d.decision.target_nodes,
            reason: d.decision.reason.to_string(),
            detail: d.decision.to_string(),
        });
    }
    r.nodes(
        now,
        Nodes {
            booting: nodes.booting,
            ready: nodes.ready,
            draining: nodes.draining,
        },
    );
    r.close_until(now);
    r.snapshot()
}
