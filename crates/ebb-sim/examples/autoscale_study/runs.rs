//! One run of the study and many at once: the job (trace, seed, policy
//! spec, boot time), its simulator config, and the summaries every
//! section prints.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use ebb_core::Nanos;
use ebb_policy::scale::{Limits, parse};
use ebb_sim::builtin::BuiltinTrace;
use ebb_sim::{Arrivals, Autoscaler, Report, ScaleSetup, ServiceDist, SimConfig};

use crate::{
    BOOT, COST_PER_NODE_SEC, INITIAL_NODES, MAX_NODES, OBJECTIVE, RATE, SERVICE, TRACE_SECS,
};
#[derive(Clone, Debug)]
pub(crate) struct Job {
    pub(crate) trace: BuiltinTrace,
    pub(crate) seed: u64,
    /// `none:N` runs a fixed pool of N nodes.
    pub(crate) spec: String,
    pub(crate) boot: f64,
    pub(crate) max_capacity: u32,
    pub(crate) rate: f64,
    pub(crate) seconds: u32,
    pub(crate) timeline: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    pub(crate) report: Report,
    /// Arrivals per one-second tick, when asked for.
    pub(crate) arrivals: Vec<u64>,
}

pub(crate) fn config(job: &Job, nodes: u32) -> SimConfig {
    let mut cfg = SimConfig::new(nodes, 0.5, u64::MAX, job.seed);
    cfg.service = ServiceDist::Exp { mean: SERVICE };
    cfg.arrivals = Arrivals::Builtin {
        trace: job.trace,
        seconds: job.seconds,
    };
    cfg.rate_per_sec = Some(job.rate);
    cfg.warmup = 0.0;
    cfg.objective_secs = Some(OBJECTIVE);
    cfg.boot_secs = job.boot;
    cfg.costs_per_sec_micros = vec![COST_PER_NODE_SEC];
    cfg.tick_secs = 1.0;
    cfg
}

fn setup(boot: f64, max_capacity: u32) -> ScaleSetup {
    ScaleSetup {
        limits: Limits {
            min_nodes: 1,
            max_nodes: MAX_NODES,
            max_capacity_per_node: max_capacity,
        },
        boot_time: Nanos::from_secs_f64(boot),
        cost_per_node_sec_micros: COST_PER_NODE_SEC,
        objective: Some(Nanos::from_secs_f64(OBJECTIVE)),
    }
}

pub(crate) fn run(job: &Job) -> Outcome {
    let (nodes, spec) = match job.spec.strip_prefix("none:") {
        Some(n) => (
            n.parse().expect("fixed pool sizes are written as none:N"),
            "none",
        ),
        None => (INITIAL_NODES, job.spec.as_str()),
    };
    let policy = parse(spec).unwrap_or_else(|e| panic!("{e}"));
    let mut scaler = Autoscaler::new(policy, setup(job.boot, job.max_capacity));
    if job.timeline {
        scaler = scaler.with_timeline();
    }
    let report = ebb_sim::run_scaled(config(job, nodes), "jsq", &mut scaler, &mut |_| {})
        .unwrap_or_else(|e| panic!("{job:?}: {e}"));
    let arrivals = scaler.timeline().iter().map(|r| r.arrivals).collect();
    Outcome { report, arrivals }
}

/// Runs every job on every core; results in job order.
pub(crate) fn run_all(jobs: &[Job]) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; jobs.len()]);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let o = run(job);
                    if let Ok(mut v) = out.lock() {
                        v[i] = Some(o);
                    }
                }
            });
        }
    });
    out.into_inner()
        .expect("no worker panicked while holding the lock")
        .into_iter()
        .map(|o| o.expect("every job ran"))
        .collect()
}

pub(crate) fn job(trace: BuiltinTrace, seed: u64, spec: &str) -> Job {
    Job {
        trace,
        seed,
        spec: spec.to_string(),
        boot: BOOT,
        max_capacity: 1,
        rate: RATE,
        seconds: TRACE_SECS,
        timeline: false,
    }
}

/// The reports of the jobs `keep` picks, for averaging over seeds.
pub(crate) fn reports_where<'a>(
    jobs: &'a [Job],
    out: &'a [Outcome],
    keep: impl Fn(&Job) -> bool,
) -> Vec<&'a Report> {
    jobs.iter()
        .zip(out)
        .filter(|(j, _)| keep(j))
        .map(|(_, o)| &o.report)
        .collect()
}

/// Mean node-seconds and misses over the seeds.
pub(crate) fn mean_point(rs: &[&Report]) -> (f64, f64) {
    let n = rs.len() as f64;
    let ns = rs.iter().map(|r| r.node_seconds).sum::<f64>() / n;
    let miss = rs
        .iter()
        .map(|r| r.slo_miss_fraction.unwrap_or(1.0))
        .sum::<f64>()
        / n;
    (ns, miss)
}

pub(crate) fn pct(x: f64) -> String {
    format!("{:.3}%", 100.0 * x)
}
