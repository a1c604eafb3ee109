//! One autoscaling policy on the trace: its own gateway over fresh nodes,
//! the trace replayed through a few client connections, the live view
//! refreshed meanwhile, and the record it leaves. Runs share nothing but
//! the trace, so a comparison compares policies, not leftovers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ebb_core::{Nanos, Rng};
use ebb_gateway::{Gateway, GatewayConfig, Life, NodeChange, PoolConfig, Scaler};
use ebb_report::{Run, RunInfo, SharedData};
use ebb_rpc::semantics::ClientConfig;
use ebb_rpc::service::{CallOptions, MethodInfo};
use ebb_rpc::transport::{TcpClient, TcpClientConfig};
use tokio::sync::watch;

use super::config::{CLIENT_CONNECTIONS, DemoConfig, DemoError};
use super::sample::Sampler;
use crate::calls::{DemoCalls, MixTally, Mixed};
use crate::control::{Logged, NodeTally, SharedLog, State};
use crate::load::{self, SharedRecorder};
use crate::origin::OriginSnapshot;
use crate::record::Recorder;

fn state(l: Life) -> State {
    match l {
        Life::Booting => State::Booting,
        Life::Ready => State::Ready,
        Life::Draining => State::Draining,
        Life::Gone => State::Gone,
    }
}

/// One policy on the trace: returns the run and whether it was cut short.
pub(super) async fn run_one(
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
            boot_timeout_ms: cfg
                .boot_timeout_ms
                .unwrap_or(PoolConfig::default().boot_timeout_ms),
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
pub(super) struct Seen {
    pub(super) log: SharedLog,
    pub(super) tally: NodeTally,
}

/// Waits for the pool's first ready node; false if `stop` came first or
/// none was ready within `timeout_ms` ([`DemoConfig::first_node_timeout_ms`]).
async fn wait_for_first_node(
    tally: &NodeTally,
    stop: &mut watch::Receiver<bool>,
    timeout_ms: u64,
) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
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

/// Replays the trace through the gateway at `addr` once its first node is
/// ready, and returns the run's record and whether it was cut short.
async fn drive(
    cfg: &DemoConfig,
    label: &str,
    info: &RunInfo,
    title: &str,
    addr: String,
    seen: &Seen,
    stop: &mut watch::Receiver<bool>,
) -> Result<(Run, bool), DemoError> {
    let first_node_ms = cfg.first_node_timeout_ms();
    if !wait_for_first_node(&seen.tally, stop, first_node_ms).await {
        if *stop.borrow() {
            let run = Recorder::new(cfg.objective).finish(label, info);
            return Ok((run, true));
        }
        return Err(DemoError::NoNode(first_node_ms));
    }
    let clients = connect(&addr, cfg.deadline).await?;
    let (method, args, mixed) = encode_calls(cfg)?;
    let tallies: Arc<[MixTally]> = cfg.mix.iter().map(|_| MixTally::default()).collect();
    let origin_before = cfg.origin.as_ref().map(|o| o.snapshot());
    let options = CallOptions::default().with_timeout(cfg.deadline);
    let recorder: SharedRecorder = Arc::new(std::sync::Mutex::new(Recorder::new(cfg.objective)));
    let wall_start = std::time::Instant::now();
    let sampler = Sampler::spawn(cfg, title, &recorder, seen, wall_start);
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
    sampler.finish().await;
    // Every call task and the sampler have ended: the record is complete.
    let rec = std::mem::replace(&mut *load::lock(&recorder), Recorder::new(cfg.objective));
    let mut run = rec.finish(label, info);
    if let Some(before) = origin_before {
        run.summary.shared_data = shared_data(cfg, &tallies, before);
    }
    Ok((run, stats.interrupted))
}

/// [`CLIENT_CONNECTIONS`] connections to the gateway at `addr`.
async fn connect(addr: &str, deadline: Nanos) -> Result<Vec<Arc<TcpClient>>, DemoError> {
    let mut clients = Vec::with_capacity(CLIENT_CONNECTIONS);
    for _ in 0..CLIENT_CONNECTIONS {
        let t = TcpClient::connect_with(addr, client_config(deadline))
            .await
            .map_err(|source| DemoError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        clients.push(Arc::new(t));
    }
    Ok(clients)
}

/// The trace's call and each mixed-in call's argument variants, encoded
/// once: every call of the trace sends one of them.
fn encode_calls(cfg: &DemoConfig) -> Result<(&'static MethodInfo, Bytes, Vec<Mixed>), DemoError> {
    let call_err = |source| DemoError::Call {
        service: cfg.codec.name(),
        method: cfg.method.clone(),
        source,
    };
    let method = cfg.codec.method(&cfg.method).map_err(call_err)?;
    let args = cfg
        .codec
        .encode_json_args(method, cfg.args.clone())
        .map_err(call_err)?;
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
    Ok((method, args, mixed))
}

/// The mix's `get` and `put` calls (sent, answered) beside the origin's
/// reads and writes since `before`: what the lease caches saved it.
fn shared_data(
    cfg: &DemoConfig,
    tallies: &[MixTally],
    before: OriginSnapshot,
) -> Option<SharedData> {
    let origin = cfg.origin.as_ref()?;
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
    Some(SharedData::new(
        count("get"),
        count("put"),
        seen.reads,
        seen.writes,
    ))
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
