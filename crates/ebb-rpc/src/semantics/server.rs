//! The server half of the call semantics: decides, per incoming frame,
//! whether to run a call, answer from memory, wait, refuse, or drop, and per
//! new connection whether to accept it. The transport asks and obeys; it
//! refuses nothing on its own, so every refusal is recorded here.
//!
//! A connection acts on a client's session only after it proved the client
//! id: a handshake ping carries the client's secret, from which the id is
//! derived (`wire::ClientSecret`). A ping whose secret does not prove its
//! id is refused `Unauthenticated`, counted, and touches no session; an
//! at-most-once request on a connection that has not proven its id is
//! refused the same way, and is not recorded (the session is not the
//! sender's to record into). Idempotent requests keep no state, so they
//! run unproven, but their replies go back only to the connection they came
//! on, and they do not acknowledge anything in the session.
//!
//! Rules, in the order they are checked for an at-most-once request:
//! 0. its connection has not proven the client id: `Refused(Unauthenticated)`;
//! 1. it names another incarnation than ours (and not 0): `OutcomeUnknown`,
//!    nothing runs (orphans of a previous incarnation are cancelled here);
//! 2. no session for the client: `OutcomeUnknown` (we may have forgotten it);
//! 3. `seq` below the client's acknowledged-below: dropped (the client no
//!    longer waits for it);
//! 4. `seq` below the session's floor: `OutcomeUnknown`;
//! 5. `seq` outside the window `ack_below + MAX_REPLIES_PER_CLIENT`:
//!    `BadRequest` (a client that breaks the protocol);
//! 6. completed (or refused) before: the saved reply; running: wait, the
//!    reply goes out when it completes; new but refused (its deadline has
//!    passed, its connection is at its in-flight bound or speaks for too
//!    many clients): `Refused` with its reason, **recorded** like a completion, so no later
//!    copy runs it; new: run it.
//!
//! Idempotent requests keep no state: they run (again) every time, unless
//! refused for the same reasons (then only that copy did not run).

use std::net::IpAddr;

use bytes::Bytes;
use ebb_core::{ClientId, Instant, Nanos};

use super::conns::{Caller, ConnId, ConnRefusal, Conns, Route};
use super::reply_table::{Entry, ReplyTable, Saved, TableFull};
use super::service_time::ServiceTime;
use super::{
    HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, MAX_CLIENTS, MAX_CLIENTS_PER_CONN, MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_PEER, MAX_IN_FLIGHT_PER_CONN, MAX_REPLIES_PER_CLIENT,
    MAX_SAVED_REPLY_BYTES_PER_CLIENT, MAX_SAVED_REPLY_BYTES_TOTAL, MAX_SESSIONS_PER_PEER,
    SESSION_EXPIRY,
};
use crate::auth::Tokens;
use crate::fast_map::FastMap;
use crate::wire::{
    Description, Incarnation, Message, Outcome, Ping, Pong, Refusal, Reply, Request, Seq,
};

/// A fresh incarnation number for a starting server process: 64 random bits
/// (never 0), so two incarnations collide with probability 2^-64 without
/// any durable counter.
pub fn random_incarnation(rng: &mut ebb_core::Rng) -> Incarnation {
    Incarnation::at_least_one(rng.next_u64())
}

/// Bounds of a server's at-most-once state and of its connections; the
/// defaults are the named constants in [`super`], documented with their
/// numbers in `docs/semantics.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub max_clients: usize,
    pub session_expiry: Nanos,
    pub max_sessions_per_peer: usize,
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    pub max_in_flight_per_conn: usize,
    pub max_clients_per_conn: usize,
    /// Payload bytes of saved replies one client session may hold; a reply
    /// beyond it is answered live but saved as `OutcomeUnknown`.
    pub max_saved_reply_bytes_per_client: usize,
    /// Payload bytes of saved replies all sessions together may hold; a
    /// reply beyond it is answered live but saved as `OutcomeUnknown`.
    pub max_saved_reply_bytes_total: usize,
    /// A connection that sends nothing this long after opening is closed.
    pub handshake_timeout: Nanos,
    /// A connection that sends nothing this long after its last message is
    /// closed.
    pub idle_timeout: Nanos,
    /// Calls one caller (its bearer token, else its peer address) may have
    /// executing at once, over all its connections; a new call beyond it is
    /// refused `CallerInFlight` (recorded). `None`: only the connection
    /// bounds apply (`max_connections_per_peer` × `max_in_flight_per_conn`
    /// per peer).
    pub max_in_flight_per_caller: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_clients: MAX_CLIENTS,
            session_expiry: SESSION_EXPIRY,
            max_sessions_per_peer: MAX_SESSIONS_PER_PEER,
            max_connections: MAX_CONNECTIONS,
            max_connections_per_peer: MAX_CONNECTIONS_PER_PEER,
            max_in_flight_per_conn: MAX_IN_FLIGHT_PER_CONN,
            max_clients_per_conn: MAX_CLIENTS_PER_CONN,
            max_saved_reply_bytes_per_client: MAX_SAVED_REPLY_BYTES_PER_CLIENT,
            max_saved_reply_bytes_total: MAX_SAVED_REPLY_BYTES_TOTAL,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            max_in_flight_per_caller: None,
        }
    }
}

/// Names one call for [`ServerSession::complete`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallKey {
    pub client: ClientId,
    pub seq: Seq,
    pub method: u16,
    pub idempotent: bool,
    /// The arguments are JSON and the reply must be JSON too.
    pub json: bool,
    /// The connection it arrived on, whose in-flight count it holds.
    pub conn: ConnId,
    /// `conn` proved the client id: the reply follows the client to its
    /// current connection. Otherwise it goes back on `conn` alone.
    pub proven: bool,
    /// Who the call counts against for per-caller bounds.
    pub caller: Caller,
}

/// A call to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    pub key: CallKey,
    /// Time the call had left when the client sent it.
    pub deadline: Nanos,
    pub payload: Bytes,
}

/// What to do with one incoming frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run the method, then call [`ServerSession::complete`] with its outcome.
    Execute(Incoming),
    /// Send this back on the connection the message came from; nothing
    /// runs.
    Reply(Message),
    /// A duplicate of a running call: its reply goes out on completion.
    Wait,
    /// Nothing to do (a reply-kind frame, a closed connection, or a call the
    /// client gave up on).
    Drop,
}

/// Counts of the decisions taken, for metrics and for tests that must show
/// a rare path ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub executed: u64,
    /// Duplicates answered from a saved reply (completion or refusal).
    pub saved_replies: u64,
    /// Duplicates of a running call that waited for it.
    pub waits: u64,
    pub refused_deadline: u64,
    pub refused_in_flight: u64,
    pub refused_clients_per_conn: u64,
    pub refused_handshakes: u64,
    pub refused_connections: u64,
    /// Connections closed for silence (handshake or idle timeout).
    pub closed_silent: u64,
    /// Calls whose method panicked.
    pub panicked: u64,
    /// Replies sent but saved as `OutcomeUnknown`: over the saved-reply
    /// bytes of their session or of the whole table.
    pub replies_not_kept: u64,
    /// Handshakes whose secret did not prove their client id (a peer
    /// forging another client's id), refused without touching a session.
    pub refused_forged_handshakes: u64,
    /// At-most-once requests on a connection that had not proven their
    /// client id, refused without touching a session.
    pub refused_unproven_requests: u64,
    /// Handshakes without an accepted bearer token, on a server that
    /// requires one.
    pub refused_unauthorized_handshakes: u64,
    /// Requests on a connection that presented no accepted bearer token.
    pub refused_unauthorized_requests: u64,
    /// Describe requests on a connection that presented no accepted bearer
    /// token, on a server that requires one: left unanswered.
    pub refused_unauthorized_describes: u64,
    /// New calls refused over their caller's in-flight bound.
    pub refused_caller_in_flight: u64,
}

/// One server process's call semantics, for the lifetime of one incarnation.
/// A crash loses it; the restarted process builds a new one with a new
/// incarnation number.
#[derive(Debug)]
pub struct ServerSession {
    incarnation: Incarnation,
    config: ServerConfig,
    table: ReplyTable,
    conns: Conns,
    /// Calls executing now (admitted, not yet completed), all connections.
    executing: usize,
    /// Busy time per completed call, as replies report it.
    service_time: ServiceTime,
    stats: ServerStats,
    /// The service description a `Describe` is answered with (postcard).
    description: Bytes,
    /// Bearer tokens a connection must present; `None`: none required.
    tokens: Option<Tokens>,
    /// Calls executing per caller, when `max_in_flight_per_caller` is set;
    /// callers with none are removed, so it holds at most `executing`
    /// entries.
    callers: FastMap<Caller, usize>,
    /// Test-only: answer refusals without recording them (the bug the fault
    /// simulation must catch).
    planted_unrecorded_refusal: bool,
    /// Test-only: apply the handshake timeout to connections past their
    /// handshake too (the bug the fault simulation must catch).
    planted_handshake_timeout_when_idle: bool,
    /// Test-only: count a caller's calls per connection, not over all its
    /// connections (the bug the fault simulation must catch).
    planted_caller_bound_per_connection: bool,
    /// Test-only: let requests through on a connection that presented no
    /// accepted token (the bug the fault simulation must catch).
    planted_requests_unchecked_for_token: bool,
}

impl ServerSession {
    /// `incarnation` must differ from every earlier incarnation of this
    /// server: the transport draws it at random ([`random_incarnation`]).
    pub fn new(incarnation: Incarnation, config: ServerConfig) -> ServerSession {
        ServerSession {
            incarnation,
            config,
            table: ReplyTable::new(
                config.max_clients,
                config.max_sessions_per_peer,
                config.session_expiry,
            )
            .with_max_saved_bytes_total(config.max_saved_reply_bytes_total),
            conns: Conns::default(),
            executing: 0,
            service_time: ServiceTime::default(),
            stats: ServerStats::default(),
            description: Bytes::new(),
            tokens: None,
            callers: FastMap::default(),
            planted_unrecorded_refusal: false,
            planted_handshake_timeout_when_idle: false,
            planted_caller_bound_per_connection: false,
            planted_requests_unchecked_for_token: false,
        }
    }

    /// Sets what a `Describe` is answered with: the postcard-encoded
    /// `service::ServiceDescription` of the service this server runs.
    pub fn set_description(&mut self, description: Bytes) {
        self.description = description;
    }

    /// Requires every connection to present one of `tokens` in its
    /// handshake before any of its calls run or it learns the service's
    /// description (`None`: no token required).
    pub fn set_tokens(&mut self, tokens: Option<Tokens>) {
        self.tokens = tokens;
    }

    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    /// Calls `caller` has executing now (counted only while
    /// `max_in_flight_per_caller` is set).
    pub fn in_flight_of(&self, caller: Caller) -> usize {
        self.callers.get(&caller).copied().unwrap_or(0)
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub fn table(&self) -> &ReplyTable {
        &self.table
    }

    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// Calls executing now: what a server reports as its load.
    pub fn executing(&self) -> usize {
        self.executing
    }

    /// The load as replies and pongs carry it.
    fn load(&self) -> u32 {
        u32::try_from(self.executing).unwrap_or(u32::MAX)
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Connections open from `peer`.
    pub fn connections_from(&self, peer: IpAddr) -> usize {
        self.conns.opened_by(peer)
    }

    /// Calls of `conn` executing now.
    pub fn in_flight(&self, conn: ConnId) -> usize {
        self.conns.in_flight(conn)
    }

    /// Where `client`'s replies go: the connection it was last heard on.
    pub fn route_of(&self, client: ClientId) -> Option<ConnId> {
        self.conns.route_of(client)
    }

    /// Frees sessions idle past expiry; call it now and then.
    pub fn expire_idle(&mut self, now: Instant) -> usize {
        self.table.expire_idle(now)
    }

    /// Not for production: makes refusals go unrecorded, the defect that let
    /// a refused call run on a later copy. The fault simulation plants it to
    /// show it would catch it.
    #[doc(hidden)]
    pub fn plant_unrecorded_refusal(&mut self) {
        self.planted_unrecorded_refusal = true;
    }

    /// Not for production: closes connections past their handshake after
    /// the (shorter) handshake timeout, cutting off live clients. The fault
    /// simulation plants it to show it would catch it.
    #[doc(hidden)]
    pub fn plant_handshake_timeout_when_idle(&mut self) {
        self.planted_handshake_timeout_when_idle = true;
    }

    /// Not for production: bounds a caller's calls per connection instead of
    /// over all its connections, so a caller with several connections runs
    /// past its bound. The fault simulation plants it to show it would
    /// catch it.
    #[doc(hidden)]
    pub fn plant_caller_bound_per_connection(&mut self) {
        self.planted_caller_bound_per_connection = true;
    }

    /// Not for production: checks the token at the handshake only, so
    /// requests on a connection whose handshake was refused (idempotent
    /// ones, which need no session) still run. The fault simulation plants
    /// it to show it would catch it.
    #[doc(hidden)]
    pub fn plant_requests_unchecked_for_token(&mut self) {
        self.planted_requests_unchecked_for_token = true;
    }

    /// A transport accepted a connection from `peer`: admit it, or refuse it
    /// (then the transport sends the refusal and closes; nothing from it is
    /// read, so nothing runs).
    pub fn open_connection(&mut self, peer: IpAddr, now: Instant) -> Result<ConnId, ConnRefusal> {
        let opened = self.conns.open(
            peer,
            now,
            self.config.max_connections,
            self.config.max_connections_per_peer,
        );
        if opened.is_err() {
            self.stats.refused_connections += 1;
        }
        opened
    }

    /// Connections to close at `now` for silence (no handshake within
    /// `handshake_timeout`, nothing within `idle_timeout`), already closed
    /// here: the transport tells each why and drops it. Call it now and
    /// then; it walks every connection.
    pub fn close_silent(&mut self, now: Instant) -> Vec<ConnId> {
        let idle = if self.planted_handshake_timeout_when_idle {
            self.config.handshake_timeout
        } else {
            self.config.idle_timeout
        };
        let silent = self.conns.silent(now, self.config.handshake_timeout, idle);
        for &id in &silent {
            self.conns.close(id);
        }
        self.stats.closed_silent += silent.len() as u64;
        silent
    }

    /// The connection is gone. Its running calls still complete (and are
    /// recorded); their replies wait for the client to ask again.
    pub fn close_connection(&mut self, conn: ConnId) {
        self.conns.close(conn);
    }

    /// Bytes of a message not yet whole arrived on `conn`: the peer is
    /// sending, so the connection is not idle. A large request crossing a
    /// slow link takes longer than the idle timeout, and its sender cannot
    /// ping meanwhile: its pings queue behind it in the stream.
    pub fn handle_progress(&mut self, conn: ConnId, now: Instant) {
        self.conns.heard(conn, now);
    }

    /// Decides what to do with a message that arrived on `conn`.
    pub fn admit(&mut self, conn: ConnId, message: impl Into<Message>, now: Instant) -> Action {
        if !self.conns.heard(conn, now) {
            return Action::Drop;
        }
        let action = match message.into() {
            Message::Request(req) => {
                match self
                    .conns
                    .route(conn, req.client, self.config.max_clients_per_conn)
                {
                    Some(route) => self.handle_request(conn, req, route, now),
                    None => Action::Drop,
                }
            }
            Message::Ping(ping) => Action::Reply(Message::Pong(self.handle_ping(conn, &ping, now))),
            Message::Describe(d) => self.handle_describe(conn, d.id),
            Message::Reply(_)
            | Message::Pong(_)
            | Message::ConnError(_)
            | Message::Description(_) => Action::Drop,
        };
        self.debug_check();
        action
    }

    /// A description names every method and its parameter types: on a
    /// server that requires a bearer token, only a connection that
    /// presented an accepted one learns it. A refused Describe is left
    /// unanswered: the handshake before it was already refused
    /// `Unauthorized` in its pong, which is what the client reports, and a
    /// peer that skips the handshake learns nothing at all.
    fn handle_describe(&mut self, conn: ConnId, id: u64) -> Action {
        if self.tokens.is_some() && self.conns.token(conn).is_none() {
            self.stats.refused_unauthorized_describes += 1;
            return Action::Drop;
        }
        Action::Reply(Message::Description(Description {
            id,
            incarnation: self.incarnation,
            payload: self.description.clone(),
        }))
    }

    /// The ping is the session handshake and heartbeat: it proves the
    /// client id on this connection, opens (or keeps alive) the client's
    /// session and tells the client our incarnation. A ping that does not
    /// prove its id touches nothing.
    fn handle_ping(&mut self, conn: ConnId, ping: &Ping, now: Instant) -> Pong {
        let token = self.tokens.as_ref().map(|t| t.find(&ping.token));
        let opened = if let Some(None) = token {
            self.stats.refused_unauthorized_handshakes += 1;
            Err((
                Refusal::Unauthorized,
                if ping.token.is_empty() {
                    "this server requires a bearer token; the handshake carried none".to_owned()
                } else {
                    "the handshake's bearer token is not one this server accepts".to_owned()
                },
            ))
        } else if !ping.secret.proves(ping.client) {
            self.stats.refused_forged_handshakes += 1;
            Err((
                Refusal::Unauthenticated,
                "the handshake's secret does not prove its client id".to_owned(),
            ))
        } else {
            if let Some(Some(index)) = token {
                self.conns.authorize(conn, index);
            }
            self.open_session(conn, ping, now)
        };
        let (refused, message) = match opened {
            Ok(()) => (None, Bytes::new()),
            Err((why, message)) => {
                self.stats.refused_handshakes += 1;
                (Some(why), Bytes::from(message))
            }
        };
        Pong {
            client: ping.client,
            floor: ping.floor,
            incarnation: self.incarnation,
            refused,
            load: self.load(),
            message,
        }
    }

    /// Proves `ping`'s client on `conn` and opens its session; the ping's
    /// secret proved its id.
    fn open_session(
        &mut self,
        conn: ConnId,
        ping: &Ping,
        now: Instant,
    ) -> Result<(), (Refusal, String)> {
        let listed = self
            .conns
            .route(conn, ping.client, self.config.max_clients_per_conn)
            .is_some_and(|r| r.listed);
        if listed {
            self.conns.prove(conn, ping.client);
        }
        match self.conns.peer(conn) {
            Some(peer) if listed => self
                .table
                .open(ping.client, ping.floor, peer, now)
                .map(|mut state| state.acknowledge_below(ping.ack_below))
                .map_err(|full| match full {
                    TableFull::Total { .. } => (Refusal::Sessions, full.to_string()),
                    TableFull::Peer { .. } => (Refusal::PeerSessions, full.to_string()),
                }),
            _ => Err((
                Refusal::ClientsPerConnection,
                self.refusal_message(Refusal::ClientsPerConnection),
            )),
        }
    }

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
    fn refusal_message(&self, why: Refusal) -> String {
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

    fn handle_request(&mut self, conn: ConnId, req: Request, route: Route, now: Instant) -> Action {
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

    /// Records a finished call's outcome and returns the reply, with the
    /// connection to send it on (its client's current route; `None`: the
    /// client has no connection now and will ask again). At-most-once
    /// outcomes are saved until the client acknowledges them, so duplicates
    /// get this same reply.
    ///
    /// Call it exactly once per `Execute`, whatever the outcome (an unknown
    /// method, undecodable arguments, a panic too): until then duplicates
    /// wait, and the call counts against its connection's in-flight bound.
    pub fn complete(
        &mut self,
        key: CallKey,
        outcome: Outcome,
        payload: Bytes,
        now: Instant,
    ) -> (Reply, Option<ConnId>) {
        self.complete_with(key, outcome, payload, now, |reply, route| {
            (reply.clone(), route)
        })
    }

    /// [`ServerSession::complete`] that lends the reply to `send` instead of
    /// returning a copy: the transport encodes it straight from the reply
    /// table, so a saved reply's payload is never shared (sharing a `Bytes`
    /// made from a `Vec` allocates).
    pub fn complete_with<R>(
        &mut self,
        key: CallKey,
        outcome: Outcome,
        payload: Bytes,
        now: Instant,
        send: impl FnOnce(&Reply, Option<ConnId>) -> R,
    ) -> R {
        debug_assert!(self.executing > 0, "complete without an Execute");
        self.executing = self.executing.saturating_sub(1);
        let service_time = self.service_time.completed(now);
        self.conns.finished(key.conn);
        if self.config.max_in_flight_per_caller.is_some()
            && let Some(n) = self.callers.get_mut(&key.caller)
        {
            *n -= 1;
            if *n == 0 {
                self.callers.remove(&key.caller);
            }
        }
        if outcome == Outcome::Panicked {
            self.stats.panicked += 1;
        }
        let reply = Reply {
            client: key.client,
            seq: key.seq,
            incarnation: self.incarnation,
            method: key.method,
            idempotent: key.idempotent,
            json: key.json,
            outcome,
            load: self.load(),
            service_time,
            payload,
        };
        let route = if key.proven {
            self.conns.route_of(key.client)
        } else {
            Some(key.conn).filter(|&c| self.conns.is_open(c))
        };
        self.debug_check();
        if key.idempotent {
            // Nothing keeps an idempotent reply: once encoded, its buffer
            // can carry the next one.
            let sent = send(&reply, route);
            crate::reply_pool::recycle(reply.payload);
            return sent;
        }
        // A session evicted meanwhile has nothing to record into; its
        // client will get `OutcomeUnknown` for this call if it asks again.
        let Some(mut state) = self.table.touch(key.client, now) else {
            return send(&reply, route);
        };
        // Only a running call's marker takes its reply. A saved reply can
        // already be there when the same seq ran twice: its session expired
        // while it ran and a handshake reopened it with a floor at or below
        // this seq. Only the holder of the client's secret can send that
        // handshake, and a correct client's floor is above every seq it
        // sent, so only a client lying about its own floor gets here (the
        // session fuzzer's pings do). The first saved reply stays, so every
        // duplicate keeps getting the same one.
        if state.entries.get(&key.seq) != Some(&Entry::Running) {
            return send(&reply, route);
        }
        let saved = state.save(key.seq, reply, self.config.max_saved_reply_bytes_per_client);
        if matches!(saved, Saved::Replaced { .. }) {
            self.stats.replies_not_kept += 1;
        }
        send(saved.reply(), route)
    }

    fn execute(&mut self, conn: ConnId, req: Request, route: Route, now: Instant) -> Action {
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
            payload: req.payload,
        })
    }

    fn reply(&self, req: &Request, outcome: Outcome, msg: &str) -> Action {
        reply_to(req, self.incarnation, self.load(), outcome, msg)
    }

    /// Checks every claim this session makes about its state; `Err` names
    /// the first broken one. Walks every table: for tests and fuzzing (debug
    /// builds check a cheap subset on every step).
    pub fn check(&self) -> Result<(), String> {
        self.table.check()?;
        self.conns.check()?;
        if self.conns.len() > self.config.max_connections {
            return Err(format!(
                "{} connections over the bound {}",
                self.conns.len(),
                self.config.max_connections
            ));
        }
        if let Some(max) = self.config.max_in_flight_per_caller {
            let counted: usize = self.callers.values().sum();
            if counted != self.executing {
                return Err(format!(
                    "{counted} calls counted per caller, {} executing",
                    self.executing
                ));
            }
            if let Some((caller, n)) = self.callers.iter().find(|(_, n)| **n > max || **n == 0) {
                return Err(format!("{caller} counts {n} calls, bound {max}"));
            }
        }
        Ok(())
    }

    fn debug_check(&self) {
        debug_assert!(self.table.len() <= self.config.max_clients.max(1));
        debug_assert!(self.callers.len() <= self.executing);
        debug_assert!(self.conns.len() <= self.config.max_connections);
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

fn count_refusal(stats: &mut ServerStats, refusal: Refusal) {
    let n = match refusal {
        Refusal::DeadlinePassed => &mut stats.refused_deadline,
        Refusal::InFlight => &mut stats.refused_in_flight,
        Refusal::CallerInFlight => &mut stats.refused_caller_in_flight,
        _ => &mut stats.refused_clients_per_conn,
    };
    *n += 1;
}
