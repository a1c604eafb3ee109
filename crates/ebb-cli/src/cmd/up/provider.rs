//! Which node provider runs the configured service, and how each kind is
//! told about the origin, the node token and TLS: thread nodes take them
//! as values in this process, the others as arguments and copied files.

use std::path::PathBuf;

use anyhow::Context;
use ebb_demo::{DemoServer, DemoService};
use ebb_node::container::{ContainerProvider, ContainerProviderConfig};
use ebb_node::process::{FD_PLACEHOLDER, ProcessProvider, ProcessProviderConfig};
use ebb_node::provider::NodeProvider;
use ebb_node::sandbox::Limits;
use ebb_node::thread::ThreadProvider;
use ebb_node::vm::provider::{VmConfig, VmProvider};

use super::config::{Checked, Kind, Runs};
use super::node_files::NodeFiles;
use super::{ebb_exe, origin};

/// The port a node listens on inside its container (each has its own address).
const CONTAINER_PORT: u16 = 7000;
/// Processes a container node may run at once.
const CONTAINER_PIDS: u64 = 64;

/// Thread nodes with the pool's token and TLS, which they take as values
/// rather than as files.
fn guarded<F, D>(p: ThreadProvider<F>, c: &Checked) -> ThreadProvider<F>
where
    F: Fn() -> D,
    D: ebb::rpc::service::ServiceDispatch + Send + 'static,
{
    let p = match &c.node_tokens {
        Some(t) => p.with_tokens(t.tokens.clone()),
        None => p,
    };
    match &c.node_tls {
        Some(t) => p.with_tls(t.server.clone()),
        None => p,
    }
}

/// The provider for the configured kind, running the configured service
/// (with the demo's data at `origin`, when there is one; container nodes
/// get a route to `reach`, the host address it listens on).
pub(super) fn provider(
    c: &Checked,
    origin: Option<&str>,
    reach: Option<std::net::Ipv4Addr>,
) -> anyhow::Result<Box<dyn NodeProvider>> {
    let in_node = |listen: &str| -> Vec<String> {
        match &c.runs {
            Runs::Builtin => ["/bin/ebb", "node", "--listen", listen]
                .map(String::from)
                .to_vec(),
            Runs::Command(cmd) => {
                let mut v = cmd.clone();
                v.extend(["--listen".to_owned(), listen.to_owned()]);
                v
            }
        }
    };
    let files = NodeFiles::for_nodes(c);
    Ok(match c.kind {
        Kind::Thread => {
            match (origin, &c.origin) {
                (Some(addr), Some(plan)) => {
                    // Thread nodes share one process, so they share one cache
                    // (one holder to the origin).
                    let settings = ebb_lease::cache::CacheSettings {
                        term: plan.term,
                        epsilon: ebb_core::Nanos::from_millis(plan.epsilon_ms),
                        ..ebb_lease::cache::CacheSettings::default()
                    };
                    let cache = ebb_lease::cache::connect_in_background(addr, settings)
                        .with_context(|| format!("origin at {addr}: cannot reach it"))?;
                    let p = ThreadProvider::new(move || {
                        DemoServer::new(DemoService::new().with_origin(cache.clone()))
                    });
                    Box::new(guarded(p, c))
                }
                _ => Box::new(guarded(
                    ThreadProvider::new(|| DemoServer::new(DemoService::new())),
                    c,
                )),
            }
        }
        Kind::Process => {
            let cfg = match &c.runs {
                Runs::Builtin => {
                    let mut cfg = ProcessProviderConfig::ebb_node(ebb_exe()?);
                    if let (Some(addr), Some(plan)) = (origin, &c.origin) {
                        cfg.args.extend(origin::node_args(plan, addr));
                    }
                    cfg
                }
                Runs::Command(cmd) => {
                    let (program, rest) = cmd
                        .split_first()
                        .context("service.command names a program")?;
                    let mut args = rest.to_vec();
                    args.extend(["--listen-fd".to_owned(), FD_PLACEHOLDER.to_owned()]);
                    ProcessProviderConfig {
                        program: PathBuf::from(program),
                        args,
                    }
                }
            };
            let mut cfg = cfg;
            cfg.args.extend(files.args);
            Box::new(ProcessProvider::new(cfg))
        }
        Kind::Container => Box::new(ContainerProvider::new(ContainerProviderConfig {
            ebb_exe: ebb_exe()?,
            limits: Limits {
                memory_mb: c.memory_mb,
                cpus: c.cpus,
                pids: Some(CONTAINER_PIDS),
            },
            rootfs: None,
            command: {
                let mut command = in_node("0.0.0.0:{port}");
                if let (Some(addr), Some(plan)) = (origin, &c.origin) {
                    command.extend(origin::node_args(plan, addr));
                }
                command.extend(files.args);
                command
            },
            port: CONTAINER_PORT,
            reach,
            files: files.copy_in,
        })),
        Kind::Vm => {
            let mut cfg = VmConfig::ebb_node(ebb_exe()?);
            if let Runs::Command(cmd) = &c.runs {
                if let Some(program) = cmd.first() {
                    cfg.host_binaries.push(PathBuf::from(program));
                }
                cfg.node_command = in_node("0.0.0.0:{port}");
            }
            if let (Some(addr), Some(plan)) = (origin, &c.origin) {
                // The guest dials the host's loopback through QEMU's
                // user network, as `ebb demo --kind vm` does.
                let host: std::net::SocketAddr = addr.parse().with_context(|| {
                    format!("the origin's address {addr:?} is not an IP address and port")
                })?;
                let guest = ebb_node::vm::provider::guest_view(host).with_context(|| {
                    format!("pool.kind = \"vm\": a guest cannot reach the origin at {host} (QEMU's user network forwards the host's IPv4 loopback, not IPv6's); give the origin an IPv4 address")
                })?;
                cfg.node_command
                    .extend(origin::node_args(plan, &guest.to_string()));
            }
            cfg.node_command.extend(files.args);
            cfg.files = files.copy_in;
            if let Some(m) = c.memory_mb {
                cfg.memory_mb = m;
            }
            if let Some(cpus) = c.cpus {
                cfg.cpus = cpus.ceil().max(1.0) as u32;
            }
            cfg.boot_timeout_ms = c.gateway.pool.boot_timeout_ms;
            // Each VM boots with the vCPUs its node may scale up to.
            cfg.max_capacity = c.gateway.pool.max_capacity_per_node;
            Box::new(VmProvider::new(cfg).context("preparing VM nodes")?)
        }
    })
}
