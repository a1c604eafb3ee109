//! `ebb sim`: run the real balancing policies on a simulated pool.
//!
//! One policy and no `--sweep`: one run, a table (or one JSON object with
//! `--json`). Several policies (`--balance rr,p2c`) or `--sweep`: a grid of
//! runs, a table or one JSON object `{"runs": [...]}`, and with `--plot` an
//! SVG of mean and p99 response time against load with theory dashed.

use anyhow::{Context, bail};
use ebb_policy::balance::POLICY_SYNTAX;
use ebb_sim::arrivals::{ARRIVAL_FORMS, ArrivalSpec, Arrivals};
use ebb_sim::config::{DEFAULT_MAX_IN_SYSTEM, SPEED_FORMS};
use ebb_sim::dist::SERVICE_FORMS;
use ebb_sim::expected::expected;
use ebb_sim::sweep::{SWEEP_FORMS, SweepPoint, SweepSpec};
use ebb_sim::{Progress, Report, ServiceDist, SimConfig, SpeedSpec};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::sim_progress::{self, RunProgress};

#[derive(clap::Args, Debug)]
#[command(after_help = AFTER_HELP)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    model: Option<Model>,
    #[arg(long, default_value = "p2c", value_parser = parse_policies, help = format!("Balancing policy, or a comma-separated list to compare: {POLICY_SYNTAX}"))]
    balance: PolicyList,
    /// Nodes in the pool (all ready at the start).
    #[arg(long, default_value_t = 100)]
    nodes: u32,
    /// Offered load: average arrival rate / total service capacity of the
    /// initial pool (Σ speed / mean service time). Below 1 for a stable
    /// system. Default 0.9; with --scale and a trace, the trace's own rate.
    #[arg(long)]
    load: Option<f64>,
    /// Average arrivals per time unit, instead of --load.
    #[arg(long, conflicts_with = "load")]
    rate: Option<f64>,
    #[arg(long, default_value = "exp:1", help = format!("Service-time distribution on a speed-1 node: {SERVICE_FORMS}; its parameters set the time unit of every reported time"))]
    service: ServiceDist,
    /// Arrivals to simulate (the first --warmup fraction is not measured).
    /// Default 1000000; a trace or built-in shape runs to its end.
    #[arg(long)]
    requests: Option<u64>,
    /// Seed: the same seed and flags give the same run, bit for bit.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Gateways, each with its own balancer and view; an arrival goes to one
    /// at random.
    #[arg(long, default_value_t = 1)]
    gateways: u32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "poisson", help = format!("Arrival process: {ARRIVAL_FORMS}"))]
    arrivals: ArrivalSpec,
    /// Relative deadline in time units; requests still queued past it are
    /// dropped (counted in dropped_fraction).
    #[arg(long)]
    deadline: Option<f64>,
    #[arg(long, default_value = "1", help = format!("Node speeds: {SPEED_FORMS}"))]
    speeds: SpeedSpec,
    /// Node costs in micro-dollars per second, comma-separated, repeated
    /// over the nodes.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    costs: Vec<u64>,
    /// Fraction of the first requests left out of the statistics (default
    /// 0.1; 0 with --scale, where the start is part of what is judged).
    #[arg(long)]
    warmup: Option<f64>,
    /// Control tick in time units: node queue reports refresh every tick
    /// (and on every completion, piggybacked on the reply). 0 turns it off.
    #[arg(long, default_value_t = 1.0)]
    tick: f64,
    /// Boot time, in time units, of nodes added during the run (--scale).
    #[arg(long, default_value_t = 0.0)]
    boot_time: f64,
    #[command(flatten)]
    scale: super::sim_scale::ScaleArgs,
    /// Stop with an error when more requests than this are in the system.
    #[arg(long, default_value_t = DEFAULT_MAX_IN_SYSTEM)]
    max_in_system: u64,
    #[arg(long, help = format!("Sweep a parameter: {SWEEP_FORMS}"))]
    sweep: Option<SweepSpec>,
    /// Write an SVG of mean and p99 response time against load (with --sweep).
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
    /// Runs of a sweep in parallel (each run itself is single-threaded).
    #[arg(long, default_value_t = default_jobs())]
    jobs: usize,
}

/// Models other than the queueing pool.
#[derive(clap::Subcommand, Debug)]
enum Model {
    /// Lease-based caching: origin load and added delay against Gray and
    /// Cheriton's model.
    Lease(super::sim_lease::Args),
}

const AFTER_HELP: &str = "Examples:
  ebb sim --balance random --nodes 10 --load 0.9 --requests 1000000 --json
  ebb sim --scale queue --arrivals builtin:flash --service exp:0.02 --rate 2000 --objective 0.2 --boot-time 2 --json
  ebb sim --scale hpa:util=0.6 --arrivals trace:counts.txt,counts --service exp:0.02 --objective 0.2 --timeline t.csv
  ebb sim --balance central --nodes 8 --load 0.8 --service lognormal:1,2
  ebb sim --sweep load=0.5:0.99:0.01 --balance rr,random,p2c,jsq,central --plot load.svg";

const DEFAULT_LOAD: f64 = 0.9;
const DEFAULT_REQUESTS: u64 = 1_000_000;
const DEFAULT_WARMUP: f64 = 0.1;

/// A fixed pool at offered load 1 or more has no steady state: queues grow
/// for as long as the run lasts, and every average depends on its length.
fn warn_unstable(cfg: &SimConfig) {
    if cfg.rate_per_sec.is_none() && cfg.load >= 1.0 {
        eprintln!(
            "warning: offered load {} is at or above 1: the queues grow without bound, so there is no steady state \
             and the results depend on the run's length (use --load below 1, more --nodes, or --scale)",
            cfg.load
        );
    }
}

fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Model::Lease(lease)) = args.model {
        return super::sim_lease::run(lease);
    }
    let policies = args.balance.0.clone();
    let arrivals = Arrivals::load(&args.arrivals)?;
    let scaling = args.scale.scale.is_some();
    let requests = args.requests.unwrap_or(if arrivals.is_finite() {
        u64::MAX
    } else {
        DEFAULT_REQUESTS
    });
    let base = SimConfig {
        nodes: args.nodes,
        load: args.load.unwrap_or(DEFAULT_LOAD),
        service: args.service,
        arrivals,
        requests,
        seed: args.seed,
        gateways: args.gateways,
        speeds: args.speeds.clone(),
        costs_per_sec_micros: args.costs.clone(),
        deadline_secs: args.deadline,
        warmup: args
            .warmup
            .unwrap_or(if scaling { 0.0 } else { DEFAULT_WARMUP }),
        tick_secs: args.tick,
        boot_secs: args.boot_time,
        max_in_system: args.max_in_system,
        objective_secs: args.scale.objective,
        rate_per_sec: args.rate,
    };
    if scaling {
        if args.sweep.is_some() || policies.len() > 1 || args.plot.is_some() {
            bail!(
                "--scale runs one balancing policy once; drop --sweep, --plot and the extra --balance policies"
            );
        }
        return super::sim_scale::run(
            base,
            &policies[0],
            args.load.is_some(),
            &args.scale,
            args.json,
        );
    }
    warn_unstable(&base);
    if args.sweep.is_none() && policies.len() == 1 {
        if args.plot.is_some() {
            bail!("--plot needs --sweep or several policies in --balance");
        }
        return single(base, &policies[0], args.json);
    }
    let loads = args
        .sweep
        .as_ref()
        .map_or(vec![base.load], |s| s.loads.clone());
    let mut grid = Vec::new();
    for load in &loads {
        for p in &policies {
            grid.push((
                SimConfig {
                    load: *load,
                    ..base.clone()
                },
                p.clone(),
            ));
        }
    }
    let points = run_grid(&grid, args.jobs.max(1), args.json)?;
    if let Some(path) = &args.plot {
        let subtitle = format!("{} nodes, {}", args.nodes, args.service);
        let svg = ebb_sim::sweep::plot(&points, &policies, &subtitle);
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if args.json {
        println!("{}", serde_json::json!({ "runs": points }));
    } else {
        print_grid(&points);
    }
    Ok(())
}

/// Policy names as each policy spells itself (`pod:2` is `p2c`), checked
/// when the command line is parsed so a bad name fails before any run.
#[derive(Clone, Debug)]
struct PolicyList(Vec<String>);

fn parse_policies(list: &str) -> Result<PolicyList, String> {
    let mut out: Vec<String> = Vec::new();
    for spec in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let name = ebb_policy::balance::parse(spec)
            .map_err(|e| e.to_string())?
            .name();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    if out.is_empty() {
        return Err("empty; give a policy such as p2c".into());
    }
    Ok(PolicyList(out))
}

fn timed(
    cfg: SimConfig,
    policy: &str,
    progress: &mut dyn FnMut(&Progress),
) -> anyhow::Result<Report> {
    let start = Instant::now();
    let mut r = ebb_sim::run_spec(cfg, policy, progress).map_err(flag_error)?;
    r.wall_secs = start.elapsed().as_secs_f64();
    r.events_per_sec = r.events as f64 / r.wall_secs.max(1e-9);
    Ok(r)
}

/// A configuration error as the flag that set it: the simulator names the
/// field (`load`), the user typed `--load`.
fn flag_error(e: ebb_sim::SimError) -> anyhow::Error {
    match e {
        ebb_sim::SimError::Config {
            field,
            value,
            accepted,
        } => anyhow::anyhow!("--{field} {value}: accepted: {accepted}"),
        other => other.into(),
    }
}

fn single(cfg: SimConfig, policy: &str, json: bool) -> anyhow::Result<()> {
    let theory = expected(&cfg, policy);
    let progress = RunProgress::new(&cfg, json);
    let r = timed(cfg, policy, &mut |p| progress.update(p));
    progress.finish();
    let r = r?;
    if json {
        let mut v = serde_json::to_value(&r)?;
        if let (Some(obj), Some(t)) = (v.as_object_mut(), theory) {
            obj.insert("theory".into(), serde_json::to_value(t)?);
        }
        println!("{v}");
        return Ok(());
    }
    let rows: [(&str, String); 14] = [
        ("policy", r.balance.clone()),
        ("nodes / gateways", format!("{} / {}", r.nodes, r.gateways)),
        ("load", format!("{}", r.load)),
        (
            "service / arrivals",
            format!("{} / {}", r.service, r.arrivals),
        ),
        (
            "requests (measured)",
            format!("{} ({})", r.requests, r.measured),
        ),
        ("mean response", pm(r.mean_response, r.mean_response_ci95)),
        ("mean wait", pm(r.mean_wait, r.mean_wait_ci95)),
        (
            "p50 / p99 / p999",
            format!("{:.4} / {:.4} / {:.4}", r.p50, r.p99, r.p999),
        ),
        ("throughput", format!("{:.4} per time unit", r.throughput)),
        ("dropped", format!("{:.4}%", 100.0 * r.dropped_fraction)),
        ("utilization", format!("{:.4}", r.utilization)),
        (
            "node-seconds / cost",
            format!("{:.1} / {:.0} µ$", r.node_seconds, r.cost_micros),
        ),
        (
            "events",
            format!("{} in {:.2} s wall", r.events, r.wall_secs),
        ),
        ("events/s", format!("{:.3e}", r.events_per_sec)),
    ];
    for (k, v) in rows {
        println!("{k:<22} {v}");
    }
    if let Some(t) = theory {
        let rel = (r.mean_response - t.mean_response) / t.mean_response;
        println!(
            "{:<22} mean {:.4} ({:+.2}% simulated vs theory), p99 {:.4}",
            format!("theory ({})", t.model),
            t.mean_response,
            100.0 * rel,
            t.p99
        );
    }
    Ok(())
}

/// A mean and its 95% half-width; a half-width too few batches could
/// estimate (a tiny run) is shown as such, not as NaN.
fn pm(mean: f64, ci: f64) -> String {
    match (mean.is_finite(), ci.is_finite()) {
        (true, true) => format!("{mean:.4} ± {ci:.4}"),
        (true, false) => format!("{mean:.4} (too few requests for an interval)"),
        _ => "no request completed".into(),
    }
}

/// Runs the grid on `jobs` threads; results come back in grid order, each
/// run a function of its own configuration, so the output does not depend
/// on scheduling.
fn run_grid(
    grid: &[(SimConfig, String)],
    jobs: usize,
    json: bool,
) -> anyhow::Result<Vec<SweepPoint>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<anyhow::Result<SweepPoint>>>> =
        Mutex::new((0..grid.len()).map(|_| None).collect());
    let bar = sim_progress::wanted(json, std::io::stderr().is_terminal())
        .then(|| sim_progress::bar(grid.len() as u64, "runs"));
    std::thread::scope(|s| {
        for _ in 0..jobs.min(grid.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((cfg, policy)) = grid.get(i) else {
                        break;
                    };
                    let theory = expected(cfg, policy);
                    let point = timed(cfg.clone(), policy, &mut |_| {})
                        .map(|report| SweepPoint { report, theory });
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(point);
                    }
                    if let Some(b) = &bar {
                        b.inc(1);
                    }
                }
            });
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a sweep worker panicked"))?;
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("a sweep run did not finish"))))
        .collect()
}

fn print_grid(points: &[SweepPoint]) {
    println!(
        "{:>6}  {:<14} {:>10} {:>10} {:>10} {:>10} {:>8} {:>12}",
        "load", "policy", "mean", "theory", "p99", "theory", "err%", "events/s"
    );
    for p in points {
        let r = &p.report;
        let (tm, tp, err) = match &p.theory {
            Some(t) => (
                format!("{:.4}", t.mean_response),
                format!("{:.4}", t.p99),
                format!(
                    "{:+.2}",
                    100.0 * (r.mean_response - t.mean_response) / t.mean_response
                ),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:>6}  {:<14} {:>10.4} {:>10} {:>10.4} {:>10} {:>8} {:>12.3e}",
            r.load, r.balance, r.mean_response, tm, r.p99, tp, err, r.events_per_sec
        );
    }
}
