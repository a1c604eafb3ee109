//! The section-by-section check of a whole file, stopping at the first bad
//! key so an error names one key, its value and what is accepted. Each
//! section has its own function returning what it becomes; `check` only
//! runs them in order and assembles the result. A section whose keys
//! depend on another's (`[pool]` on `[service]`, `[origin]` on the node
//! kind) is checked after it.

use std::net::SocketAddr;
use std::num::NonZeroUsize;

use ebb_core::Nanos;
use ebb_gateway::GatewayConfig;
use ebb_gateway::busy_poll::MAX_BUSY_POLL_US;
use ebb_policy::admission::{AdmissionConfig, ServiceTimeSource};
use ebb_policy::hedge::{HedgeConfig, MAX_WINDOW};
use ebb_policy::outlier::OutlierConfig;
use ebb_policy::retry::RetryBudgetConfig;

use super::checked::{Checked, ConfigError, Runs, ServiceChoice, bad, check_addr};
use super::file::{
    Admission, Auth, Autoscale, Balance, File, Gateway, Hedge, Outlier, Retry, Service,
};
use super::origin::check_origin;
use super::pool::check_pool;

/// Bounds on the default deadline, milliseconds.
pub const MAX_DEADLINE_MS: u64 = 600_000;
/// Most threads `gateway.threads` may ask for: far above any core count a
/// gateway has, it only stops a typo from starting thousands.
pub const MAX_GATEWAY_THREADS: usize = 256;

/// Checks every section; the first bad key is reported.
pub fn check(file: File) -> Result<Checked, ConfigError> {
    let threads = check_gateway(&file.gateway)?;
    let busy_poll = check_busy_poll(&file.gateway, threads)?;
    let (service, runs) = check_service(&file.service)?;
    let pool = check_pool(&file.pool, &runs)?;
    check_balance(&file.balance)?;
    let admission = check_admission(&file.admission)?;
    let retry = check_retry(&file.retry)?;
    let scale = check_autoscale(&file.autoscale)?;
    let origin = match &file.origin {
        None => None,
        Some(o) => Some(check_origin(o, pool.kind, &runs)?),
    };
    let outlier = check_outlier(&file.outlier)?;
    let hedge = check_hedge(&file.hedge)?;
    let tokens = check_auth(&file.auth)?;
    let gateway = GatewayConfig {
        rpc_addr: file.gateway.rpc,
        http_addr: file.gateway.http,
        balance: file.balance.policy,
        admission: admission.config,
        default_deadline: admission.default_deadline,
        retry,
        outlier,
        pool: ebb_gateway::PoolConfig {
            scale_tick_ms: scale.tick_ms,
            ..pool.config
        },
        seed: file.gateway.seed.unwrap_or_else(seed_from_clock),
        node_credentials: pool.node_credentials,
        hedge,
        admin_addr: file.gateway.admin,
        tokens,
        max_in_flight_per_caller: admission.max_in_flight_per_caller,
        busy_poll,
    };
    Ok(Checked {
        gateway,
        threads,
        service,
        runs,
        kind: pool.kind,
        memory_mb: pool.memory_mb,
        cpus: pool.cpus,
        autoscale: scale.policy,
        objective: scale.objective,
        origin,
        node_tokens: pool.node_tokens,
        node_tls: pool.node_tls,
    })
}

/// `[gateway]`: its addresses (each a valid `IP:PORT`, no two the same)
/// and the runtime's thread count.
fn check_gateway(g: &Gateway) -> Result<NonZeroUsize, ConfigError> {
    check_addr("gateway.rpc", &g.rpc)?;
    check_addr("gateway.http", &g.http)?;
    if let Some(admin) = &g.admin {
        check_addr("gateway.admin", admin)?;
    }
    check_distinct_addrs(g)?;
    match g.threads {
        None => Ok(std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)),
        Some(n) => NonZeroUsize::new(n)
            .filter(|n| n.get() <= MAX_GATEWAY_THREADS)
            .ok_or_else(|| {
                bad(
                    "gateway.threads",
                    n,
                    format!(
                        "a thread count from 1 to {MAX_GATEWAY_THREADS} (default: one per core)"
                    ),
                )
            }),
    }
}

/// `gateway.busy_poll_us`: bounded, and only with one thread (on more,
/// another worker sleeps on the I/O and takes the wake-ups anyway).
fn check_busy_poll(g: &Gateway, threads: NonZeroUsize) -> Result<Nanos, ConfigError> {
    let us = g.busy_poll_us;
    if us > MAX_BUSY_POLL_US {
        return Err(bad(
            "gateway.busy_poll_us",
            us,
            format!(
                "microseconds from 0 (off, the default) to {MAX_BUSY_POLL_US}: a core kept busy polling for up to this long after the last request"
            ),
        ));
    }
    if us > 0 && threads.get() != 1 {
        return Err(bad(
            "gateway.busy_poll_us",
            us,
            format!(
                "0 while the gateway runs {threads} threads (gateway.threads, one per core unless set): busy polling needs gateway.threads = 1 (one thread that polls instead of sleeping)"
            ),
        ));
    }
    Ok(Nanos::from_micros(us))
}

/// `[service]`: a service this build knows by name, a user's node program,
/// or both (a built-in service run by another program).
fn check_service(svc: &Service) -> Result<(ServiceChoice, Runs), ConfigError> {
    let names = ebb_demo::SERVICE_NAMES.join(", ");
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
    match (&svc.name, known, command) {
        (None, _, None) => Err(bad(
            "service",
            "(nothing)",
            format!(
                "set service.name to a service this build knows ({names}), or service.command to a node program (its methods are learned from the nodes)"
            ),
        )),
        (_, Some(codec), None) => Ok((ServiceChoice::Builtin(codec.name()), Runs::Builtin)),
        (_, Some(codec), Some(c)) => Ok((ServiceChoice::Builtin(codec.name()), Runs::Command(c))),
        (Some(n), None, None) => Err(bad(
            "service.name",
            n,
            format!(
                "accepted: {names} (or \"demo\"); a service of your own needs service.command, its node program"
            ),
        )),
        (name, None, Some(c)) => Ok((ServiceChoice::Learned(name.clone()), Runs::Command(c))),
    }
}

/// `[balance]`: any spec `ebb_policy::balance` parses.
fn check_balance(b: &Balance) -> Result<(), ConfigError> {
    ebb_policy::balance::parse(&b.policy)
        .map(|_| ())
        .map_err(|e| bad("balance.policy", &b.policy, e.to_string()))
}

/// A checked `[admission]`.
struct AdmissionPlan {
    config: AdmissionConfig,
    default_deadline: Nanos,
    max_in_flight_per_caller: usize,
}

fn check_admission(a: &Admission) -> Result<AdmissionPlan, ConfigError> {
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
    // Zero bytes would hold nothing but calls without arguments: every
    // other request arriving while no node is free would be refused.
    if a.max_held_bytes == 0 {
        return Err(bad(
            "admission.max_held_bytes",
            a.max_held_bytes,
            "a positive number of bytes, e.g. 67108864 (64 MiB)",
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
    if a.max_in_flight_per_caller == 0 {
        return Err(bad(
            "admission.max_in_flight_per_caller",
            0,
            "a positive count of HTTP requests (and of RPC calls) one caller may have in flight",
        ));
    }
    Ok(AdmissionPlan {
        config: AdmissionConfig {
            deadline_check: a.enabled,
            service_time_from,
            max_held_requests: a.max_held_requests,
            max_held_bytes: a.max_held_bytes,
            max_gateway_delay: Nanos::from_millis(a.max_gateway_delay_ms),
        },
        default_deadline: Nanos::from_millis(a.default_deadline_ms),
        max_in_flight_per_caller: a.max_in_flight_per_caller,
    })
}

fn check_retry(r: &Retry) -> Result<RetryBudgetConfig, ConfigError> {
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
    Ok(RetryBudgetConfig {
        ratio: r.budget_ratio,
        floor_per_sec: r.floor_per_sec,
        window: Nanos::from_millis(r.window_ms),
    })
}

/// A checked `[autoscale]`.
struct AutoscalePlan {
    /// The spec, unless it is `none`.
    policy: Option<String>,
    objective: Option<Nanos>,
    tick_ms: u64,
}

fn check_autoscale(s: &Autoscale) -> Result<AutoscalePlan, ConfigError> {
    if let Err(e) = ebb_policy::scale::parse(&s.policy) {
        return Err(bad("autoscale.policy", &s.policy, e.to_string()));
    }
    if s.tick_ms == 0 {
        return Err(bad(
            "autoscale.tick_ms",
            s.tick_ms,
            "a positive number of milliseconds",
        ));
    }
    if s.objective_ms == Some(0) {
        return Err(bad(
            "autoscale.objective_ms",
            0,
            "a positive number of milliseconds",
        ));
    }
    Ok(AutoscalePlan {
        policy: (s.policy.trim() != "none").then(|| s.policy.clone()),
        objective: s.objective_ms.map(Nanos::from_millis),
        tick_ms: s.tick_ms,
    })
}

fn check_outlier(o: &Outlier) -> Result<OutlierConfig, ConfigError> {
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
    Ok(OutlierConfig {
        consecutive_failures: o.consecutive_failures,
        base_ejection: Nanos::from_millis(o.base_ejection_ms),
        max_ejected_fraction: o.max_ejected_fraction,
    })
}

/// `[hedge]`: its keys are checked even when it is off, so turning it on
/// later cannot reveal a bad value.
fn check_hedge(h: &Hedge) -> Result<Option<HedgeConfig>, ConfigError> {
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
    Ok(h.enabled.then_some(HedgeConfig {
        percentile: h.percentile,
        min_samples: h.min_samples,
        window: h.window,
    }))
}

fn check_auth(a: &Auth) -> Result<Option<ebb_gateway::auth::Tokens>, ConfigError> {
    let Some(path) = &a.token_file else {
        return Ok(None);
    };
    ebb_gateway::auth::Tokens::from_file(path)
        .map(Some)
        .map_err(|e| bad("auth.token_file", path, e.to_string()))
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
