//! `ebb demo`: the newcomer's first command. Everything runs locally: the
//! origin store, a gateway whose autoscaler runs ebb's queue-model policy,
//! the demo service on process nodes caching the origin's data under
//! leases, and a bursty trace of `Demo.work` calls (with some `Demo.get`
//! and `Demo.put` of shared keys) with deadlines; a live view while it
//! runs, a report folder at the end.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use ebb_core::Nanos;
use ebb_demo::{DemoCodec, DemoServer, DemoService, WorkMode};
use ebb_lease::origin::OriginSettings;
use ebb_node::container::{ContainerProvider, ContainerProviderConfig};
use ebb_node::process::{FD_PLACEHOLDER, ProcessProvider, ProcessProviderConfig};
use ebb_node::provider::{NodeKind, NodeProvider};
use ebb_node::sandbox::Limits;
use ebb_node::thread::ThreadProvider;
use ebb_node::vm::provider::{VmConfig, VmProvider};
use ebb_policy::lease::LeaseTerm;
use ebb_replay::demo::{DemoConfig, MixCall, Providers};
use ebb_replay::trace::{self, BUILTIN_TRACES, Shape};

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
# the same trace with HPA-like and ebb's policy, side by side\n  ebb demo --policy kpa --kind thread\n  sudo ebb demo --kind container   # nodes in containers (root)"
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
    /// Node kind: process (default), thread, or, as root, container or vm.
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

/// The port a node listens on inside its container or VM.
const SANDBOX_PORT: u16 = 7000;
/// Processes a container node may run at once.
const CONTAINER_PIDS: u64 = 64;

/// A provider factory for the node kind: every run gets fresh nodes. Each
/// node serves one Demo.work at a time (one worker thread): one server, as
/// the autoscaler's model counts it. `origin` is the origin store's
/// address as the host sees it, or `None` when the nodes go without.
fn providers(
    kind: &str,
    work_mode: &str,
    origin: Option<&str>,
    lease_term_ms: u64,
) -> anyhow::Result<(NodeKind, Providers)> {
    let mode = if work_mode == "block" {
        WorkMode::Block
    } else {
        WorkMode::Spin
    };
    let term = lease_term_ms.to_string();
    // The node's flags after its listen address, with the origin as the
    // node reaches it.
    let node_flags = |origin: Option<String>| -> Vec<String> {
        let mut v: Vec<String> = ["--threads", "1", "--work-mode", work_mode]
            .map(String::from)
            .to_vec();
        if let Some(o) = origin {
            v.extend(["--origin".into(), o, "--lease-term-ms".into(), term.clone()]);
        }
        v
    };
    let make: Arc<dyn Fn() -> Result<Box<dyn NodeProvider>, String> + Send + Sync> = match kind {
        "process" => {
            let exe = ebb_exe()?;
            let mut args: Vec<String> = ["node", "--listen-fd", FD_PLACEHOLDER]
                .map(String::from)
                .to_vec();
            args.extend(node_flags(origin.map(str::to_owned)));
            let cfg = ProcessProviderConfig { program: exe, args };
            Arc::new(move || -> Result<Box<dyn NodeProvider>, String> {
                Ok(Box::new(ProcessProvider::new(cfg.clone())))
            })
        }
        "thread" => {
            let origin = origin.map(str::to_owned);
            Arc::new(move || -> Result<Box<dyn NodeProvider>, String> {
                let origin = origin.clone();
                Ok(Box::new(ThreadProvider::new(move || {
                    let service = DemoService::new().with_work(1, mode);
                    let Some(origin) = &origin else {
                        return DemoServer::new(service);
                    };
                    // Each node its own cache, as a process node has: one
                    // lease holder per node.
                    let settings = ebb_lease::cache::CacheSettings {
                        term: LeaseTerm::from_millis(lease_term_ms),
                        ..ebb_lease::cache::CacheSettings::default()
                    };
                    match ebb_lease::cache::connect_in_background(origin, settings) {
                        Ok(cache) => DemoServer::new(service.with_origin(cache)),
                        Err(e) => {
                            // The node still serves work; its gets and
                            // puts fail and the report counts them.
                            eprintln!("thread node: origin store {origin}: {e}");
                            DemoServer::new(service)
                        }
                    }
                })))
            })
        }
        "container" => {
            // The ebb binary is mounted at /bin/ebb inside. The origin
            // listens on a host address each container is routed to.
            let mut command: Vec<String> = ["/bin/ebb", "node", "--listen", "0.0.0.0:{port}"]
                .map(String::from)
                .to_vec();
            command.extend(node_flags(origin.map(str::to_owned)));
            let reach = match origin.map(str::parse::<std::net::SocketAddr>) {
                Some(Ok(std::net::SocketAddr::V4(a))) => Some(*a.ip()),
                Some(_) => bail!("the origin's address {origin:?} is not an IPv4 address and port"),
                None => None,
            };
            let cfg = ContainerProviderConfig {
                ebb_exe: ebb_exe()?,
                limits: Limits {
                    memory_mb: None,
                    cpus: None,
                    pids: Some(CONTAINER_PIDS),
                },
                rootfs: None,
                command,
                port: SANDBOX_PORT,
                reach,
                files: Vec::new(),
            };
            Arc::new(move || -> Result<Box<dyn NodeProvider>, String> {
                Ok(Box::new(ContainerProvider::new(cfg.clone())))
            })
        }
        "vm" => {
            let mut cfg = VmConfig::ebb_node(ebb_exe()?);
            let guest_origin = match origin.map(str::parse::<std::net::SocketAddr>) {
                None => None,
                Some(Ok(a)) => Some(
                    ebb_node::vm::provider::guest_view(a)
                        .with_context(|| format!("a VM guest cannot reach the origin at {a}"))?
                        .to_string(),
                ),
                Some(Err(_)) => {
                    bail!("the origin's address {origin:?} is not an IP address and port")
                }
            };
            cfg.node_command.extend(node_flags(guest_origin));
            Arc::new(move || -> Result<Box<dyn NodeProvider>, String> {
                VmProvider::new(cfg.clone())
                    .map(|p| Box::new(p) as Box<dyn NodeProvider>)
                    .map_err(|e| format!("preparing VM nodes: {e}"))
            })
        }
        other => bail!("--kind `{other}`: accepted: process, thread, container, vm"),
    };
    let k = match kind {
        "process" => NodeKind::Process,
        "thread" => NodeKind::Thread,
        "container" => NodeKind::Container,
        _ => NodeKind::Vm,
    };
    Ok((k, Providers(make)))
}

fn ebb_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding the ebb binary to start nodes with")
}

/// Refuses a sandboxed node kind without root, saying what it needs.
fn check_privileges(kind: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let needs = match kind {
        "container" => {
            "container nodes need root: namespaces, cgroups and a veth pair per node \
             (and /bin/busybox from busybox-static)"
        }
        "vm" => "VM nodes need root: QEMU with /dev/kvm (or TCG) and the host's kernel image",
        _ => return Ok(()),
    };
    if !root {
        bail!(
            "--kind {kind}: {needs}; run `sudo ebb demo --kind {kind}`, or use \
             --kind process or --kind thread, which need no root"
        );
    }
    Ok(())
}

/// The built-in traces shaped by `--peak-rate` (`steady` keeps to the base rate).
const PEAKED_TRACES: [&str; 2] = ["bursty", "step"];

/// Refuses rates a built-in trace cannot be drawn from, and a peak below
/// the base: the burst would be a lull, which no one asking for a burst
/// means.
fn check_rates(trace: &str, base: f64, peak: f64) -> anyhow::Result<()> {
    for (flag, v) in [("--base-rate", base), ("--peak-rate", peak)] {
        if !(v.is_finite() && v >= 0.0) {
            bail!("{flag} {v}: give calls per second, a number of 0 or more");
        }
    }
    if PEAKED_TRACES.contains(&trace) && peak < base {
        bail!(
            "--peak-rate {peak} is below --base-rate {base}: the `{trace}` trace rises from \
             the base rate to the peak, so give --peak-rate of at least {base} (or lower \
             --base-rate)"
        );
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.min_nodes == 0 || args.min_nodes > args.max_nodes {
        bail!(
            "--min-nodes {} and --max-nodes {}: need 1 <= min <= max",
            args.min_nodes,
            args.max_nodes
        );
    }
    check_rates(&args.trace, args.base_rate, args.peak_rate)?;
    // First: without root a sandboxed kind cannot run wherever the report
    // would go.
    check_privileges(&args.kind)?;
    // Checked before the run, not after a minute of it.
    std::fs::create_dir_all(&args.out)
        .and_then(|()| tempfile::tempfile_in(&args.out))
        .with_context(|| {
            format!(
                "--out {}: cannot write a report there; give a directory that can be created and written",
                args.out.display()
            )
        })?;
    let shape = Shape {
        seconds: args.seconds,
        base_rate: args.base_rate,
        peak_rate: args.peak_rate,
    };
    if !BUILTIN_TRACES.contains(&args.trace.as_str()) && !std::path::Path::new(&args.trace).exists()
    {
        bail!(
            "--trace `{}`: no built-in trace has that name ({}) and no such file exists; give one of them, or a file of per-second counts (one number per line)",
            args.trace,
            BUILTIN_TRACES.join(", ")
        );
    }
    // Each of resolve's errors names the trace (and the file's line).
    let trace = trace::resolve(&args.trace, &shape, args.seed)
        .context("--trace")?
        .truncated(args.seconds as usize);
    if args.gets + args.puts > 1_000 {
        bail!(
            "--gets {} and --puts {}: together at most 1000 per thousand arrivals",
            args.gets,
            args.puts
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The origin store the nodes share, in a directory removed at the end.
    let data = tempfile::Builder::new()
        .prefix("ebb-demo-origin-")
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
    let (kind, providers) = providers(
        &args.kind,
        &args.work_mode,
        shared.then_some(origin.addr.as_str()),
        args.lease_term_ms,
    )?;
    let key = |k: u32| format!("demo-key-{k}");
    let mut mix = Vec::new();
    if shared && args.gets > 0 {
        mix.push(MixCall {
            method: "get".into(),
            args: (0..args.keys)
                .map(|k| serde_json::json!({ "key": key(k) }))
                .collect(),
            per_mille: args.gets,
        });
    }
    if shared && args.puts > 0 {
        mix.push(MixCall {
            method: "put".into(),
            args: (0..args.keys)
                .map(|k| serde_json::json!({ "key": key(k), "value": format!("value of {}", key(k)) }))
                .collect(),
            per_mille: args.puts,
        });
    }
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
    println!();
    for r in &outcome.runs {
        let s = &r.summary;
        println!(
            "{:<40} requests {:>6}  ok {:>6}  overloaded {:>5}  misses {:>6.2}%  p50 {:>6.1} ms  p99 {:>7.1} ms  node-seconds {:>6.0}  nodes {}..{}  scale actions {}",
            r.label,
            s.requests,
            s.ok,
            s.overloaded,
            100.0 * s.slo_miss_fraction,
            s.p50_ms,
            s.p99_ms,
            s.node_seconds,
            s.min_nodes,
            s.max_nodes,
            s.scale_actions
        );
    }
    for r in &outcome.runs {
        if let Some(d) = &r.summary.shared_data {
            println!(
                "{:<40} gets {}/{} ok, puts {}/{} ok, origin reads {} writes {}, gets served from node caches {}",
                r.label,
                d.gets_ok,
                d.gets,
                d.puts_ok,
                d.puts,
                d.origin_reads,
                d.origin_writes,
                d.served_from_cache
            );
        }
    }
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
