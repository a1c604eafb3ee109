//! `ebb`: one binary for every role. Each subcommand lives in its own module
//! under `cmd/`; this file only parses and dispatches.

use clap::{Parser, Subcommand};

mod cmd;

/// ebb: an elastic RPC serving system.
#[derive(Parser, Debug)]
#[command(name = "ebb", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the whole system locally on a bursty trace and write a report (start here).
    Demo(Box<cmd::demo::Args>),
    /// Print the build's version and the features this machine supports.
    Info(cmd::info::Args),
    /// Run a fault-injecting TCP proxy (drop, delay, reset).
    Chaos(cmd::chaos::Args),
    /// Serve the demo service on one TCP address (a worker node).
    Node(cmd::node::Args),
    /// Serve the origin store: durable values under leases that nodes cache.
    Origin(cmd::origin::Args),
    /// Call one method of a node with JSON arguments and print the JSON reply.
    Call(cmd::call::Args),
    /// Run a gateway and a pool of nodes for a service until Ctrl-C.
    Up(cmd::up::Args),
    /// Open-loop load (Poisson or trace arrivals) against a node or gateway.
    Load(Box<cmd::load::Args>),
    /// Simulate a pool under a balancing policy and compare with queueing theory.
    Sim(Box<cmd::sim::Args>),
    /// Run one program isolated in a container or a VM, with limits.
    Sandbox(cmd::sandbox::Args),
    /// QEMU microVM nodes: boot, snapshot, restore, migrate, run a command.
    Vm(cmd::vm::Args),
}

/// Prints a failure as one readable message (the cause chain, `{:#}`) and
/// exits 1. Returning the error from `main` instead would print anyhow's
/// captured backtrace whenever RUST_BACKTRACE is set, which a user-facing
/// error never should.
fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(args) => cmd::demo::run(*args),
        Command::Info(args) => cmd::info::run(args),
        Command::Chaos(args) => cmd::chaos::run(args),
        Command::Node(args) => cmd::node::run(args),
        Command::Origin(args) => cmd::origin::run(args),
        Command::Call(args) => cmd::call::run(args),
        Command::Load(args) => cmd::load::run(*args),
        Command::Sim(args) => cmd::sim::run(*args),
        Command::Up(args) => cmd::up::run(args),
        Command::Sandbox(args) => cmd::sandbox::run(args),
        Command::Vm(args) => cmd::vm::run(args),
    }
}
