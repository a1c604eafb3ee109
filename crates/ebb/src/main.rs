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
    /// Print the build's version and the features this machine supports.
    Info(cmd::info::Args),
    /// QEMU microVM nodes: boot, snapshot, restore, migrate, run a command.
    Vm(cmd::vm::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info(args) => cmd::info::run(args),
        Command::Vm(args) => cmd::vm::run(args),
    }
}
