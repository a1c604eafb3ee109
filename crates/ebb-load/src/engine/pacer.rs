//! The pacer: sleeps on the timer until the next arrival is due, then
//! starts every arrival due by then as one batch (each within the
//! in-flight bound, or counted as not sent), flushes the batch, at most
//! [`MAX_BATCH_CALLS`] calls at a time, and records how late each of its
//! requests left.

use std::iter::Peekable;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ebb_core::Nanos;
use hdrhistogram::Histogram;
use tokio::sync::oneshot;

use super::Observer;
use super::in_flight::{EngineEnds, InFlight};
use crate::report::micros_histogram;
use crate::timer::Timer;
use crate::{Ends, Starter, Target};

/// Calls started before the pacer flushes them: a pacer far behind its
/// schedule writes what it has every this many calls rather than holding
/// an unbounded batch.
pub const MAX_BATCH_CALLS: usize = 256;

/// What the pacer did with the schedule, handed back when it ends.
#[derive(Debug)]
pub(super) struct Counts {
    pub(super) scheduled: u64,
    pub(super) sent: u64,
    pub(super) not_sent: u64,
    pub(super) stopped: bool,
    pub(super) send_lag_us: Histogram<u64>,
}

impl Default for Counts {
    fn default() -> Counts {
        Counts {
            scheduled: 0,
            sent: 0,
            not_sent: 0,
            stopped: false,
            send_lag_us: micros_histogram(),
        }
    }
}

/// Walks the schedule on the runtime that runs the requests.
pub(super) struct Pacer {
    pub(super) target: Arc<dyn Target>,
    pub(super) starter: Option<Box<dyn Starter>>,
    pub(super) ends: Arc<EngineEnds>,
    pub(super) observer: Arc<dyn Observer>,
    pub(super) in_flight: Arc<InFlight>,
    pub(super) start: Instant,
    pub(super) max_in_flight: u64,
    pub(super) counts: Counts,
    /// The due offsets of the requests started and not yet flushed; at
    /// most [`MAX_BATCH_CALLS`].
    pub(super) batch: Vec<Nanos>,
}

impl Pacer {
    pub(super) async fn run<S: Iterator<Item = Nanos>>(
        mut self,
        mut timer: Timer,
        mut schedule: Peekable<S>,
        mut stop: oneshot::Receiver<()>,
    ) -> Counts {
        loop {
            // Every arrival due by now, as one batch.
            let now = Instant::now();
            while let Some(offset) = schedule.next_if(|o| self.due(*o) <= now) {
                self.start_one(offset);
                if self.batch.len() >= MAX_BATCH_CALLS {
                    self.flush();
                }
            }
            self.flush();
            let Some(next) = schedule.peek() else {
                break;
            };
            let due = self.due(*next);
            tokio::select! {
                biased;
                // A stop (or its sender gone: the caller gave up) ends the
                // schedule at once.
                _ = &mut stop => {
                    self.counts.stopped = true;
                    break;
                }
                () = timer.until(due) => {}
            }
        }
        self.counts
    }

    fn due(&self, offset: Nanos) -> Instant {
        self.start + Duration::from(offset)
    }

    fn start_one(&mut self, offset: Nanos) {
        self.counts.scheduled += 1;
        if self.in_flight.count() >= self.max_in_flight {
            self.counts.not_sent += 1;
            self.observer.not_sent(offset);
            return;
        }
        self.counts.sent += 1;
        self.in_flight.begin();
        self.observer.sent(offset);
        self.batch.push(offset);
        if let Some(starter) = self.starter.as_mut() {
            starter.start(offset.as_nanos());
            return;
        }
        let target = Arc::clone(&self.target);
        let ends = Arc::clone(&self.ends);
        tokio::spawn(async move {
            let outcome = target.call().await;
            ends.ended(offset.as_nanos(), outcome);
        });
    }

    /// Sends the batch and records how late each of its requests left.
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        if let Some(starter) = self.starter.as_mut() {
            starter.flush();
        }
        let sent = Instant::now();
        for offset in self.batch.drain(..) {
            let due = self.start + Duration::from(offset);
            let lag_us = sent.saturating_duration_since(due).as_micros();
            self.counts
                .send_lag_us
                .saturating_record(u64::try_from(lag_us).unwrap_or(u64::MAX).max(1));
        }
    }
}
