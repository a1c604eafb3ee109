//! Event handlers: how each event changes the world, and the checks made
//! as it does (silent connections swept, each call ended once by its
//! deadline). How frames travel is [`super::network`]'s; who may act for a
//! client, [`super::callers`]'.

use bytes::Bytes;
use ebb_core::{Instant, Nanos};
use ebb_rpc::CallError;
use ebb_rpc::semantics::ConnRefusal;
use ebb_rpc::semantics::{Action, CallKey, Caller, ConnId, LinkState};
use ebb_rpc::transport::frames::connection_error;
use ebb_rpc::wire::{
    ConnErrorKind, Describe, Message, Outcome, Refusal, decode_payload, encode_payload,
};

use super::overdue::Running;
use super::{Event, METHOD, MUTE_PEER, PANIC_EVERY, REPLY_MARK, SERVERS, World, peer_of};

impl World {
    pub(super) fn handle(&mut self, ev: Event) -> Result<(), String> {
        match ev {
            Event::Start { tag } => {
                let call = &self.calls[&tag];
                let (c, s, idem, deadline) =
                    (call.client, call.server, call.idempotent, call.deadline);
                self.start_on(tag, c, s, idem, deadline)?;
            }
            Event::Move { tag } => {
                let call = &self.calls[&tag];
                if call.ended.is_some() || !call.started {
                    return Ok(());
                }
                let (c, s, deadline) = (call.client, call.server, call.deadline);
                let id = self
                    .by_call
                    .iter()
                    .find(|(_, t)| **t == tag)
                    .map(|(k, _)| k.2);
                if let Some(id) = id
                    && let Some(moved) = self.sessions[c][s].take_idempotent(id)
                {
                    if moved.deadline != deadline {
                        return Err(format!("moved call {tag} lost its deadline"));
                    }
                    self.by_call.remove(&(c, s, id));
                    self.stats.moves += 1;
                    let other = (s + 1) % SERVERS;
                    self.calls.get_mut(&tag).expect("exists").server = other;
                    self.start_on(tag, c, other, true, deadline)?;
                }
            }
            Event::ToServer { c, s, epoch, frame } => {
                if !self.conn_live(c, s, epoch) {
                    return Ok(());
                }
                let (Some(server), Some(conn)) =
                    (self.servers[s].as_mut(), self.conns[c][s].server_conn)
                else {
                    return Ok(());
                };
                if matches!(frame, Message::Resize(_) | Message::Resized(_)) {
                    if let Some(track) = self.tracks.get_mut(&(s, conn)) {
                        track.last_heard = Some(self.now);
                    }
                    return self.resize_reached(c, s, conn, frame);
                }
                let incarnation = server.incarnation();
                let request = match &frame {
                    Message::Request(r) => Some((r.client, r.seq, r.idempotent)),
                    _ => None,
                };
                // Kept for a late copy, in runs that make them.
                let copy = match &frame {
                    Message::Request(r) if self.overdue.is_some() && !r.idempotent => {
                        Some(r.clone())
                    }
                    _ => None,
                };
                let action = server.admit(conn, frame, self.now);
                if let Some(copy) = &copy {
                    self.judge_copy(s, incarnation, copy, &action)?;
                }
                // The world's own count of a caller's calls first: the
                // server's invariants could share a bug in its bound.
                if let Action::Execute(inc) = &action {
                    self.started_for_caller(s, &inc.key)?;
                }
                if let Some(server) = self.servers[s].as_ref() {
                    server.check()?;
                }
                if let Some(track) = self.tracks.get_mut(&(s, conn)) {
                    track.last_heard = Some(self.now);
                }
                match action {
                    Action::Execute(inc) => {
                        let tag: u64 = decode_payload(&inc.payload).map_err(|e| e.to_string())?;
                        if self.outsider == Some(c) {
                            return Err(format!(
                                "call {tag} of a client without an accepted token ran on server {s}"
                            ));
                        }
                        let running = Running {
                            s,
                            incarnation,
                            c,
                            key: inc.key,
                            tag,
                            due: inc.due,
                            on_worker: false,
                            request: copy.map(|r| (epoch, r)),
                        };
                        self.admitted(running, inc.overdue_at)?;
                    }
                    Action::Reply(f) => {
                        match &f {
                            Message::Reply(r) => match r.outcome {
                                Outcome::Refused(Refusal::CallerInFlight) => {
                                    self.stats.caller_refusals += 1;
                                }
                                Outcome::Refused(Refusal::Unauthorized) => {
                                    self.stats.unauthorized_requests += 1;
                                }
                                _ => {}
                            },
                            Message::Pong(p) if p.refused == Some(Refusal::Unauthorized) => {
                                self.stats.unauthorized_handshakes += 1;
                            }
                            _ => {}
                        }
                        if let (Message::Reply(r), Some((client, seq, idempotent))) = (&f, request)
                        {
                            match r.outcome {
                                Outcome::Ok | Outcome::Panicked => self.stats.saved_replies += 1,
                                Outcome::OutcomeUnknown => self.stats.orphans_refused += 1,
                                Outcome::Refused(_) if !idempotent => {
                                    self.stats.refusals += 1;
                                    if !self.refused.insert((client, seq)) {
                                        self.stats.refusals_repeated += 1;
                                    }
                                }
                                _ => {}
                            }
                        }
                        self.send_to_client(c, s, f);
                    }
                    Action::Wait => self.stats.waits += 1,
                    Action::Drop => self.stats.dropped_below_ack += 1,
                    // Resize frames took the branch above.
                    Action::Resize(r) => {
                        return Err(format!("a call's frame on server {s} was answered {r:?}"));
                    }
                }
            }
            Event::Complete { run } => {
                // Gone: cancelled first, or its server crashed.
                let Some(r) = self.running.remove(&run) else {
                    return Ok(());
                };
                let Running {
                    s,
                    incarnation,
                    c,
                    key,
                    tag,
                    on_worker,
                    ..
                } = r;
                let Some(server) = self.servers[s].as_mut() else {
                    return Ok(());
                };
                if server.incarnation() != incarnation {
                    return Ok(());
                }
                let (outcome, payload) = if tag % PANIC_EVERY == 0 {
                    (
                        Outcome::Panicked,
                        Bytes::from_static(b"the method panicked"),
                    )
                } else {
                    let p = encode_payload(&(tag, REPLY_MARK)).map_err(|e| e.to_string())?;
                    (Outcome::Ok, p)
                };
                let not_kept = server.stats().replies_not_kept;
                let (reply, route) = server.complete(key, outcome, payload, self.now);
                server.check()?;
                if server.stats().replies_not_kept > not_kept {
                    self.stats.replies_not_kept += 1;
                }
                self.released(s, &key);
                // No route, or a route to another connection than the
                // client's current one: the reply waits for a resend.
                if route.is_some() && route == self.conns[c][s].server_conn {
                    self.send_to_client(c, s, Message::Reply(reply));
                }
                if on_worker {
                    self.workers[s].busy -= 1;
                    self.start_workers(s)?;
                }
            }
            Event::Overdue { run } => self.overdue(run)?,
            Event::ToClient { c, s, epoch, frame } => {
                if self.conn_live(c, s, epoch) {
                    if let Message::ConnError(e) = &frame
                        && e.kind == ConnErrorKind::Timeout
                    {
                        self.stats.timeout_notices += 1;
                    }
                    self.sessions[c][s].handle_message(frame, self.now);
                    self.pump(c, s)?;
                }
            }
            Event::Reset { c, s } => {
                if self.conns[c][s].up {
                    self.stats.resets += 1;
                    self.break_conn(c, s, true)?;
                }
            }
            Event::Reconnect { c, s } => {
                self.conns[c][s].reconnect_pending = false;
                if self.sessions[c][s].link() != LinkState::Disconnected {
                    return Ok(());
                }
                if let Some(server) = self.servers[s].as_mut() {
                    let opened = server.open_connection(peer_of(c), self.now);
                    let incarnation = server.incarnation();
                    if let Ok(id) = opened {
                        self.tracks.insert(
                            (s, id),
                            super::Track {
                                opened_at: self.now,
                                last_heard: None,
                            },
                        );
                    }
                    let conn = &mut self.conns[c][s];
                    conn.up = true;
                    conn.epoch += 1;
                    conn.server_conn = opened.ok();
                    self.sessions[c][s].handle_connected(self.now);
                    self.pump(c, s)?;
                    if let Err(refusal) = opened {
                        // Turned away unread: the refusal, then the close.
                        self.stats.conns_refused += 1;
                        let kind = match refusal {
                            ConnRefusal::ServerFull { .. } => ConnErrorKind::ServerFull,
                            ConnRefusal::PeerFull { .. } => ConnErrorKind::PeerFull,
                        };
                        let err = connection_error(incarnation, kind, refusal.to_string());
                        self.send_to_client(c, s, err);
                        let epoch = self.conns[c][s].epoch;
                        let after = self.now + self.faults.max_delay + Nanos(1);
                        self.at(after, Event::Close { c, s, epoch });
                    }
                } else {
                    self.schedule_reconnect(c, s, Nanos::from_millis(50));
                }
            }
            Event::Close { c, s, epoch } => {
                if self.conn_live(c, s, epoch) {
                    self.break_conn(c, s, true)?;
                }
            }
            Event::Crash { s } => {
                if self.servers[s].take().is_none() {
                    return Ok(());
                }
                // The session that named the connections is gone with them.
                for per in &mut self.conns {
                    per[s].server_conn = None;
                }
                self.tracks.retain(|(server, _), _| *server != s);
                self.stats.crashes += 1;
                for c in 0..self.sessions.len() {
                    let notified = self.rng.chance(self.faults.crash_notified);
                    self.break_conn(c, s, notified)?;
                }
                let after = Nanos::from_millis(20 + self.rng.below(400));
                self.at(self.now + after, Event::Restart { s });
            }
            Event::Restart { s } => self.restart(s),
            Event::Sweep { s } => {
                self.at(self.now + self.sweep_every, Event::Sweep { s });
                self.sweep(s)?;
            }
            Event::Mute { s, speaks } => {
                let Some(server) = self.servers[s].as_mut() else {
                    return Ok(());
                };
                let Ok(id) = server.open_connection(MUTE_PEER, self.now) else {
                    self.stats.conns_refused += 1;
                    return Ok(());
                };
                let mut track = super::Track {
                    opened_at: self.now,
                    last_heard: None,
                };
                if speaks {
                    // One message, then silence until the idle timeout.
                    let describe = Message::Describe(Describe { id: 1 });
                    let _ = server.admit(id, describe, self.now);
                    track.last_heard = Some(self.now);
                }
                self.tracks.insert((s, id), track);
            }
            Event::Forge { s, c } => self.forge(s, c)?,
            Event::Resize { c, s, wrong_way } => self.send_resize(c, s, wrong_way),
        }
        Ok(())
    }

    /// Run `run` starts: counted, and an at-most-once call checked never
    /// to run twice, across incarnations too.
    pub(super) fn ran(&mut self, run: u64) -> Result<(), String> {
        let r = &self.running[&run];
        let (tag, key, incarnation) = (r.tag, r.key, r.incarnation);
        self.stats.executions += 1;
        *self.executed.entry(tag).or_default() += 1;
        if !key.idempotent {
            let n = self.ledger.entry((key.client, key.seq)).or_default();
            *n += 1;
            if *n > 1 || self.executed[&tag] > 1 {
                return Err(format!(
                    "at-most-once call {tag} (client {}, seq {}) executed twice, now at incarnation {incarnation}",
                    key.client, key.seq
                ));
            }
        }
        Ok(())
    }

    /// A call ended on server `s` (completed, refused at its start or
    /// cancelled): its caller has one call fewer executing there.
    pub(super) fn released(&mut self, s: usize, key: &CallKey) {
        if let Caller::Token(i) = key.caller
            && let Some(n) = self.executing.get_mut(&(s, i))
        {
            *n -= 1;
        }
    }

    /// The server closes what it finds silent; the world checks it closed
    /// exactly the connections silent past their timeout (no live one, no
    /// silent one left open), tells each client whose connection closed
    /// why, and closes it.
    fn sweep(&mut self, s: usize) -> Result<(), String> {
        let Some(server) = self.servers[s].as_mut() else {
            return Ok(());
        };
        let (handshake, idle) = (
            self.server_cfg.handshake_timeout,
            self.server_cfg.idle_timeout,
        );
        let now = self.now;
        let expected: Vec<ConnId> = self
            .tracks
            .range((s, ConnId(0))..=(s, ConnId(u64::MAX)))
            .filter(|(_, t)| match t.last_heard {
                None => t.opened_at + handshake <= now,
                Some(heard) => heard + idle <= now,
            })
            .map(|(&(_, id), _)| id)
            .collect();
        let closed = server.close_silent(now);
        server.check()?;
        if closed != expected {
            let detail: Vec<String> = closed
                .iter()
                .chain(&expected)
                .filter_map(|id| {
                    let t = self.tracks.get(&(s, *id))?;
                    Some(format!(
                        "{id:?} opened {} last heard {:?}",
                        t.opened_at, t.last_heard
                    ))
                })
                .collect();
            return Err(format!(
                "server {s} at {now} closed {closed:?} for silence, but {expected:?} were silent past their timeouts (handshake {handshake}, idle {idle}): {detail:?}"
            ));
        }
        let incarnation = server.incarnation();
        for id in closed {
            let Some(track) = self.tracks.remove(&(s, id)) else {
                continue;
            };
            match track.last_heard {
                None => self.stats.closed_handshake += 1,
                Some(_) => self.stats.closed_idle += 1,
            }
            let client = (0..self.conns.len()).find(|&c| self.conns[c][s].server_conn == Some(id));
            if let Some(c) = client {
                self.stats.clients_timed_out += 1;
                let notice = connection_error(
                    incarnation,
                    ConnErrorKind::Timeout,
                    "nothing heard within the handshake or idle timeout".to_owned(),
                );
                self.send_to_client(c, s, notice);
                let epoch = self.conns[c][s].epoch;
                let after = self.now + self.faults.max_delay + Nanos(1);
                self.at(after, Event::Close { c, s, epoch });
            }
        }
        Ok(())
    }

    fn start_on(
        &mut self,
        tag: u64,
        c: usize,
        s: usize,
        idem: bool,
        deadline: Instant,
    ) -> Result<(), String> {
        let payload: Bytes = encode_payload(&tag).map_err(|e| e.to_string())?;
        match self.sessions[c][s].start_call(METHOD, idem, payload, deadline, self.now) {
            Ok(id) => {
                self.by_call.insert((c, s, id), tag);
                self.calls.get_mut(&tag).expect("exists").started = true;
            }
            Err(e) => self.end(tag, Err(e))?,
        }
        self.pump(c, s)
    }

    /// Records how call `tag` ended, checking it ended once and by its
    /// deadline.
    pub(super) fn end(&mut self, tag: u64, r: Result<(), CallError>) -> Result<(), String> {
        let now = self.now;
        let call = self.calls.get_mut(&tag).expect("every tag is planned");
        if call.ended.is_some() {
            return Err(format!("call {tag} ended twice"));
        }
        if now > call.deadline {
            return Err(format!(
                "call {tag} ended at {now}, after its deadline {} ({r:?})",
                call.deadline
            ));
        }
        let s = &mut self.stats;
        match &r {
            Ok(()) => s.ok += 1,
            Err(CallError::OutcomeUnknown { .. }) => s.outcome_unknown += 1,
            Err(CallError::DeadlineExceeded { .. }) => s.deadline += 1,
            Err(CallError::ConnectionLost { .. }) => s.connection_lost += 1,
            Err(CallError::ServerUnresponsive { .. }) => s.unresponsive += 1,
            Err(CallError::Refused { .. }) => s.rejected += 1,
            Err(CallError::Panicked { .. }) => s.panicked += 1,
            Err(_) => s.other_err += 1,
        }
        call.ended = Some((now, r));
        Ok(())
    }
}
