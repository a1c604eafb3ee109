//! The rules for one request, in the order the module doc lists them:
//! token, refusal at the bounds, proof, incarnation, session, floor,
//! window, saved reply or running marker, then run. Every answer that is
//! not a run is built here.

use bytes::Bytes;
use ebb_core::{Instant, Nanos};

use super::stats::count_refusal;
use super::{Action, CallKey, Incoming, ServerSession};
use crate::semantics::MAX_REPLIES_PER_CLIENT;
use crate::semantics::conns::{ConnId, Route};
use crate::semantics::reply_table::Entry;
use crate::wire::{Incarnation, Message, Outcome, Refusal, Reply, Request};

impl ServerSession {
    /// Why a new call on `conn` may not run now, if it may not.
    fn refusal(&self, req: &Request, route: Route) -> Option<Refusal> {
        if !route.listed {
            Some(Refusal::ClientsPerConnection)
        } else if route.in_flight >= self.config.max_in_flight_per_conn {
            Some(Refusal::InFlight)
        } else if self.config.max_in_flight_per_caller.is_some_and(|max| {
            let running = if self.planted_caller_bound_per_connection {
                route.in_flight
            } else {
                self.in_flight_of(route.caller)
            };
            running >= max
        }) {
            Some(Refusal::CallerInFlight)
        } else if req.deadline == Nanos::ZERO {
            Some(Refusal::DeadlinePassed)
        } else {
            None
        }
    }

    /// The refusal's reason with the bound it met, for people.
    pub(super) fn refusal_message(&self, why: Refusal) -> String {
        match why {
            Refusal::InFlight => format!(
                "over {} requests in flight on this connection",
                self.config.max_in_flight_per_conn
            ),
            Refusal::ClientsPerConnection => format!(
                "this connection already speaks for {} client ids",
                self.config.max_clients_per_conn
            ),
            Refusal::CallerInFlight => format!(
                "this caller already has {} calls executing, its bound",
                self.config.max_in_flight_per_caller.unwrap_or(usize::MAX)
            ),
            other => other.to_string(),
        }
    }

    pub(super) fn handle_request(
        &mut self,
        conn: ConnId,
        req: Request,
        route: Route,
        now: Instant,
    ) -> Action {
        if self.tokens.is_some()
            && route.token.is_none()
            && !self.planted_requests_unchecked_for_token
        {
            // Not recorded: a connection that never authorized acts on no
            // session, and nothing it sent ran.
            self.stats.refused_unauthorized_requests += 1;
            let msg =
                "this server requires a bearer token; the connection presented none it accepts";
            return self.reply(&req, Outcome::Refused(Refusal::Unauthorized), msg);
        }
        let proven = route.proven;
        // Decided before the session is borrowed: refusing depends on the
        // connection and the request, not on the session.
        let refusal = self.refusal(&req, route);
        let refusal_message = refusal.map(|why| self.refusal_message(why));
        let (incarnation, load) = (self.incarnation, self.load());
        // Looked up once for the whole request (the checks below read
        // other fields of `self`, never the table).
        let mut session = if proven {
            self.table.touch(req.client, now)
        } else {
            None
        };
        if let Some(state) = &mut session {
            state.acknowledge_below(req.ack_below);
            if req.seq < state.ack_below {
                return Action::Drop;
            }
        }
        let reply = |outcome, msg: &str| reply_to(&req, incarnation, load, outcome, msg);
        if req.idempotent {
            return match (refusal, refusal_message) {
                (Some(why), Some(msg)) => {
                    count_refusal(&mut self.stats, why);
                    reply(Outcome::Refused(why), &msg)
                }
                _ => self.execute(conn, req, route, now),
            };
        }
        if !proven {
            // Not recorded: the session is not this sender's to record
            // into, and the client that owns it never sends unproven.
            self.stats.refused_unproven_requests += 1;
            return reply(
                Outcome::Refused(Refusal::Unauthenticated),
                "this connection has not proven the client id (no handshake with its secret)",
            );
        }
        if let Some(named) = req.incarnation
            && named != incarnation
        {
            let msg = format!("request names incarnation {named}, server is at {incarnation}");
            return reply(Outcome::OutcomeUnknown, &msg);
        }
        let Some(mut state) = session else {
            return reply(
                Outcome::OutcomeUnknown,
                "no session for this client (never opened, expired, or lost in a restart)",
            );
        };
        if req.seq < state.floor {
            self.stats.too_old += 1;
            return reply(
                Outcome::OutcomeUnknown,
                "call predates this client session; it may have run in a forgotten one",
            );
        }
        if req.seq >= req.ack_below.plus(MAX_REPLIES_PER_CLIENT) {
            return reply(
                Outcome::BadRequest,
                "seq outside the client's at-most-once window",
            );
        }
        match (state.entries.get(&req.seq), refusal) {
            (Some(Entry::Done(saved)), _) => {
                let mut saved = saved.clone();
                saved.load = load;
                self.stats.saved_replies += 1;
                Action::Reply(Message::Reply(saved))
            }
            (Some(Entry::Running), _) => {
                self.stats.waits += 1;
                Action::Wait
            }
            (None, Some(why)) => {
                // Recorded, so a slower copy of this request cannot run it
                // after the client was told it did not run.
                let mut reply = Reply::to(
                    &req,
                    incarnation,
                    Outcome::Refused(why),
                    Bytes::from(refusal_message.unwrap_or_default()),
                );
                reply.load = load;
                if !self.planted_unrecorded_refusal {
                    // A refusal's message is short; should even it not fit,
                    // the refusal is still recorded, as `OutcomeUnknown`,
                    // which a resend cannot run either.
                    let _ = state.save(req.seq, reply.clone(), usize::MAX);
                }
                count_refusal(&mut self.stats, why);
                Action::Reply(Message::Reply(reply))
            }
            (None, None) => {
                state.entries.insert(req.seq, Entry::Running);
                self.execute(conn, req, route, now)
            }
        }
    }

    pub(super) fn execute(
        &mut self,
        conn: ConnId,
        req: Request,
        route: Route,
        now: Instant,
    ) -> Action {
        self.service_time.started(self.executing, now);
        self.executing += 1;
        if self.config.max_in_flight_per_caller.is_some() {
            *self.callers.entry(route.caller).or_default() += 1;
        }
        self.stats.executed += 1;
        self.conns.started(conn);
        Action::Execute(Incoming {
            key: CallKey {
                client: req.client,
                seq: req.seq,
                method: req.method,
                idempotent: req.idempotent,
                json: req.json,
                conn,
                proven: route.proven,
                caller: route.caller,
            },
            deadline: req.deadline,
            due: now + req.deadline,
            overdue_at: now + req.deadline + self.config.overdue_grace,
            payload: req.payload,
        })
    }

    fn reply(&self, req: &Request, outcome: Outcome, msg: &str) -> Action {
        reply_to(req, self.incarnation, self.load(), outcome, msg)
    }
}

/// A reply to `req` that nothing ran for: a refusal, or what the session
/// knows instead of running it.
fn reply_to(
    req: &Request,
    incarnation: Incarnation,
    load: u32,
    outcome: Outcome,
    msg: &str,
) -> Action {
    let mut reply = Reply::to(
        req,
        incarnation,
        outcome,
        Bytes::copy_from_slice(msg.as_bytes()),
    );
    reply.load = load;
    Action::Reply(Message::Reply(reply))
}
