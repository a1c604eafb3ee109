//! The simulated world: clients with one session per server, servers that
//! crash and restart with a new incarnation, connections that reset, and a
//! network that drops, duplicates, delays and so reorders frames. Frames of
//! a connection that was reset or whose server crashed are lost, as with TCP.

use std::collections::BTreeMap;

use bytes::Bytes;
use ebb_core::{ClientId, Nanos, Rng};
use ebb_rpc::CallError;
use ebb_rpc::semantics::{
    Action, CallId, CallKey, ClientConfig, ClientSession, LinkState, ServerConfig, ServerSession,
};
use ebb_rpc::wire::{Frame, Status, decode_payload, encode_payload};

use super::{Faults, Stats};

pub const SERVERS: usize = 2;
const METHOD: u16 = 7;
/// Marks a payload as a reply, so a request echoed back would not pass.
const REPLY_MARK: u32 = 0x0005_EBB0;
const HORIZON: Nanos = Nanos::from_secs(2);
const STEP_LIMIT: u64 = 5_000_000;

enum Event {
    Start {
        tag: u64,
    },
    ToServer {
        c: usize,
        s: usize,
        epoch: u64,
        frame: Frame,
    },
    ToClient {
        c: usize,
        s: usize,
        epoch: u64,
        frame: Frame,
    },
    Complete {
        s: usize,
        incarnation: u64,
        c: usize,
        key: CallKey,
        tag: u64,
    },
    Reset {
        c: usize,
        s: usize,
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
}

#[derive(Default)]
struct Conn {
    up: bool,
    epoch: u64,
    reconnect_pending: bool,
}

struct Call {
    client: usize,
    server: usize,
    idempotent: bool,
    start: Nanos,
    deadline: Nanos,
    started: bool,
    ended: Option<(Nanos, Result<(), CallError>)>,
}

pub struct World {
    rng: Rng,
    now: Nanos,
    tiebreak: u64,
    events: BTreeMap<(Nanos, u64), Event>,
    faults: Faults,
    server_cfg: ServerConfig,
    sessions: Vec<Vec<ClientSession>>,
    conns: Vec<Vec<Conn>>,
    servers: Vec<Option<ServerSession>>,
    restarts: Vec<u64>,
    calls: BTreeMap<u64, Call>,
    by_call: BTreeMap<(usize, usize, CallId), u64>,
    /// At-most-once executions per (client id, seq); survives crashes.
    ledger: BTreeMap<(ClientId, u64), u32>,
    /// Executions per logical call, any kind; survives crashes.
    executed: BTreeMap<u64, u32>,
    stats: Stats,
}

impl World {
    pub fn new(seed: u64) -> World {
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
        let server_cfg = if rng.chance(0.25) {
            ServerConfig {
                max_clients: 3,
                session_expiry: Nanos::from_millis(300),
            }
        } else {
            ServerConfig::default()
        };
        let clients = 2 + rng.below(3) as usize;
        let client_cfg = ClientConfig {
            max_outstanding_calls: 64,
            retransmit_after: Nanos::from_millis(30),
            max_retransmit_interval: Nanos::from_millis(300),
            max_retransmits: 8,
            heartbeat_interval: Nanos::from_millis(100),
            heartbeat_silence: Nanos::from_millis(500),
        };
        let sessions = (0..clients)
            .map(|_| {
                (0..SERVERS)
                    .map(|_| {
                        ClientSession::new(ClientId::random(&mut rng), client_cfg, Nanos::ZERO)
                    })
                    .collect()
            })
            .collect();
        let mut w = World {
            rng,
            now: Nanos::ZERO,
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
            stats: Stats::default(),
        };
        w.plan(clients);
        w
    }

    fn plan(&mut self, clients: usize) {
        for s in 0..SERVERS {
            self.restart(s);
            let mut t = Nanos::ZERO;
            loop {
                t += Nanos::from_secs_f64(self.rng.exp(self.faults.crash_every.as_secs_f64()));
                if t > HORIZON {
                    break;
                }
                self.at(t, Event::Crash { s });
            }
        }
        let mut tag = 0;
        for c in 0..clients {
            for s in 0..SERVERS {
                self.at(Nanos::ZERO, Event::Reconnect { c, s });
                let mut t = Nanos::ZERO;
                loop {
                    t += Nanos::from_secs_f64(self.rng.exp(self.faults.reset_every.as_secs_f64()));
                    if t > HORIZON {
                        break;
                    }
                    self.at(t, Event::Reset { c, s });
                }
            }
            for _ in 0..20 + self.rng.below(20) {
                tag += 1;
                let start = Nanos(self.rng.below(HORIZON.0));
                let deadline = start + Nanos::from_millis(20 + self.rng.below(1_500));
                let idempotent = self.rng.chance(0.4);
                let server = self.rng.below(SERVERS as u64) as usize;
                if idempotent && self.rng.chance(0.3) {
                    let when = start + Nanos(self.rng.below((deadline - start).0));
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
            .unwrap_or(Nanos::ZERO)
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

    fn next_timer(&self) -> Option<(Nanos, usize, usize)> {
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

    fn at(&mut self, t: Nanos, ev: Event) {
        self.tiebreak += 1;
        self.events.insert((t, self.tiebreak), ev);
    }

    fn restart(&mut self, s: usize) {
        self.restarts[s] += 1;
        let incarnation = (s as u64 + 1) * 1_000_000 + self.restarts[s];
        self.servers[s] = Some(ServerSession::new(incarnation, self.server_cfg));
    }

    fn handle(&mut self, ev: Event) -> Result<(), String> {
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
                let Some(server) = self.servers[s].as_mut() else {
                    return Ok(());
                };
                let incarnation = server.incarnation();
                match server.handle_frame(frame, self.now) {
                    Action::Execute(inc) => {
                        let tag: u64 = decode_payload(&inc.payload).map_err(|e| e.to_string())?;
                        self.stats.executions += 1;
                        *self.executed.entry(tag).or_default() += 1;
                        if !inc.key.idempotent {
                            let n = self
                                .ledger
                                .entry((inc.key.client, inc.key.seq))
                                .or_default();
                            *n += 1;
                            if *n > 1 || self.executed[&tag] > 1 {
                                return Err(format!(
                                    "at-most-once call {tag} (client {}, seq {}) executed twice, now at incarnation {incarnation}",
                                    inc.key.client, inc.key.seq
                                ));
                            }
                        }
                        let done = self.now + Nanos(self.rng.below(Nanos::from_millis(5).0));
                        self.at(
                            done,
                            Event::Complete {
                                s,
                                incarnation,
                                c,
                                key: inc.key,
                                tag,
                            },
                        );
                    }
                    Action::Reply(f) => {
                        match f.status {
                            Status::Ok => self.stats.saved_replies += 1,
                            Status::OutcomeUnknown => self.stats.orphans_refused += 1,
                            _ => {}
                        }
                        self.send_to_client(c, s, f);
                    }
                    Action::Wait => self.stats.waits += 1,
                    Action::Drop => self.stats.dropped_below_ack += 1,
                }
            }
            Event::Complete {
                s,
                incarnation,
                c,
                key,
                tag,
            } => {
                let Some(server) = self.servers[s].as_mut() else {
                    return Ok(());
                };
                if server.incarnation() != incarnation {
                    return Ok(());
                }
                let payload = encode_payload(&(tag, REPLY_MARK)).map_err(|e| e.to_string())?;
                let reply = server.complete(key, Status::Ok, payload, self.now);
                self.send_to_client(c, s, reply);
            }
            Event::ToClient { c, s, epoch, frame } => {
                if self.conn_live(c, s, epoch) {
                    self.sessions[c][s].handle_frame(frame, self.now);
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
                if self.servers[s].is_some() {
                    let conn = &mut self.conns[c][s];
                    conn.up = true;
                    conn.epoch += 1;
                    self.sessions[c][s].handle_connected(self.now);
                    self.pump(c, s)?;
                } else {
                    self.schedule_reconnect(c, s, Nanos::from_millis(50));
                }
            }
            Event::Crash { s } => {
                if self.servers[s].take().is_none() {
                    return Ok(());
                }
                self.stats.crashes += 1;
                for c in 0..self.sessions.len() {
                    let notified = self.rng.chance(self.faults.crash_notified);
                    self.break_conn(c, s, notified)?;
                }
                let after = Nanos::from_millis(20 + self.rng.below(400));
                self.at(self.now + after, Event::Restart { s });
            }
            Event::Restart { s } => self.restart(s),
        }
        Ok(())
    }

    fn start_on(
        &mut self,
        tag: u64,
        c: usize,
        s: usize,
        idem: bool,
        deadline: Nanos,
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

    fn conn_live(&self, c: usize, s: usize, epoch: u64) -> bool {
        let conn = &self.conns[c][s];
        conn.up && conn.epoch == epoch
    }

    /// The connection dies; in-flight frames are lost. `notified`: the
    /// client sees it at once (else only its failure detector will).
    fn break_conn(&mut self, c: usize, s: usize, notified: bool) -> Result<(), String> {
        let conn = &mut self.conns[c][s];
        conn.up = false;
        conn.epoch += 1;
        if notified {
            self.sessions[c][s].handle_disconnect(self.now);
            let after = Nanos::from_millis(1 + self.rng.below(50));
            self.schedule_reconnect(c, s, after);
        }
        self.pump(c, s)
    }

    fn schedule_reconnect(&mut self, c: usize, s: usize, after: Nanos) {
        if !std::mem::replace(&mut self.conns[c][s].reconnect_pending, true) {
            self.at(self.now + after, Event::Reconnect { c, s });
        }
    }

    fn send_to_server(&mut self, c: usize, s: usize, frame: Frame) {
        let epoch = self.conns[c][s].epoch;
        self.transmit(frame, |frame| Event::ToServer { c, s, epoch, frame }, c, s);
    }

    fn send_to_client(&mut self, c: usize, s: usize, frame: Frame) {
        let epoch = self.conns[c][s].epoch;
        self.transmit(frame, |frame| Event::ToClient { c, s, epoch, frame }, c, s);
    }

    fn transmit(&mut self, frame: Frame, ev: impl Fn(Frame) -> Event, c: usize, s: usize) {
        self.stats.frames += 1;
        if !self.conns[c][s].up || self.rng.chance(self.faults.drop) {
            return;
        }
        let copies = if self.rng.chance(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = Nanos(self.rng.below(self.faults.max_delay.0));
            self.at(self.now + delay, ev(frame.clone()));
        }
    }

    /// Moves a session's output into the world.
    fn pump(&mut self, c: usize, s: usize) -> Result<(), String> {
        while let Some(f) = self.sessions[c][s].poll_transmit() {
            self.send_to_server(c, s, f);
        }
        while let Some((id, r)) = self.sessions[c][s].poll_event() {
            let Some(tag) = self.by_call.remove(&(c, s, id)) else {
                return Err(format!(
                    "client {c} got an outcome for unknown call {id:?} on server {s}"
                ));
            };
            let r = match r {
                Ok(payload) => {
                    let got: (u64, u32) = decode_payload(&payload).map_err(|e| e.to_string())?;
                    if got != (tag, REPLY_MARK) {
                        return Err(format!("call {tag} got the reply of call {}", got.0));
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            };
            self.end(tag, r)?;
        }
        if self.sessions[c][s].poll_close() {
            self.break_conn(c, s, false)?;
            self.schedule_reconnect(c, s, Nanos::from_millis(1));
        }
        Ok(())
    }

    fn end(&mut self, tag: u64, r: Result<(), CallError>) -> Result<(), String> {
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
            Err(CallError::DeadlineExceeded(_)) => s.deadline += 1,
            Err(CallError::ConnectionLost(_)) => s.connection_lost += 1,
            Err(CallError::ServerUnresponsive(_)) => s.unresponsive += 1,
            Err(CallError::Rejected(_)) => s.rejected += 1,
            Err(_) => s.other_err += 1,
        }
        call.ended = Some((now, r));
        Ok(())
    }

    /// The end-of-run rules.
    fn check(mut self) -> Result<Stats, String> {
        for (tag, call) in &self.calls {
            let runs = self.executed.get(tag).copied().unwrap_or(0);
            match &call.ended {
                None => {
                    return Err(format!(
                        "call {tag} (started {}, deadline {}) never ended",
                        call.start, call.deadline
                    ));
                }
                Some((_, Ok(()))) if runs == 0 => {
                    return Err(format!("call {tag} succeeded without running"));
                }
                Some((_, Err(CallError::Rejected(m)))) if runs > 0 && !call.idempotent => {
                    return Err(format!(
                        "call {tag} was rejected ({m}) yet ran {runs} times"
                    ));
                }
                Some((_, Err(e @ (CallError::BadRequest(_) | CallError::UnknownMethod(_))))) => {
                    return Err(format!("call {tag} failed with a protocol error: {e}"));
                }
                _ => {}
            }
        }
        self.stats.calls = self.calls.len() as u64;
        Ok(self.stats)
    }
}
