//! Stopping the child processes a provider started (process nodes,
//! container runners): politely first, then for sure.

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
