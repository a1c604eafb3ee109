//! The file as serde reads it: one struct per TOML section, every key
//! defaulted, unknown keys refused. Nothing here is checked yet. Where a
//! library has a default of its own (hedging, outlier ejection, retry
//! budget, admission bounds) it is taken from there, so the file and the
//! library cannot drift apart.

use ebb_policy::admission::{
    DEFAULT_MAX_GATEWAY_DELAY, DEFAULT_MAX_HELD_BYTES, DEFAULT_MAX_HELD_REQUESTS, ServiceTimeSource,
};
use ebb_policy::hedge::HedgeConfig;
use ebb_policy::outlier::OutlierConfig;
use ebb_policy::retry::RetryBudgetConfig;
use serde::Deserialize;

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
    /// Microseconds the runtime keeps polling after the last request in or
    /// out instead of sleeping; 0: off.
    pub busy_poll_us: u64,
}

impl Default for Gateway {
    fn default() -> Gateway {
        Gateway {
            rpc: "127.0.0.1:7000".into(),
            http: "127.0.0.1:8080".into(),
            seed: None,
            admin: None,
            threads: None,
            busy_poll_us: 0,
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
    /// How long a shutdown waits for the nodes' calls in flight before it
    /// stops the nodes with them.
    pub shutdown_grace_ms: u64,
    /// Calls the gateway has in flight on one node at most.
    pub max_in_flight_per_node: u32,
    /// Scale up: the most blocking calls one node may be given to run at
    /// once (its worker threads; a container's CPU quota in `cpus` units).
    /// 1: scale out only.
    pub max_capacity_per_node: u32,
    /// Price of one node for one second, in US dollars.
    pub cost_per_node_second_usd: f64,
    /// Per-node limits for container and vm nodes.
    pub memory_mb: Option<u64>,
    pub cpus: Option<f64>,
    /// The one bearer token nodes require and the gateway presents to them;
    /// unset: nodes serve any caller that reaches them.
    pub node_token_file: Option<std::path::PathBuf>,
    /// TLS between the gateway and its nodes; unset: plain TCP.
    pub node_tls: Option<NodeTls>,
}

/// `[pool.node_tls]`: nodes serve TLS with `cert` and `key`, the gateway
/// trusts them through `ca`; with `client_ca`, `gateway_cert` and
/// `gateway_key`, nodes serve only the gateway's certificate (mutual TLS).
#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NodeTls {
    pub ca: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    /// The name node certificates carry, when it is not the address the
    /// gateway dials.
    pub server_name: Option<String>,
    pub client_ca: Option<std::path::PathBuf>,
    pub gateway_cert: Option<std::path::PathBuf>,
    pub gateway_key: Option<std::path::PathBuf>,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool {
            kind: "process".into(),
            initial: 1,
            min: 1,
            max: 16,
            boot_timeout_ms: ebb_node::vm::provider::DEFAULT_BOOT_TIMEOUT_MS,
            shutdown_grace_ms: ebb_gateway::PoolConfig::default().shutdown_grace_ms,
            max_in_flight_per_node: ebb_gateway::registry::DEFAULT_MAX_IN_FLIGHT_PER_NODE,
            max_capacity_per_node: ebb_gateway::PoolConfig::default().max_capacity_per_node,
            cost_per_node_second_usd: 0.0,
            memory_mb: None,
            cpus: None,
            node_token_file: None,
            node_tls: None,
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
    /// New requests are refused while requests wait longer than this in
    /// the gateway itself.
    pub max_gateway_delay_ms: u64,
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
            max_gateway_delay_ms: DEFAULT_MAX_GATEWAY_DELAY.as_millis(),
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
