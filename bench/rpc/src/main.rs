//! `rpc-bench`: ebb, tonic and tarpc serving the same echo service side by
//! side in one run, plus the raw TCP floor.
//!
//! Every system's server runs on a thread of its own (current-thread tokio
//! runtime); all clients share one client thread, one connection per run.
//! Repetitions are interleaved (for each rep, for each cell, every system in
//! turn) so machine noise falls on all systems alike; the report gives
//! medians over repetitions.

mod cpu;
mod driver;
mod floor;
mod report;
mod server;
mod sys_ebb;
mod sys_tarpc;
mod sys_tonic;
mod system;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

use driver::{RunCfg, Sample};
use report::{Cell, Floor};
use system::System;

/// Largest payload accepted, in bytes: well under every system's frame limit.
const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// Most outstanding calls accepted on the one connection.
const MAX_CONCURRENCY: usize = 1024;

/// Echo-service benchmark: ebb vs tonic vs tarpc, one connection, one server
/// thread and one client thread each, interleaved repetitions, medians.
#[derive(Parser, Debug)]
#[command(name = "rpc-bench")]
struct Args {
    /// Payload sizes in bytes, comma separated (each 1..=1048576).
    #[arg(long, value_delimiter = ',', default_value = "64,1024,16384")]
    payloads: Vec<usize>,
    /// Outstanding calls on the one connection, comma separated (each 1..=1024).
    #[arg(long, value_delimiter = ',', default_value = "1,16,128")]
    concurrency: Vec<usize>,
    /// Systems to compare, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "ebb,tonic,tarpc"
    )]
    systems: Vec<System>,
    /// Interleaved repetitions of the whole grid; the report gives medians.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Measured seconds per run (after the warm-up).
    #[arg(long, default_value_t = 1.0)]
    secs: f64,
    /// Warm-up milliseconds per run, not measured.
    #[arg(long, default_value_t = 200)]
    warmup_ms: u64,
    /// Skip the raw TCP floor.
    #[arg(long)]
    no_floor: bool,
    /// Also write the medians as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn validate(a: &Args) -> anyhow::Result<()> {
    if let Some(p) = a
        .payloads
        .iter()
        .find(|&&p| p == 0 || p > MAX_PAYLOAD_BYTES)
    {
        bail!("--payloads: {p} is out of range; each size must be 1..={MAX_PAYLOAD_BYTES} bytes");
    }
    if let Some(c) = a
        .concurrency
        .iter()
        .find(|&&c| c == 0 || c > MAX_CONCURRENCY)
    {
        bail!("--concurrency: {c} is out of range; each must be 1..={MAX_CONCURRENCY}");
    }
    if a.reps == 0 {
        bail!("--reps: must be at least 1");
    }
    if !(a.secs.is_finite() && a.secs > 0.0 && a.secs <= 600.0) {
        bail!(
            "--secs: {} is out of range; give seconds in (0, 600]",
            a.secs
        );
    }
    if a.systems.is_empty() {
        bail!("--systems: name at least one of ebb, tonic, tarpc");
    }
    Ok(())
}

/// The first three fields of /proc/loadavg: how busy the shared machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    validate(&args)?;
    let mut systems = args.systems.clone();
    systems.dedup();
    let warmup = Duration::from_millis(args.warmup_ms);
    let measure = Duration::from_secs_f64(args.secs);

    let servers = systems
        .iter()
        .map(|&s| {
            Ok((
                s,
                s.start()
                    .with_context(|| format!("starting {}", s.name()))?,
            ))
        })
        .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("client runtime")?;

    let load_before = load_average();
    let mut samples: BTreeMap<Cell, BTreeMap<System, Vec<Sample>>> = BTreeMap::new();
    let mut ping = Vec::new();
    let mut pipe = Vec::new();
    for rep in 1..=args.reps {
        if !args.no_floor {
            ping.push(floor::ping_pong(warmup, measure)?);
            pipe.push(floor::pipelined(warmup, measure)?);
            eprintln!(
                "rep {rep} floor: ping-pong {:.1} µs, pipelined {:.0} msg/s",
                ping[ping.len() - 1],
                pipe[pipe.len() - 1]
            );
        }
        for &payload_bytes in &args.payloads {
            for &concurrency in &args.concurrency {
                for &sys in &systems {
                    let cfg = RunCfg {
                        payload_bytes,
                        concurrency,
                        warmup,
                        measure,
                    };
                    let s = rt
                        .block_on(sys.run(servers[&sys], cfg))
                        .with_context(|| format!("{} run {cfg:?}", sys.name()))?;
                    eprintln!(
                        "rep {rep} {:>5} {payload_bytes:>6} B c={concurrency:<4} {:>9.0} calls/s p50 {:>8.1} µs p99 {:>8.1} µs cpu {:>6.2} µs/call (client {:.2})",
                        sys.name(),
                        s.calls_per_sec,
                        s.p50_us,
                        s.p99_us,
                        s.server_cpu_us_per_call,
                        s.client_cpu_us_per_call
                    );
                    samples
                        .entry((payload_bytes, concurrency))
                        .or_default()
                        .entry(sys)
                        .or_default()
                        .push(s);
                }
            }
        }
    }

    let table: BTreeMap<_, BTreeMap<_, _>> = samples
        .iter()
        .map(|(cell, by_sys)| {
            let sums = by_sys
                .iter()
                .map(|(s, v)| (*s, report::summarize(v)))
                .collect();
            (*cell, sums)
        })
        .collect();
    let floor = (!args.no_floor).then(|| Floor {
        ping_pong_us: report::median(&mut ping),
        pipelined_msgs_per_sec: report::median(&mut pipe),
    });
    let load_after = load_average();
    println!(
        "{} reps × {} s measured (+{} ms warm-up) per run; load average (1/5/15 min) {load_before} before, {load_after} after.\n",
        args.reps, args.secs, args.warmup_ms
    );
    print!("{}", report::markdown(&table, &samples, floor));
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "reps": args.reps,
            "secs_per_run": args.secs,
            "warmup_ms": args.warmup_ms,
            "results": report::rows(&table),
            "ebb_ratios_paired": report::ratios(&samples),
            "floor": floor,
            "load_average_before": load_before,
            "load_average_after": load_after,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing --json {}", path.display()))?;
    }
    Ok(())
}
