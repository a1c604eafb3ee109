//! The engine's wake-up for the next due arrival: a Linux `timerfd` the
//! runtime's own event loop waits on, so the schedule is paced on the
//! thread that starts the requests.
//!
//! Tokio's timer has a 1 ms resolution, which would add up to a
//! millisecond to every latency (latency runs from the due time), and a
//! thread of its own that sleeps per arrival and hands each request over
//! costs two context switches per request. A `timerfd` is as precise as
//! the OS timer (within its slack, 50 µs by default) and wakes the
//! runtime's thread through the same `epoll` that brings the replies: one
//! wake-up per batch of due arrivals, none when the thread is busy anyway.
//! Should the `timerfd` be unavailable (out of file descriptors), the
//! timer falls back to tokio's own (and latencies then carry up to a
//! millisecond of pacing delay).

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Instant;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// `TimerFd` as tokio's `AsyncFd` wants it (by raw descriptor).
pub(crate) struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

pub(crate) enum Timer {
    Precise(AsyncFd<Fd>),
    /// Tokio's timer (millisecond resolution).
    Coarse,
}

impl Timer {
    /// A `timerfd` on the monotonic clock (the one `Instant` reads), or the
    /// coarse fallback. Must be called inside a tokio runtime with I/O
    /// enabled.
    pub(crate) fn new() -> Timer {
        let flags = TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC;
        let Ok(fd) = TimerFd::new(ClockId::CLOCK_MONOTONIC, flags) else {
            return Timer::Coarse;
        };
        // SAFETY: `Fd` owns the timerfd (an `OwnedFd` inside `TimerFd`),
        // which stays open and the same descriptor until the `AsyncFd`
        // that owns the `Fd` is dropped; `as_raw_fd` always returns it.
        let registered = unsafe { AsyncFd::register_with_interest(Fd(fd), Interest::READABLE) };
        registered.map_or(Timer::Coarse, Timer::Precise)
    }

    /// Tokio's timer, for a caller (a test) that wants the fallback.
    #[cfg(test)]
    pub(crate) fn coarse() -> Timer {
        Timer::Coarse
    }

    #[cfg(test)]
    pub(crate) fn is_precise(&self) -> bool {
        matches!(self, Timer::Precise(_))
    }

    /// Returns at `due` or a little after (never before, unless the
    /// precise timer failed and was given up for the coarse one, when it
    /// returns at once and the caller checks the time again). Yields to
    /// the runtime's other tasks in any case.
    pub(crate) async fn until(&mut self, due: Instant) {
        let wait = due.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            // Behind schedule: the requests just started get the thread
            // before the next batch (else a pacer that never catches up
            // would never let them run).
            tokio::task::yield_now().await;
            return;
        }
        let Timer::Precise(fd) = self else {
            tokio::time::sleep_until(due.into()).await;
            return;
        };
        // A one-shot relative expiry; setting it replaces any earlier
        // one and resets the expiry count, so an expiry left over from a
        // wait that was given up (a stop) cannot end this one early.
        let armed = fd.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(wait)),
            TimerSetTimeFlags::empty(),
        );
        if armed.is_err() {
            *self = Timer::Coarse;
            return;
        }
        loop {
            let Ok(mut ready) = fd.readable().await else {
                *self = Timer::Coarse;
                return;
            };
            // Reading consumes the expiry; `WouldBlock` (a readiness left
            // from before) clears tokio's readiness and waits again.
            match ready.try_io(|f| f.get_ref().0.wait().map_err(io::Error::from)) {
                Ok(Ok(())) => {
                    // The one-shot timer cannot fire again before it is
                    // armed anew: forgetting the readiness now saves the
                    // next wait a read that would find nothing.
                    ready.clear_ready();
                    return;
                }
                Ok(Err(_)) => {
                    *self = Timer::Coarse;
                    return;
                }
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn the_precise_timer_never_returns_before_its_due_time() {
        let mut timer = Timer::new();
        assert!(timer.is_precise(), "timerfd is available on Linux");
        for micros in [1, 50, 300, 2_000] {
            let due = Instant::now() + Duration::from_micros(micros);
            timer.until(due).await;
            assert!(Instant::now() >= due, "woke before {micros} µs");
            assert!(timer.is_precise(), "still the timerfd after {micros} µs");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_wait_given_up_leaves_no_early_wake_up_for_the_next() {
        let mut timer = Timer::new();
        // Armed for 1 ms, given up at once (as a stop does), then the
        // expiry passes unread.
        let given_up = Instant::now() + Duration::from_millis(1);
        let _ = tokio::time::timeout(Duration::ZERO, timer.until(given_up)).await;
        std::thread::sleep(Duration::from_millis(2));
        let due = Instant::now() + Duration::from_millis(20);
        timer.until(due).await;
        assert!(Instant::now() >= due);
        assert!(timer.is_precise());
    }
}
