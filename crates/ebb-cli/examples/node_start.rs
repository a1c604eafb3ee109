//! Start time and memory per node for the thread and process kinds,
//! measured through their providers: the same `start` → `Ready` path the
//! autoscaler uses.
//!
//! ```sh
//! cargo build --release -p ebb-cli --examples
//! target/release/examples/node_start --kind thread --nodes 50
//! target/release/examples/node_start --kind process --nodes 50
//! ```
//!
//! Nodes are started one after another and all kept running, so the memory
//! figure is what N live nodes cost: for threads, the growth of this
//! process's resident memory divided by N; for processes, each child's own
//! resident memory.

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use ebb::rpc::transport::TcpClient;
use ebb_core::NodeId;
use ebb_demo::{DemoClient, DemoServer, DemoService};
use ebb_node::process::{ProcessProvider, ProcessProviderConfig};
use ebb_node::provider::{NodeEvent, NodeProvider};
use ebb_node::thread::ThreadProvider;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Bound on the wait for one node to become ready.
const READY_TIMEOUT_MS: u64 = 10_000;
const POLL_US: u64 = 20;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    Thread,
    Process,
}

/// Measure node start time and memory for one node kind.
#[derive(Parser, Debug)]
struct Args {
    #[arg(long, value_enum)]
    kind: Kind,
    /// Nodes to start (all stay running until the end).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=256))]
    nodes: u64,
    /// The `ebb` binary process nodes run; defaults to the one built next
    /// to this example (`target/release/ebb`).
    #[arg(long)]
    ebb: Option<PathBuf>,
}

/// A `Name: N kB` field of a /proc file.
fn proc_kib(path: &str, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} line in {path}"))
}

fn rss_kib(pid: &str) -> anyhow::Result<u64> {
    proc_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Resident memory with shared pages (the binary, libc) split among the
/// processes sharing them: what one more node really costs.
fn pss_kib(pid: &str) -> anyhow::Result<u64> {
    proc_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

fn default_ebb() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me
        .parent()
        .and_then(|examples| examples.parent())
        .context("locating the target directory")?;
    let ebb = dir.join("ebb");
    if !ebb.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p ebb-cli`, or pass --ebb PATH",
            ebb.display()
        );
    }
    Ok(ebb)
}

fn wait_ready(p: &mut impl NodeProvider, id: NodeId) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
    while Instant::now() < deadline {
        for e in p.poll_events() {
            match e {
                NodeEvent::Ready(i) if i == id => return Ok(()),
                NodeEvent::Gone(i, why) => bail!("node {} died: {why}", i.0),
                NodeEvent::Ready(_) => {}
            }
        }
        std::thread::sleep(Duration::from_micros(POLL_US));
    }
    bail!("node {} not ready after {READY_TIMEOUT_MS} ms", id.0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let line = match args.kind {
        Kind::Thread => {
            let mut p = ThreadProvider::new(|| DemoServer::new(DemoService::new()));
            measure(&mut p, args.nodes, |_, _| None)?
        }
        Kind::Process => {
            let ebb = match args.ebb {
                Some(p) => p,
                None => default_ebb()?,
            };
            let mut p = ProcessProvider::new(ProcessProviderConfig::ebb_node(ebb));
            measure(&mut p, args.nodes, |p, id| p.pid(id))?
        }
    };
    println!("{line}");
    Ok(())
}

/// Starts `n` nodes one after another and keeps them all running; `pid`
/// names a node's own process, if it has one.
fn measure<P: NodeProvider>(
    provider: &mut P,
    n: u64,
    pid: impl Fn(&P, NodeId) -> Option<u32>,
) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rss_before = rss_kib("self")?;
    let (mut ready_ms, mut served_ms) = (Vec::new(), Vec::new());
    let mut pids = Vec::new();
    for i in 0..n {
        let id = NodeId(u32::try_from(i)?);
        let t0 = Instant::now();
        let node = provider.start(id)?;
        wait_ready(provider, id)?;
        ready_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        // A container's address is known once it is ready.
        let addr = provider.addr(id).unwrap_or(node.addr);
        let reply = rt.block_on(async {
            let client = TcpClient::connect(&addr.to_string()).await?;
            DemoClient::new(client).echo("x".to_owned()).await
        })?;
        served_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(reply == "x", "node {} answered {reply:?}", id.0);
        pids.extend(pid(provider, id));
    }
    let mem = if pids.is_empty() {
        let grown = rss_kib("self")?.saturating_sub(rss_before);
        format!(
            "this process's RSS grew {grown} KiB: {:.0} KiB per node",
            grown as f64 / n as f64
        )
    } else {
        let mut rss: Vec<f64> = pids
            .iter()
            .map(|p| rss_kib(&p.to_string()).map(|k| k as f64))
            .collect::<Result<_, _>>()?;
        let mut pss: Vec<f64> = pids
            .iter()
            .map(|p| pss_kib(&p.to_string()).map(|k| k as f64))
            .collect::<Result<_, _>>()?;
        format!(
            "node RSS median {:.0} KiB, PSS median {:.0} KiB",
            median(&mut rss),
            median(&mut pss)
        )
    };
    Ok(format!(
        "{} nodes, {n} started: ready median {:.3} ms, first call answered median {:.3} ms; {mem}",
        provider.kind().as_str(),
        median(&mut ready_ms),
        median(&mut served_ms),
    ))
}
