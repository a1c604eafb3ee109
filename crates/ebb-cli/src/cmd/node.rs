//! `ebb node`: one worker node serving the demo service over TCP, through
//! the same `ebb::node` entry a user's own node binary uses.

use ebb::node::{DEFAULT_LISTEN, Listen, NodeArgs};
use ebb_demo::{DemoServer, DemoService};

/// Serve the demo service (echo, work, sleep, incr, get, put) on one TCP
/// address until killed.
///
/// Prints `node listening on ADDR` once it accepts connections, so a script
/// or a provider can bind port 0 and read the address back.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Prints `node listening on ADDR` once it accepts connections, so a script\ncan bind port 0 and read the address back. Try it with:\n  ebb call --addr ADDR Demo.incr '{\"key\":\"a\"}'"
)]
pub struct Args {
    /// Address to listen on, e.g. 127.0.0.1:7000 (port 0 picks a free port).
    #[arg(long, default_value = DEFAULT_LISTEN, conflicts_with = "listen_fd")]
    pub listen: String,

    /// Serve on an already listening TCP socket inherited as this file
    /// descriptor (socket activation: how a process provider starts nodes
    /// whose address it chose), instead of binding --listen.
    #[arg(long, value_name = "FD")]
    pub listen_fd: Option<i32>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let listen = match args.listen_fd {
        Some(fd) => Listen::Fd(fd),
        None => Listen::Addr(args.listen),
    };
    ebb::node::serve(&NodeArgs { listen }, DemoServer::new(DemoService::new()))?;
    Ok(())
}
