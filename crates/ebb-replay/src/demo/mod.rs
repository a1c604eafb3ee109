//! `ebb demo`: a gateway with an autoscaler over the demo service on local
//! nodes, a bursty trace of `Demo.work` calls with deadlines replayed
//! against it, the live view, and the report.
//!
//! Each run starts its own gateway (ports chosen by the OS, loopback only)
//! and stops it at the end, so a comparison's runs share nothing but the
//! trace. An interrupted run (Ctrl-C) stops sending, stops recording, and
//! still gets its report.
//!
//! - [`config`]: what a demo is told, what it returns, how it fails.
//! - [`one_run`]: one policy on the trace, from its gateway's start to its
//!   record.
//! - [`sample`]: the live view and the node counts, refreshed while a run
//!   goes.

mod config;
mod one_run;
mod sample;

pub use config::{
    CLIENT_CONNECTIONS, DemoConfig, DemoError, DemoOutcome, FIRST_NODE_TIMEOUT_MS, MIX_PER_MILLE,
    MixCall, Providers, SAMPLE_EVERY_MS,
};

use tokio::sync::watch;

use one_run::run_one;

/// Runs the headline policy and every baseline on the trace, then writes
/// the report. `stop` turning true (Ctrl-C) ends the current run early and
/// skips the runs after it.
pub async fn run(cfg: &DemoConfig, stop: watch::Receiver<bool>) -> Result<DemoOutcome, DemoError> {
    let specs: Vec<String> = std::iter::once(cfg.policy.clone())
        .chain(cfg.baselines.iter().cloned())
        .collect();
    // Parse every spec before anything starts, so a typo costs nothing.
    for s in &specs {
        ebb_policy::scale::parse(s)?;
    }
    let per_mille: u32 = cfg.mix.iter().map(|m| m.per_mille).sum();
    if per_mille > MIX_PER_MILLE {
        return Err(DemoError::MixTooLarge { per_mille });
    }
    if let Some(m) = cfg.mix.iter().find(|m| m.args.is_empty()) {
        return Err(DemoError::MixWithoutArgs {
            method: m.method.clone(),
        });
    }
    let mut runs = Vec::new();
    let mut interrupted = false;
    for (i, spec) in specs.iter().enumerate() {
        if *stop.borrow() {
            interrupted = true;
            break;
        }
        let title = format!("ebb demo: run {}/{} policy {spec}", i + 1, specs.len());
        let (run, cut) = run_one(cfg, spec, &title, stop.clone()).await?;
        runs.push(run);
        interrupted |= cut;
    }
    let title = if runs.len() > 1 {
        "ebb demo: autoscaling policies on one trace".to_string()
    } else {
        format!("ebb demo: {}", cfg.policy)
    };
    std::fs::create_dir_all(&cfg.out).map_err(|source| ebb_report::ReportError::Io {
        path: cfg.out.clone(),
        source,
    })?;
    let trace_file = cfg.out.join("trace.txt");
    std::fs::write(&trace_file, cfg.trace.to_counts_file()).map_err(|source| {
        ebb_report::ReportError::Io {
            path: trace_file,
            source,
        }
    })?;
    let written = ebb_report::write_report(&cfg.out, &title, &runs)?;
    Ok(DemoOutcome {
        runs,
        written,
        interrupted,
    })
}
