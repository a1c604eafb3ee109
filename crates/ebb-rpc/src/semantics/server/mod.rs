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

mod action;
mod complete;
mod config;
mod connections;
mod handshake;
mod overdue;
mod request;
mod stats;

use std::net::IpAddr;
use std::num::NonZeroU32;

use bytes::Bytes;
use ebb_core::{ClientId, Instant};

use super::conns::{Caller, ConnId, Conns};
use super::reply_table::ReplyTable;
use super::service_time::ServiceTime;
use crate::auth::Tokens;
use crate::fast_map::FastMap;
use crate::wire::{Incarnation, Message};

pub use action::{Action, CallKey, Incoming};
pub use config::ServerConfig;
pub use stats::ServerStats;

/// A fresh incarnation number for a starting server process: 64 random bits
/// (never 0), so two incarnations collide with probability 2^-64 without
/// any durable counter.
pub fn random_incarnation(rng: &mut ebb_core::Rng) -> Incarnation {
    Incarnation::at_least_one(rng.next_u64())
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
    /// The most workers a `Resize` may ask for; `None`: this server does
    /// not resize and answers so.
    resize_up_to: Option<NonZeroU32>,
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
    /// Test-only: answer a call refused at its start past its due without
    /// recording it (the bug the fault simulation must catch).
    planted_unrecorded_start_refusal: bool,
    /// Test-only: answer a call cancelled past its due without recording it
    /// (the bug the fault simulation must catch).
    planted_unrecorded_cancellation: bool,
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
            resize_up_to: None,
            callers: FastMap::default(),
            planted_unrecorded_refusal: false,
            planted_handshake_timeout_when_idle: false,
            planted_caller_bound_per_connection: false,
            planted_requests_unchecked_for_token: false,
            planted_unrecorded_start_refusal: false,
            planted_unrecorded_cancellation: false,
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

    /// Lets an authorized connection resize the server's workers, up to
    /// `up_to` (`None`: a `Resize` is answered that this server does not
    /// resize, the default).
    pub fn set_resize_up_to(&mut self, up_to: Option<NonZeroU32>) {
        self.resize_up_to = up_to;
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

    /// Not for production: answers a call that waited past its due and is
    /// refused at its start without recording the refusal, so a late copy
    /// runs it after its client may have been told it did not run. The
    /// fault simulation plants it to show it would catch it.
    #[doc(hidden)]
    pub fn plant_unrecorded_start_refusal(&mut self) {
        self.planted_unrecorded_start_refusal = true;
    }

    /// Not for production: answers a call cancelled past its due plus the
    /// grace without recording it, so a late copy runs it a second time.
    /// The fault simulation plants it to show it would catch it.
    #[doc(hidden)]
    pub fn plant_unrecorded_cancellation(&mut self) {
        self.planted_unrecorded_cancellation = true;
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
            Message::Resize(r) => self.handle_resize(conn, r),
            Message::Reply(_)
            | Message::Pong(_)
            | Message::ConnError(_)
            | Message::Description(_)
            | Message::Resized(_) => Action::Drop,
        };
        self.debug_check();
        action
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
