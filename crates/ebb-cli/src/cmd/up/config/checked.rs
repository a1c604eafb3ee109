//! What a config becomes once every key passed: the gateway's config and
//! the choices `ebb up` acts on, typed so that no string is matched twice;
//! and the one error every check reports.

use std::net::SocketAddr;

use ebb_core::Nanos;
use ebb_gateway::GatewayConfig;
use ebb_policy::lease::LeaseTerm;

/// A checked config's node kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Thread,
    Process,
    Container,
    Vm,
}

/// What runs on each node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runs {
    /// A service this build knows, served by `ebb node`.
    Builtin,
    /// A user's node program, started like `ebb node`.
    Command(Vec<String>),
}

/// The service of the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceChoice {
    /// A service this build was compiled with, by its name.
    Builtin(&'static str),
    /// Learned from the nodes' `Describe`; the first must serve the named
    /// service when a name is given.
    Learned(Option<String>),
}

impl std::fmt::Display for ServiceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceChoice::Builtin(n) => f.write_str(n),
            ServiceChoice::Learned(Some(n)) => write!(f, "{n} (learned from the nodes)"),
            ServiceChoice::Learned(None) => f.write_str("(learned from the nodes)"),
        }
    }
}

/// Where the pool's origin comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginSource {
    /// `ebb up` starts `ebb origin --data DIR --listen ADDR` and stops it last.
    Start {
        data: std::path::PathBuf,
        listen: String,
    },
    /// An origin that is already running.
    Existing(String),
}

/// A checked `[origin]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPlan {
    pub source: OriginSource,
    /// The term nodes ask for and a started origin grants at most.
    pub term: LeaseTerm,
    pub epsilon_ms: u64,
    pub holder_timeout_ms: u64,
}

/// A checked `pool.node_token_file`: nodes start with `--token-file
/// path` (thread nodes with `tokens`), and the gateway presents the one
/// token the file holds.
#[derive(Clone, Debug)]
pub struct NodeTokens {
    /// Absolute, so a node finds it whatever its working directory.
    pub path: std::path::PathBuf,
    pub tokens: ebb::rpc::auth::Tokens,
}

/// A checked `[pool.node_tls]`: every path absolute (a node finds it
/// whatever its working directory), every file already loaded once.
#[derive(Clone, Debug)]
pub struct NodeTls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// Mutual TLS: nodes serve only clients with a certificate from here.
    pub client_ca: Option<std::path::PathBuf>,
    /// The name the gateway checks node certificates against, when not
    /// the address it dials.
    pub server_name: Option<String>,
    /// What thread nodes serve with (other kinds load the files).
    pub server: ebb::rpc::transport::ServerTls,
    /// What the gateway dials nodes with.
    pub client: ebb::rpc::transport::ClientTls,
}

/// A config that passed every check.
#[derive(Debug)]
pub struct Checked {
    pub gateway: GatewayConfig,
    /// Threads of the gateway's runtime: 1 runs everything on one thread
    /// (no hand-over between threads on the request path).
    pub threads: std::num::NonZeroUsize,
    pub service: ServiceChoice,
    pub runs: Runs,
    pub kind: Kind,
    pub memory_mb: Option<u64>,
    pub cpus: Option<f64>,
    /// The autoscaling spec, unless it is `none`.
    pub autoscale: Option<String>,
    pub objective: Option<Nanos>,
    pub origin: Option<OriginPlan>,
    pub node_tokens: Option<NodeTokens>,
    pub node_tls: Option<NodeTls>,
}

/// A key with a value that is not accepted.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{key} = {value}: {accepted}")]
pub struct ConfigError {
    pub key: &'static str,
    pub value: String,
    pub accepted: String,
}

/// Every check reports through this, so no message lacks the key, the
/// value as written or what would have been accepted.
pub(super) fn bad(
    key: &'static str,
    value: impl std::fmt::Debug,
    accepted: impl Into<String>,
) -> ConfigError {
    ConfigError {
        key,
        value: format!("{value:?}"),
        accepted: accepted.into(),
    }
}

/// An address is checked as the config is read, so a typo is a config
/// error and not a bind failure after other listeners started.
pub(super) fn check_addr(key: &'static str, v: &str) -> Result<(), ConfigError> {
    v.parse::<SocketAddr>().map(|_| ()).map_err(|_| {
        bad(
            key,
            v,
            "expected IP:PORT, e.g. \"127.0.0.1:7000\" (port 0 picks a free port)",
        )
    })
}
