//! [`ContainerProvider`]: nodes as containers.
//!
//! Each node is an `ebb sandbox run --kind container` process, so the
//! provider (which may live in a multithreaded async process) only ever
//! spawns a fresh program and never forks itself. The server command is a
//! parameter, so any TCP server works: `ebb node --listen 0.0.0.0:{port}`
//! in production, `busybox httpd` in tests. A node is `Ready` once its port
//! accepts a TCP connection over the veth.
//!
//! `start` returns as soon as the runner is spawned: the node's address
//! (its veth's, chosen by the runner with its slot) is learnt while it
//! boots, from the file the runner writes once the container is up, read
//! by `poll_events` and given by [`NodeProvider::addr`]. So a caller that
//! starts nodes on its control loop (the gateway's pool manager) never
//! waits for a container to come up; one that fails to report an address
//! within `ADDR_WAIT_MS` is killed and reported gone.

use super::state::STATE_ROOT;
use crate::provider::{NodeEvent, NodeKind, NodeProvider, ProviderError, StartedNode};
use crate::sandbox::Limits;
use ebb_core::{Nanos, NodeId};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Start time assumed before any boot was observed.
const INITIAL_EXPECTED_START_MS: u64 = 20;
/// How long a node's runner may take to report its address after `start`;
/// past it the node is stopped and reported gone. Nothing waits for it
/// meanwhile, so it allows a loaded machine's slowest start (seconds),
/// not only a quiet one's (milliseconds).
const ADDR_WAIT_MS: u64 = 30_000;
/// Bound on each readiness probe, so `poll_events` stays quick.
const PROBE_TIMEOUT_MS: u64 = 20;
/// Numbers the runners this process starts, for their address files.
static NEXT_RUNNER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Placeholder in the command replaced with the node's port.
pub const PORT_PLACEHOLDER: &str = "{port}";

#[derive(Clone, Debug)]
pub struct ContainerProviderConfig {
    /// The `ebb` binary whose `sandbox run` starts each container.
    pub ebb_exe: PathBuf,
    pub limits: Limits,
    pub rootfs: Option<PathBuf>,
    /// Server command as seen inside; `{port}` becomes [`Self::port`].
    pub command: Vec<String>,
    /// The port the server listens on inside its container.
    pub port: u16,
    /// A [`super::HostAddr`] every container gets a route to, for a
    /// service on the host the nodes share (the origin store).
    pub reach: Option<std::net::Ipv4Addr>,
    /// Host files each container gets a copy of (`ebb sandbox run
    /// --file`), e.g. the node's token and TLS files.
    pub files: Vec<crate::sandbox::FileIn>,
}

struct Running {
    runner: Child,
    /// The runner's stdout, which carries the node's: kept, not shown.
    output: crate::child::OutputTail,
    /// Where the runner reports the node's address, until it has.
    addr_file: Option<PathBuf>,
    /// Known once the runner reported it.
    addr: Option<SocketAddr>,
    started: Instant,
    ready: bool,
}

impl Running {
    /// Reads the address the runner reported, if it has; `Err` says why
    /// the node will never have one.
    fn learn_addr(&mut self, port: u16) -> Result<(), String> {
        let Some(path) = &self.addr_file else {
            return Ok(());
        };
        let reported = std::fs::read_to_string(path).ok().and_then(|text| {
            text.split_whitespace()
                .next()
                .and_then(|s| s.parse::<IpAddr>().ok())
        });
        if let Some(ip) = reported {
            let _ = std::fs::remove_file(path);
            self.addr_file = None;
            self.addr = Some(SocketAddr::new(ip, port));
            return Ok(());
        }
        if self.started.elapsed() > Duration::from_millis(ADDR_WAIT_MS) {
            return Err(format!("no address reported within {ADDR_WAIT_MS} ms"));
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(path) = &self.addr_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

pub struct ContainerProvider {
    cfg: ContainerProviderConfig,
    nodes: HashMap<NodeId, Running>,
    events: Vec<NodeEvent>,
    expected: Nanos,
}

impl ContainerProvider {
    pub fn new(cfg: ContainerProviderConfig) -> Self {
        ContainerProvider {
            cfg,
            nodes: HashMap::new(),
            events: Vec::new(),
            expected: Nanos::from(Duration::from_millis(INITIAL_EXPECTED_START_MS)),
        }
    }

    /// What the provider was made with.
    pub fn config(&self) -> ContainerProviderConfig {
        self.cfg.clone()
    }

    /// The CPU quota of node `id`'s container, in cores (`None`: none).
    pub fn cpu_quota(&self, id: NodeId) -> Result<Option<f64>, ProviderError> {
        let init = self.init_pid(id)?;
        super::cgroup::cpu_quota_of(init).map_err(|e| ProviderError::Resize {
            id,
            reason: e.to_string(),
        })
    }

    /// The host pid of node `id`'s container init: its runner's child (the
    /// runner is single-threaded and forks nothing else that lives on).
    fn init_pid(&self, id: NodeId) -> Result<u32, ProviderError> {
        let node = self.nodes.get(&id).ok_or(ProviderError::UnknownNode(id))?;
        let runner = node.runner.id();
        let path = format!("/proc/{runner}/task/{runner}/children");
        let children = std::fs::read_to_string(&path).map_err(|e| ProviderError::Resize {
            id,
            reason: format!("reading {path}: {e}"),
        })?;
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| ProviderError::Resize {
                id,
                reason: format!("its runner (pid {runner}) has no container running"),
            })
    }
}

impl NodeProvider for ContainerProvider {
    fn kind(&self) -> NodeKind {
        NodeKind::Container
    }

    fn expected_start(&self) -> Nanos {
        self.expected
    }

    fn start(&mut self, id: NodeId) -> Result<StartedNode, ProviderError> {
        // Unique per runner, not per node id: two providers in one process
        // may start nodes with the same id at once.
        let runner_seq = NEXT_RUNNER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let addr_file = Path::new(STATE_ROOT).join(format!(
            "addr-{}-{runner_seq}-{}",
            std::process::id(),
            id.0
        ));
        let _ = std::fs::create_dir_all(STATE_ROOT);
        let _ = std::fs::remove_file(&addr_file);
        let mut cmd = Command::new(&self.cfg.ebb_exe);
        cmd.args(["sandbox", "run", "--kind", "container", "--hostname"]);
        cmd.arg(format!("node-{}", id.0))
            .arg("--addr-file")
            .arg(&addr_file);
        let l = &self.cfg.limits;
        if let Some(m) = l.memory_mb {
            cmd.arg("--memory-mb").arg(m.to_string());
        }
        if let Some(c) = l.cpus {
            cmd.arg("--cpus").arg(c.to_string());
        }
        if let Some(p) = l.pids {
            cmd.arg("--pids").arg(p.to_string());
        }
        if let Some(r) = &self.cfg.rootfs {
            cmd.arg("--rootfs").arg(r);
        }
        if let Some(ip) = self.cfg.reach {
            cmd.arg("--reach").arg(ip.to_string());
        }
        for f in &self.cfg.files {
            let mut spec = f.host.clone().into_os_string();
            spec.push(":");
            spec.push(&f.inside);
            cmd.arg("--file").arg(spec);
        }
        let port = self.cfg.port.to_string();
        cmd.arg("--");
        cmd.args(
            self.cfg
                .command
                .iter()
                .map(|a| a.replace(PORT_PLACEHOLDER, &port)),
        );
        // The node's stdout is captured, as a process node's is: its
        // `node listening on 0.0.0.0:PORT` would read as the caller's own
        // lines on stdout (`ebb up`'s `gateway listening on ADDR`) and
        // clutter the one line per node change on stderr. Its last lines
        // explain a node that ends; its stderr, like a process node's,
        // is the caller's.
        cmd.stdout(std::process::Stdio::piped());
        // A process group of its own, as for a process node: a Ctrl-C at
        // the terminal reaches the owner alone, which drains the node
        // before stopping it. Out of the terminal's foreground group it must
        // not read the terminal (that would stop it), so no stdin.
        cmd.stdin(std::process::Stdio::null()).process_group(0);
        crate::child::die_with_owner(&mut cmd);
        let started = Instant::now();
        let mut runner = cmd.spawn()?;
        let output = runner
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("the runner's stdout was not captured"))
            .and_then(crate::child::OutputTail::new);
        let output = match output {
            Ok(output) => output,
            Err(e) => {
                let _ = runner.kill();
                let _ = runner.wait();
                let _ = std::fs::remove_file(&addr_file);
                return Err(e.into());
            }
        };
        self.nodes.insert(
            id,
            Running {
                runner,
                output,
                addr_file: Some(addr_file),
                addr: None,
                started,
                ready: false,
            },
        );
        // The address comes while the node boots (`poll_events`).
        Ok(StartedNode {
            id,
            kind: NodeKind::Container,
            addr: SocketAddr::new(IpAddr::from(Ipv4Addr::UNSPECIFIED), self.cfg.port),
        })
    }

    fn addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.nodes.get(&id).and_then(|n| n.addr)
    }

    fn stop(&mut self, id: NodeId) -> Result<(), ProviderError> {
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or(ProviderError::UnknownNode(id))?;
        // The runner forwards SIGTERM to the server and then cleans up.
        crate::child::terminate(&node.runner);
        node.output.stopping();
        Ok(())
    }

    /// Rewrites the node's CPU quota to `capacity` × the configured `cpus`
    /// (nothing without `cpus`: the node is not bounded).
    fn resize(&mut self, id: NodeId, capacity: u32) -> Result<(), ProviderError> {
        let Some(cpus) = self.cfg.limits.cpus else {
            return Ok(());
        };
        let init = self.init_pid(id)?;
        super::cgroup::set_cpu_quota_of(init, cpus * f64::from(capacity.max(1))).map_err(|e| {
            ProviderError::Resize {
                id,
                reason: e.to_string(),
            }
        })
    }

    fn poll_events(&mut self) -> Vec<NodeEvent> {
        let mut gone = Vec::new();
        let port = self.cfg.port;
        for (id, node) in &mut self.nodes {
            let open = node.output.drain();
            match node.runner.try_wait() {
                Ok(Some(status)) => {
                    // Whatever it wrote before it ended is in the pipe.
                    let _ = node.output.drain();
                    let why = if node.addr.is_none() {
                        format!("the container runner exited early: {status}")
                    } else {
                        format!("container ended: {status}")
                    };
                    gone.push((*id, node.output.explain(why)));
                }
                Err(e) => gone.push((*id, format!("lost track of the container: {e}"))),
                Ok(None) if open.is_err() => {
                    if let Err(e) = open {
                        gone.push((*id, format!("reading its output failed: {e}")));
                    }
                }
                Ok(None) if !node.ready => {
                    if let Err(why) = node.learn_addr(port) {
                        // Killed now: no address, no node to stop later.
                        let _ = node.runner.kill();
                        let _ = node.runner.wait();
                        gone.push((*id, why));
                        continue;
                    }
                    let Some(addr) = node.addr else {
                        continue;
                    };
                    let probe = Duration::from_millis(PROBE_TIMEOUT_MS);
                    if TcpStream::connect_timeout(&addr, probe).is_ok() {
                        node.ready = true;
                        // Its start-up lines (`node listening on ...`) tell
                        // nothing about a later end, as for a process node.
                        node.output.clear();
                        self.expected = Nanos::from(node.started.elapsed());
                        self.events.push(NodeEvent::Ready(*id));
                    }
                }
                Ok(None) => {}
            }
        }
        for (id, why) in gone {
            self.nodes.remove(&id);
            self.events.push(NodeEvent::Gone(id, why));
        }
        std::mem::take(&mut self.events)
    }
}

impl Drop for ContainerProvider {
    /// Stops every node (see [`crate::child::stop_all`]); a killed runner's
    /// container dies with it and its slot is swept by the next start.
    fn drop(&mut self) {
        crate::child::stop_all(self.nodes.values_mut().map(|n| &mut n.runner));
    }
}
