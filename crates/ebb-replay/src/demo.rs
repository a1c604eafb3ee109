//! `ebb demo`: a gateway with an autoscaler over the demo service on local
//! nodes, a bursty trace of `Demo.work` calls with deadlines replayed
//! against it, the live view, and the report.
//!
//! Each run starts its own gateway (ports chosen by the OS, loopback only)
//! and stops it at the end, so a comparison's runs share nothing but the
//! trace. An interrupted run (Ctrl-C) stops sending, stops recording, and
//! still gets its report.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ebb_core::{Nanos, Rng};
use ebb_gateway::{Gateway, GatewayConfig, Life, NodeChange, PoolConfig, Scaler};
use ebb_node::provider::{NodeKind, NodeProvider};
use ebb_report::{Run, RunInfo, ScaleEvent, SharedData};
use ebb_rpc::semantics::ClientConfig;
use ebb_rpc::service::{CallOptions, ServiceCodec};
use ebb_rpc::transport::{TcpClient, TcpClientConfig};
use tokio::sync::watch;

use crate::calls::{DemoCalls, MixTally, Mixed};
use crate::control::{self, Logged, NodeTally, SharedLog, State};
use crate::live::Live;
use crate::load::{self, SharedRecorder};
use crate::origin::OriginCounts;
use crate::record::{Nodes, Recorder};
use crate::trace::Trace;

/// Connections from the load generator to the gateway; calls are spread
/// over them so one client session's outstanding-call bound is not the
/// demo's.
pub const CLIENT_CONNECTIONS: usize = 4;
/// How often the live view and the node counts are refreshed.
pub const SAMPLE_EVERY_MS: u64 = 250;
/// How long the first node may take to come up before the run gives up.
pub const FIRST_NODE_TIMEOUT_MS: u64 = 60_000;

/// Makes a fresh node provider for each run (the caller knows the service
/// and how its nodes start); preparing one may fail (a VM image that
/// cannot be built), and says why.
#[derive(Clone)]
pub struct Providers(pub Arc<dyn Fn() -> Result<Box<dyn NodeProvider>, String> + Send + Sync>);

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Providers(..)")
    }
}

/// Everything one `ebb demo` needs.
#[derive(Clone)]
pub struct DemoConfig {
    pub providers: Providers,
    /// The node kind the providers start, for the report.
    pub kind: NodeKind,
    /// The service the nodes serve and the call the trace makes.
    pub codec: &'static dyn ServiceCodec,
    pub method: String,
    pub args: serde_json::Value,
    /// Calls sent instead of `method` for a share of the arrivals.
    pub mix: Vec<MixCall>,
    /// The origin store the nodes share, if any: the report counts its
    /// reads and writes beside the `get`/`put` calls of the mix.
    pub origin: Option<Arc<OriginCounts>>,
    /// The autoscaling policy spec of the headline run.
    pub policy: String,
    /// Policies run after it on the same trace, for comparison.
    pub baselines: Vec<String>,
    pub trace: Trace,
    pub deadline: Nanos,
    pub objective: Nanos,
    pub initial_nodes: u32,
    pub min_nodes: u32,
    pub max_nodes: u32,
    pub balance: String,
    pub seed: u64,
    pub out: PathBuf,
    /// Force plain lines (or the panel) instead of deciding by the terminal.
    pub terminal: Option<bool>,
}

pub use crate::calls::MIX_PER_MILLE;

/// A call the trace makes for `per_mille` of its arrivals instead of the
/// main method, with arguments drawn from `args` (one per call, chosen by
/// the arrival's index and the seed).
#[derive(Clone, Debug, PartialEq)]
pub struct MixCall {
    pub method: String,
    pub args: Vec<serde_json::Value>,
    pub per_mille: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Policy(#[from] ebb_policy::scale::ScaleParseError),
    #[error("cannot start the gateway: {0}")]
    Gateway(#[from] ebb_gateway::StartError),
    #[error("cannot connect to the gateway at {addr}: {source}")]
    Connect {
        addr: String,
        source: ebb_rpc::CallError,
    },
    #[error("cannot prepare the nodes: {0}")]
    Provider(String),
    #[error("no node became ready within {FIRST_NODE_TIMEOUT_MS} ms")]
    NoNode,
    #[error("the call `{service}.{method}`: {source}")]
    Call {
        service: &'static str,
        method: String,
        source: ebb_rpc::service::DispatchError,
    },
    #[error(transparent)]
    Report(#[from] ebb_report::ReportError),
    #[error("the call mix takes {per_mille} per mille of the arrivals; at most {MIX_PER_MILLE}")]
    MixTooLarge { per_mille: u32 },
    #[error("the mixed-in call `{method}` has no arguments to send")]
    MixWithoutArgs { method: String },
}

/// The outcome of a whole demo.
#[derive(Debug)]
pub struct DemoOutcome {
    pub runs: Vec<Run>,
    pub written: ebb_report::Written,
    pub interrupted: bool,
}

fn state(l: Life) -> State {
    match l {
        Life::Booting => State::Booting,
        Life::Ready => State::Ready,
        Life::Draining => State::Draining,
        Life::Gone => State::Gone,
    }
}

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

async fn wait_for_first_node(tally: &NodeTally, stop: &mut watch::Receiver<bool>) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(FIRST_NODE_TIMEOUT_MS);
    loop {
        if tally.counts().ready > 0 {
            return true;
        }
        if *stop.borrow() || tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One policy on the trace: returns the run and whether it was cut short.
async fn run_one(
    cfg: &DemoConfig,
    spec: &str,
    title: &str,
    mut stop: watch::Receiver<bool>,
) -> Result<(Run, bool), DemoError> {
    let (policy, log) = Logged::new(ebb_policy::scale::parse(spec)?);
    let full_name = ebb_policy::scale::ScalePolicy::name(&policy);
    let scaler = Scaler {
        policy: Box::new(policy),
        rng: Rng::seeded(cfg.seed),
        objective: Some(cfg.objective),
    };
    let tally = NodeTally::default();
    let on_change = {
        let tally = tally.clone();
        Arc::new(move |c: &NodeChange| tally.change(c.from.map(state), state(c.to)))
    };
    let gw_cfg = GatewayConfig {
        rpc_addr: "127.0.0.1:0".into(),
        http_addr: "127.0.0.1:0".into(),
        balance: cfg.balance.clone(),
        admission: Default::default(),
        default_deadline: cfg.deadline,
        retry: Default::default(),
        outlier: Default::default(),
        pool: PoolConfig {
            initial: cfg.initial_nodes as usize,
            min: cfg.min_nodes as usize,
            max: cfg.max_nodes as usize,
            ..PoolConfig::default()
        },
        seed: cfg.seed,
        ..GatewayConfig::default()
    };
    let provider = (cfg.providers.0)().map_err(DemoError::Provider)?;
    let gateway = Gateway::start(gw_cfg, cfg.codec, provider, Some(scaler), on_change).await?;
    // The label is the spec as given (short, in file names); the summary
    // names the policy in full, every default spelled out.
    let info = RunInfo {
        policy: full_name,
        kind: cfg.kind.as_str().to_string(),
        trace: cfg.trace.name.clone(),
        objective_ms: cfg.objective.as_secs_f64() * 1e3,
    };
    let seen = Seen { log, tally };
    let addr = gateway.rpc_addr().to_string();
    let result = drive(cfg, spec, &info, title, addr, &seen, &mut stop).await;
    gateway.shutdown().await;
    result
}

/// What the gateway tells the run while it goes: decisions and nodes.
struct Seen {
    log: SharedLog,
    tally: NodeTally,
}

async fn drive(
    cfg: &DemoConfig,
    label: &str,
    info: &RunInfo,
    title: &str,
    addr: String,
    seen: &Seen,
    stop: &mut watch::Receiver<bool>,
) -> Result<(Run, bool), DemoError> {
    if !wait_for_first_node(&seen.tally, stop).await {
        if *stop.borrow() {
            let run = Recorder::new(cfg.objective).finish(label, info);
            return Ok((run, true));
        }
        return Err(DemoError::NoNode);
    }
    let mut clients = Vec::with_capacity(CLIENT_CONNECTIONS);
    for _ in 0..CLIENT_CONNECTIONS {
        let t = TcpClient::connect_with(&addr, client_config(cfg.deadline))
            .await
            .map_err(|source| DemoError::Connect {
                addr: addr.clone(),
                source,
            })?;
        clients.push(Arc::new(t));
    }
    let call_err = |source| DemoError::Call {
        service: cfg.codec.name(),
        method: cfg.method.clone(),
        source,
    };
    let method = cfg.codec.method(&cfg.method).map_err(call_err)?;
    // Encoded once: every call of the trace sends the same arguments.
    let args = cfg
        .codec
        .encode_json_args(method, cfg.args.clone())
        .map_err(call_err)?;
    // Each mixed-in call's argument variants, encoded once.
    let mut mixed = Vec::with_capacity(cfg.mix.len());
    for m in &cfg.mix {
        let id = cfg.codec.method(&m.method).map_err(call_err)?;
        let variants = m
            .args
            .iter()
            .map(|a| cfg.codec.encode_json_args(id, a.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(call_err)?;
        mixed.push(Mixed {
            method: id,
            variants,
            per_mille: m.per_mille,
        });
    }
    let tallies: Arc<[MixTally]> = cfg.mix.iter().map(|_| MixTally::default()).collect();
    let origin_before = cfg.origin.as_ref().map(|o| o.snapshot());
    let options = CallOptions::default().with_timeout(cfg.deadline);
    let recorder: SharedRecorder = Arc::new(std::sync::Mutex::new(Recorder::new(cfg.objective)));
    let wall_start = std::time::Instant::now();
    let mut live = match cfg.terminal {
        Some(t) => Live::with_terminal(title, cfg.trace.per_sec.len() as u64, t),
        None => Live::new(title, cfg.trace.per_sec.len() as u64),
    };
    let (done_tx, mut done_rx) = watch::channel(false);
    let sampler = {
        let rec = Arc::clone(&recorder);
        let log = Arc::clone(&seen.log);
        let tally = seen.tally.clone();
        async move {
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
        }
    };
    let sampler = tokio::spawn(sampler);
    let calls = Arc::new(DemoCalls {
        clients,
        method,
        args,
        mixed,
        tallies: Arc::clone(&tallies),
        options,
        seed: cfg.seed,
        next: AtomicUsize::new(0),
    });
    let mut stop_rx = stop.clone();
    let stopped = async move {
        while !*stop_rx.borrow() {
            if stop_rx.changed().await.is_err() {
                // The sender is gone: nobody can stop us any more.
                std::future::pending::<()>().await;
            }
        }
    };
    let stats = load::replay(
        &cfg.trace,
        cfg.seed,
        wall_start,
        calls,
        Arc::clone(&recorder),
        stopped,
    )
    .await;
    let _ = done_tx.send(true);
    let _ = sampler.await;
    // Every call task and the sampler have ended: the record is complete.
    let rec = std::mem::replace(&mut *load::lock(&recorder), Recorder::new(cfg.objective));
    let mut run = rec.finish(label, info);
    if let (Some(origin), Some(before)) = (&cfg.origin, origin_before) {
        let seen = origin.snapshot().since(before);
        let count = |name: &str| {
            cfg.mix
                .iter()
                .zip(tallies.iter())
                .filter(|(m, _)| m.method == name)
                .fold((0, 0), |(s, o), (_, t)| {
                    (
                        s + t.sent.load(Ordering::Relaxed),
                        o + t.ok.load(Ordering::Relaxed),
                    )
                })
        };
        run.summary.shared_data = Some(SharedData::new(
            count("get"),
            count("put"),
            seen.reads,
            seen.writes,
        ));
    }
    Ok((run, stats.interrupted))
}

/// The load generator's connections never resend a call on a live
/// connection before its deadline: TCP delivers or breaks, and an early
/// resend of a slow idempotent call would add load exactly when the pool
/// is overloaded (the gateway counts it as an arrival). Resends after a
/// reconnect are unaffected.
fn client_config(deadline: Nanos) -> TcpClientConfig {
    let after = deadline.saturating_add(Nanos::from_secs(1));
    TcpClientConfig {
        session: ClientConfig {
            retransmit_after: after,
            max_retransmit_interval: after,
            ..ClientConfig::default()
        },
        ..TcpClientConfig::default()
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
