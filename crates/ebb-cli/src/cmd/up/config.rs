//! `ebb up`'s configuration file: TOML read with serde, then checked key by
//! key so that every error names the key, the bad value and what is
//! accepted.

use std::net::SocketAddr;

use ebb_core::Nanos;
use ebb_gateway::{GatewayConfig, PoolConfig};
use ebb_policy::admission::{AdmissionConfig, DEFAULT_MAX_HELD_BYTES, DEFAULT_MAX_HELD_REQUESTS};
use ebb_policy::outlier::OutlierConfig;
use ebb_policy::retry::RetryBudgetConfig;
use serde::Deserialize;

/// The largest pool a config may ask for.
pub const MAX_POOL: usize = ebb_gateway::pool::MAX_POOL_SIZE;
/// Bounds on the default deadline, milliseconds.
pub const MAX_DEADLINE_MS: u64 = 600_000;

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
}

impl Default for Gateway {
    fn default() -> Gateway {
        Gateway {
            rpc: "127.0.0.1:7000".into(),
            http: "127.0.0.1:8080".into(),
            seed: None,
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
}

impl Default for Admission {
    fn default() -> Admission {
        Admission {
            enabled: true,
            default_deadline_ms: 1_000,
            max_held_requests: DEFAULT_MAX_HELD_REQUESTS,
            max_held_bytes: DEFAULT_MAX_HELD_BYTES,
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

/// A config that passed every check.
#[derive(Debug)]
pub struct Checked {
    pub gateway: GatewayConfig,
    pub service: ServiceChoice,
    pub runs: Runs,
    pub kind: Kind,
    pub memory_mb: Option<u64>,
    pub cpus: Option<f64>,
    /// The autoscaling spec, unless it is `none`.
    pub autoscale: Option<String>,
    pub objective: Option<Nanos>,
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
    if !(p.cost_per_node_second_usd >= 0.0 && p.cost_per_node_second_usd.is_finite()) {
        return Err(bad(
            "pool.cost_per_node_second_usd",
            p.cost_per_node_second_usd,
            "a price in dollars, zero or more, e.g. 0.000012",
        ));
    }
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
    let gateway = GatewayConfig {
        rpc_addr: file.gateway.rpc.clone(),
        http_addr: file.gateway.http.clone(),
        balance: file.balance.policy.clone(),
        admission: AdmissionConfig {
            deadline_check: a.enabled,
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
            ..PoolConfig::default()
        },
        seed: file.gateway.seed.unwrap_or_else(seed_from_clock),
    };
    Ok(Checked {
        gateway,
        service,
        runs,
        kind,
        memory_mb: p.memory_mb,
        cpus: p.cpus,
        autoscale,
        objective: scale.objective_ms.map(Nanos::from_millis),
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
    fn a_user_command_needs_a_process_like_kind() {
        let e = parse("[service]\nname = \"demo\"\ncommand = [\"/bin/node\"]\n[pool]\nkind = \"thread\"\ninitial = 1\nmin = 1\nmax = 2\nboot_timeout_ms = 1000\ncost_per_node_second_usd = 0.0\n")
            .expect_err("thread nodes cannot run a program");
        assert!(e.contains("pool.kind"), "{e}");
    }
}
