//! Drives a `ServerSession` and two `ClientSession`s with a sequence of
//! operations decoded from arbitrary bytes: well-formed traffic between
//! them and arbitrary messages from nowhere, connections opened and closed,
//! calls completed in any order, time moving. After every step both
//! sessions' `check()` must hold; a panic anywhere is a failure too.
//!
//! Messages from nowhere name client ids with secrets that prove them (a
//! client of its own, or a client lying about its floor) or that do not
//! (a peer forging another client's id). Every forged handshake and every
//! at-most-once request on a connection that has not proven its id must be
//! refused `Unauthenticated` and leave the named session exactly as it
//! was; [`run`] counts them so a test can show they happened.
//!
//! The transport's progress reports are driven too: a client is told how
//! much of what it handed over has been written (all of it, or all but half
//! of its last message, so a copy can be "still leaving" when its resend
//! falls due), and the server that part of a frame arrived.
//!
//! So are resizes, as a gateway sends them: on clients' and strays'
//! connections, proven or not, within the server's bound and past it, to a
//! server that resizes and to one that does not, and `Resized` frames sent
//! the wrong way (to the server) or from nowhere (to a client). A resize
//! must never run a method or change the at-most-once table or any count
//! but its own; one on a connection that never proved a client id is left
//! unanswered; an answered one sets the server's workers (a real
//! `Workers`, as the transport's) to what was asked cut to the bound, so
//! their number stays within 1 ..= the bound.
//!
//! Shared by the proptest in `tests/session_fuzz.rs` and the cargo-fuzz
//! target `fuzz/fuzz_targets/sessions.rs`, so both explore the same space.

use std::net::{IpAddr, Ipv4Addr};
use std::num::{NonZeroU32, NonZeroUsize};

use bytes::Bytes;
use ebb_core::{ClientId, Instant, Nanos};
use ebb_rpc::semantics::{
    Action, CallId, CallKey, ClientConfig, ClientSession, ConnId, ServerConfig, ServerSession,
};
use ebb_rpc::transport::workers::Workers;
use ebb_rpc::wire::{
    ClientSecret, ConnError, ConnErrorKind, Incarnation, Message, Outcome, Ping, Pong, Refusal,
    Reply, Request, Seq,
};

mod resize;

use resize::RESIZE_BOUND;
pub use resize::Resizes;

const CLIENTS: usize = 2;
/// Secrets messages from nowhere draw from: the clients' own (index 0 and
/// 1, see [`secret`]) and two of strays'.
const SECRETS: u8 = 4;

/// The `n`th secret of the world; clients hold the first [`CLIENTS`].
fn secret(n: u8) -> ClientSecret {
    ClientSecret(u128::from(n) * 0x9e37_79b9_7f4a_7c15 + 1)
}

/// What the drive saw the server refuse as forged, over one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forgeries {
    /// Handshakes whose secret did not prove their id, refused.
    pub handshakes_refused: u64,
    /// Of those, ones naming a client with a live session (a forged resume).
    pub resumes_refused: u64,
    /// At-most-once requests on a connection that had not proven their id,
    /// refused.
    pub requests_refused: u64,
}
/// What one run drove, for tests that must show the rare paths ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub forgeries: Forgeries,
    pub resizes: Resizes,
    /// Write progress reported to a client (`handle_written`).
    pub writes_reported: u64,
    /// Resends the clients put off because the copy before was still being
    /// written, summed at the end of the run.
    pub retransmits_postponed: u64,
}

/// Bound on operations per input, so one input runs in bounded time.
pub const MAX_OPS: usize = 512;

/// Reads bytes as small numbers; past the end, zeros.
struct Bytes8<'a>(&'a [u8]);

impl Bytes8<'_> {
    fn next(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn below(&mut self, n: usize) -> usize {
        usize::from(self.next()) % n.max(1)
    }
}

struct World {
    now: Instant,
    server: ServerSession,
    clients: Vec<ClientSession>,
    /// Each client's connection on the server, if any.
    conns: Vec<Option<ConnId>>,
    /// Other connections (from nowhere).
    strays: Vec<ConnId>,
    executing: Vec<CallKey>,
    started: Vec<(usize, CallId)>,
    forgeries: Forgeries,
    /// Per client: bytes of messages handed to its connection since it
    /// opened, the length of the last one, and progress reports so far.
    handed: [u64; CLIENTS],
    last_len: [u64; CLIENTS],
    reports: [u64; CLIENTS],
    writes_reported: u64,
    /// Stray connections and the ids they sent a proving handshake for.
    proofs: std::collections::BTreeSet<(ConnId, ClientId)>,
    /// The server's worker threads, as the transport keeps them.
    workers: Workers,
    /// Whether the server resizes now (it is switched on and off).
    resizable: bool,
    /// Resize operations so far: which comes next, and its request id.
    resize_ops: u64,
    resizes: Resizes,
}

/// What a forged message must not change about a session.
type SessionView = Option<(Seq, Seq, Instant, usize, usize)>;

fn view(server: &ServerSession, client: ClientId) -> SessionView {
    server.table().get(client).map(|s| {
        (
            s.floor,
            s.ack_below,
            s.last_active,
            s.entries.len(),
            s.saved_bytes,
        )
    })
}

fn peer(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n as u8))
}

fn server_config() -> ServerConfig {
    ServerConfig {
        max_clients: 3,
        session_expiry: Nanos::from_millis(100),
        max_sessions_per_peer: 2,
        max_connections: 4,
        max_connections_per_peer: 3,
        max_in_flight_per_conn: 2,
        max_clients_per_conn: 2,
        max_saved_reply_bytes_per_client: 4,
        max_saved_reply_bytes_total: 12,
        handshake_timeout: Nanos::from_millis(50),
        idle_timeout: Nanos::from_millis(200),
        max_in_flight_per_caller: Some(3),
        overdue_grace: Nanos::from_millis(10),
    }
}

fn client_config() -> ClientConfig {
    ClientConfig {
        max_outstanding_calls: 8,
        retransmit_after: Nanos::from_millis(5),
        max_retransmit_interval: Nanos::from_millis(40),
        max_retransmits: 3,
        heartbeat_interval: Nanos::from_millis(20),
        heartbeat_silence: Nanos::from_millis(100),
    }
}

impl World {
    fn new() -> World {
        let now = Instant::EPOCH;
        let mut server = ServerSession::new(Incarnation::at_least_one(7), server_config());
        server.set_resize_up_to(NonZeroU32::new(RESIZE_BOUND));
        World {
            now,
            server,
            clients: (0..CLIENTS)
                .map(|c| ClientSession::new(secret(c as u8), client_config(), now))
                .collect(),
            conns: vec![None; CLIENTS],
            strays: Vec::new(),
            executing: Vec::new(),
            started: Vec::new(),
            forgeries: Forgeries::default(),
            handed: [0; CLIENTS],
            last_len: [0; CLIENTS],
            reports: [0; CLIENTS],
            writes_reported: 0,
            proofs: std::collections::BTreeSet::new(),
            workers: Workers::new(NonZeroUsize::MIN),
            resizable: true,
            resize_ops: 0,
            resizes: Resizes::default(),
        }
    }

    /// Admits a message from nowhere on `conn`; a forged one must be
    /// refused and change nothing.
    fn admit_stray(&mut self, conn: ConnId, m: Message) -> Result<(), String> {
        let (client, forged_ping) = match &m {
            Message::Ping(p) => (p.client, !p.secret.proves(p.client)),
            Message::Request(r) => (r.client, false),
            _ => return Ok(()),
        };
        let is_ping = matches!(&m, Message::Ping(_));
        if is_ping && !forged_ping {
            self.proofs.insert((conn, client));
        }
        // Never proven on this connection, whatever the server thinks.
        let unproven_amo = matches!(&m, Message::Request(r) if !r.idempotent)
            && !self.proofs.contains(&(conn, client));
        let before = view(&self.server, client);
        let action = self.server.admit(conn, m, self.now);
        let after = view(&self.server, client);
        let refused_unauthenticated = match &action {
            Action::Reply(Message::Pong(p)) => p.refused == Some(Refusal::Unauthenticated),
            Action::Reply(Message::Reply(r)) => {
                r.outcome == Outcome::Refused(Refusal::Unauthenticated)
            }
            _ => false,
        };
        if forged_ping {
            if !refused_unauthenticated || before != after {
                return Err(format!(
                    "a forged handshake for {client} got {action:?}; session {before:?} -> {after:?}"
                ));
            }
            self.forgeries.handshakes_refused += 1;
            if before.is_some() {
                self.forgeries.resumes_refused += 1;
            }
        } else if unproven_amo {
            if !refused_unauthenticated || before != after {
                return Err(format!(
                    "an unproven request for {client} got {action:?}; session {before:?} -> {after:?}"
                ));
            }
            self.forgeries.requests_refused += 1;
        } else if is_ping && refused_unauthenticated {
            return Err(format!(
                "a handshake proving {client} was refused as unauthenticated: {action:?}"
            ));
        }
        self.answer(None, action);
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        self.server.check()?;
        for c in &self.clients {
            c.check()?;
        }
        Ok(())
    }

    /// Hands the server's answer to `c` (or drops it).
    fn answer(&mut self, c: Option<usize>, action: Action) {
        match action {
            Action::Execute(inc) => self.executing.push(inc.key),
            Action::Reply(m) => {
                if let Some(c) = c {
                    self.clients[c].handle_message(m, self.now);
                }
            }
            Action::Wait | Action::Drop | Action::Resize(_) => {}
        }
    }

    /// Moves client `c`'s queued messages to the server.
    fn flush(&mut self, c: usize) {
        while let Some(m) = self.clients[c].poll_transmit() {
            let len = m.encoded_len() as u64;
            self.handed[c] += len;
            self.last_len[c] = len;
            if let Some(conn) = self.conns[c] {
                let action = self.server.admit(conn, m, self.now);
                self.answer(Some(c), action);
            }
        }
        while self.clients[c].poll_event().is_some() {}
        if self.clients[c].poll_close() {
            if let Some(conn) = self.conns[c].take() {
                self.server.close_connection(conn);
            }
        }
    }

    fn step(&mut self, b: &mut Bytes8<'_>) -> Result<(), String> {
        let c = b.below(CLIENTS);
        match b.next() % 11 {
            0 => {
                self.now += Nanos::from_millis(u64::from(b.next()));
                for id in self.server.close_silent(self.now) {
                    for conn in &mut self.conns {
                        if *conn == Some(id) {
                            *conn = None;
                        }
                    }
                    self.strays.retain(|s| *s != id);
                }
                self.server.expire_idle(self.now);
                for c in 0..CLIENTS {
                    self.clients[c].handle_timeout(self.now);
                }
            }
            1 => {
                if self.conns[c].is_none()
                    && let Ok(id) = self.server.open_connection(peer(c), self.now)
                {
                    self.conns[c] = Some(id);
                    // Write progress counts from 0 on each connection.
                    self.handed[c] = 0;
                    self.last_len[c] = 0;
                    self.clients[c].handle_connected(self.now);
                }
            }
            2 => {
                if let Some(id) = self.conns[c].take() {
                    self.server.close_connection(id);
                }
                self.clients[c].handle_disconnect(self.now);
            }
            3 => {
                let method = b.next() % 4;
                let idempotent = b.next() % 2 == 0;
                let deadline = self.now + Nanos::from_millis(u64::from(b.next()));
                let payload = Bytes::from(vec![b.next()]);
                if let Ok(id) = self.clients[c].start_call(
                    u16::from(method),
                    idempotent,
                    payload,
                    deadline,
                    self.now,
                ) {
                    self.started.push((c, id));
                }
            }
            4 => self.resize_op(c)?,
            5 if !self.executing.is_empty() => {
                let key = self.executing.swap_remove(b.below(self.executing.len()));
                let outcome = match b.next() % 4 {
                    0 => Outcome::Panicked,
                    1 => Outcome::AppError,
                    2 => Outcome::Refused(Refusal::Overloaded),
                    _ => Outcome::Ok,
                };
                let payload = Bytes::from(vec![0u8; b.below(4)]);
                let (reply, route) = self.server.complete(key, outcome, payload, self.now);
                let to = (0..CLIENTS).find(|&c| route.is_some() && self.conns[c] == route);
                if let Some(c) = to {
                    self.clients[c].handle_message(Message::Reply(reply), self.now);
                }
            }
            6 => {
                // A message from nowhere, on a stray connection.
                if b.next() % 4 == 0 || self.strays.is_empty() {
                    if let Ok(id) = self.server.open_connection(peer(9), self.now) {
                        self.strays.push(id);
                    }
                }
                if let Some(&conn) = self.strays.get(b.below(self.strays.len())) {
                    let m = stray_request(b);
                    self.admit_stray(conn, m)?;
                }
            }
            7 => {
                let m = stray_answer(b, self.clients[c].client_id());
                self.clients[c].handle_message(m, self.now);
            }
            8 if !self.started.is_empty() => {
                let (c, id) = self.started[b.below(self.started.len())];
                if b.next() % 2 == 0 {
                    self.clients[c].cancel(id);
                } else {
                    self.clients[c].take_idempotent(id);
                }
            }
            9 => {
                if let Some(&id) = self.strays.first() {
                    self.server.close_connection(id);
                    self.strays.remove(0);
                }
            }
            10 => {
                // The transport's progress: alternately all but half of
                // the last message written, and all of it. No input byte
                // is read, so inputs recorded before this op replay as
                // they did.
                let partial = self.reports[c] % 2 == 0;
                self.reports[c] += 1;
                let written = if partial {
                    self.handed[c] - self.last_len[c] / 2
                } else {
                    self.handed[c]
                };
                self.clients[c].handle_written(written, self.now);
                self.writes_reported += 1;
                if let Some(conn) = self.conns[c] {
                    self.server.handle_progress(conn, self.now);
                }
            }
            _ => {}
        }
        for c in 0..CLIENTS {
            self.flush(c);
        }
        Ok(())
    }
}

fn seq(b: &mut Bytes8<'_>) -> Seq {
    Seq(u64::from(b.next() % 8))
}

fn incarnation(b: &mut Bytes8<'_>) -> Option<Incarnation> {
    Incarnation::new(u64::from(b.next() % 3) * 7)
}

/// A ping or request from nowhere: the id of one of the world's secrets,
/// and (for a ping) that secret or another one.
fn stray_request(b: &mut Bytes8<'_>) -> Message {
    let owner = secret(b.next() % SECRETS);
    let client = owner.client_id();
    match b.next() % 3 {
        0 => Message::Ping(Ping {
            client,
            floor: seq(b),
            ack_below: seq(b),
            incarnation: incarnation(b),
            secret: if b.next() % 2 == 0 {
                owner
            } else {
                secret(b.next() % SECRETS)
            },
            token: Bytes::new(),
        }),
        _ => Message::Request(Request {
            client,
            seq: seq(b),
            ack_below: seq(b),
            incarnation: incarnation(b),
            deadline: Nanos(u64::from(b.next() % 2)),
            method: u16::from(b.next() % 4),
            idempotent: b.next() % 2 == 0,
            json: false,
            payload: Bytes::new(),
        }),
    }
}

fn stray_answer(b: &mut Bytes8<'_>, me: ClientId) -> Message {
    let inc = Incarnation::at_least_one(u64::from(b.next() % 3) * 7);
    let client = if b.next() % 4 == 0 { ClientId(99) } else { me };
    match b.next() % 3 {
        0 => Message::Pong(Pong {
            client,
            floor: seq(b),
            incarnation: inc,
            refused: (b.next() % 3 == 0).then_some(Refusal::Sessions),
            load: u32::from(b.next()),
            message: Bytes::new(),
        }),
        1 => Message::Reply(Reply {
            client,
            seq: seq(b),
            incarnation: inc,
            method: u16::from(b.next() % 4),
            idempotent: b.next() % 2 == 0,
            json: false,
            outcome: Outcome::Ok,
            load: 0,
            service_time: Nanos(u64::from(b.next())),
            payload: Bytes::new(),
        }),
        _ => Message::ConnError(ConnError {
            incarnation: inc,
            kind: ConnErrorKind::from_u8(1 + b.next() % 4).unwrap_or(ConnErrorKind::BadFrame),
            message: Bytes::new(),
        }),
    }
}

/// Runs the operations `bytes` encode; `Err` names the first broken
/// invariant and the step it broke at. Returns what the run drove.
pub fn run(bytes: &[u8]) -> Result<Seen, String> {
    let mut w = World::new();
    let mut b = Bytes8(bytes);
    for step in 0..MAX_OPS {
        if b.0.is_empty() {
            break;
        }
        w.step(&mut b).map_err(|e| format!("at step {step}: {e}"))?;
        w.check().map_err(|e| format!("after step {step}: {e}"))?;
    }
    Ok(Seen {
        forgeries: w.forgeries,
        resizes: w.resizes,
        writes_reported: w.writes_reported,
        retransmits_postponed: w.clients.iter().map(|c| c.postponed_retransmits()).sum(),
    })
}
