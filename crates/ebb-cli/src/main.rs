//! `ebb`: one binary for every role. Each subcommand lives in its own module
//! under `cmd/`; this file only parses and dispatches.

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod cmd;

/// ebb: an elastic RPC serving system.
#[derive(Parser, Debug)]
#[command(
    name = "ebb",
    version,
    about = "ebb: an elastic RPC serving system. Nodes, calls, a gateway with autoscaling, load, fault injection, a simulator, sandboxes and VMs.",
    long_about = None,
    propagate_version = true,
    after_help = TOP_HELP
)]
struct Cli {
    /// None: bare `ebb`, which prints the help (as `cargo` does) rather
    /// than a usage error, since it is what a newcomer types first.
    #[command(subcommand)]
    command: Option<Command>,
}

/// What `ebb --help` ends with: where to start, and the commands one by one.
const TOP_HELP: &str = "Start here:
  ebb demo                                  the whole system on a bursty trace; a report in ebb-report/

One piece at a time:
  ebb node --listen 127.0.0.1:7000 &        a node serving the demo service
  ebb call --addr 127.0.0.1:7000 Demo.incr '{\"key\":\"a\"}'
  ebb up examples/ebb-up.toml               a gateway in front of a pool of nodes, until Ctrl-C
  ebb load --target 127.0.0.1:7000 --rate 1000 --duration 10
  ebb sim --balance random,p2c,jsq --nodes 100 --load 0.9

From a source checkout:
  cargo run --release --locked --bin ebb -- demo
  cargo test --workspace                    the tests (as root, container and VM tests too)

`ebb COMMAND --help` explains a command, with its defaults and examples;
README.md and docs/ explain the rest.";

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
    let command = accept_negative_numbers(Cli::command());
    let args = help_asked_of_help(&command, std::env::args_os().collect());
    let cli = command
        .clone()
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m))
        .unwrap_or_else(|e| explain(e, &command, &args).exit());
    let Some(chosen) = cli.command else {
        // What `ebb --help` prints, on stdout, and success: asking ebb
        // what it does is not a mistake.
        return match command.clone().print_help() {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(_) => std::process::ExitCode::FAILURE,
        };
    };
    match run(chosen) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", render(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Lets every flag of every subcommand take a value that looks like a
/// negative number, so `--rate -5` reaches the flag's own check ("give
/// requests per second, more than 0") instead of clap's "unexpected
/// argument '-5'" with its tip to write `-- -5`.
fn accept_negative_numbers(command: clap::Command) -> clap::Command {
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    subcommands
        .iter()
        .fold(command.allow_negative_numbers(true), |c, name| {
            c.mut_subcommand(name, accept_negative_numbers)
        })
}

/// What a flag of a plain number type accepts, in place of the standard
/// library's parse error that clap passes on ("invalid digit found in
/// string" for `--seed -1` or `--seed x`).
const NUMBER_ERRORS: [(&str, &str); 3] = [
    (
        "invalid digit found in string",
        "expected a whole number, without a sign or a decimal point (--help gives its range)",
    ),
    (
        "cannot parse integer from empty string",
        "expected a whole number",
    ),
    (
        "invalid float literal",
        "expected a number, e.g. 2, 0.5 or 1e-3",
    ),
];

/// The command `args` name, as deep as they name one (`ebb vm snapshot
/// ...` is `vm snapshot`), and where its own arguments start.
fn named_command<'a>(top: &'a clap::Command, args: &[OsString]) -> (&'a clap::Command, usize) {
    let mut c = top;
    for (i, a) in args.iter().enumerate().skip(1) {
        match a.to_str().and_then(|s| c.find_subcommand(s)) {
            Some(sub) => c = sub,
            None => return (c, i),
        }
    }
    (c, args.len())
}

/// `ebb help --help` (or `ebb vm help snapshot -h`) asks clap's `help`
/// subcommand for help, which it refuses as an unknown subcommand
/// `--help`. Whoever types it wants help: the flag is dropped, and `help`
/// prints what it prints anyway.
fn help_asked_of_help(top: &clap::Command, args: Vec<OsString>) -> Vec<OsString> {
    let (command, at) = named_command(top, &args);
    if !command.has_subcommands() || args.get(at).is_none_or(|a| a != "help") {
        return args;
    }
    args.into_iter()
        .enumerate()
        .filter(|(i, a)| *i <= at || (a != "--help" && a != "-h"))
        .map(|(_, a)| a)
        .collect()
}

/// A clap error, with a number parser's message replaced by what the flag
/// accepts, and an unknown command followed by the commands there are.
/// Help and version requests pass through untouched.
fn explain(e: clap::Error, top: &clap::Command, args: &[OsString]) -> clap::Error {
    let text = e.render().to_string();
    if let Some((from, to)) = NUMBER_ERRORS.iter().find(|(from, _)| text.contains(from)) {
        return clap::Error::raw(
            e.kind(),
            text.replacen(from, to, 1).replacen("error: ", "", 1),
        );
    }
    if e.kind() == clap::error::ErrorKind::InvalidSubcommand {
        let (command, _) = named_command(top, args);
        let names: Vec<&str> = command
            .get_subcommands()
            .map(clap::Command::get_name)
            .filter(|n| *n != "help")
            .collect();
        let text = text.replacen("error: ", "", 1);
        let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
        return clap::Error::raw(
            e.kind(),
            format!("{first}\n  accepted: {}\n{rest}", names.join(", ")),
        );
    }
    e
}

/// Lets SIGPIPE end the process, as it ends `cat` or `grep`, so that
/// `ebb sim ... | head` stops quietly instead of panicking with "failed
/// printing to stdout". Only for the commands that print tables and use no
/// sockets: the others keep Rust's default (SIGPIPE ignored), so a peer that
/// closes a connection is an error to handle, not the end of a node.
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL installs no handler
    // code; it happens on the main thread before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The cause chain on one line, each cause once. Library errors often put
/// their source's text in their own message as well as returning it as
/// the source (`cannot listen on ADDR: {source}`), so anyhow's `{:#}` would
/// print it twice; a cause whose text is already in the line is left out.
fn render(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo(args) => cmd::demo::run(*args),
        Command::Info(args) => {
            end_quietly_on_a_closed_pipe();
            cmd::info::run(args)
        }
        Command::Chaos(args) => cmd::chaos::run(args),
        Command::Node(args) => cmd::node::run(args),
        Command::Origin(args) => cmd::origin::run(args),
        Command::Call(args) => cmd::call::run(args),
        Command::Load(args) => cmd::load::run(*args),
        Command::Sim(args) => {
            end_quietly_on_a_closed_pipe();
            cmd::sim::run(*args)
        }
        Command::Up(args) => cmd::up::run(args),
        Command::Sandbox(args) => cmd::sandbox::run(args),
        Command::Vm(args) => cmd::vm::run(args),
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on {addr}: {source}")]
    struct Listen {
        addr: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let e = anyhow::Error::new(Listen {
            addr: "127.0.0.1:7000",
            source: io,
        })
        .context("starting the node");
        assert_eq!(
            super::render(&e),
            "starting the node: cannot listen on 127.0.0.1:7000: address in use"
        );
    }

    #[test]
    fn causes_not_in_the_message_are_all_printed() {
        let e = anyhow::anyhow!("no such file").context("reading c.toml");
        assert_eq!(super::render(&e), "reading c.toml: no such file");
    }
}
