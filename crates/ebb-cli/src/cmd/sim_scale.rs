//! `ebb sim --scale POLICY`: one run with an autoscaling policy from
//! `ebb_policy::scale` growing and shrinking the simulated pool.

use anyhow::{Context, bail};
use ebb_core::Nanos;
use ebb_policy::scale::{Limits, SCALE_SYNTAX};
use ebb_sim::autoscale::TIMELINE_CSV_HEADER;
use ebb_sim::{Arrivals, Autoscaler, ScaleSetup, SimConfig};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ScaleArgs {
    #[arg(long, value_parser = parse_scale, help = format!("Autoscaling policy, run every --tick: {SCALE_SYNTAX}"))]
    pub scale: Option<String>,
    /// Fewest nodes the policy may keep (ready + booting).
    #[arg(long, default_value_t = 1)]
    pub min_nodes: u32,
    /// Most nodes the policy may keep (ready + booting).
    #[arg(long, default_value_t = 1000)]
    pub max_nodes: u32,
    /// Largest capacity a node may be given (scale up: a node of capacity c
    /// serves c times as fast and costs c times as much); 1 disables it.
    #[arg(long, default_value_t = 1)]
    pub max_capacity: u32,
    /// Response-time objective in time units: a request slower than this,
    /// or dropped, is a miss (`slo_miss_fraction`). The queue policy sizes
    /// the pool for it (default there: 10 mean service times).
    #[arg(long)]
    pub objective: Option<f64>,
    /// Write one CSV row per tick: arrivals, nodes by state, queue, the
    /// policy's target and reason.
    #[arg(long, value_name = "FILE.csv")]
    pub timeline: Option<PathBuf>,
}

fn parse_scale(spec: &str) -> Result<String, String> {
    ebb_policy::scale::parse(spec)
        .map(|p| p.name())
        .map_err(|e| e.to_string())
}

pub fn run(
    mut cfg: SimConfig,
    balance: &str,
    load_given: bool,
    args: &ScaleArgs,
    json: bool,
) -> anyhow::Result<()> {
    let Some(spec) = &args.scale else {
        bail!("--scale is missing");
    };
    if args.min_nodes == 0 || args.min_nodes > args.max_nodes {
        bail!(
            "--min-nodes {} / --max-nodes {}: need 1 <= min <= max",
            args.min_nodes,
            args.max_nodes
        );
    }
    if args.max_capacity == 0 {
        bail!("--max-capacity 0: need 1 or more");
    }
    if let Arrivals::Trace(t) = &cfg.arrivals {
        // A trace of per-second counts is replayed in its own time, unless
        // --load or --rate asks for another rate.
        if !load_given && cfg.rate_per_sec.is_none() {
            cfg.rate_per_sec = Some(t.mean_rate_per_unit());
        }
    }
    let policy = ebb_policy::scale::parse(spec)?;
    let setup = ScaleSetup {
        limits: Limits {
            min_nodes: args.min_nodes,
            max_nodes: args.max_nodes,
            max_capacity_per_node: args.max_capacity,
        },
        boot_time: Nanos::from_secs_f64(cfg.boot_secs),
        cost_per_node_sec_micros: cfg.costs_per_sec_micros.first().copied().unwrap_or(0),
        objective: cfg.objective_secs.map(Nanos::from_secs_f64),
    };
    let mut scaler = Autoscaler::new(policy, setup);
    if args.timeline.is_some() {
        scaler = scaler.with_timeline();
    }
    let start = std::time::Instant::now();
    let progress = super::sim_progress::RunProgress::new(&cfg, json);
    let r = ebb_sim::run_scaled(cfg, balance, &mut scaler, &mut |p| progress.update(p));
    progress.finish();
    let mut r = r?;
    r.wall_secs = start.elapsed().as_secs_f64();
    r.events_per_sec = r.events as f64 / r.wall_secs.max(1e-9);
    if let Some(path) = &args.timeline {
        write_timeline(path, &scaler)?;
    }
    if json {
        let mut v = serde_json::to_value(&r)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("scale".into(), scaler.policy_name().into());
            if let Some(d) = scaler.last_decision() {
                obj.insert("last_decision".into(), d.to_string().into());
            }
        }
        println!("{v}");
        return Ok(());
    }
    let rows: [(&str, String); 10] = [
        (
            "scale / balance",
            format!("{} / {}", scaler.policy_name(), r.balance),
        ),
        (
            "service / arrivals",
            format!("{} / {}", r.service, r.arrivals),
        ),
        ("requests", r.requests.to_string()),
        (
            "slo misses",
            r.slo_miss_fraction
                .map_or("- (no --objective)".into(), |m| {
                    format!("{:.4}%", 100.0 * m)
                }),
        ),
        ("dropped", format!("{:.4}%", 100.0 * r.dropped_fraction)),
        ("p50 / p99", format!("{:.4} / {:.4}", r.p50, r.p99)),
        (
            "nodes min / mean / max",
            format!(
                "{} / {:.2} / {}",
                r.min_nodes.unwrap_or(0),
                r.mean_nodes.unwrap_or(0.0),
                r.max_nodes.unwrap_or(0)
            ),
        ),
        (
            "node-seconds / cost",
            format!("{:.1} / {:.0} µ$", r.node_seconds, r.cost_micros),
        ),
        ("scale actions", r.scale_actions.unwrap_or(0).to_string()),
        (
            "events",
            format!(
                "{} in {:.2} s wall ({:.3e}/s)",
                r.events, r.wall_secs, r.events_per_sec
            ),
        ),
    ];
    for (k, v) in rows {
        println!("{k:<24} {v}");
    }
    if let Some(d) = scaler.last_decision() {
        println!("{:<24} {d}", "last decision");
    }
    Ok(())
}

fn write_timeline(path: &PathBuf, scaler: &Autoscaler) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "{TIMELINE_CSV_HEADER}")?;
    for row in scaler.timeline() {
        writeln!(w, "{}", row.csv())?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    if scaler.rows_dropped() > 0 {
        eprintln!(
            "timeline: kept the first {} ticks, left out {}",
            scaler.timeline().len(),
            scaler.rows_dropped()
        );
    }
    eprintln!("wrote {}", path.display());
    Ok(())
}
