//! The simulated world: clients with one session per server, servers that
//! crash and restart with a new incarnation, connections that reset, and a
//! network that drops, duplicates, delays and so reorders frames. Frames of
//! a connection that was reset or whose server crashed are lost, as with TCP.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use ebb_core::{ClientId, Instant, Nanos, Rng};
use ebb_rpc::CallError;
use ebb_rpc::auth::Tokens;
use ebb_rpc::semantics::{
    CallId, ClientConfig, ClientSession, ConnId, ServerConfig, ServerSession,
};
use ebb_rpc::wire::{ClientSecret, Incarnation, Message, Request, Seq};

use super::{Faults, Stats};
use overdue::{EndedOverdue, OverdueRun, Running, Workers};
use resize::ResizeRun;

mod callers;
mod check;
mod events;
mod network;
mod overdue;
mod resize;

pub const SERVERS: usize = 2;
const METHOD: u16 = 7;
/// Marks a payload as a reply, so a request echoed back would not pass.
const REPLY_MARK: u32 = 0x0005_EBB0;
const HORIZON: Nanos = Nanos::from_secs(2);
const STEP_LIMIT: u64 = 5_000_000;
/// Every call whose tag is a multiple of this panics in its method.
const PANIC_EVERY: u64 = 11;
/// Calls of a bursty run start at one of this many instants (plus jitter),
/// so they overlap and meet the in-flight bound.
const BURSTS: u64 = 10;

enum Event {
    Start {
        tag: u64,
    },
    ToServer {
        c: usize,
        s: usize,
        epoch: u64,
        frame: Message,
    },
    ToClient {
        c: usize,
        s: usize,
        epoch: u64,
        frame: Message,
    },
    /// An admitted call's method returns (`World::running` holds it).
    Complete {
        run: u64,
    },
    /// A call reaches its `overdue_at`: cancelled if still running.
    Overdue {
        run: u64,
    },
    Reset {
        c: usize,
        s: usize,
    },
    /// The server closes a connection it refused, after its refusal left.
    Close {
        c: usize,
        s: usize,
        epoch: u64,
    },
    Reconnect {
        c: usize,
        s: usize,
    },
    Crash {
        s: usize,
    },
    Restart {
        s: usize,
    },
    Move {
        tag: u64,
    },
    /// The server closes connections silent past their timeouts.
    Sweep {
        s: usize,
    },
    /// A hostile peer opens a connection and never speaks, or speaks once
    /// and then never again.
    Mute {
        s: usize,
        speaks: bool,
    },
    /// A peer that learned client `c`'s id (and the last at-most-once
    /// request it sent to server `s`), but not its secret, tries to resume
    /// its session: a handshake with the lowest floor, then a copy of the
    /// request, on a connection of its own.
    Forge {
        s: usize,
        c: usize,
    },
    /// Client `c` asks server `s` to resize on its connection, as a
    /// gateway asks a node; `wrong_way`: it sends a `Resized` instead.
    Resize {
        c: usize,
        s: usize,
        wrong_way: bool,
    },
}

/// What the world knows of one server-side connection, to check the
/// server's silence timeouts against: when it opened and when the server
/// last admitted a message from it.
struct Track {
    opened_at: Instant,
    last_heard: Option<Instant>,
}

#[derive(Default)]
struct Conn {
    up: bool,
    epoch: u64,
    reconnect_pending: bool,
    /// The server session's name for this connection; `None` while down or
    /// refused.
    server_conn: Option<ConnId>,
}

struct Call {
    client: usize,
    server: usize,
    idempotent: bool,
    start: Instant,
    deadline: Instant,
    started: bool,
    ended: Option<(Instant, Result<(), CallError>)>,
}

pub struct World {
    rng: Rng,
    now: Instant,
    tiebreak: u64,
    events: BTreeMap<(Instant, u64), Event>,
    faults: Faults,
    server_cfg: ServerConfig,
    sessions: Vec<Vec<ClientSession>>,
    conns: Vec<Vec<Conn>>,
    servers: Vec<Option<ServerSession>>,
    restarts: Vec<u64>,
    calls: BTreeMap<u64, Call>,
    by_call: BTreeMap<(usize, usize, CallId), u64>,
    /// At-most-once executions per (client id, seq); survives crashes.
    ledger: BTreeMap<(ClientId, Seq), u32>,
    /// Executions per logical call, any kind; survives crashes.
    executed: BTreeMap<u64, u32>,
    /// At-most-once calls a server answered `Rejected`, by (client id, seq).
    refused: BTreeSet<(ClientId, Seq)>,
    /// Open server-side connections by (server, connection).
    tracks: BTreeMap<(usize, ConnId), Track>,
    /// The last at-most-once request each client sent to each server, as a
    /// forger would learn it.
    captured: BTreeMap<(usize, usize), Request>,
    /// How often servers sweep for silent connections.
    sweep_every: Nanos,
    /// Plant the bug in every server session.
    planted_bug: Option<Planted>,
    /// Set: servers require one of these bearer tokens; `CALLERS` of them,
    /// client `c` presents token `c % CALLERS` (so clients share callers).
    tokens: Option<Tokens>,
    /// A client presenting no token or a wrong one: none of its calls may
    /// run.
    outsider: Option<usize>,
    /// Calls executing per (server, caller token), as the world counts
    /// them: started by an `Execute`, ended by a completion the server took.
    executing: BTreeMap<(usize, usize), usize>,
    /// Set: this run drives the overdue paths.
    overdue: Option<OverdueRun>,
    /// Set: this run drives resizes.
    resizes: Option<ResizeRun>,
    /// Admitted calls not yet ended, by run number.
    running: BTreeMap<u64, Running>,
    next_run: u64,
    /// Worker threads per server, for blocking methods.
    workers: Vec<Workers>,
    /// At-most-once calls a server ended overdue, by (server, incarnation,
    /// client id, seq): how, and the call's tag.
    ended_overdue: BTreeMap<(usize, Incarnation, ClientId, Seq), (EndedOverdue, u64)>,
    stats: Stats,
}

/// A defect planted in every server session, which the simulation must catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planted {
    /// Refusals are answered but not recorded.
    UnrecordedRefusal,
    /// The handshake timeout also closes connections after their handshake.
    HandshakeTimeoutWhenIdle,
    /// A caller's bound counts per connection, not over all its connections.
    CallerBoundPerConnection,
    /// Requests on a connection without an accepted token are not refused.
    RequestsUncheckedForToken,
    /// A call refused at its start past its due is answered, not recorded.
    UnrecordedStartRefusal,
    /// A call cancelled past its due is answered, not recorded.
    UnrecordedCancellation,
}

/// Bearer tokens (callers) of a run whose servers require them.
const CALLERS: usize = 2;

/// The token client `c` presents in a run with tokens.
pub(super) fn token_of(c: usize) -> Bytes {
    Bytes::from(format!("caller-{}", c % CALLERS))
}

/// The address hostile peers connect from.
const MUTE_PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 9, 9));
/// Hostile connections per run, at most.
const MAX_MUTES: u64 = 6;
/// The address forging peers connect from.
const FORGER_PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 6, 6));
/// Forged resumes per server per run, at most.
const MAX_FORGERIES: u64 = 4;

/// The address client `c` connects from.
pub fn peer_of(c: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, c as u8 + 1))
}

impl World {
    pub fn new(seed: u64) -> World {
        World::build(seed, None)
    }

    /// A world whose servers have a planted defect: the simulation must
    /// catch it.
    pub fn with_planted_bug(seed: u64, bug: Planted) -> World {
        World::build(seed, Some(bug))
    }

    fn build(seed: u64, planted_bug: Option<Planted>) -> World {
        let mut rng = Rng::seeded(seed);
        let faults = Faults {
            drop: rng.unit() * 0.2,
            duplicate: rng.unit() * 0.1,
            max_delay: Nanos::from_micros(500 + rng.below(30_000)),
            reset_every: Nanos::from_millis(300 + rng.below(3_000)),
            crash_every: Nanos::from_millis(400 + rng.below(4_000)),
            crash_notified: 0.5,
        };
        // A quarter of the runs squeeze the server's client table so that
        // handshakes are refused and idle sessions evicted.
        let clients = 2 + rng.below(3) as usize;
        let mut server_cfg = if rng.chance(0.25) {
            ServerConfig {
                max_clients: 3,
                session_expiry: Nanos::from_millis(300),
                ..ServerConfig::default()
            }
        } else {
            ServerConfig::default()
        };
        // Some runs squeeze the connections (one client at a time is turned
        // away unread) and the calls each may have running (refusals).
        if rng.chance(0.25) {
            server_cfg.max_connections = clients - 1;
        }
        // Some runs squeeze the saved replies of all sessions together, so
        // replies are sent but saved as `OutcomeUnknown`.
        if rng.chance(0.25) {
            server_cfg.max_saved_reply_bytes_total = 8 + rng.below(32) as usize;
        }
        // Most runs shorten the silence timeouts into the run's span, so
        // handshake and idle timeouts close connections: hostile ones that
        // never speak or stop, and clients' whose pings were lost.
        if rng.chance(0.6) {
            server_cfg.handshake_timeout = Nanos::from_millis(20 + rng.below(60));
            server_cfg.idle_timeout = Nanos::from_millis(120 + rng.below(280));
        }
        let shorter = server_cfg.handshake_timeout.min(server_cfg.idle_timeout);
        let sweep_every = Nanos(shorter.0 / 4).max(Nanos::from_millis(5));
        // Some runs require bearer tokens: clients share `CALLERS` tokens,
        // one client may be an outsider (no token, or a wrong one), and
        // most of these runs bound the calls each caller (token) may have
        // executing, over all its clients' connections.
        let tokens = rng.chance(0.4).then(|| {
            let text: String = (0..CALLERS).map(|i| format!("caller-{i}\n")).collect();
            Tokens::parse(&text, std::path::Path::new("sim-tokens")).expect("valid tokens")
        });
        let outsider = (tokens.is_some() && rng.chance(0.5)).then_some(clients - 1);
        let mut bursty = rng.chance(0.4);
        if tokens.is_some() && rng.chance(0.6) {
            server_cfg.max_in_flight_per_caller = Some(1 + rng.below(2) as usize);
            bursty = true;
        } else if bursty {
            server_cfg.max_in_flight_per_conn = 1 + rng.below(2) as usize;
        }
        // Half the runs drive the overdue paths: blocking methods queue for
        // one or two worker threads per server, slow methods run past their
        // due, with a grace short enough to pass within the run. Drawn
        // from an RNG of their own, so the other runs stay as they were.
        let mut overdue_rng = Rng::seeded(seed ^ 0x6f76_6572_6475_6500);
        let overdue = overdue_rng.chance(0.5).then(|| {
            server_cfg.overdue_grace = Nanos::from_millis(1 + overdue_rng.below(30));
            OverdueRun {
                threads: 1 + overdue_rng.below(2) as usize,
                rng: overdue_rng,
            }
        });
        let client_cfg = ClientConfig {
            max_outstanding_calls: 64,
            retransmit_after: Nanos::from_millis(30),
            max_retransmit_interval: Nanos::from_millis(300),
            max_retransmits: 8,
            heartbeat_interval: Nanos::from_millis(100),
            heartbeat_silence: Nanos::from_millis(500),
        };
        let outsider_token = if rng.chance(0.5) {
            Bytes::new()
        } else {
            Bytes::from_static(b"caller-x")
        };
        let sessions = (0..clients)
            .map(|c| {
                (0..SERVERS)
                    .map(|_| {
                        let mut session = ClientSession::new(
                            ClientSecret::random(&mut rng),
                            client_cfg,
                            Instant::EPOCH,
                        );
                        if outsider == Some(c) {
                            session.set_token(outsider_token.clone());
                        } else if tokens.is_some() {
                            session.set_token(token_of(c));
                        }
                        session
                    })
                    .collect()
            })
            .collect();
        let mut w = World {
            rng,
            now: Instant::EPOCH,
            tiebreak: 0,
            events: BTreeMap::new(),
            faults,
            server_cfg,
            sessions,
            conns: (0..clients)
                .map(|_| (0..SERVERS).map(|_| Conn::default()).collect())
                .collect(),
            servers: (0..SERVERS).map(|_| None).collect(),
            restarts: vec![0; SERVERS],
            calls: BTreeMap::new(),
            by_call: BTreeMap::new(),
            ledger: BTreeMap::new(),
            executed: BTreeMap::new(),
            refused: BTreeSet::new(),
            tracks: BTreeMap::new(),
            captured: BTreeMap::new(),
            sweep_every,
            planted_bug,
            tokens,
            outsider,
            executing: BTreeMap::new(),
            overdue,
            resizes: ResizeRun::draw(seed),
            running: BTreeMap::new(),
            next_run: 0,
            workers: (0..SERVERS).map(|_| Workers::default()).collect(),
            ended_overdue: BTreeMap::new(),
            stats: Stats::default(),
        };
        let bursty = bursty || w.overdue.is_some();
        w.plan(clients, bursty);
        w.plan_resizes(clients);
        w
    }

    fn plan(&mut self, clients: usize, bursty: bool) {
        for s in 0..SERVERS {
            self.restart(s);
            self.at(Instant::EPOCH + self.sweep_every, Event::Sweep { s });
            for _ in 0..self.rng.below(MAX_MUTES + 1) {
                let t = Instant::EPOCH + Nanos(self.rng.below(HORIZON.0));
                let speaks = self.rng.chance(0.5);
                self.at(t, Event::Mute { s, speaks });
            }
            let mut t = Instant::EPOCH;
            loop {
                t += Nanos::from_secs_f64(self.rng.exp(self.faults.crash_every.as_secs_f64()));
                if t > Instant::EPOCH + HORIZON {
                    break;
                }
                self.at(t, Event::Crash { s });
            }
        }
        let mut tag = 0;
        for c in 0..clients {
            for s in 0..SERVERS {
                self.at(Instant::EPOCH, Event::Reconnect { c, s });
                let mut t = Instant::EPOCH;
                loop {
                    t += Nanos::from_secs_f64(self.rng.exp(self.faults.reset_every.as_secs_f64()));
                    if t > Instant::EPOCH + HORIZON {
                        break;
                    }
                    self.at(t, Event::Reset { c, s });
                }
            }
            for s in 0..SERVERS {
                for _ in 0..self.rng.below(MAX_FORGERIES + 1) {
                    let t = Instant::EPOCH + Nanos(self.rng.below(HORIZON.0));
                    self.at(t, Event::Forge { s, c });
                }
            }
            for _ in 0..20 + self.rng.below(20) {
                tag += 1;
                let start = if bursty {
                    let burst = self.rng.below(BURSTS) * (HORIZON.0 / BURSTS);
                    Instant::EPOCH + Nanos(burst + self.rng.below(Nanos::from_millis(3).0))
                } else {
                    Instant::EPOCH + Nanos(self.rng.below(HORIZON.0))
                };
                let deadline = start + Nanos::from_millis(20 + self.rng.below(1_500));
                let idempotent = self.rng.chance(0.4);
                let server = self.rng.below(SERVERS as u64) as usize;
                if idempotent && self.rng.chance(0.3) {
                    let when = start + Nanos(self.rng.below(deadline.saturating_since(start).0));
                    self.at(when, Event::Move { tag });
                }
                self.calls.insert(
                    tag,
                    Call {
                        client: c,
                        server,
                        idempotent,
                        start,
                        deadline,
                        started: false,
                        ended: None,
                    },
                );
                self.at(start, Event::Start { tag });
            }
        }
    }

    /// Runs to the end; `Err` names the first broken rule.
    pub fn run(mut self) -> Result<Stats, String> {
        let end = self
            .calls
            .values()
            .map(|c| c.deadline)
            .max()
            .unwrap_or(Instant::EPOCH)
            + Nanos::from_millis(1);
        for _ in 0..STEP_LIMIT {
            let timer = self.next_timer();
            let event = self.events.first_key_value().map(|(k, _)| k.0);
            match (timer, event) {
                (Some((t, c, s)), e) if e.is_none_or(|e| t <= e) && t <= end => {
                    self.now = self.now.max(t);
                    self.sessions[c][s].handle_timeout(self.now);
                    self.pump(c, s)?;
                }
                (_, Some(e)) if e <= end => {
                    let ((t, _), ev) = self.events.pop_first().expect("peeked above");
                    self.now = self.now.max(t);
                    self.handle(ev)?;
                }
                _ => return self.check(),
            }
        }
        Err(format!(
            "no progress after {STEP_LIMIT} steps at {}",
            self.now
        ))
    }

    fn next_timer(&self) -> Option<(Instant, usize, usize)> {
        let mut best = None;
        for (c, per) in self.sessions.iter().enumerate() {
            for (s, sess) in per.iter().enumerate() {
                if let Some(t) = sess.poll_timeout()
                    && best.is_none_or(|(b, _, _)| t < b)
                {
                    best = Some((t, c, s));
                }
            }
        }
        best
    }

    fn at(&mut self, t: Instant, ev: Event) {
        self.tiebreak += 1;
        self.events.insert((t, self.tiebreak), ev);
    }

    fn restart(&mut self, s: usize) {
        self.restarts[s] += 1;
        let incarnation = Incarnation::at_least_one((s as u64 + 1) * 1_000_000 + self.restarts[s]);
        let mut server = ServerSession::new(incarnation, self.server_cfg);
        server.set_tokens(self.tokens.clone());
        server.set_description(Bytes::from_static(b"sim service"));
        server.set_resize_up_to(self.resizes.as_ref().and_then(|r| r.bound));
        match self.planted_bug {
            Some(Planted::UnrecordedRefusal) => server.plant_unrecorded_refusal(),
            Some(Planted::HandshakeTimeoutWhenIdle) => server.plant_handshake_timeout_when_idle(),
            Some(Planted::CallerBoundPerConnection) => server.plant_caller_bound_per_connection(),
            Some(Planted::RequestsUncheckedForToken) => {
                server.plant_requests_unchecked_for_token();
            }
            Some(Planted::UnrecordedStartRefusal) => server.plant_unrecorded_start_refusal(),
            Some(Planted::UnrecordedCancellation) => server.plant_unrecorded_cancellation(),
            None => {}
        }
        self.servers[s] = Some(server);
        self.executing.retain(|&(server, _), _| server != s);
        // The crashed process's calls and threads are gone with it.
        self.running.retain(|_, r| r.s != s);
        self.workers[s] = Workers::default();
    }
}
