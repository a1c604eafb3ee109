//! `ebb demo`: the newcomer's first command. Everything runs locally: the
//! origin store, a gateway whose autoscaler runs ebb's queue-model policy,
//! the demo service on process nodes caching the origin's data under
//! leases, and a bursty trace of `Demo.work` calls (with some `Demo.get`
//! and `Demo.put` of shared keys) with deadlines; a live view while it
//! runs, a report folder at the end.

//!
//! This module holds the command line and the run from start to report;
//! [`providers`] makes the nodes of each kind, [`checks`] refuses bad
//! input before anything starts, [`summary`] prints the closing lines.

mod checks;
mod providers;
mod summary;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use ebb_core::Nanos;
use ebb_demo::DemoCodec;
use ebb_lease::origin::OriginSettings;
use ebb_policy::lease::LeaseTerm;
use ebb_replay::demo::{DemoConfig, MixCall};
use ebb_replay::trace;

use checks::check;

/// The longest `--seconds` accepted (one hour of trace).
const MAX_SECONDS: u32 = trace::MAX_TRACE_SECS as u32;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Starts the origin store, a gateway with an autoscaler (ebb's queue-model \
policy by default), the demo service on process nodes that cache the origin's data under \
leases, and replays a built-in bursty trace of Demo.work calls (with --gets and --puts per \
thousand calling Demo.get and Demo.put on --keys shared keys) with deadlines against it for \
--seconds. A live view shows the request rate, nodes by \
state, p50/p99, refusals and misses, and the last scaling decision with its reason. At \
the end (or on Ctrl-C) it writes DIR/index.html (opens offline), SVG charts, \
summary.json (with the gets, puts and the origin's reads and writes under \
shared_data), and the trace as trace.txt (replayable by `ebb sim --arrivals \
trace:DIR/trace.txt,counts`). Process and thread nodes need no root and no network \
beyond loopback; container and VM nodes need root.\n\n\
Examples:\n  ebb demo\n  ebb demo --seconds 20 --out /tmp/r\n  ebb demo --compare            \
# the same trace with HPA-like and ebb's policy, side by side\n  ebb demo --policy kpa --kind thread\n  sudo ebb demo --kind container   # nodes in containers (root)\n  sudo ebb demo --kind vm --boot-timeout-ms 120000   # VM nodes, slow boots without KVM"
)]
pub struct Args {
    /// Length of the trace in seconds (one arrival count per second).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SECONDS)))]
    seconds: u32,
    /// Autoscaling policy: hpa, kpa, queue or none, with options (see `ebb sim --help`).
    /// The default shortens ebb's scale-down window from 30 s to 10 s so a
    /// one-minute run shows the pool shrinking too.
    #[arg(long, default_value = "queue:down=10s", value_parser = scale_spec)]
    policy: String,
    /// Also run the same trace with an HPA-like policy and put both in the report.
    #[arg(long)]
    compare: bool,
    /// The policy `--compare` runs against (Kubernetes' HPA defaults, with
    /// the same 10 s scale-down window as the default policy).
    #[arg(long, default_value = "hpa:down=10s", requires = "compare", value_parser = scale_spec)]
    baseline: String,
    /// Node kind: process, thread, or, as root, container or vm.
    #[arg(long, default_value = "process", value_parser = ["process", "thread", "container", "vm"])]
    kind: String,
    /// A built-in trace (bursty, step, steady) or a file of per-second counts.
    #[arg(long, default_value = "bursty")]
    trace: String,
    /// Mean calls per second outside bursts (built-in traces).
    #[arg(long, default_value_t = 20.0)]
    base_rate: f64,
    /// Mean calls per second at the top of a burst (built-in traces).
    #[arg(long, default_value_t = 150.0)]
    peak_rate: f64,
    /// CPU time of each Demo.work call, in microseconds.
    #[arg(long, default_value_t = 5_000)]
    work_us: u64,
    /// How Demo.work holds its node: `spin` keeps a CPU busy; `block` holds
    /// the node's one worker without using a CPU, so service times do not
    /// depend on free cores (a busy or small machine).
    #[arg(long, default_value = "spin", value_parser = ["spin", "block"])]
    work_mode: String,
    /// Each call's deadline: it fails with DeadlineExceeded after it.
    #[arg(long, default_value_t = 1_000)]
    deadline_ms: u64,
    /// Response-time objective: a slower call (or a failed one) is a miss.
    #[arg(long, default_value_t = 100)]
    objective_ms: u64,
    /// Fewest nodes the autoscaler keeps; the run starts with this many.
    #[arg(long, default_value_t = 1)]
    min_nodes: u32,
    /// Most nodes the autoscaler may start.
    #[arg(long, default_value_t = 8)]
    max_nodes: u32,
    /// Balancing policy at the gateway (see `ebb sim --help` for the list).
    #[arg(long, default_value = "p2c", value_parser = balance_spec)]
    balance: String,
    /// Seeds the trace, the arrivals and the policies.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the report goes.
    #[arg(long, default_value = "ebb-report")]
    out: PathBuf,
    /// Plain lines instead of the live panel, even on a terminal.
    #[arg(long)]
    plain: bool,
    /// Arrivals per thousand that call Demo.get instead of Demo.work: a
    /// read of a shared key through the node's lease cache.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=1000))]
    gets: u32,
    /// Arrivals per thousand that call Demo.put: a write to the origin
    /// store, which invalidates the other nodes' leases on the key first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=1000))]
    puts: u32,
    /// Shared keys the gets and puts use.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=MAX_DEMO_KEYS))]
    keys: u32,
    /// Lease term the nodes ask the origin store for, in milliseconds: a
    /// node serves a key from its cache this long after reading it (0:
    /// every get asks the origin).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    lease_term_ms: u64,
    /// How long a VM node may take to boot and serve, in ms [default:
    /// 60000] (--kind vm only; a cold boot without KVM takes tens of
    /// seconds on a loaded host). A node that misses it is replaced.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=ebb_node::vm::provider::MAX_BOOT_TIMEOUT_MS))]
    boot_timeout_ms: Option<u64>,
}

/// An autoscaling policy spec, checked when the command line is parsed
/// (not after the origin and the gateway have started), kept as written.
fn scale_spec(spec: &str) -> Result<String, String> {
    ebb_policy::scale::parse(spec)
        .map(|_| spec.to_owned())
        .map_err(|e| e.to_string())
}

/// A balancing policy spec, checked the same way.
fn balance_spec(spec: &str) -> Result<String, String> {
    ebb_policy::balance::parse(spec)
        .map(|_| spec.to_owned())
        .map_err(|e| e.to_string())
}

/// Most shared keys (`--keys`); the demo service keeps at most
/// `ebb_demo::MAX_KEYS` per node.
const MAX_DEMO_KEYS: i64 = 1_000;

/// The calls mixed into the trace: `--gets` and `--puts` per thousand
/// arrivals on `--keys` shared keys, each call's key drawn from them.
fn mix(args: &Args) -> Vec<MixCall> {
    let key = |k: u32| format!("demo-key-{k}");
    let mut mix = Vec::new();
    if args.gets > 0 {
        mix.push(MixCall {
            method: "get".into(),
            args: (0..args.keys)
                .map(|k| serde_json::json!({ "key": key(k) }))
                .collect(),
            per_mille: args.gets,
        });
    }
    if args.puts > 0 {
        mix.push(MixCall {
            method: "put".into(),
            args: (0..args.keys)
                .map(|k| serde_json::json!({ "key": key(k), "value": format!("value of {}", key(k)) }))
                .collect(),
            per_mille: args.puts,
        });
    }
    mix
}

/// Where a demo's origin store keeps its data: `ebb-demo-origin-<pid>-...`.
static ORIGIN_SCRATCH: ebb_node::scratch::Scratch =
    ebb_node::scratch::Scratch::new("ebb-demo-origin-");

pub fn run(args: Args) -> anyhow::Result<()> {
    let trace = check(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The origin store the nodes share, in a directory removed at the end
    // (or, if this process is killed, by the next demo).
    let data = tempfile::Builder::new()
        .prefix(&ORIGIN_SCRATCH.owned_prefix())
        .tempdir()
        .context("creating a directory for the origin store's data")?;
    let term = LeaseTerm::from_millis(args.lease_term_ms);
    let settings = OriginSettings {
        max_term: term,
        ..OriginSettings::default()
    };
    // Without gets or puts the nodes need no origin and the report no
    // shared-data counts.
    let shared = args.gets + args.puts > 0;
    // A container's network namespace reaches the host only over its own
    // veth pair, not the host's loopback: the origin listens on a host
    // address the containers are routed to (removed when the demo ends).
    let host_addr = if shared && args.kind == "container" {
        Some(
            ebb_node::container::HostAddr::claim()
                .context("--kind container: putting the origin store's address on the host")?,
        )
    } else {
        None
    };
    let origin_ip = host_addr
        .as_ref()
        .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), |h| {
            std::net::IpAddr::V4(h.ip())
        });
    let origin = rt
        .block_on(ebb_replay::origin::start(data.path(), settings, origin_ip))
        .context("starting the origin store")?;
    let (kind, providers) = providers::providers(
        &args.kind,
        &args.work_mode,
        shared.then_some(origin.addr.as_str()),
        args.lease_term_ms,
        args.boot_timeout_ms,
    )?;
    let mix = if shared { mix(&args) } else { Vec::new() };
    let cfg = DemoConfig {
        providers,
        kind,
        codec: &DemoCodec,
        method: "work".into(),
        args: serde_json::json!({ "micros": args.work_us }),
        mix,
        origin: shared.then(|| Arc::clone(&origin.counts)),
        policy: args.policy,
        baselines: if args.compare {
            vec![args.baseline]
        } else {
            Vec::new()
        },
        trace,
        deadline: Nanos::from_millis(args.deadline_ms),
        objective: Nanos::from_millis(args.objective_ms),
        initial_nodes: args.min_nodes,
        min_nodes: args.min_nodes,
        max_nodes: args.max_nodes,
        boot_timeout_ms: args.boot_timeout_ms,
        balance: args.balance,
        seed: args.seed,
        out: args.out,
        terminal: args.plain.then_some(false),
    };
    let outcome = rt.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nstopping: finishing the calls in flight and writing the report (Ctrl-C again to quit at once)");
                let _ = stop_tx.send(true);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(super::INTERRUPTED_EXIT);
                }
            }
        });
        ebb_replay::demo::run(&cfg, stop_rx).await
    })?;
    summary::print_runs(&outcome);
    drop(origin);
    drop(host_addr);
    println!("report: {}", outcome.written.index.display());
    println!("summary: {}", outcome.written.summary.display());
    if outcome.interrupted {
        println!("interrupted: the report covers the run up to the stop");
        // exit() runs no destructors: remove the origin's data first.
        drop(data);
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(super::INTERRUPTED_EXIT);
    }
    Ok(())
}
