//! The server's overdue paths, played by the world as the TCP transport
//! plays them. In an overdue run some methods are `#[blocking]`: they wait
//! in a server's queue for one of its few worker threads, and one whose due
//! has passed when a worker takes it is refused at its start
//! (`ServerSession::start_with`); some are slow: still running at their
//! `overdue_at`, their run is dropped and the call cancelled
//! (`ServerSession::cancel_with`). A started blocking call is never
//! cancelled, as a worker thread cannot be stopped. Either ending is
//! recorded by the server, so the world re-delivers a late copy of the
//! call's request (one the network still held) and checks it is answered
//! from the record and never admitted to run again.

use std::collections::VecDeque;

use ebb_core::{Instant, Nanos, Rng};
use ebb_rpc::semantics::{Action, CallKey, ConnId};
use ebb_rpc::wire::{Incarnation, Message, Outcome, Refusal, Reply, Request};

use super::{Event, World};

/// Knobs of a run that drives the overdue paths, drawn from their own RNG
/// so the runs that do not are what they were.
pub(super) struct OverdueRun {
    pub(super) rng: Rng,
    /// Worker threads per server for blocking methods.
    pub(super) threads: usize,
}

/// Calls whose tag is a multiple of this are `#[blocking]` methods in an
/// overdue run.
const BLOCKING_EVERY: u64 = 3;
/// Calls whose tag leaves 1 divided by this are slow in an overdue run:
/// they may run past their due plus the grace.
const SLOW_EVERY: u64 = 6;
/// Probability that a call ended overdue has a late copy of its request
/// still in the network.
const LATE_COPY: f64 = 0.9;

/// One admitted call, until it completes, is refused at its start or is
/// cancelled; keyed by a run number, as an idempotent call may run more
/// than once.
pub(super) struct Running {
    pub(super) s: usize,
    pub(super) incarnation: Incarnation,
    pub(super) c: usize,
    pub(super) key: CallKey,
    pub(super) tag: u64,
    pub(super) due: Instant,
    /// Holds a worker thread: its completion frees one.
    pub(super) on_worker: bool,
    /// The request as it arrived, and its connection's epoch: what a late
    /// copy repeats.
    pub(super) request: Option<(u64, Request)>,
}

/// One server's worker threads for blocking methods.
#[derive(Default)]
pub(super) struct Workers {
    pub(super) busy: usize,
    pub(super) queue: VecDeque<u64>,
    /// Set by a resize: the threads in force, instead of the run's.
    pub(super) threads: Option<usize>,
}

/// How the server ended an at-most-once call overdue, which its late
/// copies must be answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EndedOverdue {
    RefusedAtStart,
    Cancelled,
}

impl EndedOverdue {
    fn says(self) -> &'static str {
        match self {
            EndedOverdue::RefusedAtStart => "refused at its start past its due",
            EndedOverdue::Cancelled => "cancelled past its due",
        }
    }

    /// Whether `reply` is the answer the server recorded for it.
    fn recorded(self, reply: &Reply) -> bool {
        match self {
            EndedOverdue::RefusedAtStart => {
                reply.outcome == Outcome::Refused(Refusal::DeadlinePassed)
                    && reply.message().contains("waited for a worker")
            }
            EndedOverdue::Cancelled => {
                reply.outcome == Outcome::OutcomeUnknown && reply.message().contains("cancelled")
            }
        }
    }
}

impl World {
    /// Whether call `tag` is a blocking method in this run.
    pub(super) fn blocking(&self, tag: u64) -> bool {
        self.overdue.is_some() && tag % BLOCKING_EVERY == 0
    }

    /// How long call `tag` runs once started.
    pub(super) fn run_time(&mut self, tag: u64) -> Nanos {
        match self.overdue.as_mut() {
            Some(o) if tag % BLOCKING_EVERY == 0 => Nanos::from_millis(10 + o.rng.below(100)),
            Some(o) if tag % SLOW_EVERY == 1 => Nanos::from_millis(o.rng.below(1_000)),
            _ => Nanos(self.rng.below(Nanos::from_millis(5).0)),
        }
    }

    /// A call the server admitted: a blocking one queues for a worker;
    /// any other starts at once, to complete after its run time or, in an
    /// overdue run, be cancelled at its `overdue_at` if still running.
    pub(super) fn admitted(&mut self, running: Running, overdue_at: Instant) -> Result<(), String> {
        let run = self.next_run;
        self.next_run += 1;
        let (s, tag) = (running.s, running.tag);
        self.running.insert(run, running);
        if self.blocking(tag) {
            self.workers[s].queue.push_back(run);
            return self.start_workers(s);
        }
        self.ran(run)?;
        let done = self.now + self.run_time(tag);
        self.at(done, Event::Complete { run });
        if self.overdue.is_some() {
            self.at(overdue_at, Event::Overdue { run });
        }
        Ok(())
    }

    /// Free workers of server `s` take queued calls, which start if their
    /// due has not passed; the others are refused, recorded by the server.
    pub(super) fn start_workers(&mut self, s: usize) -> Result<(), String> {
        let threads = self.workers[s]
            .threads
            .unwrap_or_else(|| self.overdue.as_ref().map_or(1, |o| o.threads));
        while self.workers[s].busy < threads {
            let Some(run) = self.workers[s].queue.pop_front() else {
                return Ok(());
            };
            let Some(server) = self.servers[s].as_mut() else {
                return Ok(());
            };
            let Some(r) = self.running.get(&run) else {
                continue;
            };
            if r.incarnation != server.incarnation() {
                continue;
            }
            let (key, due) = (r.key, r.due);
            let started =
                server.start_with(key, due, self.now, |reply, route| (reply.clone(), route));
            server.check()?;
            match started {
                Ok(()) => {
                    self.workers[s].busy += 1;
                    self.running
                        .get_mut(&run)
                        .expect("looked up above")
                        .on_worker = true;
                    self.ran(run)?;
                    let tag = self.running[&run].tag;
                    let done = self.now + self.run_time(tag);
                    self.at(done, Event::Complete { run });
                }
                Err((reply, route)) => {
                    self.stats.refused_before_start += 1;
                    let r = self.running.remove(&run).expect("looked up above");
                    self.ended_overdue(r, EndedOverdue::RefusedAtStart, reply, route);
                }
            }
        }
        Ok(())
    }

    /// A call still running at its `overdue_at`: its run is dropped and
    /// the server records it cancelled. One that completed first is gone.
    pub(super) fn overdue(&mut self, run: u64) -> Result<(), String> {
        let Some(r) = self.running.get(&run) else {
            return Ok(());
        };
        let Some(server) = self.servers[r.s].as_mut() else {
            return Ok(());
        };
        if server.incarnation() != r.incarnation {
            return Ok(());
        }
        let (reply, route) =
            server.cancel_with(r.key, self.now, |reply, route| (reply.clone(), route));
        server.check()?;
        self.stats.cancelled_overdue += 1;
        let r = self.running.remove(&run).expect("looked up above");
        self.ended_overdue(r, EndedOverdue::Cancelled, reply, route);
        Ok(())
    }

    /// What follows either overdue ending: the caller's count released,
    /// the answer sent, the ending noted for an at-most-once call's late
    /// copies, and maybe such a copy re-delivered on its connection.
    fn ended_overdue(
        &mut self,
        r: Running,
        how: EndedOverdue,
        reply: Reply,
        route: Option<ConnId>,
    ) {
        self.released(r.s, &r.key);
        if route.is_some() && route == self.conns[r.c][r.s].server_conn {
            self.send_to_client(r.c, r.s, Message::Reply(reply));
        }
        if r.key.idempotent {
            return;
        }
        self.ended_overdue
            .insert((r.s, r.incarnation, r.key.client, r.key.seq), (how, r.tag));
        let Some((epoch, request)) = r.request else {
            return;
        };
        let max_delay = self.faults.max_delay.0;
        let Some(o) = self.overdue.as_mut() else {
            return;
        };
        let (late, after) = (o.rng.chance(LATE_COPY), Nanos(o.rng.below(max_delay)));
        if !late || !self.conn_live(r.c, r.s, epoch) {
            return;
        }
        let (c, s) = (r.c, r.s);
        self.at(
            self.now + after,
            Event::ToServer {
                c,
                s,
                epoch,
                frame: Message::Request(request),
            },
        );
    }

    /// Checks what server `s` did with a request that may be a late copy
    /// of a call it ended overdue: answered from its record (counted), or,
    /// the defect, admitted to run again.
    pub(super) fn judge_copy(
        &mut self,
        s: usize,
        incarnation: Incarnation,
        request: &Request,
        action: &Action,
    ) -> Result<(), String> {
        let key = (s, incarnation, request.client, request.seq);
        let Some(&(how, tag)) = self.ended_overdue.get(&key) else {
            return Ok(());
        };
        match action {
            Action::Execute(_) => Err(format!(
                "at-most-once call {tag} was {} and recorded, yet a late copy was admitted to run again on server {s}",
                how.says()
            )),
            Action::Reply(Message::Reply(reply)) if how.recorded(reply) => {
                match how {
                    EndedOverdue::RefusedAtStart => self.stats.refused_copies_answered += 1,
                    EndedOverdue::Cancelled => self.stats.cancelled_copies_answered += 1,
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
