//! The child processes a provider starts (process nodes, container
//! runners): they die with their owner, and stopping them is polite
//! first, then sure.

use std::process::Child;
use std::time::{Duration, Instant};

/// How long a provider being dropped waits for its nodes to stop on
/// SIGTERM before it kills them: a server that ignores SIGTERM must not
/// hang the caller.
pub const STOP_GRACE_MS: u64 = 2_000;
const STOP_POLL_MS: u64 = 1;

/// Asks `child` to stop (SIGTERM); whether it did shows in `try_wait`.
pub fn terminate(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
}

/// SIGTERMs every child, waits up to [`STOP_GRACE_MS`] in all for them to
/// exit, SIGKILLs those still running, and reaps them all, so none
/// outlives the caller.
pub fn stop_all<'a>(children: impl IntoIterator<Item = &'a mut Child>) {
    let mut children: Vec<&mut Child> = children.into_iter().collect();
    for c in &children {
        terminate(c);
    }
    let deadline = Instant::now() + Duration::from_millis(STOP_GRACE_MS);
    for c in &mut children {
        while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(STOP_POLL_MS));
        }
        if matches!(c.try_wait(), Ok(None)) {
            let _ = c.kill();
        }
        let _ = c.wait();
    }
}

/// Makes the program `cmd` starts get SIGTERM when its owner dies, even
/// by SIGKILL, so a node (a process node, a container runner, which
/// forwards the SIGTERM to its server and then removes its links and
/// slot) never outlives the gateway that started it.
///
/// The kernel sends the signal when the *thread* that spawned the child
/// ends (prctl(2), PR_SET_PDEATHSIG), not only the process: spawn from a
/// thread that lives as long as the nodes do (the pool's manager thread,
/// a main thread). The setting survives exec of a program that is not
/// set-user-ID, and is not inherited by the child's own children.
pub fn die_with_owner(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let owner = std::process::id();
    // SAFETY: between fork and exec only async-signal-safe calls run:
    // prctl(2) and getppid(2), each a bare system call.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
            // The owner may have died between fork and prctl, before the
            // setting could take effect; the child was then reparented.
            if nix::unistd::getppid().as_raw() as u32 != owner {
                return Err(std::io::Error::other(
                    "the process starting this node has exited",
                ));
            }
            Ok(())
        });
    }
}
