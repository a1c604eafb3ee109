//! `ebb vm`: boot, snapshot, restore and migrate QEMU microVM nodes, run a
//! command in a VM, and check what this machine supports. Every figure it
//! prints is measured by the run that prints it.
//!
//! This module holds the command line and the dispatch; each action that
//! is more than a call into `ebb_node::vm` has its own module: [`probe`]
//! (the accelerator and why), [`boot`] (cold boot, snapshot, restore),
//! [`migrate`] (live migration with a before/after check), and [`node`]
//! (a node VM from the CLI's options, and what every action reports of it).

mod boot;
mod migrate;
mod node;
mod probe;

use std::path::PathBuf;

use ebb_node::sandbox::{Limits, Outcome, SandboxSpec};
use ebb_node::vm::kernel::{fetch, locate_or_fetch};
use ebb_node::vm::run_sandboxed;
use ebb_node::vm::sandbox::{DEFAULT_RUN_TIMEOUT_MS, SandboxOptions};

use node::{NodeArgs, Size};

/// Longest `ebb vm run --timeout-ms`: a day.
const MAX_RUN_TIMEOUT_MS: u64 = 86_400_000;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Show the guest kernel, the accelerator ebb would use and why.
    #[command(after_help = "Examples:\n  ebb vm probe\n  ebb vm probe --fresh")]
    Probe {
        /// Boot a KVM test guest now instead of trusting the cached verdict.
        #[arg(long)]
        fresh: bool,
    },
    /// Download Debian's cloud kernel into the cache (/var/cache/ebb or
    /// $EBB_VM_CACHE); needs root and a Debian mirror.
    #[command(after_help = "Example:\n  sudo ebb vm fetch-kernel")]
    FetchKernel,
    /// Run one command in a fresh VM and exit with its status.
    #[command(
        after_help = "Examples:\n  ebb vm run -- sh -c 'uname -r; exit 3'        # exits 3\n  ebb vm run --memory-mb 512 --cpus 2 --include /usr/bin/jq -- jq --version"
    )]
    Run {
        #[command(flatten)]
        size: Size,
        /// Host binary to copy into the guest (with its shared libraries) at
        /// its host path; repeatable.
        #[arg(long = "include", value_name = "PATH")]
        include: Vec<PathBuf>,
        /// Directory to use as the guest's root for the command (copied
        /// into guest RAM; at most half of --memory-mb).
        #[arg(long, value_name = "DIR")]
        rootfs: Option<PathBuf>,
        /// Copy the host file HOST (at most 1 MiB) to the absolute path
        /// INSIDE, readable by root only, before the command starts; with
        /// --rootfs, INSIDE is within that root (repeatable).
        #[arg(long = "file", value_name = "HOST:INSIDE")]
        files: Vec<ebb_node::sandbox::FileIn>,
        /// Kill the VM if the command has not finished by then, in ms (1 to
        /// 86400000, a day).
        #[arg(long, default_value_t = DEFAULT_RUN_TIMEOUT_MS,
              value_parser = clap::value_parser!(u64).range(1..=MAX_RUN_TIMEOUT_MS))]
        timeout_ms: u64,
        /// Kill the VM if the guest has not started the command by then, in
        /// ms (a cold boot without KVM takes tens of seconds on a loaded
        /// host).
        #[arg(long, default_value_t = ebb_node::vm::provider::DEFAULT_BOOT_TIMEOUT_MS,
              value_parser = clap::value_parser!(u64).range(1..=ebb_node::vm::provider::MAX_BOOT_TIMEOUT_MS))]
        boot_timeout_ms: u64,
        /// The program and its arguments, as seen inside the guest.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Boot a node VM, report its boot time and memory, optionally save a
    /// snapshot of it.
    #[command(
        after_help = "Examples:\n  ebb vm boot\n  ebb vm boot --snapshot-to /tmp/ebb-snap   # then: ebb vm restore /tmp/ebb-snap"
    )]
    Boot {
        #[command(flatten)]
        node: NodeArgs,
        /// Save the booted node into this directory (restore with `ebb vm restore DIR`).
        #[arg(long, value_name = "DIR")]
        snapshot_to: Option<PathBuf>,
        /// Keep the VM running this many seconds after reporting.
        #[arg(long, default_value_t = 0)]
        hold_secs: u64,
    },
    /// Start a node VM from a snapshot directory and report the time until it serves.
    #[command(
        after_help = "Example:\n  ebb vm restore /tmp/ebb-snap   # a directory from `ebb vm boot --snapshot-to`"
    )]
    Restore {
        /// A directory written by `ebb vm boot --snapshot-to`.
        dir: PathBuf,
        /// Keep the VM running this many seconds after reporting.
        #[arg(long, default_value_t = 0)]
        hold_secs: u64,
    },
    /// Boot a node VM, migrate it to a second QEMU that takes over its host
    /// port (the address does not change), and report total time, downtime
    /// and how long the address went unanswered. Live under KVM; under TCG
    /// the guest is paused for the whole copy (stop and copy).
    #[command(
        after_help = "Examples:\n  ebb vm migrate\n  ebb vm migrate --check \"ebb call --addr {addr} Demo.incr '{\\\"key\\\":\\\"a\\\"}'\""
    )]
    Migrate {
        #[command(flatten)]
        node: NodeArgs,
        /// Host shell command run against the node before and after the
        /// migration, to show its state survived; `{addr}`, `{host}` and
        /// `{port}` name the node's current address. E.g.
        /// `ebb call --addr {addr} Demo.incr '{"key":"a"}'`.
        #[arg(long, value_name = "SHELL")]
        check: Option<String>,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Probe { fresh } => probe::probe(fresh),
        Action::FetchKernel => {
            fetch()?;
            let k = locate_or_fetch()?;
            println!("kernel: {} ({})", k.release, k.vmlinuz.display());
            Ok(())
        }
        Action::Run {
            size,
            include,
            rootfs,
            files,
            timeout_ms,
            boot_timeout_ms,
            command,
        } => {
            node::check_size(&size)?;
            // Before a guest boots for nothing.
            if let Some(p) = include.iter().find(|p| !p.is_file()) {
                anyhow::bail!(
                    "--include {}: not a file here; give a host binary to copy into the guest, e.g. /usr/bin/jq",
                    p.display()
                );
            }
            let spec = SandboxSpec {
                limits: Limits {
                    memory_mb: Some(size.memory_mb),
                    cpus: Some(f64::from(size.cpus)),
                    pids: None,
                },
                rootfs,
                command,
            };
            let opts = SandboxOptions {
                host_binaries: include,
                files,
                timeout_ms,
                boot_timeout_ms,
            };
            let outcome = run_sandboxed(&spec, &opts, &mut std::io::stdout())?;
            if let Outcome::LimitKilled(why) = &outcome {
                eprintln!("ebb: the command was killed at a limit: {why}");
            }
            std::process::exit(outcome.exit_code());
        }
        Action::Boot {
            node,
            snapshot_to,
            hold_secs,
        } => boot::boot(&node, snapshot_to, hold_secs),
        Action::Restore { dir, hold_secs } => boot::restore(&dir, hold_secs),
        Action::Migrate { node, check } => migrate::migrate(&node, check.as_deref()),
    }
}
