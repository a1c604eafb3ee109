//! A node binary's entry point: parse `--listen ADDR` or `--listen-fd FD`,
//! bind (or adopt the inherited socket), print `node listening on ADDR`,
//! serve until killed.
//!
//! Every node provider (process, container, VM) starts a node the same way
//! and reads that one line back, so a user's own node binary built on
//! [`main`] or [`serve`] runs wherever `ebb node` runs:
//!
//! ```no_run
//! # #[ebb::service] pub trait Greeter { #[idempotent] async fn hello(&self, name: String) -> String; }
//! # struct English;
//! # impl Greeter for English { async fn hello(&self, name: String) -> String { name } }
//! fn main() -> std::process::ExitCode {
//!     ebb::node::main("greeter-node", GreeterServer::new(English))
//! }
//! ```

mod args;
mod listen;

pub use args::{
    DEFAULT_LISTEN, Listen, NodeArgs, Parsed, ThreadCountError, TlsFiles, parse_threads, usage,
};
pub use listen::inherited_listener;

use crate::rpc::auth::{AuthError, Tokens};
use crate::rpc::semantics::ServerConfig;
use crate::rpc::service::ServiceDispatch;
use crate::rpc::transport::{Server, ServerTls, TlsError, TransportError};

/// Why a node could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The command line was wrong; the message names the argument and what
    /// is accepted.
    #[error("{0}")]
    Usage(String),
    #[error("--listen-fd {fd}: {reason}")]
    ListenFd { fd: i32, reason: String },
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("reading the bound address: {0}")]
    LocalAddr(std::io::Error),
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A TLS file could not be used; `flag` is the one that named it, and
    /// the source names the file: a user who gave three files learns
    /// which flag to fix.
    #[error("{flag}: {source}")]
    Tls {
        flag: &'static str,
        /// Boxed: a rustls error inside is large, and every `NodeError`
        /// would carry its size.
        source: Box<TlsError>,
    },
    /// The token file is missing, unreadable, empty or malformed; the
    /// message names it.
    #[error("--token-file: {0}")]
    Tokens(#[from] AuthError),
}

/// Prints a line on stdout and flushes it at once, so a parent process that
/// reads our output through a pipe (a provider, a test, a script) sees the
/// bound address without waiting for a buffer to fill.
pub fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Serves `dispatch` as `args` say, on a runtime of its own, until accepting
/// fails for good. Blocks the calling thread.
pub fn serve<D>(args: &NodeArgs, dispatch: D) -> Result<(), NodeError>
where
    D: ServiceDispatch + 'static,
{
    // One I/O thread: a single-threaded runtime spends the least CPU on
    // coordination. CPU-bound (`#[blocking]`) methods run on the server's
    // `args.threads()` worker threads.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(NodeError::Runtime)?;
    rt.block_on(serve_async(args, dispatch, ServerConfig::default()))
}

/// [`serve`] inside a runtime the caller already runs.
pub async fn serve_async<D>(
    args: &NodeArgs,
    dispatch: D,
    config: ServerConfig,
) -> Result<(), NodeError>
where
    D: ServiceDispatch + 'static,
{
    // Files first: a bad certificate must fail before the node says it
    // listens.
    let tls = args.tls.as_ref().map(server_tls).transpose()?;
    let tokens = server_tokens(args)?;
    let server = bind(&args.listen, dispatch, config).await?;
    // A gateway whose handshake the node accepted may resize its workers
    // (scale up in place).
    let server = server.with_threads(args.threads()).resizable();
    let server = match tls {
        Some(tls) => server.with_tls(tls),
        None => server,
    };
    let server = match tokens {
        Some(tokens) => server.with_tokens(tokens),
        None => server,
    };
    server.run().await?;
    Ok(())
}

/// Loads a node's TLS files; an error names the flag and the file at
/// fault (`--tls-key: cannot read the private key file node.key: ...`).
pub fn server_tls(files: &TlsFiles) -> Result<ServerTls, NodeError> {
    ServerTls::from_pem_files(&files.cert, &files.key, files.client_ca.as_deref()).map_err(
        |source| NodeError::Tls {
            flag: tls_flag(files, &source),
            source: Box::new(source),
        },
    )
}

/// The flag that gave the file `error` is about: the files are told apart
/// by their paths (one file may hold both certificate and key).
fn tls_flag(files: &TlsFiles, error: &TlsError) -> &'static str {
    let path = match error {
        TlsError::Read { path, .. } | TlsError::Bad { path, .. } => path,
        TlsError::Mismatch { .. } => return "--tls-cert and --tls-key",
        TlsError::Config(_) | TlsError::ServerName { .. } => return "--tls-cert",
    };
    let is_ca = files.client_ca.as_ref() == Some(path);
    match (*path == files.cert, *path == files.key, is_ca) {
        (true, true, _) => "--tls-cert and --tls-key",
        (false, true, _) => "--tls-key",
        (false, false, true) => "--tls-client-ca",
        _ => "--tls-cert",
    }
}

/// Loads the bearer tokens of `--token-file`, if given; an error names the
/// file. Read once at start: a node that must stop accepting a token is
/// restarted with a new file.
pub fn server_tokens(args: &NodeArgs) -> Result<Option<Tokens>, AuthError> {
    args.token_file
        .as_deref()
        .map(Tokens::from_file)
        .transpose()
}

/// Binds (or adopts) the listening socket and prints `node listening on
/// ADDR`, for a node that serves more than RPC (e.g. `ebb node --http`) and
/// so runs the returned server itself. Must be called inside a tokio runtime.
pub async fn bind<D>(
    listen: &Listen,
    dispatch: D,
    config: ServerConfig,
) -> Result<Server<D>, NodeError>
where
    D: ServiceDispatch + 'static,
{
    let server = match listen {
        Listen::Fd(fd) => Server::from_std(inherited_listener(*fd)?, dispatch, config)?,
        Listen::Addr(addr) => Server::bind_with(addr, dispatch, config).await?,
    };
    let addr = server.local_addr().map_err(NodeError::LocalAddr)?;
    announce(&format!("node listening on {addr}"));
    Ok(server)
}

/// The whole `main` of a node binary named `program`: parses the process's
/// arguments, prints usage for `--help`, serves, and on failure prints the
/// error (no backtrace) and exits non-zero (2 for a bad command line).
pub fn main<D>(program: &str, dispatch: D) -> std::process::ExitCode
where
    D: ServiceDispatch + 'static,
{
    use std::process::ExitCode;
    let args = match NodeArgs::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            print!("{}", usage(program));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{program}: {e}\n\n{}", usage(program));
            return ExitCode::from(2);
        }
    };
    match serve(&args, dispatch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}
