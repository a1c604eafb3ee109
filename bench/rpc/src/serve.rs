//! The server side, run as a process of its own (`rpc-bench serve`), so the
//! server's CPU time and allocations are its process's alone and it can be
//! pinned to a core of its own (or run under callgrind).
//!
//! Protocol with the parent, one line each way: the child prints
//! `listening ADDR` once bound; then each `stats` line on its standard input
//! is answered with `CPU_NS ALLOCATIONS` (the process's CPU time and heap
//! allocations so far). End of input ends the process.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;

use crate::alloc::allocations;
use crate::certs::TlsFiles;
use crate::cpu::{pin_to, process_cpu};
use crate::flavour::Flavour;
use crate::system::System;

/// `rpc-bench serve`: one system's echo server (started by the benchmark,
/// not by hand).
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[arg(long, value_enum)]
    pub system: System,
    /// Runtime flavour: "current" or "multiN".
    #[arg(long, default_value = "current")]
    pub flavour: Flavour,
    /// Serve over TLS with the certificates in this directory.
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// Pin the process to this CPU.
    #[arg(long)]
    pub pin_cpu: Option<usize>,
}

pub fn main(args: ServeArgs) -> anyhow::Result<()> {
    if let Some(cpu) = args.pin_cpu
        && !pin_to(cpu)
    {
        eprintln!("serve: could not pin to CPU {cpu}; running unpinned");
    }
    let rt = args.flavour.runtime()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let tls = args.tls_dir.as_deref().map(TlsFiles::at);
    std::thread::Builder::new()
        .name("stats".into())
        .spawn(answer_stats)
        .context("spawning the stats thread")?;
    let system = args.system;
    let served = rt.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        println!("listening {addr}");
        std::io::stdout().flush()?;
        // On a multi-thread runtime the server runs on the workers, not on
        // this thread.
        tokio::spawn(system.serve(listener, tls)).await?
    });
    served.with_context(|| format!("{} server", args.system.name()))
}

/// Answers `stats` lines until the parent closes our input, then ends the
/// process.
fn answer_stats() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "stats" {
            let cpu = process_cpu().as_nanos();
            let _ = writeln!(out, "{cpu} {}", allocations());
            let _ = out.flush();
        }
    }
    std::process::exit(0);
}
