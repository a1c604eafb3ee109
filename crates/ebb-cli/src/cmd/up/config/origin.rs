//! The `[origin]` section: where the pool's shared store comes from, and
//! the lease terms nodes ask it for. Which node kinds can reach which
//! origin is decided here, before anything starts.

use ebb_policy::lease::LeaseTerm;

use super::checked::{ConfigError, Kind, OriginPlan, OriginSource, Runs, bad, check_addr};
use super::file::Origin;

/// Defaults and bounds of the `[origin]` keys, milliseconds.
pub const DEFAULT_LEASE_TERM_MS: u64 = ebb_lease::origin::DEFAULT_TERM_MS;
pub const MAX_LEASE_TERM_MS: u64 = 86_400_000;
pub const DEFAULT_EPSILON_MS: u64 = ebb_lease::origin::DEFAULT_EPSILON_MS;
pub const MAX_EPSILON_MS: u64 = 60_000;
pub const DEFAULT_HOLDER_TIMEOUT_MS: u64 = ebb_lease::origin::DEFAULT_HOLDER_TIMEOUT_MS;
pub const MAX_HOLDER_TIMEOUT_MS: u64 = 3_600_000;
/// Where a started origin listens unless `origin.listen` says otherwise.
pub const DEFAULT_ORIGIN_LISTEN: &str = "127.0.0.1:0";

pub(super) fn check_origin(o: &Origin, kind: Kind, runs: &Runs) -> Result<OriginPlan, ConfigError> {
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
