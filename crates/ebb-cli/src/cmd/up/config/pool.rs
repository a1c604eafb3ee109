//! The `[pool]` section: the node kind, the pool's bounds, per-node
//! limits and the credentials nodes require. Every bound that depends on
//! another key (`pool.initial` on `pool.min` and `pool.max`, limits on the
//! kind) is checked after the key it depends on.

use ebb_gateway::PoolConfig;

use super::checked::{ConfigError, Kind, NodeTls, NodeTokens, Runs, bad};
use super::file::Pool;
use super::node_tls::check_node_tls;

/// The largest pool a config may ask for.
pub const MAX_POOL: usize = ebb_gateway::pool::MAX_POOL_SIZE;
/// The least memory a container node may be given, MiB (as `ebb sandbox
/// run --memory-mb` takes it).
pub const MIN_CONTAINER_MEMORY_MB: u64 = 4;
/// The highest price per node-second a config may give, in dollars: far
/// above any machine's, and small enough that its micro-dollars fit a u64.
pub const MAX_COST_PER_NODE_SECOND_USD: f64 = 1_000_000.0;
/// Longest `pool.shutdown_grace_ms`: an hour, past which a shutdown that
/// waits is a hang.
pub const MAX_SHUTDOWN_GRACE_MS: u64 = 3_600_000;

/// A checked `[pool]`: the gateway's share of it and what `ebb up` needs
/// to start nodes.
pub(super) struct PoolPlan {
    pub kind: Kind,
    /// The gateway's pool settings; `scale_tick_ms` is filled in by the
    /// `[autoscale]` section.
    pub config: PoolConfig,
    pub memory_mb: Option<u64>,
    pub cpus: Option<f64>,
    pub node_tokens: Option<NodeTokens>,
    pub node_tls: Option<NodeTls>,
    /// What the gateway presents to its nodes: their token, its TLS.
    pub node_credentials: ebb::rpc::transport::Credentials,
}

pub(super) fn check_pool(p: &Pool, runs: &Runs) -> Result<PoolPlan, ConfigError> {
    let kind = check_kind(p, runs)?;
    check_bounds(p)?;
    let max_boot_ms = ebb_node::vm::provider::MAX_BOOT_TIMEOUT_MS;
    if !(1..=max_boot_ms).contains(&p.boot_timeout_ms) {
        return Err(bad(
            "pool.boot_timeout_ms",
            p.boot_timeout_ms,
            format!(
                "milliseconds from 1 to {max_boot_ms} (default {}; a vm node's cold boot \
                 without KVM takes tens of seconds on a loaded host)",
                ebb_node::vm::provider::DEFAULT_BOOT_TIMEOUT_MS
            ),
        ));
    }
    if !(1..=MAX_SHUTDOWN_GRACE_MS).contains(&p.shutdown_grace_ms) {
        return Err(bad(
            "pool.shutdown_grace_ms",
            p.shutdown_grace_ms,
            format!(
                "milliseconds from 1 to {MAX_SHUTDOWN_GRACE_MS} (default {}): how long a \
                 Ctrl-C waits for calls in flight before it stops their nodes",
                PoolConfig::default().shutdown_grace_ms
            ),
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
    if !(1..=ebb_gateway::pool::MAX_CAPACITY_PER_NODE).contains(&p.max_capacity_per_node) {
        return Err(bad(
            "pool.max_capacity_per_node",
            p.max_capacity_per_node,
            format!(
                "1 (scale out only) to {}: the most blocking calls one node runs at once",
                ebb_gateway::pool::MAX_CAPACITY_PER_NODE
            ),
        ));
    }
    // Carried as whole micro-dollars in a u64: a bound keeps the product
    // exact instead of saturating.
    if !(p.cost_per_node_second_usd >= 0.0
        && p.cost_per_node_second_usd <= MAX_COST_PER_NODE_SECOND_USD)
    {
        return Err(bad(
            "pool.cost_per_node_second_usd",
            p.cost_per_node_second_usd,
            format!("a price in dollars from 0 to {MAX_COST_PER_NODE_SECOND_USD}, e.g. 0.000012"),
        ));
    }
    check_limits(p, kind)?;
    let node_tokens = check_node_tokens(p)?;
    let node_tls = match &p.node_tls {
        None => None,
        Some(t) => Some(check_node_tls(t, kind)?),
    };
    let (node_tokens, node_credentials) = node_tokens.unzip();
    let mut node_credentials = node_credentials.unwrap_or_default();
    if let Some(t) = &node_tls {
        node_credentials.tls = Some(t.client.clone());
    }
    Ok(PoolPlan {
        kind,
        config: PoolConfig {
            initial: p.initial,
            min: p.min,
            max: p.max,
            boot_timeout_ms: p.boot_timeout_ms,
            shutdown_grace_ms: p.shutdown_grace_ms,
            cost_per_node_sec_micros: (p.cost_per_node_second_usd * 1e6).round() as u64,
            max_in_flight_per_node: p.max_in_flight_per_node,
            max_capacity_per_node: p.max_capacity_per_node,
            ..PoolConfig::default()
        },
        memory_mb: p.memory_mb,
        cpus: p.cpus,
        node_tokens,
        node_tls,
        node_credentials,
    })
}

/// Thread nodes run inside the gateway's own process, so they can only
/// serve a service compiled into it.
fn check_kind(p: &Pool, runs: &Runs) -> Result<Kind, ConfigError> {
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
    if kind == Kind::Thread && *runs != Runs::Builtin {
        return Err(bad(
            "pool.kind",
            &p.kind,
            "thread nodes run inside the gateway and serve a built-in service only; use process, container or vm with service.command",
        ));
    }
    Ok(kind)
}

fn check_bounds(p: &Pool) -> Result<(), ConfigError> {
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
    Ok(())
}

/// `pool.node_token_file` holds exactly one token: the one the gateway
/// presents and the nodes accept alone. Container and VM nodes get a copy
/// of the file inside (see `cmd/up/node_files.rs`).
fn check_node_tokens(
    p: &Pool,
) -> Result<Option<(NodeTokens, ebb::rpc::transport::Credentials)>, ConfigError> {
    let Some(path) = &p.node_token_file else {
        return Ok(None);
    };
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
