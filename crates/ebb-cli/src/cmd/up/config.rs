//! `ebb up`'s configuration file: TOML read with serde, then checked key by
//! key so that every error names the key, the bad value and what is
//! accepted.

use std::net::SocketAddr;

use ebb_core::Nanos;
use ebb_gateway::{GatewayConfig, PoolConfig};
use ebb_policy::admission::{
    AdmissionConfig, DEFAULT_MAX_HELD_BYTES, DEFAULT_MAX_HELD_REQUESTS, ServiceTimeSource,
};
use ebb_policy::hedge::{HedgeConfig, MAX_WINDOW};
use ebb_policy::lease::LeaseTerm;
use ebb_policy::outlier::OutlierConfig;
use ebb_policy::retry::RetryBudgetConfig;
use serde::Deserialize;

/// The largest pool a config may ask for.
pub const MAX_POOL: usize = ebb_gateway::pool::MAX_POOL_SIZE;
/// Bounds on the default deadline, milliseconds.
pub const MAX_DEADLINE_MS: u64 = 600_000;
/// Defaults and bounds of the `[origin]` keys, milliseconds.
pub const DEFAULT_LEASE_TERM_MS: u64 = 10_000;
pub const MAX_LEASE_TERM_MS: u64 = 86_400_000;
pub const DEFAULT_EPSILON_MS: u64 = 100;
pub const MAX_EPSILON_MS: u64 = 60_000;
pub const DEFAULT_HOLDER_TIMEOUT_MS: u64 = 3_000;
pub const MAX_HOLDER_TIMEOUT_MS: u64 = 3_600_000;
/// The least memory a container node may be given, MiB (as `ebb sandbox
/// run --memory-mb` takes it).
pub const MIN_CONTAINER_MEMORY_MB: u64 = 4;
/// Where a started origin listens unless `origin.listen` says otherwise.
pub const DEFAULT_ORIGIN_LISTEN: &str = "127.0.0.1:0";
/// Most threads `gateway.threads` may ask for: far above any core count a
/// gateway has, it only stops a typo from starting thousands.
pub const MAX_GATEWAY_THREADS: usize = 256;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub gateway: Gateway,
    #[serde(default)]
    pub service: Service,
    #[serde(default)]
    pub pool: Pool,
    #[serde(default)]
    pub balance: Balance,
    #[serde(default)]
    pub admission: Admission,
    #[serde(default)]
    pub retry: Retry,
    #[serde(default)]
    pub autoscale: Autoscale,
    #[serde(default)]
    pub outlier: Outlier,
    #[serde(default)]
    pub hedge: Hedge,
    #[serde(default)]
    pub auth: Auth,
    /// Absent: nodes keep the demo's data in their own memory.
    pub origin: Option<Origin>,
}

/// `[origin]`: the store a pool of nodes shares through lease caches.
#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Origin {
    /// Start `ebb origin` with this data directory ...
    pub data: Option<std::path::PathBuf>,
    /// ... or use the origin already listening here.
    pub addr: Option<String>,
    /// Where a started origin listens.
    pub listen: Option<String>,
    /// Whole milliseconds, or the string "inf" (callbacks).
    pub lease_term_ms: Option<toml::Value>,
    pub epsilon_ms: Option<u64>,
    /// A started origin's failure detector, for callbacks.
    pub holder_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// Bearer tokens, one per line; unset: no authentication.
    pub token_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hedge {
    pub enabled: bool,
    pub percentile: f64,
    pub min_samples: usize,
    pub window: usize,
}

impl Default for Hedge {
    fn default() -> Hedge {
        let d = HedgeConfig::default();
        Hedge {
            enabled: false,
            percentile: d.percentile,
            min_samples: d.min_samples,
            window: d.window,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Outlier {
    pub consecutive_failures: u32,
    pub base_ejection_ms: u64,
    pub max_ejected_fraction: f64,
}

impl Default for Outlier {
    fn default() -> Outlier {
        let d = OutlierConfig::default();
        Outlier {
            consecutive_failures: d.consecutive_failures,
            base_ejection_ms: d.base_ejection.as_millis(),
            max_ejected_fraction: d.max_ejected_fraction,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Autoscale {
    /// An `ebb_policy::scale` spec; `none` keeps the pool at its target.
    pub policy: String,
    /// The response-time objective the policy aims for, if any.
    pub objective_ms: Option<u64>,
    pub tick_ms: u64,
}

impl Default for Autoscale {
    fn default() -> Autoscale {
        Autoscale {
            policy: "none".into(),
            objective_ms: None,
            tick_ms: 1_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gateway {
    pub rpc: String,
    pub http: String,
    pub seed: Option<u64>,
    /// `/`, `/status`, `/metrics`, `/pool` on their own address.
    pub admin: Option<String>,
    /// Threads that run the ingresses and node connections; default one
    /// per core.
    pub threads: Option<usize>,
}

impl Default for Gateway {
    fn default() -> Gateway {
        Gateway {
            rpc: "127.0.0.1:7000".into(),
            http: "127.0.0.1:8080".into(),
            seed: None,
            admin: None,
            threads: None,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Service {
    pub name: Option<String>,
    pub command: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pool {
    pub kind: String,
    pub initial: usize,
    pub min: usize,
    pub max: usize,
    pub boot_timeout_ms: u64,
    /// Calls the gateway has in flight on one node at most.
    pub max_in_flight_per_node: u32,
    /// Price of one node for one second, in US dollars.
    pub cost_per_node_second_usd: f64,
    /// Per-node limits for container and vm nodes.
    pub memory_mb: Option<u64>,
    pub cpus: Option<f64>,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool {
            kind: "process".into(),
            initial: 1,
            min: 1,
            max: 16,
            boot_timeout_ms: 60_000,
            max_in_flight_per_node: ebb_gateway::registry::DEFAULT_MAX_IN_FLIGHT_PER_NODE,
            cost_per_node_second_usd: 0.0,
            memory_mb: None,
            cpus: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Balance {
    pub policy: String,
}

impl Default for Balance {
    fn default() -> Balance {
        Balance {
            policy: "p2c".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Admission {
    pub enabled: bool,
    pub default_deadline_ms: u64,
    pub max_held_requests: usize,
    pub max_held_bytes: usize,
    pub max_in_flight_per_caller: usize,
    /// `nodes` or `gateway`: whose figures admission judges by.
    pub service_time_from: String,
}

impl Default for Admission {
    fn default() -> Admission {
        Admission {
            enabled: true,
            default_deadline_ms: 1_000,
            max_held_requests: DEFAULT_MAX_HELD_REQUESTS,
            max_held_bytes: DEFAULT_MAX_HELD_BYTES,
            max_in_flight_per_caller: ebb_gateway::DEFAULT_MAX_IN_FLIGHT_PER_CALLER,
            service_time_from: ServiceTimeSource::default().as_str().into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retry {
    pub budget_ratio: f64,
    pub floor_per_sec: u32,
    pub window_ms: u64,
}

impl Default for Retry {
    fn default() -> Retry {
        let d = RetryBudgetConfig::default();
        Retry {
            budget_ratio: d.ratio,
            floor_per_sec: d.floor_per_sec,
            window_ms: d.window.as_millis(),
        }
    }
}

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
}

/// A key with a value that is not accepted.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{key} = {value}: {accepted}")]
pub struct ConfigError {
    pub key: &'static str,
    pub value: String,
    pub accepted: String,
}

fn bad(key: &'static str, value: impl std::fmt::Debug, accepted: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        value: format!("{value:?}"),
        accepted: accepted.into(),
    }
}

fn check_addr(key: &'static str, v: &str) -> Result<(), ConfigError> {
    v.parse::<SocketAddr>().map(|_| ()).map_err(|_| {
        bad(
            key,
            v,
            "expected IP:PORT, e.g. \"127.0.0.1:7000\" (port 0 picks a free port)",
        )
    })
}

/// Checks every key; the first bad one is reported.
pub fn check(file: File) -> Result<Checked, ConfigError> {
    check_addr("gateway.rpc", &file.gateway.rpc)?;
    check_addr("gateway.http", &file.gateway.http)?;
    let names = ebb_demo::SERVICE_NAMES.join(", ");
    let svc = &file.service;
    let command = match &svc.command {
        None => None,
        Some(c) if c.is_empty() || c[0].trim().is_empty() => {
            return Err(bad(
                "service.command",
                c,
                "a program and its arguments, e.g. [\"path/to/user-node\", \"--flag\"]",
            ));
        }
        Some(c) => Some(c.clone()),
    };
    let known = svc.name.as_deref().and_then(|n| {
        ebb_demo::service_codec(n).or_else(|| ebb_demo::service_codec(&capitalised(n)))
    });
    let (service, runs) = match (&svc.name, known, command) {
        (None, _, None) => {
            return Err(bad(
                "service",
                "(nothing)",
                format!(
                    "set service.name to a service this build knows ({names}), or service.command to a node program (its methods are learned from the nodes)"
                ),
            ));
        }
        (_, Some(codec), None) => (ServiceChoice::Builtin(codec.name()), Runs::Builtin),
        (_, Some(codec), Some(c)) => (ServiceChoice::Builtin(codec.name()), Runs::Command(c)),
        (Some(n), None, None) => {
            return Err(bad(
                "service.name",
                n,
                format!(
                    "accepted: {names} (or \"demo\"); a service of your own needs service.command, its node program"
                ),
            ));
        }
        (name, None, Some(c)) => (ServiceChoice::Learned(name.clone()), Runs::Command(c)),
    };
    let p = &file.pool;
    let kind = match p.kind.as_str() {
        "thread" => Kind::Thread,
        "process" => Kind::Process,
        "container" => Kind::Container,
        "vm" => Kind::Vm,
        other => {
            return Err(bad(
                "pool.kind",
                other,
                "accepted: thread, process, container, vm",
            ));
        }
    };
    if kind == Kind::Thread && runs != Runs::Builtin {
        return Err(bad(
            "pool.kind",
            &p.kind,
            "thread nodes run inside the gateway and serve a built-in service only; use process, container or vm with service.command",
        ));
    }
    if p.max == 0 || p.max > MAX_POOL {
        return Err(bad(
            "pool.max",
            p.max,
            format!("a whole number from 1 to {MAX_POOL}"),
        ));
    }
    if p.min > p.max {
        return Err(bad(
            "pool.min",
            p.min,
            format!("at most pool.max = {}", p.max),
        ));
    }
    if p.initial < p.min || p.initial > p.max {
        return Err(bad(
            "pool.initial",
            p.initial,
            format!("from pool.min = {} to pool.max = {}", p.min, p.max),
        ));
    }
    if p.boot_timeout_ms == 0 {
        return Err(bad(
            "pool.boot_timeout_ms",
            p.boot_timeout_ms,
            "a positive number of milliseconds",
        ));
    }
    if p.max_in_flight_per_node == 0 {
        return Err(bad(
            "pool.max_in_flight_per_node",
            p.max_in_flight_per_node,
            format!(
                "1 or more; at most the bound each node puts on one connection ({} for ebb nodes)",
                ebb_gateway::registry::DEFAULT_MAX_IN_FLIGHT_PER_NODE
            ),
        ));
    }
    if !(p.cost_per_node_second_usd >= 0.0 && p.cost_per_node_second_usd.is_finite()) {
        return Err(bad(
            "pool.cost_per_node_second_usd",
            p.cost_per_node_second_usd,
            "a price in dollars, zero or more, e.g. 0.000012",
        ));
    }
    check_limits(p, kind)?;
    if let Err(e) = ebb_policy::balance::parse(&file.balance.policy) {
        return Err(bad("balance.policy", &file.balance.policy, e.to_string()));
    }
    let a = &file.admission;
    if a.default_deadline_ms == 0 || a.default_deadline_ms > MAX_DEADLINE_MS {
        return Err(bad(
            "admission.default_deadline_ms",
            a.default_deadline_ms,
            format!("milliseconds from 1 to {MAX_DEADLINE_MS}"),
        ));
    }
    if a.max_held_requests == 0 {
        return Err(bad(
            "admission.max_held_requests",
            a.max_held_requests,
            "a positive count",
        ));
    }
    let service_time_from = match a.service_time_from.as_str() {
        "nodes" => ServiceTimeSource::Nodes,
        "gateway" => ServiceTimeSource::Gateway,
        other => {
            return Err(bad(
                "admission.service_time_from",
                other,
                "nodes (the service time each node measures itself) or gateway (the gateway's own timing of its calls)",
            ));
        }
    };
    let r = &file.retry;
    if !(0.0..=1.0).contains(&r.budget_ratio) {
        return Err(bad(
            "retry.budget_ratio",
            r.budget_ratio,
            "a fraction of recent requests from 0.0 to 1.0, e.g. 0.2",
        ));
    }
    if r.window_ms == 0 {
        return Err(bad(
            "retry.window_ms",
            r.window_ms,
            "a positive number of milliseconds",
        ));
    }
    let scale = &file.autoscale;
    if let Err(e) = ebb_policy::scale::parse(&scale.policy) {
        return Err(bad("autoscale.policy", &scale.policy, e.to_string()));
    }
    if scale.tick_ms == 0 {
        return Err(bad(
            "autoscale.tick_ms",
            scale.tick_ms,
            "a positive number of milliseconds",
        ));
    }
    if scale.objective_ms == Some(0) {
        return Err(bad(
            "autoscale.objective_ms",
            0,
            "a positive number of milliseconds",
        ));
    }
    let autoscale = (scale.policy.trim() != "none").then(|| scale.policy.clone());
    let origin = match &file.origin {
        None => None,
        Some(o) => Some(check_origin(o, kind, &runs)?),
    };
    let o = &file.outlier;
    if o.consecutive_failures == 0 {
        return Err(bad(
            "outlier.consecutive_failures",
            0,
            "a positive count of failures in a row",
        ));
    }
    if o.base_ejection_ms == 0 {
        return Err(bad(
            "outlier.base_ejection_ms",
            0,
            "a positive number of milliseconds",
        ));
    }
    if !(0.0..=1.0).contains(&o.max_ejected_fraction) {
        return Err(bad(
            "outlier.max_ejected_fraction",
            o.max_ejected_fraction,
            "a fraction of the nodes from 0.0 (never eject) to 1.0",
        ));
    }
    let h = &file.hedge;
    if !(1.0..=99.9).contains(&h.percentile) {
        return Err(bad(
            "hedge.percentile",
            h.percentile,
            "a percentile of recent latencies from 1.0 to 99.9, e.g. 95.0",
        ));
    }
    if h.window == 0 || h.window > MAX_WINDOW {
        return Err(bad(
            "hedge.window",
            h.window,
            format!("a count of recent latencies from 1 to {MAX_WINDOW}"),
        ));
    }
    if h.min_samples > h.window {
        return Err(bad(
            "hedge.min_samples",
            h.min_samples,
            format!("at most hedge.window = {}", h.window),
        ));
    }
    if let Some(admin) = &file.gateway.admin {
        check_addr("gateway.admin", admin)?;
    }
    let threads = match file.gateway.threads {
        None => std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN),
        Some(n) => std::num::NonZeroUsize::new(n)
            .filter(|n| n.get() <= MAX_GATEWAY_THREADS)
            .ok_or_else(|| {
                bad(
                    "gateway.threads",
                    n,
                    format!(
                        "a thread count from 1 to {MAX_GATEWAY_THREADS} (default: one per core)"
                    ),
                )
            })?,
    };
    check_distinct_addrs(&file.gateway)?;
    if a.max_in_flight_per_caller == 0 {
        return Err(bad(
            "admission.max_in_flight_per_caller",
            0,
            "a positive count of HTTP requests (and of RPC calls) one caller may have in flight",
        ));
    }
    let tokens = match &file.auth.token_file {
        None => None,
        Some(path) => {
            let tokens = ebb_gateway::auth::Tokens::from_file(path)
                .map_err(|e| bad("auth.token_file", path, e.to_string()))?;
            Some(tokens)
        }
    };
    let hedge = h.enabled.then_some(HedgeConfig {
        percentile: h.percentile,
        min_samples: h.min_samples,
        window: h.window,
    });
    let gateway = GatewayConfig {
        rpc_addr: file.gateway.rpc.clone(),
        http_addr: file.gateway.http.clone(),
        balance: file.balance.policy.clone(),
        admission: AdmissionConfig {
            deadline_check: a.enabled,
            service_time_from,
            max_held_requests: a.max_held_requests,
            max_held_bytes: a.max_held_bytes,
        },
        default_deadline: Nanos::from_millis(a.default_deadline_ms),
        retry: RetryBudgetConfig {
            ratio: r.budget_ratio,
            floor_per_sec: r.floor_per_sec,
            window: Nanos::from_millis(r.window_ms),
        },
        outlier: OutlierConfig {
            consecutive_failures: o.consecutive_failures,
            base_ejection: Nanos::from_millis(o.base_ejection_ms),
            max_ejected_fraction: o.max_ejected_fraction,
        },
        pool: PoolConfig {
            initial: p.initial,
            min: p.min,
            max: p.max,
            boot_timeout_ms: p.boot_timeout_ms,
            cost_per_node_sec_micros: (p.cost_per_node_second_usd * 1e6).round() as u64,
            scale_tick_ms: scale.tick_ms,
            max_in_flight_per_node: p.max_in_flight_per_node,
            ..PoolConfig::default()
        },
        seed: file.gateway.seed.unwrap_or_else(seed_from_clock),
        hedge,
        admin_addr: file.gateway.admin.clone(),
        tokens,
        max_in_flight_per_caller: a.max_in_flight_per_caller,
    };
    Ok(Checked {
        gateway,
        threads,
        service,
        runs,
        kind,
        memory_mb: p.memory_mb,
        cpus: p.cpus,
        autoscale,
        objective: scale.objective_ms.map(Nanos::from_millis),
        origin,
    })
}

/// `pool.memory_mb` and `pool.cpus` limit container and VM nodes; a thread
/// or process node cannot be limited, so a limit there would be silently
/// ignored.
fn check_limits(p: &Pool, kind: Kind) -> Result<(), ConfigError> {
    use ebb_node::vm::sandbox::{MAX_CPUS, MIN_MEMORY_MB};
    let limited = matches!(kind, Kind::Container | Kind::Vm);
    if let Some(m) = p.memory_mb {
        let least = if kind == Kind::Vm {
            MIN_MEMORY_MB
        } else {
            MIN_CONTAINER_MEMORY_MB
        };
        if !limited {
            return Err(bad(
                "pool.memory_mb",
                m,
                format!(
                    "only with pool.kind = \"container\" or \"vm\" ({} nodes cannot be limited); remove it",
                    p.kind
                ),
            ));
        }
        if m < least {
            return Err(bad(
                "pool.memory_mb",
                m,
                format!("MiB per {} node, at least {least}", p.kind),
            ));
        }
    }
    if let Some(c) = p.cpus {
        if !limited {
            return Err(bad(
                "pool.cpus",
                c,
                format!(
                    "only with pool.kind = \"container\" or \"vm\" ({} nodes cannot be limited); remove it",
                    p.kind
                ),
            ));
        }
        if !(c > 0.0 && c <= f64::from(MAX_CPUS)) {
            return Err(bad(
                "pool.cpus",
                c,
                format!("cores per node, more than 0 and at most {MAX_CPUS}, e.g. 0.5 or 2"),
            ));
        }
    }
    Ok(())
}

/// The gateway's listening addresses differ (unless a port is 0, which
/// picks a free one each time): two on one address would fail at start
/// with "address in use", after `--check` had said the file was fine.
fn check_distinct_addrs(g: &Gateway) -> Result<(), ConfigError> {
    let fixed = |a: &str| a.parse::<SocketAddr>().ok().filter(|a| a.port() != 0);
    let http = fixed(&g.http);
    if http.is_some() && fixed(&g.rpc) == http {
        return Err(bad(
            "gateway.http",
            &g.http,
            "an address other than gateway.rpc's (each listens on its own port; port 0 picks a free one)",
        ));
    }
    if let Some(admin) = &g.admin {
        let admin = fixed(admin);
        if admin.is_some() && (admin == http || admin == fixed(&g.rpc)) {
            return Err(bad(
                "gateway.admin",
                g.admin.as_deref().unwrap_or_default(),
                "an address other than gateway.rpc's and gateway.http's",
            ));
        }
    }
    Ok(())
}

fn check_origin(o: &Origin, kind: Kind, runs: &Runs) -> Result<OriginPlan, ConfigError> {
    let source = match (&o.data, &o.addr) {
        (Some(data), None) => {
            let listen = o
                .listen
                .clone()
                .unwrap_or_else(|| DEFAULT_ORIGIN_LISTEN.to_owned());
            check_addr("origin.listen", &listen)?;
            if data.as_os_str().is_empty() {
                return Err(bad(
                    "origin.data",
                    data,
                    "a directory for the origin's data file (created if missing)",
                ));
            }
            OriginSource::Start {
                data: data.clone(),
                listen,
            }
        }
        (None, Some(addr)) => {
            check_addr("origin.addr", addr)?;
            if let Some(l) = &o.listen {
                return Err(bad(
                    "origin.listen",
                    l,
                    "only with origin.data (an origin ebb up starts); an existing origin at origin.addr listens where it was started",
                ));
            }
            OriginSource::Existing(addr.clone())
        }
        (Some(data), Some(addr)) => {
            return Err(ConfigError {
                key: "origin",
                value: format!("{{ data = {data:?}, addr = {addr:?} }}"),
                accepted:
                    "one of them: origin.data to start an origin, or origin.addr to use a running one"
                        .into(),
            });
        }
        (None, None) => {
            return Err(ConfigError {
                key: "origin",
                value: "{ }".into(),
                accepted:
                "origin.data = \"DIR\" to start an origin, or origin.addr = \"IP:PORT\" to use a running one".into(),
            });
        }
    };
    let term = match &o.lease_term_ms {
        None => LeaseTerm::from_millis(DEFAULT_LEASE_TERM_MS),
        Some(toml::Value::String(s)) if s == "inf" => LeaseTerm::CALLBACK,
        Some(toml::Value::Integer(ms)) if (0..=MAX_LEASE_TERM_MS as i64).contains(ms) => {
            LeaseTerm::from_millis(*ms as u64)
        }
        Some(v) => {
            return Err(bad(
                "origin.lease_term_ms",
                v,
                format!(
                    "whole milliseconds from 0 (check-on-use) to {MAX_LEASE_TERM_MS}, or \"inf\" (callbacks)"
                ),
            ));
        }
    };
    let epsilon_ms = o.epsilon_ms.unwrap_or(DEFAULT_EPSILON_MS);
    if epsilon_ms > MAX_EPSILON_MS {
        return Err(bad(
            "origin.epsilon_ms",
            epsilon_ms,
            format!("milliseconds from 0 to {MAX_EPSILON_MS}"),
        ));
    }
    let holder_timeout_ms = o.holder_timeout_ms.unwrap_or(DEFAULT_HOLDER_TIMEOUT_MS);
    if holder_timeout_ms == 0 || holder_timeout_ms > MAX_HOLDER_TIMEOUT_MS {
        return Err(bad(
            "origin.holder_timeout_ms",
            holder_timeout_ms,
            format!("milliseconds from 1 to {MAX_HOLDER_TIMEOUT_MS}"),
        ));
    }
    if *runs != Runs::Builtin {
        return Err(bad(
            "origin",
            "(with service.command)",
            "the origin serves the built-in demo service's get/put/read/write; a node program given by service.command reaches its own data",
        ));
    }
    if kind == Kind::Vm {
        // A guest reaches the host's IPv4 loopback through QEMU's user
        // network (10.0.2.2), not IPv6's.
        let (key, addr) = match &source {
            OriginSource::Start { listen, .. } => ("origin.listen", listen),
            OriginSource::Existing(a) => ("origin.addr", a),
        };
        if addr
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| matches!(a.ip(), std::net::IpAddr::V6(ip) if ip.is_loopback()))
        {
            return Err(bad(
                key,
                addr,
                "with pool.kind = \"vm\": an IPv4 address (a guest reaches the host's loopback as 10.0.2.2 through QEMU's user network, which does not forward IPv6 loopback)",
            ));
        }
    }
    if kind == Kind::Container {
        // A container reaches only a host address ebb up puts on the host
        // for it, so ebb up picks where the origin listens.
        let why = "nothing, with pool.kind = \"container\": ebb up starts the origin (origin.data) on a host address the containers are routed to, as they cannot reach the host's loopback";
        if let Some(a) = &o.addr {
            return Err(bad("origin.addr", a, why));
        }
        if let Some(l) = &o.listen {
            return Err(bad("origin.listen", l, why));
        }
    }
    Ok(OriginPlan {
        source,
        term,
        epsilon_ms,
        holder_timeout_ms,
    })
}

/// `demo` names the `Demo` service.
fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// Reads and checks `text`. TOML syntax errors and unknown keys come from
/// the parser with their line and the keys it accepts.
pub fn parse(text: &str) -> Result<Checked, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    check(file).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../../../examples/ebb-up.toml");

    #[test]
    fn the_example_config_is_valid() {
        let c = parse(EXAMPLE).expect("the shipped example parses");
        assert_eq!(c.service, ServiceChoice::Builtin("Demo"));
        assert_eq!(c.kind, Kind::Process);
    }

    #[test]
    fn a_bad_value_names_key_value_and_what_is_accepted() {
        let e = parse("[service]\nname = \"demo\"\n[pool]\nkind = \"pod\"\ninitial = 1\nmin = 1\nmax = 2\nboot_timeout_ms = 1\ncost_per_node_second_usd = 0.0\n")
            .expect_err("pod is no node kind");
        assert!(
            e.contains("pool.kind")
                && e.contains("\"pod\"")
                && e.contains("thread, process, container, vm"),
            "{e}"
        );
        let e = parse("[service]\nname = \"demo\"\n[balance]\npolicy = \"fastest\"\n")
            .expect_err("fastest is no policy");
        assert!(e.contains("balance.policy") && e.contains("fastest"), "{e}");
        let e = parse(
            "[gateway]\nrpc = \"localhost\"\nhttp = \"127.0.0.1:0\"\n[service]\nname = \"demo\"\n",
        )
        .expect_err("no port");
        assert!(e.contains("gateway.rpc") && e.contains("IP:PORT"), "{e}");
    }

    #[test]
    fn pool_bounds_are_checked_against_each_other() {
        let cfg = |initial: usize, min: usize, max: usize| {
            format!(
                "[service]\nname = \"demo\"\n[pool]\nkind = \"process\"\ninitial = {initial}\nmin = {min}\nmax = {max}\nboot_timeout_ms = 1000\ncost_per_node_second_usd = 0.0\n"
            )
        };
        assert!(parse(&cfg(2, 1, 3)).is_ok());
        assert!(
            parse(&cfg(4, 1, 3))
                .expect_err("over max")
                .contains("pool.initial")
        );
        assert!(
            parse(&cfg(1, 2, 3))
                .expect_err("under min")
                .contains("pool.initial")
        );
        assert!(
            parse(&cfg(1, 1, 0))
                .expect_err("empty")
                .contains("pool.max")
        );
    }

    #[test]
    fn node_limits_are_checked_against_the_kind() {
        let with = |pool: &str| parse(&format!("[service]\nname = \"demo\"\n[pool]\n{pool}\n"));
        let c = with("kind = \"container\"\nmemory_mb = 64\ncpus = 0.5").expect("valid limits");
        assert_eq!((c.memory_mb, c.cpus), (Some(64), Some(0.5)));
        let cases: [(&str, &[&str]); 5] = [
            (
                "kind = \"container\"\nmemory_mb = 1",
                &["pool.memory_mb = 1", "at least 4"],
            ),
            (
                "kind = \"vm\"\nmemory_mb = 32",
                &["pool.memory_mb = 32", "at least 64"],
            ),
            (
                "kind = \"container\"\ncpus = 0.0",
                &["pool.cpus = 0.0", "more than 0"],
            ),
            (
                "kind = \"process\"\nmemory_mb = 64",
                &["pool.memory_mb", "only with", "process nodes"],
            ),
            (
                "kind = \"thread\"\ncpus = 1.0",
                &["pool.cpus", "only with", "thread nodes"],
            ),
        ];
        for (pool, wanted) in cases {
            let e = with(pool).expect_err(pool);
            for w in wanted {
                assert!(e.contains(w), "{pool:?}: {e:?} lacks {w:?}");
            }
        }
    }

    #[test]
    fn two_listeners_on_one_address_are_refused_before_start() {
        let with = |gw: &str| parse(&format!("[gateway]\n{gw}\n[service]\nname = \"demo\"\n"));
        let e = with("rpc = \"127.0.0.1:7000\"\nhttp = \"127.0.0.1:7000\"").expect_err("same");
        assert!(
            e.contains("gateway.http") && e.contains("gateway.rpc"),
            "{e}"
        );
        let e = with("http = \"127.0.0.1:8080\"\nadmin = \"127.0.0.1:8080\"").expect_err("same");
        assert!(e.contains("gateway.admin"), "{e}");
        with("rpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"")
            .expect("port 0 picks a different free port each time");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let e = parse("[pool]\nsize = 3\n").expect_err("size is no key");
        assert!(e.contains("size"), "{e}");
    }

    #[test]
    fn a_node_program_alone_is_served_by_what_it_describes() {
        let c = parse("[service]\ncommand = [\"/opt/greeter-node\"]\n").expect("a command alone");
        assert_eq!(c.service, ServiceChoice::Learned(None));
        assert_eq!(c.runs, Runs::Command(vec!["/opt/greeter-node".into()]));
        let c = parse("[service]\nname = \"Greeter\"\ncommand = [\"/opt/greeter-node\"]\n")
            .expect("a name this build does not know, with its program");
        assert_eq!(c.service, ServiceChoice::Learned(Some("Greeter".into())));
        let e = parse("[service]\nname = \"Greeter\"\n").expect_err("no program to run");
        assert!(
            e.contains("service.name") && e.contains("service.command"),
            "{e}"
        );
        let e = parse("[service]\ncommand = []\n").expect_err("an empty command");
        assert!(e.contains("service.command"), "{e}");
    }

    #[test]
    fn gateway_threads_default_to_the_cores_and_are_bounded() {
        let c = parse("[gateway]\nthreads = 1\n[service]\nname = \"demo\"\n").expect("one thread");
        assert_eq!(c.threads.get(), 1);
        let c = parse("[service]\nname = \"demo\"\n").expect("defaults");
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        assert_eq!(c.threads.get(), cores);
        for bad in ["0", "257"] {
            let e = parse(&format!(
                "[gateway]\nthreads = {bad}\n[service]\nname = \"demo\"\n"
            ))
            .expect_err("out of bounds");
            assert!(
                e.contains("gateway.threads") && e.contains("1 to 256"),
                "{e}"
            );
        }
    }

    #[test]
    fn hedge_auth_and_admin_keys_are_checked_by_name() {
        let c = parse("[service]\nname = \"demo\"\n[hedge]\nenabled = true\npercentile = 99.0\n")
            .expect("hedging on");
        assert_eq!(c.gateway.hedge.map(|h| h.percentile), Some(99.0));
        let c = parse("[service]\nname = \"demo\"\n").expect("defaults");
        assert_eq!(c.gateway.hedge, None, "hedging is off by default");
        let e = parse("[service]\nname = \"demo\"\n[hedge]\npercentile = 100.0\n")
            .expect_err("no 100th percentile");
        assert!(e.contains("hedge.percentile") && e.contains("99.9"), "{e}");
        let e = parse("[service]\nname = \"demo\"\n[hedge]\nwindow = 10\nmin_samples = 20\n")
            .expect_err("fewer kept than needed");
        assert!(e.contains("hedge.min_samples"), "{e}");
        let e = parse("[gateway]\nadmin = \"nowhere\"\n[service]\nname = \"demo\"\n")
            .expect_err("no port");
        assert!(e.contains("gateway.admin") && e.contains("IP:PORT"), "{e}");
        let e =
            parse("[service]\nname = \"demo\"\n[auth]\ntoken_file = \"/nonexistent/ebb-tokens\"\n")
                .expect_err("no such file");
        assert!(
            e.contains("auth.token_file") && e.contains("/nonexistent/ebb-tokens"),
            "{e}"
        );
        let e = parse("[service]\nname = \"demo\"\n[admission]\nmax_in_flight_per_caller = 0\n")
            .expect_err("a caller must get something in");
        assert!(e.contains("admission.max_in_flight_per_caller"), "{e}");
    }

    #[test]
    fn a_user_command_needs_a_process_like_kind() {
        let e = parse("[service]\nname = \"demo\"\ncommand = [\"/bin/node\"]\n[pool]\nkind = \"thread\"\ninitial = 1\nmin = 1\nmax = 2\nboot_timeout_ms = 1000\ncost_per_node_second_usd = 0.0\n")
            .expect_err("thread nodes cannot run a program");
        assert!(e.contains("pool.kind"), "{e}");
    }

    /// The example's `[origin]` section, uncommented: the keys it documents.
    fn example_with_origin() -> String {
        let mut out = String::new();
        let mut in_origin = false;
        for line in EXAMPLE.lines() {
            if line.starts_with("# [origin]") {
                in_origin = true;
            } else if line.starts_with('[') {
                in_origin = false;
            }
            match line.strip_prefix("# ") {
                Some(rest) if in_origin && !rest.starts_with(' ') => out.push_str(rest),
                _ => out.push_str(line),
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_example_origin_section_is_valid() {
        let text = example_with_origin();
        let c = parse(&text).expect("the example with its origin section parses");
        let o = c.origin.expect("the uncommented section is read");
        assert!(
            matches!(&o.source, OriginSource::Start { data, listen }
                if data.as_os_str() == "ebb-origin-data" && listen == DEFAULT_ORIGIN_LISTEN),
            "{o:?}"
        );
        assert_eq!(o.term, LeaseTerm::from_millis(DEFAULT_LEASE_TERM_MS));
        assert_eq!(o.epsilon_ms, DEFAULT_EPSILON_MS);
        // And with the alternative the example names instead of `data`.
        let existing = text.replace("data = \"ebb-origin-data\"", "addr = \"127.0.0.1:7100\"");
        let existing = existing.replace("listen = \"127.0.0.1:0\"", "");
        let o = parse(&existing).expect("addr instead of data").origin;
        assert_eq!(
            o.map(|o| o.source),
            Some(OriginSource::Existing("127.0.0.1:7100".into()))
        );
        assert!(parse(EXAMPLE).expect("parses").origin.is_none());
    }

    #[test]
    fn origin_errors_name_key_value_and_what_is_accepted() {
        let with =
            |origin: &str| parse(&format!("[service]\nname = \"demo\"\n[origin]\n{origin}\n"));
        let c = with("addr = \"127.0.0.1:7100\"\nlease_term_ms = \"inf\"\nepsilon_ms = 5")
            .expect("valid");
        let o = c.origin.expect("origin");
        assert!(o.term.is_callback());
        assert_eq!(o.epsilon_ms, 5);
        let cases: [(&str, &[&str]); 8] = [
            ("", &["origin", "origin.data", "origin.addr"]),
            (
                "data = \"d\"\naddr = \"127.0.0.1:1\"",
                &["origin", "\"d\"", "one of them"],
            ),
            (
                "addr = \"origin:7100\"",
                &["origin.addr", "\"origin:7100\"", "IP:PORT"],
            ),
            (
                "data = \"d\"\nlease_term_ms = \"forever\"",
                &["origin.lease_term_ms", "forever", "\"inf\""],
            ),
            (
                "data = \"d\"\nlease_term_ms = -1",
                &["origin.lease_term_ms", "-1", "whole milliseconds"],
            ),
            (
                "data = \"d\"\nepsilon_ms = 70000",
                &["origin.epsilon_ms", "70000", "0 to 60000"],
            ),
            (
                "data = \"d\"\nholder_timeout_ms = 0",
                &["origin.holder_timeout_ms", "0", "1 to"],
            ),
            (
                "addr = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:0\"",
                &["origin.listen", "only with origin.data"],
            ),
        ];
        for (section, wanted) in cases {
            let e = with(section).expect_err(section);
            for w in wanted {
                assert!(e.contains(w), "{section:?}: {e:?} lacks {w:?}");
            }
        }
        // VM nodes reach the host's IPv4 loopback through QEMU (10.0.2.2),
        // not IPv6's.
        let vm = |section: &str| {
            parse(&format!(
                "[service]\nname = \"demo\"\n[pool]\nkind = \"vm\"\n[origin]\n{section}\n"
            ))
        };
        vm("addr = \"127.0.0.1:1\"").expect("vm nodes with a running origin");
        vm("data = \"d\"").expect("vm nodes with a started origin");
        for (section, key) in [
            ("addr = \"[::1]:1\"", "origin.addr"),
            ("data = \"d\"\nlisten = \"[::1]:0\"", "origin.listen"),
        ] {
            let e = vm(section).expect_err(section);
            assert!(e.contains(key) && e.contains("IPv4"), "{section:?}: {e}");
        }
        // Container nodes reach only an origin ebb up starts on a host
        // address of its own: data is accepted, addr and listen are not.
        let container = |section: &str| {
            parse(&format!(
                "[service]\nname = \"demo\"\n[pool]\nkind = \"container\"\n[origin]\n{section}\n"
            ))
        };
        let c = container("data = \"d\"").expect("container nodes with a started origin");
        assert!(matches!(
            c.origin.map(|o| o.source),
            Some(OriginSource::Start { .. })
        ));
        for (section, key) in [
            ("addr = \"127.0.0.1:1\"", "origin.addr"),
            ("data = \"d\"\nlisten = \"127.0.0.1:0\"", "origin.listen"),
        ] {
            let e = container(section).expect_err(section);
            assert!(
                e.contains(key) && e.contains("routed to"),
                "{section:?}: {e}"
            );
        }
        let e = parse("[service]\nname = \"demo\"\ncommand = [\"/bin/n\"]\n[origin]\naddr = \"127.0.0.1:1\"\n")
            .expect_err("a user program has its own data");
        assert!(e.contains("service.command"), "{e}");
        let e = with("dir = \"d\"").expect_err("no such key");
        assert!(e.contains("dir") && e.contains("data"), "{e}");
    }
}
