//! The key-by-key check of a whole file, stopping at the first bad key so
//! an error names one key, its value and what is accepted. A key whose
//! bound depends on another (`pool.initial` on `pool.min` and `pool.max`)
//! is checked after the key it depends on.

use std::net::SocketAddr;

use ebb_core::Nanos;
use ebb_gateway::{GatewayConfig, PoolConfig};
use ebb_policy::admission::{AdmissionConfig, ServiceTimeSource};
use ebb_policy::hedge::{HedgeConfig, MAX_WINDOW};
use ebb_policy::outlier::OutlierConfig;
use ebb_policy::retry::RetryBudgetConfig;

use super::checked::{
    Checked, ConfigError, Kind, NodeTokens, Runs, ServiceChoice, bad, check_addr,
};
use super::file::{File, Gateway, Pool};
use super::origin::check_origin;

/// The largest pool a config may ask for.
pub const MAX_POOL: usize = ebb_gateway::pool::MAX_POOL_SIZE;
/// Bounds on the default deadline, milliseconds.
pub const MAX_DEADLINE_MS: u64 = 600_000;
/// The least memory a container node may be given, MiB (as `ebb sandbox
/// run --memory-mb` takes it).
pub const MIN_CONTAINER_MEMORY_MB: u64 = 4;
/// Most threads `gateway.threads` may ask for: far above any core count a
/// gateway has, it only stops a typo from starting thousands.
pub const MAX_GATEWAY_THREADS: usize = 256;

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
    let node_tokens = check_node_tokens(p, kind)?;
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
    if a.max_gateway_delay_ms == 0 || a.max_gateway_delay_ms > MAX_DEADLINE_MS {
        return Err(bad(
            "admission.max_gateway_delay_ms",
            a.max_gateway_delay_ms,
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
            max_gateway_delay: Nanos::from_millis(a.max_gateway_delay_ms),
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
        node_credentials: node_tokens
            .as_ref()
            .map(|(_, credentials)| credentials.clone())
            .unwrap_or_default(),
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
        node_tokens: node_tokens.map(|(t, _)| t),
    })
}

/// `pool.node_token_file` holds exactly one token (the one the gateway
/// presents; the nodes accept it alone) and is given to thread and
/// process nodes only: a container or VM node reads files of its own
/// root file system, where the host's path does not exist.
fn check_node_tokens(
    p: &Pool,
    kind: Kind,
) -> Result<Option<(NodeTokens, ebb::rpc::transport::Credentials)>, ConfigError> {
    let Some(path) = &p.node_token_file else {
        return Ok(None);
    };
    if !matches!(kind, Kind::Thread | Kind::Process) {
        return Err(bad(
            "pool.node_token_file",
            path,
            format!(
                "only with pool.kind = \"process\" or \"thread\" ({} nodes cannot read a host file); remove it",
                p.kind
            ),
        ));
    }
    let token = ebb::rpc::auth::read_token_file(path).map_err(|e| {
        bad(
            "pool.node_token_file",
            path,
            format!("{e}; give a file holding one token, e.g. made with `openssl rand -hex 16`"),
        )
    })?;
    let tokens = ebb::rpc::auth::Tokens::from_file(path)
        .map_err(|e| bad("pool.node_token_file", path, e.to_string()))?;
    let path = std::fs::canonicalize(path)
        .map_err(|e| bad("pool.node_token_file", path, e.to_string()))?;
    Ok(Some((
        NodeTokens { path, tokens },
        ebb::rpc::transport::Credentials::default().with_token(token),
    )))
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

/// `demo` names the `Demo` service.
fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// An unseeded gateway still gets a seed, and a different one each run.
fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}
