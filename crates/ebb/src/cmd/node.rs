//! `ebb node`: one worker node serving the demo service over TCP, and
//! optionally over HTTP/JSON on a second address.

use std::sync::Arc;

use anyhow::Context;
use ebb::demo::{DemoServer, DemoService, MAX_WORK_SCALE, WorkMode};
use ebb::rpc::semantics::ServerConfig;
use ebb::rpc::transport::Server;
use ebb_http::{DEFAULT_MAX_CONNECTIONS, DispatchBackend, HttpConfig};

/// Serve the demo service (echo, work, sleep, incr, get, put) on one TCP
/// address until killed.
///
/// Prints `node listening on ADDR` once it accepts connections, so a script
/// or a provider can bind port 0 and read the address back.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Prints `node listening on ADDR` once it accepts connections (and, with\n--http, `http listening on ADDR`), so a script can bind port 0 and read the\naddresses back. Try it with:\n  ebb call --addr ADDR Demo.incr '{\"key\":\"a\"}'\n  curl -X POST http://HTTP_ADDR/rpc/Demo/incr -d '{\"key\":\"a\"}'"
)]
pub struct Args {
    /// Address to listen on, e.g. 127.0.0.1:7000 (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7000", conflicts_with = "listen_fd")]
    pub listen: String,

    /// Serve on an already listening TCP socket inherited as this file
    /// descriptor (socket activation: how a process provider starts nodes
    /// whose address it chose), instead of binding --listen.
    #[arg(long, value_name = "FD")]
    pub listen_fd: Option<i32>,

    /// Also serve HTTP/JSON on this address (`POST /rpc/Demo/{method}`,
    /// JSON object of named arguments), on the same service instance, so an
    /// HTTP load balancer can front the node. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,

    /// Make Demo.work take this many times as long as asked (1 to 100): a
    /// deliberately slow node, for benchmarks of balancing.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=MAX_WORK_SCALE))]
    pub work_scale: u64,

    /// How Demo.work holds the node: `spin` keeps a CPU busy; `block`
    /// blocks the node's thread without using a CPU, so several nodes that
    /// queue like CPU-bound servers fit on fewer cores.
    #[arg(long, default_value = "spin", value_parser = ["spin", "block"])]
    pub work_mode: String,
}

/// Takes ownership of the inherited listening socket `fd`, after checking
/// that it is one: adopting a wrong descriptor would fail obscurely later.
fn inherited_listener(fd: i32) -> anyhow::Result<std::net::TcpListener> {
    use std::os::fd::FromRawFd;
    anyhow::ensure!(
        fd > 2,
        "--listen-fd {fd}: descriptors 0, 1 and 2 are stdin, stdout and stderr; \
         pass the number of an inherited listening TCP socket (usually 3)"
    );
    // SAFETY: fcntl(F_GETFD) only inspects the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        anyhow::bail!("--listen-fd {fd}: no such open descriptor was inherited");
    }
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the out-pointers point at live locals of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut accepting).cast(),
            &mut len,
        )
    };
    anyhow::ensure!(
        rc == 0 && accepting == 1,
        "--listen-fd {fd}: the descriptor is not a listening socket"
    );
    // SAFETY: the descriptor is open, is a listening socket, and nothing
    // else in this process owns it: it was inherited for us alone.
    Ok(unsafe { std::net::TcpListener::from_raw_fd(fd) })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // One thread: a node's CPU belongs to its service, and a single-threaded
    // runtime spends the least of it on coordination.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        // One instance behind both protocols: a counter bumped over HTTP is
        // the counter read over RPC.
        let mode = if args.work_mode == "block" {
            WorkMode::Block
        } else {
            WorkMode::Spin
        };
        let service = DemoService::new().with_work(args.work_scale, mode);
        let demo = Arc::new(DemoServer::new(service));
        let server = match args.listen_fd {
            Some(fd) => Server::from_std(
                inherited_listener(fd)?,
                Arc::clone(&demo),
                ServerConfig::default(),
            )?,
            None => Server::bind(&args.listen, Arc::clone(&demo)).await?,
        };
        let http = match &args.http {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("--http {addr}: cannot listen there"))?,
            ),
            None => None,
        };
        let addr = server.local_addr().context("reading the bound address")?;
        super::announce(&format!("node listening on {addr}"));
        let Some(http) = http else {
            server.run().await?;
            return Ok(());
        };
        let http_addr = http
            .local_addr()
            .context("reading the bound HTTP address")?;
        super::announce(&format!("http listening on {http_addr}"));
        let router = ebb_http::router(DispatchBackend::new(demo), HttpConfig::default())
            .fallback(ebb_http::not_found);
        tokio::select! {
            served = server.run() => served?,
            served = ebb_http::serve(http, router, DEFAULT_MAX_CONNECTIONS) => {
                served.context("serving HTTP")?;
            }
        }
        Ok(())
    })
}
