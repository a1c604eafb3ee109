//! `ebb node`: one worker node serving the demo service over TCP (through
//! the same `ebb::node` entry a user's own node binary uses), and optionally
//! over HTTP/JSON on a second address.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use ebb::node::{DEFAULT_LISTEN, Listen};
use ebb::rpc::semantics::ServerConfig;
use ebb_demo::{DemoServer, DemoService, MAX_WORK_SCALE, WorkMode};
use ebb_http::{DEFAULT_MAX_CONNECTIONS, DispatchBackend, HttpConfig};
use ebb_policy::lease::LeaseTerm;

/// Serve the demo service (echo, work, sleep, incr, get, put) on one TCP
/// address until killed.
///
/// Prints `node listening on ADDR` once it accepts connections, so a script
/// or a provider can bind port 0 and read the address back.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Prints `node listening on ADDR` once it accepts connections (and, with\n--http, `http listening on ADDR`), so a script can bind port 0 and read the\naddresses back. Examples:\n  ebb node --listen 127.0.0.1:7000\n  ebb node --listen 127.0.0.1:0 --http 127.0.0.1:0 --threads 2\n  ebb node --listen 127.0.0.1:7010 --origin 127.0.0.1:7100   # data shared through `ebb origin`\nTry it with:\n  ebb call --addr ADDR Demo.incr '{\"key\":\"a\"}'\n  curl -X POST http://HTTP_ADDR/rpc/Demo/incr -d '{\"key\":\"a\"}'"
)]
pub struct Args {
    /// Address to listen on, e.g. 127.0.0.1:7000 (port 0 picks a free port).
    #[arg(long, default_value = DEFAULT_LISTEN, conflicts_with = "listen_fd", value_parser = super::addr::listen)]
    pub listen: String,

    /// Serve on an already listening TCP socket inherited as this file
    /// descriptor (socket activation: how a process provider starts nodes
    /// whose address it chose), instead of binding --listen.
    #[arg(long, value_name = "FD")]
    pub listen_fd: Option<i32>,

    /// Also serve HTTP/JSON on this address (`POST /rpc/Demo/{method}`,
    /// JSON object of named arguments), on the same service instance, so an
    /// HTTP load balancer can front the node. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR", value_parser = super::addr::listen)]
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

    /// Worker threads for CPU-bound methods (those marked `#[blocking]`,
    /// such as Demo.work): at most this many run at once, each on its own
    /// thread, while one I/O thread keeps serving heartbeats and cheap
    /// calls. This is the node's capacity: raise it to scale the node up.
    /// Default: the number of cores this process may use.
    #[arg(long, value_name = "N", value_parser = ebb::node::parse_threads)]
    pub threads: Option<NonZeroUsize>,

    /// Serve RPC over TLS with this certificate chain (PEM). Needs
    /// --tls-key. Without it the node speaks plain TCP, meant for loopback.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Mutual TLS: serve only clients presenting a certificate issued by a
    /// CA in this PEM file. Needs --tls-cert and --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Serve only callers whose handshake presents a bearer token listed in
    /// FILE (one per line; blank lines and lines starting with # are
    /// skipped): `ebb call --token-file` presents one. Without TLS a
    /// token crosses the network in clear; add --tls-cert off loopback. Not with
    /// --http, whose HTTP side checks no token (put a gateway with
    /// `auth.token_file` in front instead).
    #[arg(long, value_name = "FILE", conflicts_with = "http")]
    pub token_file: Option<PathBuf>,

    /// Serve Demo.get/put/read/write from this origin store (`ebb origin`)
    /// through a lease cache, instead of from memory: a pool of nodes then
    /// shares the data.
    #[arg(long, value_name = "ADDR", value_parser = super::addr::connect)]
    pub origin: Option<String>,

    /// Lease term the cache asks for, in milliseconds (0: check-on-use,
    /// every read validates with the origin; `inf`: callbacks). The origin
    /// may grant less.
    #[arg(long, default_value = DEFAULT_LEASE_TERM_MS, value_parser = super::origin::parse_term, requires = "origin")]
    pub lease_term_ms: LeaseTerm,

    /// Clock drift allowance ε in milliseconds: a cached value is served
    /// only until request_sent + term − ε.
    #[arg(long, default_value_t = ebb_lease::origin::DEFAULT_EPSILON_MS, value_parser = clap::value_parser!(u64).range(0..=60_000), requires = "origin")]
    pub epsilon_ms: u64,

    /// Bytes the lease cache may hold, in MiB (keys, values and a fixed
    /// overhead per entry).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65_536), requires = "origin")]
    pub cache_mib: u64,
}

/// The term a node asks for by default, in milliseconds: the origin's
/// default longest term, as clap takes a default (a test keeps them equal).
const DEFAULT_LEASE_TERM_MS: &str = "10000";

/// How long a node waits for its origin store to accept connections
/// before giving up: an origin and its nodes started together (a script,
/// the README's lines pasted at once) reach the node before the origin has
/// opened its data file.
const ORIGIN_WAIT_MS: u64 = 10_000;
/// Pause between two attempts to connect to the origin.
const ORIGIN_RETRY_MS: u64 = 100;

/// Connects the lease cache, waiting up to `ORIGIN_WAIT_MS` while nothing
/// listens at `origin` yet (a connection refused before anything was
/// sent). Any other failure ends it at once.
fn connect_origin(
    origin: &str,
    settings: ebb_lease::cache::CacheSettings,
) -> Result<
    ebb_lease::cache::LeaseCache<ebb::rpc::transport::TcpClient>,
    ebb_lease::cache::CacheError,
> {
    use ebb::rpc::CallError;
    use ebb_lease::cache::CacheError;
    let give_up = std::time::Instant::now() + std::time::Duration::from_millis(ORIGIN_WAIT_MS);
    let mut said = false;
    loop {
        match ebb_lease::cache::connect_in_background(origin, settings) {
            Err(CacheError::Call(CallError::ConnectionLost { sent: false, .. }))
                if std::time::Instant::now() < give_up =>
            {
                if !said {
                    eprintln!(
                        "waiting up to {} s for the origin store at {origin} (`ebb origin`)",
                        ORIGIN_WAIT_MS / 1000
                    );
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(ORIGIN_RETRY_MS));
            }
            done => return done,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let listen = match args.listen_fd {
        Some(fd) => Listen::Fd(fd),
        None => Listen::Addr(args.listen),
    };
    // One instance behind both protocols: a counter bumped over HTTP is the
    // counter read over RPC.
    let mode = if args.work_mode == "block" {
        WorkMode::Block
    } else {
        WorkMode::Spin
    };
    let mut service = DemoService::new().with_work(args.work_scale, mode);
    if let Some(origin) = &args.origin {
        let settings = ebb_lease::cache::CacheSettings {
            term: args.lease_term_ms,
            epsilon: ebb_core::Nanos::from_millis(args.epsilon_ms),
            max_bytes: args.cache_mib.saturating_mul(1 << 20),
            ..ebb_lease::cache::CacheSettings::default()
        };
        let cache = connect_origin(origin, settings)
            .with_context(|| format!("--origin {origin}: cannot reach the origin store"))?;
        service = service.with_origin(cache);
    }
    let demo = Arc::new(DemoServer::new(service));
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(ebb::node::TlsFiles {
            cert,
            key,
            client_ca: args.tls_client_ca,
        }),
        _ => None,
    };
    let Some(http) = args.http else {
        let args = ebb::node::NodeArgs {
            listen,
            threads: args.threads,
            tls,
            token_file: args.token_file,
        };
        ebb::node::serve(&args, demo)?;
        return Ok(());
    };
    // One I/O thread, as `ebb::node::serve` uses; CPU-bound methods get the
    // worker threads.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let threads = args
            .threads
            .unwrap_or_else(ebb::rpc::transport::workers::default_threads);
        let tls = tls.as_ref().map(ebb::node::server_tls).transpose()?;
        // Bound before the RPC side announces itself: whoever waits for
        // `node listening on` must not see it from a node about to fail.
        let http_listener = ebb::rpc::transport::listen::bind(&http)
            .await
            .with_context(|| format!("--http {http}: cannot listen there"))?;
        let server = ebb::node::bind(&listen, Arc::clone(&demo), ServerConfig::default())
            .await?
            .with_threads(threads)
            .resizable();
        let server = match tls {
            Some(tls) => server.with_tls(tls),
            None => server,
        };
        let http_addr = http_listener
            .local_addr()
            .context("reading the bound HTTP address")?;
        super::announce(&format!("http listening on {http_addr}"));
        // HTTP calls of `#[blocking]` methods run on the RPC server's
        // workers: the node's capacity bounds both protocols together, and
        // a gateway's `Resize` over RPC changes it for HTTP too.
        let backend = DispatchBackend::new(demo).with_workers(server.workers());
        let router = ebb_http::standalone(backend, HttpConfig::default());
        tokio::select! {
            served = server.run() => served?,
            served = ebb_http::serve(http_listener, router, DEFAULT_MAX_CONNECTIONS) => {
                served.context("serving HTTP")?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_term_is_the_origins() {
        assert_eq!(
            super::DEFAULT_LEASE_TERM_MS.parse::<u64>(),
            Ok(ebb_lease::origin::DEFAULT_TERM_MS)
        );
    }
}
