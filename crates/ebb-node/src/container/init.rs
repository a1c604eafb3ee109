//! The container's first process, on the inside.
//!
//! Decision: ebb's own forked process is the container's PID 1, a tiny init,
//! and the command runs as its child. A command run as PID 1 would get no
//! default signal actions (Ctrl-C and SIGTERM would be ignored) and would
//! have to reap orphans it knows nothing about; the tiny init does both:
//! it forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to the command, reaps every
//! child, and when the command ends reports its status to the runner and
//! exits, which makes the kernel kill whatever else is left in the
//! namespace.
//!
//! Protocol on the status pipe (init → runner): `r` once the container is set up (its address answers from then
//! on), then `E<message>\n` if setup failed, `C<message>\n` if the command
//! could not be executed, and `X<code>\n` or `K<signal>\n` when the
//! command ends.

use super::{forward, net, rootfs, seccomp};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, execvp, fork};
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;

/// What the forked child needs, prepared before the fork so the child does
/// no allocation-heavy work it could fail at silently.
pub struct ChildPlan {
    pub base: PathBuf,
    pub scratch: PathBuf,
    pub hostname: String,
    /// The network namespace the runner created for the container.
    pub netns: File,
    pub veth_index: Option<u32>,
    /// A host address to route to over the veth.
    pub reach: Option<std::net::Ipv4Addr>,
    /// Files to write into the new root (path inside, contents), read on
    /// the host before the fork.
    pub files: Vec<(PathBuf, Vec<u8>)>,
    pub command: Vec<CString>,
    pub filter: seccomp::Filters,
}

/// Runs in the forked child (PID 1 of the new pid namespace); never returns.
pub fn child_main(plan: ChildPlan, mut status: File, mut go: File) -> ! {
    // The runner forked with the forwarded signals blocked; the inherited
    // handler (no target yet) now records them for the command.
    forward::unblock();
    let code = match run(plan, &mut status, &mut go) {
        Ok(()) => 0,
        Err(msg) => {
            let _ = writeln!(status, "E{}", msg.replace('\n', " "));
            1
        }
    };
    std::process::exit(code)
}

fn run(plan: ChildPlan, status: &mut File, go: &mut File) -> Result<(), String> {
    // If the runner dies (even by SIGKILL) the container dies with it.
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes integers and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // The runner made the network namespace (and plugged the veth into it)
    // before forking; join it, and make the rest here.
    setns(&plan.netns, CloneFlags::CLONE_NEWNET).map_err(|e| format!("joining the netns: {e}"))?;
    drop(plan.netns);
    let flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    unshare(flags).map_err(|e| format!("unshare: {e}"))?;
    rootfs::enter(&plan.scratch, &plan.base, &plan.files)?;
    nix::unistd::sethostname(&plan.hostname).map_err(|e| format!("sethostname: {e}"))?;
    net::setup_inside(plan.veth_index, plan.reach)?;
    seccomp::confine(&plan.filter)?;
    let mut byte = [0u8; 1];
    // The runner writes once it has placed us in the cgroups (meanwhile we
    // did all of the above); end of file means it died first.
    if go
        .read(&mut byte)
        .map_err(|e| format!("waiting for the runner: {e}"))?
        == 0
    {
        std::process::exit(1);
    }
    status
        .write_all(b"r")
        .map_err(|e| format!("reporting to the runner: {e}"))?;
    let argv0 = plan.command.first().ok_or("empty command")?.clone();
    forward::block();
    // SAFETY: this process is single-threaded (forked from the single-threaded
    // runner), so fork cannot leave another thread's lock held.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            forward::reset_and_unblock();
            let _ = execvp(&argv0, &plan.command);
            let err = std::io::Error::last_os_error();
            let _ = writeln!(status, "Ccannot run {}: {err}", argv0.to_string_lossy());
            std::process::exit(127);
        }
        ForkResult::Parent { child } => {
            forward::set_target(child.as_raw());
            forward::unblock();
            let report = reap_until(child);
            let _ = status.write_all(report.as_bytes());
            std::process::exit(0)
        }
    }
}

/// Reaps every child until the command itself ends; returns its report.
fn reap_until(command: Pid) -> String {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => return format!("X{code}\n"),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                return format!("K{}\n", sig as i32);
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return format!("E waiting for the command: {e}\n"),
        }
    }
}
