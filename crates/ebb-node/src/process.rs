//! [`ProcessProvider`]: nodes as child processes.
//!
//! A process node has its own address space and descriptors, so a crash or
//! a leak ends only that node, but it shares everything else with the host
//! (processes, file system, network, no resource limits).
//!
//! The provider binds each node's listening socket itself and hands it to
//! the child as descriptor [`LISTEN_FD`] (socket activation, as with
//! systemd or inetd): the address is known before the child runs, so
//! `start` never waits for it. A pre-bound socket accepts connections
//! before the child serves them, so readiness cannot be probed by
//! connecting; instead the child prints a line containing
//! [`READY_MARKER`] on stdout once it serves, as `ebb node` does.

use crate::child::OutputTail;
use crate::provider::{NodeEvent, NodeKind, NodeProvider, ProviderError, StartedNode};
use ebb_core::{Nanos, NodeId};
use ebb_rpc::transport::listen;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The descriptor the child finds its listening socket on (the first one
/// after stdin, stdout and stderr).
pub const LISTEN_FD: i32 = 3;
/// Placeholder in the command replaced with [`LISTEN_FD`].
pub const FD_PLACEHOLDER: &str = "{fd}";
/// What the child prints on stdout once it serves.
pub const READY_MARKER: &str = "listening on";
/// Bound on live process nodes (each holds a child and two descriptors here).
pub const MAX_PROCESS_NODES: usize = 256;
/// Start time assumed before any start was observed.
const INITIAL_EXPECTED_START_MS: u64 = 10;

#[derive(Clone, Debug)]
pub struct ProcessProviderConfig {
    pub program: PathBuf,
    /// Arguments; `{fd}` becomes [`LISTEN_FD`].
    pub args: Vec<String>,
}

impl ProcessProviderConfig {
    /// Nodes that run `ebb node` from the `ebb` binary at `ebb_exe`.
    pub fn ebb_node(ebb_exe: PathBuf) -> Self {
        ProcessProviderConfig {
            program: ebb_exe,
            args: ["node", "--listen-fd", FD_PLACEHOLDER]
                .map(String::from)
                .to_vec(),
        }
    }
}

struct Running {
    child: Child,
    /// Its stdout: the ready line first, then kept to explain its end.
    output: OutputTail,
    started: Instant,
    ready: bool,
}

pub struct ProcessProvider {
    cfg: ProcessProviderConfig,
    nodes: HashMap<NodeId, Running>,
    expected: Nanos,
}

impl ProcessProvider {
    pub fn new(cfg: ProcessProviderConfig) -> Self {
        ProcessProvider {
            cfg,
            nodes: HashMap::new(),
            expected: Nanos::from(Duration::from_millis(INITIAL_EXPECTED_START_MS)),
        }
    }

    /// The operating-system process id of a running node (to read its
    /// memory, or to kill it in a fault test).
    pub fn pid(&self, id: NodeId) -> Option<u32> {
        self.nodes.get(&id).map(|n| n.child.id())
    }

    fn start_err(reason: impl Into<String>) -> ProviderError {
        ProviderError::Start {
            kind: "process",
            reason: reason.into(),
        }
    }

    fn spawn(&self, listener: &TcpListener) -> Result<Child, ProviderError> {
        let fd = listener.as_raw_fd();
        let fd_arg = LISTEN_FD.to_string();
        let mut cmd = Command::new(&self.cfg.program);
        cmd.args(
            self.cfg
                .args
                .iter()
                .map(|a| a.replace(FD_PLACEHOLDER, &fd_arg)),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // A process group of its own: a Ctrl-C at the terminal reaches the
        // owner alone, which drains the node (its calls in flight finish)
        // before stopping it. Left in the owner's group, the node would die
        // of that SIGINT with its calls in flight. `die_with_owner` still
        // ends it if the owner dies without stopping it.
        .process_group(0);
        // SAFETY: between fork and exec only async-signal-safe calls run:
        // dup2 and fcntl on descriptors this process owns. `fd` stays open
        // until after spawn returns because `listener` is borrowed.
        unsafe {
            cmd.pre_exec(move || {
                if fd == LISTEN_FD {
                    // dup2 onto itself keeps FD_CLOEXEC; clear it instead.
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, LISTEN_FD) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        crate::child::die_with_owner(&mut cmd);
        cmd.spawn()
            .map_err(|e| Self::start_err(format!("running {}: {e}", self.cfg.program.display())))
    }
}

impl NodeProvider for ProcessProvider {
    fn kind(&self) -> NodeKind {
        NodeKind::Process
    }

    fn expected_start(&self) -> Nanos {
        self.expected
    }

    fn start(&mut self, id: NodeId) -> Result<StartedNode, ProviderError> {
        if self.nodes.contains_key(&id) {
            return Err(Self::start_err(format!("node {} is already running", id.0)));
        }
        if self.nodes.len() >= MAX_PROCESS_NODES {
            return Err(Self::start_err(format!(
                "{MAX_PROCESS_NODES} process nodes are running, the most one provider holds"
            )));
        }
        let started = Instant::now();
        let listener = listen::bind_addr(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let mut child = self.spawn(&listener)?;
        // The child holds its own copy; ours would keep the port open
        // after the child dies.
        drop(listener);
        let stdout = match child.stdout.take() {
            Some(out) => out,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Self::start_err("the child's stdout was not captured"));
            }
        };
        let output = match OutputTail::new(stdout) {
            Ok(output) => output,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.into());
            }
        };
        self.nodes.insert(
            id,
            Running {
                child,
                output,
                started,
                ready: false,
            },
        );
        Ok(StartedNode {
            id,
            kind: NodeKind::Process,
            addr,
        })
    }

    fn stop(&mut self, id: NodeId) -> Result<(), ProviderError> {
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or(ProviderError::UnknownNode(id))?;
        crate::child::terminate(&node.child);
        node.output.stopping();
        Ok(())
    }

    fn poll_events(&mut self) -> Vec<NodeEvent> {
        let mut events = Vec::new();
        let mut gone = Vec::new();
        for (id, node) in &mut self.nodes {
            // Always drain stdout, so a chatty node never blocks on a full
            // pipe. A server that prints a whole tail without the marker
            // never will: only the tail is searched.
            let open = node.output.drain();
            if !node.ready && node.output.text().contains(READY_MARKER) {
                node.ready = true;
                node.output.clear();
                self.expected = Nanos::from(node.started.elapsed());
                events.push(NodeEvent::Ready(*id));
            }
            match node.child.try_wait() {
                Ok(Some(status)) => {
                    // Whatever it wrote before it ended is in the pipe.
                    let _ = node.output.drain();
                    let why = node.output.explain(format!("process ended: {status}"));
                    gone.push((*id, why));
                }
                Err(e) => gone.push((*id, format!("lost track of the process: {e}"))),
                Ok(None) => {
                    if let Err(e) = open {
                        gone.push((*id, format!("reading its output failed: {e}")));
                    }
                }
            }
        }
        for (id, why) in gone {
            if let Some(mut node) = self.nodes.remove(&id) {
                let _ = node.child.kill();
                let _ = node.child.wait();
            }
            events.push(NodeEvent::Gone(id, why));
        }
        events
    }
}

impl Drop for ProcessProvider {
    /// Stops every node (see [`crate::child::stop_all`]), so no node
    /// outlives its provider.
    fn drop(&mut self) {
        crate::child::stop_all(self.nodes.values_mut().map(|n| &mut n.child));
    }
}
