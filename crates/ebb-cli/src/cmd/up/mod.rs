//! `ebb up CONFIG.toml`: a gateway and its pool of nodes, until Ctrl-C.

mod config;
mod node_files;
mod origin;
mod provider;
mod summary;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use ebb_gateway::Gateway;

use config::{Kind, OriginSource, Runs, ServiceChoice};
use ebb_gateway::ServiceSource;
use origin::StartedOrigin;

/// Run a gateway and a pool of nodes for one service until Ctrl-C.
///
/// Reads CONFIG.toml (see examples/ebb-up.toml for every key), starts the
/// pool, serves ebb RPC and HTTP/JSON, prints `gateway listening on ADDR`,
/// `http listening on ADDR` and one line per node state change. Ctrl-C (or
/// SIGTERM) refuses new calls, lets calls in flight finish, stops every
/// node and exits.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "CONFIG is TOML; every key is optional except the service. The smallest one,\n  [service]\n  name = \"demo\"\nruns one process node behind a gateway listening on 127.0.0.1:7000 (ebb RPC)\nand 127.0.0.1:8080 (HTTP/JSON, /status, /metrics, the dashboard at /).\nexamples/ebb-up.toml shows every key with its default; docs/gateway.md explains\nthem. A bad key or value is reported with what is accepted.\n\nPrints `gateway listening on ADDR`, `http listening on ADDR` and one line per\nnode state change. Ctrl-C (or SIGTERM) refuses new calls, lets the calls in\nflight finish (for at most [pool] shutdown_grace_ms, 10000 ms by default),\nstops every node and exits; a second Ctrl-C stops the nodes at once and\nexits with status 130.\n\nExamples:\n  ebb up examples/ebb-up.toml\n  ebb up --check examples/ebb-up.toml\n\n[gateway] busy_poll_us = N (with threads = 1) trades a core for latency: the\ngateway's thread polls instead of sleeping until no request came or went for\nN microseconds, sparing each call the wake-ups of a sleeping thread; 0 (the\ndefault) is off, and an idle gateway sleeps either way.\n\nThen:\n  ebb call --addr 127.0.0.1:7000 Demo.incr '{\"key\":\"a\"}'\n  curl -X POST localhost:8080/rpc/Demo/incr -d '{\"key\":\"a\"}'\n  curl localhost:8080/status\n  curl -X POST localhost:8080/pool -d '{\"target\": 5}'"
)]
pub struct Args {
    /// The configuration file (TOML).
    pub config: PathBuf,
    /// Only check the configuration: print what would run and exit.
    #[arg(long)]
    pub check: bool,
}

/// A node program that cannot be started would have every node fail at
/// once and the pool retry it forever: it must be an executable file,
/// found as `ebb up` would start it (a path from the current directory, or
/// a name on `PATH`).
fn check_program(cmd: &[String]) -> Result<(), config::ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let Some(program) = cmd.first() else {
        return Ok(());
    };
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let found = if program.contains('/') {
        executable(std::path::Path::new(program))
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| executable(&d.join(program))))
    };
    if found {
        return Ok(());
    }
    let cwd = std::env::current_dir().map_or_else(|_| "?".into(), |d| d.display().to_string());
    Err(config::ConfigError {
        key: "service.command",
        value: format!("{cmd:?}"),
        accepted: format!(
            "`{program}` is not an executable file (relative paths are from {cwd}, names are looked up on PATH); give your node program, e.g. [\"target/debug/greeter-node\"] after `cargo build -p greeter`"
        ),
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading the config file {}", args.config.display()))?;
    let checked =
        config::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    // Process nodes run it from here and VM nodes copy it from here; a
    // container's command names a path inside the container.
    if let (Runs::Command(cmd), Kind::Process | Kind::Vm) = (&checked.runs, checked.kind) {
        check_program(cmd).map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    }
    if args.check {
        summary::print(&args.config, &checked);
        return Ok(());
    }
    // Started first and stopped last (dropped at the end of `run`): nodes
    // reach it from their first call to their last.
    // Container nodes reach the origin on a host address of its own
    // (removed when ebb up ends); the config check left `listen` at its
    // default for them.
    let host_addr = match (&checked.kind, checked.origin.as_ref().map(|o| &o.source)) {
        (Kind::Container, Some(OriginSource::Start { .. })) => {
            Some(ebb_node::container::HostAddr::claim().context(
                "[origin] with container nodes: putting the origin's address on the host",
            )?)
        }
        _ => None,
    };
    let started_origin = match checked.origin.as_ref().map(|o| (o, &o.source)) {
        Some((plan, OriginSource::Start { data, listen })) => {
            let listen = match &host_addr {
                Some(h) => format!("{}:0", h.ip()),
                None => listen.clone(),
            };
            Some(StartedOrigin::start(&ebb_exe()?, plan, data, &listen)?)
        }
        _ => None,
    };
    let origin_addr = match (&started_origin, checked.origin.as_ref().map(|o| &o.source)) {
        (Some(s), _) => Some(s.addr.clone()),
        (None, Some(OriginSource::Existing(a))) => Some(a.clone()),
        _ => None,
    };
    let reach = host_addr.as_ref().map(|h| h.ip());
    let provider = provider::provider(&checked, origin_addr.as_deref(), reach)?;
    let service = match &checked.service {
        ServiceChoice::Builtin(name) => ServiceSource::Codec(
            ebb_demo::service_codec(name)
                .context("the checked service has a codec in this build")?,
        ),
        ServiceChoice::Learned(expect) => ServiceSource::Describe {
            expect: expect.clone(),
        },
    };
    // One thread: a current-thread runtime, so a call's way from the
    // ingress to the node and back never crosses threads. More: a
    // work-stealing runtime with that many workers.
    let mut builder = match checked.threads.get() {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    let rt = builder
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let scaler = match &checked.autoscale {
        None => None,
        Some(spec) => Some(ebb_gateway::Scaler {
            policy: ebb_policy::scale::parse(spec)
                .map_err(|e| anyhow::anyhow!("autoscale.policy = {spec:?}: {e}"))?,
            rng: ebb_core::Rng::seeded(checked.gateway.seed),
            objective: checked.objective,
        }),
    };
    // A bind failure names the keys to change, not only the address.
    let listens = format!(
        "starting the gateway (gateway.rpc = {:?}, gateway.http = {:?}{} in {})",
        checked.gateway.rpc_addr,
        checked.gateway.http_addr,
        checked
            .gateway
            .admin_addr
            .as_ref()
            .map_or_else(String::new, |a| format!(", gateway.admin = {a:?}")),
        args.config.display()
    );
    let ran = rt.block_on(async move {
        let on_change: ebb_gateway::pool::OnChange =
            Arc::new(|c: &ebb_gateway::NodeChange| super::announce(&c.to_string()));
        let gateway = Gateway::start(checked.gateway, service, provider, scaler, on_change)
            .await
            .context(listens)?;
        super::announce(&format!("gateway listening on {}", gateway.rpc_addr()));
        super::announce(&format!("http listening on {}", gateway.http_addr()));
        if let Some(a) = gateway.admin_addr() {
            super::announce(&format!("admin listening on {a}"));
        }
        if let Some(a) = &origin_addr {
            super::announce(&format!("origin listening on {a}"));
        }
        wait_for_stop().await?;
        super::announce("shutting down: draining nodes (Ctrl-C again stops them at once)");
        tokio::select! {
            () = gateway.shutdown() => {}
            again = wait_for_stop() => {
                again?;
                super::announce("stopping the nodes now: calls still in flight fail");
                // exit() runs no destructors; every node and the origin
                // get their death signal (PR_SET_PDEATHSIG) as this
                // process ends. A container node's host link is swept by
                // the next container start (`ebb sandbox sweep`).
                std::process::exit(super::INTERRUPTED_EXIT);
            }
        }
        drop(started_origin);
        super::announce("stopped");
        Ok(())
    });
    drop(host_addr);
    ran
}

async fn wait_for_stop() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

fn ebb_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding the ebb binary to start nodes with")
}
