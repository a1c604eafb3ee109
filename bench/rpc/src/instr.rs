//! `rpc-bench instr`: the server's instructions and heap allocations per
//! call, counted by callgrind. Instruction counts do not depend on how
//! loaded the machine is, unlike wall-clock figures.
//!
//! Each system's server runs twice under callgrind, serving `n1` and then
//! `n2` calls on one connection; the difference of the two runs' totals
//! divided by `n2 - n1` is the cost of one call, with start-up, connection
//! set-up and shutdown cancelled out.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::child::{Launch, ServerProcess};
use crate::driver::{Mode, RunCfg};
use crate::flavour::Flavour;
use crate::system::System;

#[derive(clap::Args, Debug)]
pub struct InstrArgs {
    /// Systems to measure, comma separated.
    #[arg(long, value_delimiter = ',', value_enum, default_value = "ebb,tarpc,tonic")]
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
    println!(
        "server instructions and allocations per call (callgrind, {} server, {}, runs of {n1} and {n2} calls)\n",
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
                let run = |n: u64| -> anyhow::Result<Totals> {
                    let out = a
                        .out_dir
                        .join(format!(
                            "{}{}-{payload_bytes}-{concurrency}-{n}.out",
                            sys.name(),
                            if a.tls { "-tls" } else { "" }
                        ));
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
                let short = run(n1)?;
                let long = run(n2)?;
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
