//! `rpc-bench`: ebb, tonic and tarpc serving the same echo service side by
//! side in one run, plus the raw TCP floor.
//!
//! Every system's server runs in a process of its own (`rpc-bench serve`);
//! the clients run in this process. With single-threaded runtimes on a
//! machine of two or more CPUs, the servers are pinned to CPU 0 and the
//! client to CPU 1. Repetitions are interleaved (for each rep, for each
//! cell, every system in turn) so machine noise falls on all systems alike;
//! the report gives medians over repetitions and paired ratios.

mod alloc;
mod certs;
mod child;
mod cpu;
mod driver;
mod flavour;
mod floor;
mod instr;
mod report;
mod serve;
mod sys_ebb;
mod sys_tarpc;
mod sys_tonic;
mod system;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use child::{Launch, ServerProcess};
use driver::{Mode, Outcome, RunCfg, Sample};
use flavour::Flavour;
use report::{Cell, Floor, Scenario};
use system::System;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// Largest payload accepted, in bytes: well under every system's frame limit.
const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// Most outstanding calls accepted per run.
const MAX_CONCURRENCY: usize = 1024;
/// Most connections per run.
const MAX_CONNS: usize = 64;

/// Echo-service benchmark: ebb vs tonic vs tarpc, servers in their own
/// processes, interleaved repetitions, medians and paired ratios.
#[derive(Parser, Debug)]
#[command(name = "rpc-bench")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Payload sizes in bytes, comma separated (each 1..=1048576).
    #[arg(long, value_delimiter = ',', default_value = "64,1024,16384")]
    payloads: Vec<usize>,
    /// Outstanding calls in total, comma separated (each 1..=1024, at least
    /// the number of connections).
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
    /// Runtime flavours, comma separated: "current" (current-thread) or
    /// "multiN" (multi-thread, N workers). Client and server use the same.
    #[arg(long, value_delimiter = ',', default_value = "current,multi1")]
    flavours: Vec<Flavour>,
    /// Connections per run, comma separated; calls are spread round-robin.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    conns: Vec<usize>,
    /// Transports, comma separated: "plain" (TCP) and/or "tls" (tarpc has
    /// no TLS and is left out of TLS runs).
    #[arg(long, value_delimiter = ',', default_value = "plain")]
    transports: Vec<Transport>,
    /// Interleaved repetitions of the whole grid; the report gives medians.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Measured seconds per run (after the warm-up).
    #[arg(long, default_value_t = 1.0)]
    secs: f64,
    /// Warm-up milliseconds per run, not measured.
    #[arg(long, default_value_t = 200)]
    warmup_ms: u64,
    /// Do not pin processes to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Skip the raw TCP floor.
    #[arg(long)]
    no_floor: bool,
    /// Also write the medians as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs one system's server (the benchmark starts these itself).
    #[command(hide = true)]
    Serve(serve::ServeArgs),
    /// Server (or client) instructions and allocations per call, under callgrind.
    Instr(instr::InstrArgs),
    /// Makes a counted number of calls (started by `instr --side client`).
    #[command(hide = true)]
    InstrClient(instr::ClientArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Transport {
    Plain,
    Tls,
}

fn validate(a: &Args) -> anyhow::Result<()> {
    if let Some(p) = a
        .payloads
        .iter()
        .find(|&&p| p == 0 || p > MAX_PAYLOAD_BYTES)
    {
        bail!("--payloads: {p} is out of range; each size must be 1..={MAX_PAYLOAD_BYTES} bytes");
    }
    if let Some(c) = a.conns.iter().find(|&&c| c == 0 || c > MAX_CONNS) {
        bail!("--conns: {c} is out of range; each must be 1..={MAX_CONNS}");
    }
    let most_conns = a.conns.iter().copied().max().unwrap_or(1);
    if let Some(c) = a
        .concurrency
        .iter()
        .find(|&&c| c < most_conns || c > MAX_CONCURRENCY)
    {
        bail!(
            "--concurrency: {c} is out of range; each must be {most_conns}..={MAX_CONCURRENCY} (at least one call per connection)"
        );
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
    if a.systems.is_empty() || a.flavours.is_empty() || a.transports.is_empty() {
        bail!("--systems, --flavours and --transports each need at least one value");
    }
    Ok(())
}

/// The first three fields of /proc/loadavg: how busy the shared machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs `fut` on `rt`, on a worker when the runtime has workers, so the
/// client does all its work on the flavour's threads.
fn run_on<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    fut: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    rt.block_on(async move { tokio::spawn(fut).await? })
}

type Servers = BTreeMap<(System, Flavour, bool), Arc<Mutex<ServerProcess>>>;

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    match args.command.take() {
        Some(Command::Serve(s)) => return serve::main(s),
        Some(Command::Instr(i)) => return instr::main(i),
        Some(Command::InstrClient(c)) => return instr::client_main(c),
        None => {}
    }
    validate(&args)?;
    let mut systems = args.systems.clone();
    systems.sort();
    systems.dedup();
    let warmup = Duration::from_millis(args.warmup_ms);
    let measure = Duration::from_secs_f64(args.secs);
    let pin = !args.no_pin
        && cpu::available_cpus() >= 2
        && args.flavours.iter().all(|f| f.threads() == 1);
    if pin && !cpu::pin_to(1) {
        bail!("could not pin the client to CPU 1; rerun with --no-pin");
    }
    let want_tls = args.transports.contains(&Transport::Tls);
    let tls = if want_tls {
        Some(certs::generate()?)
    } else {
        None
    };
    let mut scenarios = Vec::new();
    for &flavour in &args.flavours {
        for &conns in &args.conns {
            for t in &args.transports {
                scenarios.push(Scenario {
                    flavour,
                    conns,
                    tls: *t == Transport::Tls,
                });
            }
        }
    }
    let mut servers: Servers = BTreeMap::new();
    for sc in &scenarios {
        for &sys in &systems {
            if sc.tls && !sys.has_tls() {
                continue;
            }
            let key = (sys, sc.flavour, sc.tls);
            if servers.contains_key(&key) {
                continue;
            }
            let process = ServerProcess::start(&Launch {
                system: sys,
                flavour: sc.flavour,
                tls: tls.as_ref().filter(|_| sc.tls),
                pin_cpu: pin.then_some(0),
                wrapper: &[],
            })
            .with_context(|| format!("starting the {} server", sys.name()))?;
            servers.insert(key, Arc::new(Mutex::new(process)));
        }
    }
    let runtimes = args
        .flavours
        .iter()
        .map(|&f| Ok((f, f.runtime()?)))
        .collect::<anyhow::Result<BTreeMap<_, _>>>()?;

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
        for &sc in &scenarios {
            for &payload_bytes in &args.payloads {
                for &concurrency in &args.concurrency {
                    for &sys in &systems {
                        let Some(server) = servers.get(&(sys, sc.flavour, sc.tls)) else {
                            continue;
                        };
                        let cfg = RunCfg {
                            payload_bytes,
                            concurrency,
                            conns: sc.conns,
                            connect_timeout_ms: ebb::rpc::transport::client::CONNECT_TIMEOUT_MS,
                        };
                        let mode = Mode::Timed {
                            warmup,
                            measure,
                            server: Arc::clone(server),
                        };
                        let addr = server
                            .lock()
                            .map_err(|_| anyhow::anyhow!("server handle poisoned"))?
                            .addr;
                        let out = run_on(
                            &runtimes[&sc.flavour],
                            sys.run(addr, tls.clone().filter(|_| sc.tls), cfg, mode),
                        )
                        .with_context(|| format!("{} run {cfg:?} ({sc})", sys.name()))?;
                        let Outcome::Timed(s) = out else {
                            bail!("a timed run returned no sample");
                        };
                        eprintln!(
                            "rep {rep} [{sc}] {:>5} {payload_bytes:>6} B c={concurrency:<4} {:>9.0} calls/s p50 {:>8.1} µs p99 {:>8.1} µs cpu {:>6.2} µs/call (client {:.2}) allocs {:.1} (client {:.1})",
                            sys.name(),
                            s.calls_per_sec,
                            s.p50_us,
                            s.p99_us,
                            s.server_cpu_us_per_call,
                            s.client_cpu_us_per_call,
                            s.server_allocs_per_call,
                            s.client_allocs_per_call,
                        );
                        samples
                            .entry((sc, payload_bytes, concurrency))
                            .or_default()
                            .entry(sys)
                            .or_default()
                            .push(s);
                    }
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
    let pinning = if pin {
        "servers pinned to CPU 0, client to CPU 1"
    } else {
        "not pinned"
    };
    println!(
        "{} reps × {} s measured (+{} ms warm-up) per run; {pinning}; load average (1/5/15 min) {load_before} before, {load_after} after.\n",
        args.reps, args.secs, args.warmup_ms
    );
    print!("{}", report::markdown(&table, &samples, floor));
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "reps": args.reps,
            "secs_per_run": args.secs,
            "warmup_ms": args.warmup_ms,
            "pinned": pin,
            "results": report::rows(&table),
            "ebb_ratios_paired": report::ratios(&samples),
            "floor": floor,
            "load_average_before": load_before,
            "load_average_after": load_after,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing --json {}", path.display()))?;
    }
    drop(servers);
    Ok(())
}
