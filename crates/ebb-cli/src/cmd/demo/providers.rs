//! The node providers `ebb demo` can run its nodes on, one per kind, each
//! starting the demo service with one worker (one server, as the
//! autoscaler's model counts it) and, with shared data, a lease cache on
//! the origin as that kind of node reaches it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use ebb_demo::{DemoServer, DemoService, WorkMode};
use ebb_node::container::{ContainerProvider, ContainerProviderConfig};
use ebb_node::process::{FD_PLACEHOLDER, ProcessProvider, ProcessProviderConfig};
use ebb_node::provider::{NodeKind, NodeProvider};
use ebb_node::sandbox::Limits;
use ebb_node::thread::ThreadProvider;
use ebb_node::vm::provider::{VmConfig, VmProvider};
use ebb_policy::lease::LeaseTerm;
use ebb_replay::demo::Providers;

/// The port a node listens on inside its container or VM.
const SANDBOX_PORT: u16 = 7000;
/// Processes a container node may run at once.
const CONTAINER_PIDS: u64 = 64;

/// A provider factory for the node kind: every run gets fresh nodes. Each
/// node serves one Demo.work at a time (one worker thread): one server, as
/// the autoscaler's model counts it. `origin` is the origin store's
/// address as the host sees it, or `None` when the nodes go without.
pub(super) fn providers(
    kind: &str,
    work_mode: &str,
    origin: Option<&str>,
    lease_term_ms: u64,
    boot_timeout_ms: Option<u64>,
) -> anyhow::Result<(NodeKind, Providers)> {
    let mode = if work_mode == "block" {
        WorkMode::Block
    } else {
        WorkMode::Spin
    };
    let term = lease_term_ms.to_string();
    // The node's flags after its listen address, with the origin as the
    // node reaches it.
    let node_flags = |origin: Option<String>| -> Vec<String> {
        let mut v: Vec<String> = ["--threads", "1", "--work-mode", work_mode]
            .map(String::from)
            .to_vec();
        if let Some(o) = origin {
            v.extend(["--origin".into(), o, "--lease-term-ms".into(), term.clone()]);
        }
        v
    };
    let make: Arc<dyn Fn() -> Result<Box<dyn NodeProvider>, String> + Send + Sync> = match kind {
        "process" => {
            let exe = ebb_exe()?;
            let mut args: Vec<String> = ["node", "--listen-fd", FD_PLACEHOLDER]
                .map(String::from)
                .to_vec();
            args.extend(node_flags(origin.map(str::to_owned)));
            let cfg = ProcessProviderConfig { program: exe, args };
            Arc::new(move || -> Result<Box<dyn NodeProvider>, String> {
                Ok(Box::new(ProcessProvider::new(cfg.clone())))
            })
        }
        "thread" => {
            let origin = origin.map(str::to_owned);
            Arc::new(move || -> Result<Box<dyn NodeProvider>, String> {
                let origin = origin.clone();
                Ok(Box::new(ThreadProvider::new(move || {
                    let service = DemoService::new().with_work(1, mode);
                    let Some(origin) = &origin else {
                        return DemoServer::new(service);
                    };
                    // Each node its own cache, as a process node has: one
                    // lease holder per node.
                    let settings = ebb_lease::cache::CacheSettings {
                        term: LeaseTerm::from_millis(lease_term_ms),
                        ..ebb_lease::cache::CacheSettings::default()
                    };
                    match ebb_lease::cache::connect_in_background(origin, settings) {
                        Ok(cache) => DemoServer::new(service.with_origin(cache)),
                        Err(e) => {
                            // The node still serves work; its gets and
                            // puts fail and the report counts them.
                            eprintln!("thread node: origin store {origin}: {e}");
                            DemoServer::new(service)
                        }
                    }
                })))
            })
        }
        "container" => {
            // The ebb binary is mounted at /bin/ebb inside. The origin
            // listens on a host address each container is routed to.
            let mut command: Vec<String> = ["/bin/ebb", "node", "--listen", "0.0.0.0:{port}"]
                .map(String::from)
                .to_vec();
            command.extend(node_flags(origin.map(str::to_owned)));
            let reach = match origin.map(str::parse::<std::net::SocketAddr>) {
                Some(Ok(std::net::SocketAddr::V4(a))) => Some(*a.ip()),
                Some(_) => bail!("the origin's address {origin:?} is not an IPv4 address and port"),
                None => None,
            };
            let cfg = ContainerProviderConfig {
                ebb_exe: ebb_exe()?,
                limits: Limits {
                    memory_mb: None,
                    cpus: None,
                    pids: Some(CONTAINER_PIDS),
                },
                rootfs: None,
                command,
                port: SANDBOX_PORT,
                reach,
                files: Vec::new(),
            };
            Arc::new(move || -> Result<Box<dyn NodeProvider>, String> {
                Ok(Box::new(ContainerProvider::new(cfg.clone())))
            })
        }
        "vm" => {
            let mut cfg = vm_config(ebb_exe()?, boot_timeout_ms);
            let guest_origin = match origin.map(str::parse::<std::net::SocketAddr>) {
                None => None,
                Some(Ok(a)) => Some(
                    ebb_node::vm::provider::guest_view(a)
                        .with_context(|| format!("a VM guest cannot reach the origin at {a}"))?
                        .to_string(),
                ),
                Some(Err(_)) => {
                    bail!("the origin's address {origin:?} is not an IP address and port")
                }
            };
            cfg.node_command.extend(node_flags(guest_origin));
            Arc::new(move || -> Result<Box<dyn NodeProvider>, String> {
                VmProvider::new(cfg.clone())
                    .map(|p| Box::new(p) as Box<dyn NodeProvider>)
                    .map_err(|e| format!("preparing VM nodes: {e}"))
            })
        }
        other => bail!("--kind `{other}`: accepted: process, thread, container, vm"),
    };
    let k = match kind {
        "process" => NodeKind::Process,
        "thread" => NodeKind::Thread,
        "container" => NodeKind::Container,
        _ => NodeKind::Vm,
    };
    Ok((k, Providers(make)))
}

/// This binary, which the process, container and VM nodes run.
fn ebb_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding the ebb binary to start nodes with")
}

/// Refuses a sandboxed node kind without root, saying what it needs.
pub(super) fn check_privileges(kind: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let needs = match kind {
        "container" => {
            "container nodes need root: namespaces, cgroups and a veth pair per node \
             (and /bin/busybox from busybox-static)"
        }
        "vm" => "VM nodes need root: QEMU with /dev/kvm (or TCG) and the host's kernel image",
        _ => return Ok(()),
    };
    if !root {
        bail!(
            "--kind {kind}: {needs}; run `sudo ebb demo --kind {kind}`, or use \
             --kind process or --kind thread, which need no root"
        );
    }
    Ok(())
}

/// A VM node's config: the provider's defaults, with `--boot-timeout-ms`
/// when it was given.
fn vm_config(ebb_exe: PathBuf, boot_timeout_ms: Option<u64>) -> VmConfig {
    let mut cfg = VmConfig::ebb_node(ebb_exe);
    if let Some(ms) = boot_timeout_ms {
        cfg.boot_timeout_ms = ms;
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        demo: super::super::Args,
    }

    /// `--boot-timeout-ms` reaches the VM nodes' config; without it they
    /// keep the provider's default.
    #[test]
    fn the_boot_timeout_flag_reaches_the_vm_config() {
        let exe = PathBuf::from("/bin/ebb");
        let given = Cli::parse_from(["demo", "--kind", "vm", "--boot-timeout-ms", "120000"]);
        let cfg = vm_config(exe.clone(), given.demo.boot_timeout_ms);
        assert_eq!(cfg.boot_timeout_ms, 120_000);
        let default = Cli::parse_from(["demo", "--kind", "vm"]);
        let cfg = vm_config(exe, default.demo.boot_timeout_ms);
        assert_eq!(
            cfg.boot_timeout_ms,
            ebb_node::vm::provider::DEFAULT_BOOT_TIMEOUT_MS
        );
    }
}
