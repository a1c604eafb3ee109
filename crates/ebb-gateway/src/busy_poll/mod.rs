//! Busy polling of a one-thread gateway (`[gateway] busy_poll_us`): after a
//! request comes in or is answered, the runtime keeps polling its I/O
//! driver instead of sleeping, until no request came or went for a window.
//!
//! Why: a thread asleep in `epoll_wait` that loopback data wakes takes tens
//! of microseconds to run again on a virtual machine (its halted virtual CPU
//! must be woken first), and a call through the gateway pays that twice (the
//! request's read, the reply's read). Polling instead trades a core for
//! those wake-ups, as HAProxy's `busy-polling` does; unlike HAProxy's, which
//! never sleeps, this stops once the gateway is idle for the window, so an
//! idle gateway burns no CPU. The next request after that pays one wake-up
//! again and starts the next spin.
//!
//! How: the spinner is a task that yields. On a current-thread tokio runtime
//! `yield_now` defers the task's wake-up; a scheduler whose only work is
//! deferred polls its driver with a zero timeout (`park_yield`) instead of
//! parking, runs what the driver woke, and only then the spinner again. So
//! every other task runs between two turns of the spinner (it starves none)
//! and the thread does not sleep while it spins. Each turn also yields the
//! CPU to the kernel (`sched_yield`): a node woken on the gateway's CPU
//! runs at once instead of waiting out the spinner's time slice. On a multi-thread runtime
//! another worker may be asleep on the driver and take the wake-up anyway:
//! `ebb up` allows busy polling only with `gateway.threads = 1`.

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use ebb_core::{Instant, Nanos};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry as PromRegistry;
use tokio::sync::Notify;

use crate::clock::Clock;

/// The longest window `busy_poll_us` may ask for, in microseconds: one
/// second of a core after the last request is far past any latency gain
/// (a spin only has to bridge the gap to a reply or to the next request).
pub const MAX_BUSY_POLL_US: u64 = 1_000_000;

/// Requests coming and going, counted on the request path; what wakes a
/// sleeping spinner. Cheap to clone.
#[derive(Clone)]
pub struct Activity(Arc<Shared>);

struct Shared {
    /// Requests taken in plus requests answered, ever.
    events: AtomicU64,
    /// The spinner waits on `wake`: the next event notifies it.
    sleeping: AtomicBool,
    wake: Notify,
}

impl Default for Activity {
    /// Asleep from the start: a request that comes before the spinner's
    /// first turn leaves it a permit, so the first spin is not missed.
    fn default() -> Activity {
        Activity(Arc::new(Shared {
            events: AtomicU64::new(0),
            sleeping: AtomicBool::new(true),
            wake: Notify::new(),
        }))
    }
}

impl Activity {
    /// A request was taken in, or answered.
    ///
    /// Without a spinner this is one counter increment and one load. An
    /// event that races a spinner deciding to stop (only possible on a
    /// multi-thread runtime) is missed: the next one wakes it.
    pub fn event(&self) {
        self.0.events.fetch_add(1, Relaxed);
        if self.0.sleeping.load(Relaxed) && self.0.sleeping.swap(false, Relaxed) {
            self.0.wake.notify_one();
        }
    }

    fn events(&self) -> u64 {
        self.0.events.load(Relaxed)
    }

    /// Until the next event (at once if one came since the last wait).
    async fn next(&self) {
        self.0.sleeping.store(true, Relaxed);
        // An event between the store and the wait leaves a permit: no
        // wake-up is lost.
        self.0.wake.notified().await;
    }
}

/// One spin's decision, pure: go on while a request came or went within
/// `window` of `now`.
#[derive(Clone, Copy, Debug)]
pub struct Spin {
    window: Nanos,
    /// `Activity`'s count when last looked at, and when it last changed.
    seen: u64,
    last: Instant,
}

/// What a spin does after one turn of the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Yield again: the driver is polled without sleeping.
    Spin,
    /// Idle for the window: sleep until the next request.
    Stop,
}

impl Spin {
    /// A spin started at `now`, with `events` counted so far.
    pub fn start(window: Nanos, events: u64, now: Instant) -> Spin {
        Spin {
            window,
            seen: events,
            last: now,
        }
    }

    /// After a turn that saw `events` at `now`.
    pub fn turn(&mut self, events: u64, now: Instant) -> Turn {
        debug_assert!(now >= self.last, "the clock is monotonic");
        if events != self.seen {
            self.seen = events;
            self.last = now;
            return Turn::Spin;
        }
        if now.saturating_since(self.last) >= self.window {
            Turn::Stop
        } else {
            Turn::Spin
        }
    }
}

/// What the spinner did, in `/metrics` as `ebb_gateway_busy_poll_*` (zero
/// while busy polling is off). Cheap to clone.
#[derive(Clone, Default)]
pub struct Counters {
    /// Spins started: each one after the gateway slept.
    pub spins: Counter,
    /// Turns of the runtime taken while spinning: each a poll of the
    /// driver that did not sleep.
    pub turns: Counter,
    /// Time spent spinning, each spin counted once it stopped: the CPU busy
    /// polling costs beyond the gateway's work.
    pub seconds: Counter<f64, AtomicU64>,
}

impl Counters {
    pub fn register(r: &mut PromRegistry) -> Counters {
        let c = Counters::default();
        r.register(
            "busy_poll_spins",
            "Busy-polling spins started, each after the gateway slept (gateway.busy_poll_us)",
            c.spins.clone(),
        );
        r.register(
            "busy_poll_turns",
            "Polls of the I/O driver without sleeping while busy polling",
            c.turns.clone(),
        );
        r.register(
            "busy_poll_seconds",
            "Time spent busy polling, counted as each spin stops",
            c.seconds.clone(),
        );
        c
    }
}

/// The spinner: sleeps until a request comes, then polls the driver turn
/// after turn until no request came or went for `window`; forever. Spawn
/// it on the gateway's current-thread runtime.
pub async fn spin(window: Nanos, activity: Activity, clock: Clock, counters: Counters) {
    debug_assert!(window > Nanos::ZERO, "a zero window is busy polling off");
    loop {
        activity.next().await;
        counters.spins.inc();
        let began = clock.now();
        let mut spin = Spin::start(window, activity.events(), began);
        loop {
            tokio::task::yield_now().await;
            // Also to the kernel: a thread woken on this CPU (a node the
            // gateway just wrote to, placed beside its waker) runs now
            // rather than after the spinner's time slice; with nothing
            // else runnable this returns at once.
            std::thread::yield_now();
            counters.turns.inc();
            if spin.turn(activity.events(), clock.now()) == Turn::Stop {
                break;
            }
        }
        counters
            .seconds
            .inc_by(clock.now().saturating_since(began).as_secs_f64());
    }
}
