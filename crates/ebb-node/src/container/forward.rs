//! Signal forwarding for the runner (to the container's init) and for init
//! (to the command), race-free at start-up.
//!
//! The handler is installed *before* the fork that creates the target, so a
//! signal can never meet the default action (which would kill the runner,
//! or be silently dropped by a namespace's init). Until a target is set, the
//! signal is remembered and delivered by [`set_target`]. Init inherits the
//! runner's handler across fork, with no target yet, so the same holds
//! inside.
//!
//! Around each fork the forwarded signals are blocked: the new process
//! either keeps the handler (init) or resets to the default actions before
//! unblocking (the command, before exec), so a signal can never be caught
//! by an inherited handler with no target and lost.

use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction, sigprocmask,
};
use std::sync::atomic::{AtomicI32, Ordering};

/// Signals passed on to the target.
pub const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

static TARGET: AtomicI32 = AtomicI32::new(0);
static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = TARGET.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe and takes only integers.
        unsafe { libc::kill(pid, sig) };
    } else {
        PENDING.store(sig, Ordering::SeqCst);
    }
}

pub fn install() {
    let act = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in FORWARDED {
        // SAFETY: the handler only touches atomics and calls kill(2), both
        // async-signal-safe.
        let _ = unsafe { sigaction(sig, &act) };
    }
}

/// Forwards from now on to `pid`, and delivers a signal that arrived while
/// there was no target.
pub fn set_target(pid: i32) {
    TARGET.store(pid, Ordering::SeqCst);
    let sig = PENDING.swap(0, Ordering::SeqCst);
    if sig > 0 {
        // SAFETY: kill(2) takes only integers.
        unsafe { libc::kill(pid, sig) };
    }
}

pub fn clear_target() {
    TARGET.store(0, Ordering::SeqCst);
}

fn forwarded_set() -> SigSet {
    let mut set = SigSet::empty();
    for sig in FORWARDED {
        set.add(sig);
    }
    set
}

/// Holds the forwarded signals back (they stay pending) until [`unblock`].
pub fn block() {
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded_set()), None);
}

pub fn unblock() {
    let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&forwarded_set()), None);
}

/// In a child about to exec: default actions back, then let pending
/// signals in (a pending SIGTERM then ends it, as it should). SIGPIPE too:
/// the Rust runtime ignores it, and an ignored signal stays ignored across
/// exec, which would leave `producer | head` writing into a closed pipe.
pub fn reset_and_unblock() {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in FORWARDED.into_iter().chain([Signal::SIGPIPE]) {
        // SAFETY: restoring the default action installs no code.
        let _ = unsafe { sigaction(sig, &dfl) };
    }
    unblock();
}
