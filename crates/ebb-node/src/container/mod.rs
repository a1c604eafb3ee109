//! Linux containers on the kernel directly: namespaces, cgroups, overlayfs,
//! seccomp and dropped capabilities, with no container runtime in between.
//!
//! [`run`] is the runner: it must be called from a single-threaded process
//! (the `ebb sandbox run` command calls it before any async runtime exists),
//! because it forks. [`ContainerProvider`] starts nodes by spawning that
//! command, so a multithreaded caller never forks itself.
//!
//! Life of a container: sweep slots left by dead runners; claim a slot
//! (slot file, cgroup name, veth /30); create the cgroups; create a network
//! namespace and plug the veth into it; fork a child into a new pid
//! namespace, which joins that network namespace and unshares mount, UTS
//! and IPC namespaces; place it in the cgroups while it mounts its overlay
//! root, pivots into it and confines itself; then it runs the command under
//! a tiny init (see `init`); wait; explain the outcome; release the slot.

pub(crate) mod cgroup;
mod error;
mod forward;
mod host_addr;
mod init;
mod net;
mod netlink;
mod provider;
mod rootfs;
mod seccomp;
mod state;

pub use cgroup::{
    Hierarchy as CgroupHierarchy, cpu_quota_of, detect as detect_cgroups, set_cpu_quota_of,
};
pub use error::ContainerError;
pub use host_addr::HostAddr;
pub use net::{Addrs, NetMode};
pub use provider::{ContainerProvider, ContainerProviderConfig};
pub use rootfs::{BASE_ROOT, base_layer};
pub use seccomp::{DENIED as DENIED_SYSCALLS, KEPT_CAPS};
pub use state::{STATE_ROOT, sweep};

use crate::sandbox::{Outcome, SandboxSpec};
use error::{io_err, sys_err};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;

/// One container to run.
#[derive(Clone, Debug)]
pub struct ContainerConfig {
    pub spec: SandboxSpec,
    pub net: NetMode,
    /// Hostname inside; defaults to `ebb-<slot>`.
    pub hostname: Option<String>,
    /// Where to write the container's address once its network is up, as
    /// `<container ip> <host ip>` (how a provider learns where its node is).
    pub addr_file: Option<PathBuf>,
    /// A [`HostAddr`] the container gets a route to (with [`NetMode::Veth`]).
    pub reach: Option<std::net::Ipv4Addr>,
    /// Host files copied into the container's writable layer before the
    /// command starts.
    pub files: Vec<crate::sandbox::FileIn>,
}

/// How a container ended, and which limits it ran into on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    /// Limits hit without ending the container, in words.
    pub notes: Vec<String>,
    /// A signal the runner was sent and passed on to the command (a
    /// caller stopping the container), if any.
    pub forwarded: Option<i32>,
}

/// Releases the slot on every path out of [`run`], including errors.
struct Slot {
    index: u32,
    path: PathBuf,
}

impl Drop for Slot {
    fn drop(&mut self) {
        state::release_after_exit(self.index, &self.path);
    }
}

/// Runs one container to completion. Must be called from a single-threaded
/// process.
pub fn run(cfg: &ContainerConfig) -> Result<Report, ContainerError> {
    let uid = nix::unistd::geteuid();
    if !uid.is_root() {
        return Err(ContainerError::NotRoot(uid.as_raw()));
    }
    if cfg.spec.command.is_empty() {
        return Err(ContainerError::Setup("no command given".into()));
    }
    let command = cfg
        .spec
        .command
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ContainerError::Setup("an argument contains a NUL byte".into()))?;
    let files = cfg
        .files
        .iter()
        .map(|f| f.read().map(|bytes| (f.inside.clone(), bytes)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ContainerError::Setup)?;
    state::sweep();
    let base = match &cfg.spec.rootfs {
        Some(dir) if dir.is_dir() => dir.clone(),
        Some(dir) => {
            return Err(ContainerError::Base(format!(
                "--rootfs {} is not a directory",
                dir.display()
            )));
        }
        None => rootfs::base_layer()?,
    };
    let hierarchy = cgroup::detect()?;
    let filter = seccomp::filter().map_err(ContainerError::Setup)?;
    std::fs::create_dir_all(rootfs::SCRATCH)
        .map_err(io_err(format!("creating {}", rootfs::SCRATCH)))?;
    let st = state::claim(std::process::id(), Some(&base))?;
    let slot = Slot {
        index: st.index,
        path: st.path.clone(),
    };
    let netns = net::new_netns()?;
    let addrs = match cfg.net {
        NetMode::Veth => Some(net::setup_host(st.index, &netns)?),
        NetMode::None => None,
    };
    let plan = init::ChildPlan {
        netns,
        base,
        scratch: PathBuf::from(rootfs::SCRATCH),
        hostname: cfg
            .hostname
            .clone()
            .unwrap_or_else(|| format!("ebb-{}", st.name())),
        veth_index: (cfg.net == NetMode::Veth).then_some(st.index),
        reach: cfg.reach,
        files,
        command,
        filter,
    };
    let (status_r, status_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    forward::install();
    forward::block();
    let init = fork_into_pid_ns(plan, status_w, go_r);
    if let Ok(pid) = &init {
        forward::set_target(pid.as_raw());
    }
    forward::unblock();
    let init = init?;
    // Made while the child sets itself up (memory cgroups take ms to create
    // on a busy host): the child waits for "go", sent once it is inside.
    let cg = match cgroup::Cgroup::create(&hierarchy, &st.name(), &cfg.spec.limits) {
        Ok(cg) => cg,
        Err(e) => {
            let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
            let _ = waitpid(init, None);
            forward::clear_target();
            return Err(e);
        }
    };
    let result = drive(cfg, addrs, &cg, init, status_r, go_w);
    // Init is gone (or never got going): kill and reap it either way.
    let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
    let waited = waitpid(init, None);
    forward::clear_target();
    let report = result.and_then(|last| explain(last, waited, cfg, &cg));
    cg.remove();
    drop(slot);
    report
}

fn pipe() -> Result<(File, File), ContainerError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
    Ok((File::from(r), File::from(w)))
}

/// Forks the container's init as PID 1 of a new pid namespace while the
/// runner itself stays in the host's (`setns` back for later children such
/// as `ip`).
fn fork_into_pid_ns(
    plan: init::ChildPlan,
    status_w: File,
    go_r: File,
) -> Result<Pid, ContainerError> {
    let own = File::open("/proc/self/ns/pid").map_err(io_err("opening /proc/self/ns/pid"))?;
    unshare(CloneFlags::CLONE_NEWPID).map_err(sys_err("unshare(CLONE_NEWPID)"))?;
    // SAFETY: the runner is single-threaded (documented precondition of
    // `run`), so the child cannot inherit a lock held by another thread.
    let forked = unsafe { fork() };
    let back = setns(&own, CloneFlags::CLONE_NEWPID);
    match forked.map_err(sys_err("fork"))? {
        ForkResult::Child => init::child_main(plan, status_w, go_r),
        ForkResult::Parent { child } => {
            back.map_err(sys_err("returning to the host pid namespace"))?;
            Ok(child)
        }
    }
}

/// Host side of setup, then waits for init's last word.
fn drive(
    cfg: &ContainerConfig,
    addrs: Option<net::Addrs>,
    cg: &cgroup::Cgroup,
    init: Pid,
    mut status_r: File,
    mut go_w: File,
) -> Result<String, ContainerError> {
    if let Err(e) = cg.add(init.as_raw()) {
        // Init may have failed its setup and exited: its word explains more.
        drop(go_w);
        return Err(init_error(&mut status_r).unwrap_or(e));
    }
    if let Err(e) = go_w.write_all(b"g") {
        return Err(expect_byte(&mut status_r, b'r')
            .err()
            .unwrap_or(io_err("starting init")(e)));
    }
    drop(go_w);
    expect_byte(&mut status_r, b'r')?;
    // Only now: a peer probing earlier would wait out an unanswered ARP.
    if let (Some(a), Some(path)) = (addrs, &cfg.addr_file) {
        std::fs::write(path, format!("{} {}\n", a.container, a.host))
            .map_err(io_err(format!("writing {}", path.display())))?;
    }
    let mut rest = String::new();
    status_r
        .read_to_string(&mut rest)
        .map_err(io_err("reading from init"))?;
    Ok(rest)
}

/// Init's own error message, if it reported one before ending.
fn init_error(status_r: &mut File) -> Option<ContainerError> {
    let mut text = String::new();
    let _ = status_r.read_to_string(&mut text);
    let msg = text.lines().find_map(|l| l.strip_prefix('E'))?;
    Some(ContainerError::Setup(msg.trim().to_string()))
}

/// Reads one protocol byte from init; anything else is its error message.
fn expect_byte(status_r: &mut File, want: u8) -> Result<(), ContainerError> {
    let mut first = [0u8; 1];
    let n = status_r
        .read(&mut first)
        .map_err(io_err("reading from init"))?;
    if n == 1 && first[0] == want {
        return Ok(());
    }
    let mut rest = String::new();
    let _ = status_r.read_to_string(&mut rest);
    let msg = format!("{}{}", String::from_utf8_lossy(&first[..n]), rest);
    let msg = msg.trim_start_matches('E').trim();
    Err(ContainerError::Setup(if msg.is_empty() {
        "init ended during setup".into()
    } else {
        msg.to_string()
    }))
}

/// Turns init's report (or, if it had none, its own wait status) and the
/// cgroup counters into an outcome a person can act on.
fn explain(
    last: String,
    waited: nix::Result<WaitStatus>,
    cfg: &ContainerConfig,
    cg: &cgroup::Cgroup,
) -> Result<Report, ContainerError> {
    let mut notes = Vec::new();
    let mut ended = None;
    for line in last.lines().map(str::trim) {
        if let Some(msg) = line.strip_prefix('E') {
            return Err(ContainerError::Setup(msg.trim().to_string()));
        } else if let Some(msg) = line.strip_prefix('C') {
            notes.push(msg.to_string());
        } else if let Some(code) = line.strip_prefix('X').and_then(|c| c.parse().ok()) {
            ended = Some(Outcome::Exited(code));
        } else if let Some(sig) = line.strip_prefix('K').and_then(|c| c.parse().ok()) {
            ended = Some(Outcome::Signaled(sig));
        }
    }
    let mut outcome = ended.unwrap_or(match waited {
        Ok(WaitStatus::Signaled(_, sig, _)) => Outcome::Signaled(sig as i32),
        Ok(WaitStatus::Exited(_, code)) => Outcome::Exited(code),
        _ => Outcome::Signaled(Signal::SIGKILL as i32),
    });
    let limits = &cfg.spec.limits;
    let oom = cg.oom_kills();
    if oom > 0 {
        let mb = limits.memory_mb.unwrap_or(0);
        let text = format!("memory limit {mb} MiB reached");
        if outcome == Outcome::Signaled(Signal::SIGKILL as i32) {
            outcome = Outcome::LimitKilled(text);
        } else {
            notes.push(format!(
                "{text}: the kernel killed {oom} process(es) inside"
            ));
        }
    }
    let refused = cg.pids_refused();
    if refused > 0 {
        let p = limits.pids.unwrap_or(0);
        notes.push(format!("pids limit {p} reached: {refused} fork(s) refused"));
    }
    Ok(Report {
        outcome,
        notes,
        forwarded: forward::received(),
    })
}
