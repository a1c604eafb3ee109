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
/// The last signal this process received and passed on (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    RECEIVED.store(sig, Ordering::SeqCst);
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

/// The last signal this process was sent and passed on, if any: a
/// command that then died of it was stopped as its caller asked.
pub fn received() -> Option<i32> {
    Some(RECEIVED.load(Ordering::SeqCst)).filter(|&s| s > 0)
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

/// Highest signal number on Linux (SIGRTMAX).
const MAX_SIGNAL: libc::c_long = 64;

/// In a child about to exec: every signal back to its default action, then
/// pending ones let in (a pending SIGTERM then ends it, as it should). This
/// includes SIGPIPE, which the Rust runtime ignores (an ignored signal
/// stays ignored across exec, leaving `producer | head` writing into a
/// closed pipe), and whatever the caller of ebb ignored.
pub fn reset_and_unblock() {
    // The kernel's struct sigaction with a null handler: SIG_DFL, no flags,
    // empty mask. The raw call also reaches the real-time signals glibc
    // reserves for itself, which its wrapper refuses.
    let dfl = [0u64; 4];
    for sig in 1..=MAX_SIGNAL {
        if sig == libc::SIGKILL as libc::c_long || sig == libc::SIGSTOP as libc::c_long {
            continue;
        }
        // SAFETY: `dfl` is a valid kernel sigaction (8-byte mask) for the
        // duration of the call; no old action is requested.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null::<u8>(),
                8,
            )
        };
    }
    unblock();
}
