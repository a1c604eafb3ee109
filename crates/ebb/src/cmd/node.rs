//! `ebb node`: one worker node serving the demo service over TCP.

use anyhow::Context;
use ebb::demo::{DemoServer, DemoService};
use ebb::rpc::transport::Server;

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
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub listen: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // One thread: a node's CPU belongs to its service, and a single-threaded
    // runtime spends the least of it on coordination.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let server = Server::bind(&args.listen, DemoServer::new(DemoService::new())).await?;
        let addr = server.local_addr().context("reading the bound address")?;
        super::announce(&format!("node listening on {addr}"));
        server.run().await?;
        Ok(())
    })
}
