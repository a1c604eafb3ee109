//! `rpc-bench instr`: the instructions and heap allocations per call of a
//! system's server or of its client, counted by callgrind. Instruction
//! counts do not depend on how loaded the machine is, unlike wall-clock
//! figures.
//!
//! The measured side runs twice under callgrind, serving (or making) `n1`
//! and then `n2` calls on one connection; the difference of the two runs'
//! totals divided by `n2 - n1` is the cost of one call, with start-up,
//! connection set-up and shutdown cancelled out. The other side runs
//! natively. A measured client is a process of its own (`rpc-bench
//! instr-client`), so the benchmark's own bookkeeping is not counted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::alloc::allocations;
use crate::certs::TlsFiles;
use crate::child::{Launch, ServerProcess};
use crate::driver::{Mode, RunCfg};
use crate::flavour::Flavour;
use crate::system::System;

#[derive(clap::Args, Debug)]
pub struct InstrArgs {
    /// Systems to measure, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "ebb,tarpc,tonic"
    )]
    systems: Vec<System>,
    /// Payload sizes in bytes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    payloads: Vec<usize>,
    /// Outstanding calls on the one connection, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "128")]
    concurrency: Vec<usize>,
    /// The server's runtime flavour ("current" or "multiN").
    #[arg(long, default_value = "current")]
    flavour: Flavour,
    /// Calls served in the short and the long run.
    #[arg(long, value_delimiter = ',', default_values_t = [2000u64, 12000])]
    calls: Vec<u64>,
    /// Serve over TLS (ebb and tonic only).
    #[arg(long)]
    tls: bool,
    /// How long ebb's client may take to connect (TCP and the TLS
    /// handshake), in milliseconds: under callgrind a TLS handshake takes
    /// seconds, far past the library's default bound.
    #[arg(long, default_value_t = 60_000)]
    connect_timeout_ms: u64,
    /// Where callgrind writes its profiles (kept for callgrind_annotate).
    #[arg(long, default_value = "target/callgrind")]
    out_dir: PathBuf,
    /// Which side to count: "server" (the server process) or "client" (a
    /// client process of its own, on the same runtime flavour).
    #[arg(long, value_enum, default_value = "server")]
    side: Side,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    Server,
    Client,
}

/// `rpc-bench instr-client`: makes exactly `calls` calls to a running
/// server, then prints the process's allocations (started by `instr
/// --side client` under callgrind, not by hand).
#[derive(clap::Args, Debug)]
pub struct ClientArgs {
    #[arg(long, value_enum)]
    system: System,
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long, default_value = "current")]
    flavour: Flavour,
    #[arg(long)]
    payload: usize,
    #[arg(long)]
    concurrency: usize,
    #[arg(long)]
    calls: u64,
    #[arg(long)]
    connect_timeout_ms: u64,
    /// Connect over TLS, trusting the CA in this directory.
    #[arg(long)]
    tls_dir: Option<PathBuf>,
}

pub fn client_main(a: ClientArgs) -> anyhow::Result<()> {
    let cfg = RunCfg {
        payload_bytes: a.payload,
        concurrency: a.concurrency,
        conns: 1,
        connect_timeout_ms: a.connect_timeout_ms,
    };
    let tls = a.tls_dir.as_deref().map(TlsFiles::at);
    let rt = a.flavour.runtime()?;
    crate::run_on(&rt, a.system.run(a.addr, tls, cfg, Mode::Count(a.calls)))?;
    println!("allocations {}", allocations());
    Ok(())
}

/// Instructions and allocations the server spent on `calls` calls.
struct Totals {
    instructions: u64,
    allocations: u64,
}

pub fn main(a: InstrArgs) -> anyhow::Result<()> {
    let [n1, n2] = a.calls[..] else {
        bail!("--calls: give two counts, short run first (e.g. 2000,12000)");
    };
    if n1 >= n2 {
        bail!("--calls: the second count ({n2}) must exceed the first ({n1})");
    }
    if a.connect_timeout_ms == 0 {
        bail!("--connect-timeout-ms: must be at least 1");
    }
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("creating {}", a.out_dir.display()))?;
    let tls = if a.tls {
        Some(crate::certs::generate()?)
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let side = match a.side {
        Side::Server => "server",
        Side::Client => "client",
    };
    println!(
        "{side} instructions and allocations per call (callgrind, {} {side}, {}, runs of {n1} and {n2} calls)\n",
        a.flavour,
        if a.tls { "TLS" } else { "plain TCP" }
    );
    println!("| payload | concurrency | system | instructions/call | allocations/call |");
    println!("|---|---:|---|---:|---:|");
    for &payload_bytes in &a.payloads {
        for &concurrency in &a.concurrency {
            for &sys in &a.systems {
                if a.tls && !sys.has_tls() {
                    continue;
                }
                let cfg = RunCfg {
                    payload_bytes,
                    concurrency,
                    conns: 1,
                    connect_timeout_ms: a.connect_timeout_ms,
                };
                let profile = |n: u64| {
                    a.out_dir.join(format!(
                        "{}{}{}-{payload_bytes}-{concurrency}-{n}.out",
                        sys.name(),
                        if a.side == Side::Client {
                            "-client"
                        } else {
                            ""
                        },
                        if a.tls { "-tls" } else { "" }
                    ))
                };
                let (short, long) = if a.side == Side::Client {
                    let server = ServerProcess::start(&Launch {
                        system: sys,
                        flavour: a.flavour,
                        tls: tls.as_ref(),
                        pin_cpu: None,
                        wrapper: &[],
                    })?;
                    let run = |n: u64| {
                        count_client(&a, sys, server.addr, tls.as_ref(), cfg, n, &profile(n))
                    };
                    let totals = (run(n1)?, run(n2)?);
                    server.stop()?;
                    totals
                } else {
                    let run = |n: u64| -> anyhow::Result<Totals> {
                        let out = profile(n);
                        let wrapper = [
                            "valgrind".to_owned(),
                            "--tool=callgrind".to_owned(),
                            format!("--callgrind-out-file={}", out.display()),
                            format!("--log-file={}.log", out.display()),
                        ];
                        let mut server = ServerProcess::start(&Launch {
                            system: sys,
                            flavour: a.flavour,
                            tls: tls.as_ref(),
                            pin_cpu: None,
                            wrapper: &wrapper,
                        })?;
                        rt.block_on(sys.run(server.addr, tls.clone(), cfg, Mode::Count(n)))?;
                        let allocations = server.counters()?.allocations;
                        server.stop()?;
                        Ok(Totals {
                            instructions: callgrind_total(&out)?,
                            allocations,
                        })
                    };
                    (run(n1)?, run(n2)?)
                };
                let calls = (n2 - n1) as f64;
                let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / calls;
                println!(
                    "| {payload_bytes} B | {concurrency} | {} | {:.0} | {:.2} |",
                    sys.name(),
                    per(short.instructions, long.instructions),
                    per(short.allocations, long.allocations),
                );
            }
        }
    }
    Ok(())
}

/// Runs a client process under callgrind making `n` calls to `addr`, and
/// returns what it spent in all.
fn count_client(
    a: &InstrArgs,
    sys: System,
    addr: SocketAddr,
    tls: Option<&TlsFiles>,
    cfg: RunCfg,
    n: u64,
    out: &Path,
) -> anyhow::Result<Totals> {
    let exe = std::env::current_exe().context("finding the rpc-bench executable")?;
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(format!("--log-file={}.log", out.display()))
        .arg(&exe)
        .arg("instr-client")
        .args(["--system", sys.name()])
        .args(["--addr", &addr.to_string()])
        .args(["--flavour", &a.flavour.arg()])
        .args(["--payload", &cfg.payload_bytes.to_string()])
        .args(["--concurrency", &cfg.concurrency.to_string()])
        .args(["--calls", &n.to_string()])
        .args(["--connect-timeout-ms", &cfg.connect_timeout_ms.to_string()]);
    if let Some(t) = tls {
        cmd.arg("--tls-dir").arg(&t.dir);
    }
    let done = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let said = String::from_utf8_lossy(&done.stdout);
    if !done.status.success() {
        bail!(
            "the {} client under callgrind failed ({}): {}",
            sys.name(),
            done.status,
            String::from_utf8_lossy(&done.stderr)
        );
    }
    let allocations = said
        .lines()
        .find_map(|l| l.strip_prefix("allocations "))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no allocations line in the client's output {said:?}"))?;
    Ok(Totals {
        instructions: callgrind_total(out)?,
        allocations,
    })
}

/// The total instruction count of a callgrind profile.
fn callgrind_total(path: &Path) -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no totals line in {}", path.display()))
}
