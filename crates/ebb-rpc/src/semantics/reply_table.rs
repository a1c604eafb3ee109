//! The server's at-most-once memory: per client session, the saved replies
//! and in-progress markers of its calls, bounded in clients and in calls,
//! and in saved reply bytes per session and in total.
//!
//! A session is opened by the client's ping (the handshake) and remembers the
//! client's *floor*: the lowest at-most-once seq the client had never sent
//! when it pinged. Calls below the floor may have run in a session this table
//! forgot (evicted, or lost in a crash), so the server answers them
//! `OutcomeUnknown` instead of running them. That is what makes evicting an
//! expired session safe.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ebb_core::{ClientId, Instant, Nanos};

use super::MAX_REPLIES_PER_CLIENT;
use super::window::Window;
use crate::fast_map::FastMap;
use crate::wire::{Outcome, Reply, Seq};

/// What the table knows about one call of a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Executing now: a duplicate waits for it instead of running again.
    Running,
    /// Finished (or refused); the reply goes out again on any duplicate.
    Done(Reply),
}

/// One client's session on this server.
#[derive(Debug)]
pub struct ClientState {
    /// Where the session was opened from; counts against that peer's bound.
    pub peer: IpAddr,
    /// At-most-once calls below this may have run in a forgotten session.
    pub floor: Seq,
    /// The highest `ack_below` seen: the client waits for nothing below it.
    pub ack_below: Seq,
    pub last_active: Instant,
    /// Calls in `[ack_below, ack_below + MAX_REPLIES_PER_CLIENT)`.
    pub entries: Window,
    /// Payload bytes of the saved replies in `entries`.
    pub saved_bytes: usize,
}

/// Why a reply was saved without its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotKept {
    /// The client's session is at its saved-reply bytes.
    Session,
    /// The whole table is at its saved-reply bytes.
    Total,
    /// The seq is outside the client's at-most-once window (the session's
    /// checks prevent it).
    Window,
}

/// A session borrowed from the table: every change to its saved replies
/// goes through here, so the table's byte total stays the sum of its
/// sessions'. Reads and the in-progress markers go through `Deref`.
#[derive(Debug)]
pub struct Session<'a> {
    state: &'a mut ClientState,
    saved_total: &'a mut usize,
    max_saved_total: usize,
}

impl std::ops::Deref for Session<'_> {
    type Target = ClientState;
    fn deref(&self) -> &ClientState {
        self.state
    }
}

impl std::ops::DerefMut for Session<'_> {
    fn deref_mut(&mut self) -> &mut ClientState {
        self.state
    }
}

impl Session<'_> {
    /// Raises `ack_below` and forgets every call below it. The forgotten
    /// replies' buffers go back to this thread's reply buffers, for the
    /// next replies to be written into (`crate::reply_pool`).
    pub fn acknowledge_below(&mut self, ack_below: Seq) {
        let state = &mut *self.state;
        if ack_below > state.ack_below {
            state.ack_below = ack_below;
            let (saved_bytes, saved_total) = (&mut state.saved_bytes, &mut *self.saved_total);
            state.entries.advance_to(ack_below, |entry| {
                if let Entry::Done(reply) = entry {
                    *saved_bytes -= reply.payload.len();
                    *saved_total -= reply.payload.len();
                    crate::reply_pool::recycle(reply.payload);
                }
            });
        }
    }

    /// Saves `reply` as the outcome of `seq`, keeping the saved payload
    /// bytes within `max_bytes` for this session and within the table's
    /// total: a reply that does not fit is replaced by an `OutcomeUnknown`
    /// (the call ran; a resend learns that it will not run again, not its
    /// result). Lends the reply as saved, or gives it back with why it
    /// was not kept.
    pub fn save(&mut self, seq: Seq, reply: Reply, max_bytes: usize) -> Saved<'_> {
        let state = &mut *self.state;
        let old = match state.entries.get(&seq) {
            Some(Entry::Done(old)) => old.payload.len(),
            _ => 0,
        };
        // Room left once the entry replaced is gone.
        let session_room = max_bytes.saturating_sub(state.saved_bytes - old);
        let total_room = self.max_saved_total.saturating_sub(*self.saved_total - old);
        let len = reply.payload.len();
        let (live, reply) = if len <= session_room && len <= total_room {
            (None, reply)
        } else {
            let why = if len > total_room {
                NotKept::Total
            } else {
                NotKept::Session
            };
            let note: &'static [u8] = match why {
                NotKept::Session | NotKept::Window => {
                    b"the call ran, but its reply was over the server's saved-reply bytes per client"
                }
                NotKept::Total => {
                    b"the call ran, but its reply was over the server's saved-reply bytes in total"
                }
            };
            // The note itself only if it fits, so the bounds hold exactly.
            let note = if note.len() <= session_room.min(total_room) {
                note
            } else {
                b""
            };
            let dropped = Reply {
                outcome: Outcome::OutcomeUnknown,
                payload: bytes::Bytes::from_static(note),
                ..reply.clone()
            };
            (Some((why, reply)), dropped)
        };
        let len = reply.payload.len();
        match state.entries.put_done(seq, reply) {
            // Outside the window nothing is recorded (the session never
            // asks for that); the caller answers with the reply.
            Err(reply) => Saved::Replaced {
                reply: live.map_or(reply, |(_, live)| live),
                why: NotKept::Window,
            },
            Ok((_, saved)) => {
                state.saved_bytes = state.saved_bytes - old + len;
                *self.saved_total = *self.saved_total - old + len;
                match live {
                    Some((why, reply)) => Saved::Replaced { reply, why },
                    None => Saved::Kept(saved),
                }
            }
        }
    }
}

/// What [`Session::save`] kept.
#[derive(Debug)]
pub enum Saved<'a> {
    /// The reply itself, as saved.
    Kept(&'a Reply),
    /// An `OutcomeUnknown` was saved in the reply's place (or nothing, for
    /// a seq outside the window); here is the reply, to answer the live
    /// call with.
    Replaced { reply: Reply, why: NotKept },
}

impl Saved<'_> {
    /// Why the reply itself was not kept, if it was not.
    pub fn kept(&self) -> Result<(), NotKept> {
        match self {
            Saved::Kept(_) => Ok(()),
            Saved::Replaced { why, .. } => Err(*why),
        }
    }

    /// The reply to send now.
    pub fn reply(&self) -> &Reply {
        match self {
            Saved::Kept(reply) => reply,
            Saved::Replaced { reply, .. } => reply,
        }
    }
}

/// Refused to open a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableFull {
    /// The table is at its bound and no session has been idle past expiry.
    #[error("server at its bound of {max_clients} client sessions, none idle past expiry")]
    Total { max_clients: usize },
    /// The peer already holds its share of sessions, so one caller cannot
    /// fill the table for everyone.
    #[error("this peer holds its bound of {max_per_peer} client sessions")]
    Peer { max_per_peer: usize },
}

/// Client sessions, with an index by idle time for eviction. The `HashMap` is
/// only looked up, never iterated, so runs stay deterministic.
#[derive(Debug)]
pub struct ReplyTable {
    max_clients: usize,
    max_per_peer: usize,
    session_expiry: Nanos,
    /// Payload bytes of every saved reply, all sessions; at most
    /// `max_saved_total`.
    saved_total: usize,
    max_saved_total: usize,
    clients: FastMap<ClientId, ClientState>,
    per_peer: FastMap<IpAddr, usize>,
    idle: BTreeSet<(Instant, ClientId)>,
}

impl ReplyTable {
    pub fn new(max_clients: usize, max_per_peer: usize, session_expiry: Nanos) -> ReplyTable {
        ReplyTable {
            max_clients: max_clients.max(1),
            max_per_peer: max_per_peer.max(1),
            session_expiry,
            saved_total: 0,
            max_saved_total: usize::MAX,
            clients: FastMap::default(),
            per_peer: FastMap::default(),
            idle: BTreeSet::new(),
        }
    }

    /// Bounds the saved reply payload bytes of all sessions together.
    pub fn with_max_saved_bytes_total(mut self, max: usize) -> ReplyTable {
        self.max_saved_total = max;
        self
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Payload bytes of the saved replies of all sessions.
    pub fn saved_bytes(&self) -> usize {
        self.saved_total
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Total entries (saved replies and running markers) over all sessions.
    pub fn entries(&self) -> usize {
        self.clients.values().map(|c| c.entries.len()).sum()
    }

    /// Sessions opened from `peer`.
    pub fn opened_by(&self, peer: IpAddr) -> usize {
        self.per_peer.get(&peer).copied().unwrap_or(0)
    }

    /// Touches `client`'s session, creating it with `floor` if absent. When
    /// full, evicts the longest-idle session if it has expired, else refuses;
    /// a peer at its own bound is refused outright.
    pub fn open(
        &mut self,
        client: ClientId,
        floor: Seq,
        peer: IpAddr,
        now: Instant,
    ) -> Result<Session<'_>, TableFull> {
        if !self.clients.contains_key(&client) {
            if self.opened_by(peer) >= self.max_per_peer {
                return Err(TableFull::Peer {
                    max_per_peer: self.max_per_peer,
                });
            }
            if self.clients.len() >= self.max_clients {
                self.evict_one_expired(now)?;
            }
            *self.per_peer.entry(peer).or_default() += 1;
            self.clients.insert(
                client,
                ClientState {
                    peer,
                    floor,
                    ack_below: Seq(0),
                    last_active: now,
                    entries: Window::default(),
                    saved_bytes: 0,
                },
            );
            self.idle.insert((now, client));
        }
        Ok(self
            .touch(client, now)
            .expect("present: found or inserted above"))
    }

    /// The session of `client`, marked active at `now`; `None` if the table
    /// has no session for it (never opened, evicted, or lost in a crash).
    pub fn touch(&mut self, client: ClientId, now: Instant) -> Option<Session<'_>> {
        let state = self.clients.get_mut(&client)?;
        if state.last_active != now {
            self.idle.remove(&(state.last_active, client));
            // Time never runs backwards for a caller, but a stale `now` must
            // not make a session look older than it is.
            state.last_active = state.last_active.max(now);
            self.idle.insert((state.last_active, client));
        }
        Some(Session {
            state,
            saved_total: &mut self.saved_total,
            max_saved_total: self.max_saved_total,
        })
    }

    /// Looks a session up, to read.
    pub fn get(&self, client: ClientId) -> Option<&ClientState> {
        self.clients.get(&client)
    }

    /// Looks a session up without marking it active.
    pub fn get_mut(&mut self, client: ClientId) -> Option<Session<'_>> {
        Some(Session {
            state: self.clients.get_mut(&client)?,
            saved_total: &mut self.saved_total,
            max_saved_total: self.max_saved_total,
        })
    }

    /// Drops every session idle past the expiry, to give memory back early.
    /// Returns how many were dropped.
    pub fn expire_idle(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while self.evict_one_expired(now).is_ok() {
            n += 1;
        }
        n
    }

    fn evict_one_expired(&mut self, now: Instant) -> Result<(), TableFull> {
        let full = TableFull::Total {
            max_clients: self.max_clients,
        };
        let &(since, client) = self.idle.first().ok_or(full)?;
        if since + self.session_expiry > now {
            return Err(full);
        }
        self.idle.remove(&(since, client));
        if let Some(state) = self.clients.remove(&client) {
            self.saved_total -= state.saved_bytes;
            if let Some(n) = self.per_peer.get_mut(&state.peer) {
                *n -= 1;
                if *n == 0 {
                    self.per_peer.remove(&state.peer);
                }
            }
        }
        Ok(())
    }

    /// Checks the table's claims: the idle index and the per-peer counts
    /// agree with the sessions, and every session stays within its window.
    /// Costly; for debug builds and tests.
    pub fn check(&self) -> Result<(), String> {
        if self.idle.len() != self.clients.len() {
            return Err(format!(
                "{} idle entries for {} sessions",
                self.idle.len(),
                self.clients.len()
            ));
        }
        for (since, client) in &self.idle {
            if self.clients.get(client).map(|c| c.last_active) != Some(*since) {
                return Err(format!("idle index of {client} is stale"));
            }
        }
        let peers: usize = self.per_peer.values().sum();
        if peers != self.clients.len() || self.clients.len() > self.max_clients {
            return Err(format!(
                "{peers} sessions counted per peer, {} held, bound {}",
                self.clients.len(),
                self.max_clients
            ));
        }
        let total: usize = self.clients.values().map(|c| c.saved_bytes).sum();
        if total != self.saved_total || total > self.max_saved_total {
            return Err(format!(
                "{} saved bytes counted in total, {total} held, bound {}",
                self.saved_total, self.max_saved_total
            ));
        }
        for (client, state) in &self.clients {
            let saved: usize = state
                .entries
                .values()
                .map(|e| match e {
                    Entry::Done(r) => r.payload.len(),
                    Entry::Running => 0,
                })
                .sum();
            if saved != state.saved_bytes {
                return Err(format!(
                    "{client} counts {} saved bytes, holds {saved}",
                    state.saved_bytes
                ));
            }
            state.entries.check()?;
            let window = state.ack_below..state.ack_below.plus(MAX_REPLIES_PER_CLIENT);
            if let Some((seq, _)) = state.entries.iter().find(|(s, _)| !window.contains(s)) {
                return Err(format!(
                    "{client} holds seq {seq} outside its window {window:?}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const EXP: Nanos = Nanos::from_secs(10);
    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn at_secs(s: u64) -> Instant {
        Instant::EPOCH + Nanos::from_secs(s)
    }

    #[test]
    fn full_table_evicts_only_an_expired_session_longest_idle_first() {
        let mut t = ReplyTable::new(2, 4, EXP);
        t.open(ClientId(1), Seq(1), PEER, at_secs(0)).unwrap();
        t.open(ClientId(2), Seq(1), PEER, at_secs(1)).unwrap();
        assert_eq!(
            t.open(ClientId(3), Seq(1), PEER, at_secs(5)).err(),
            Some(TableFull::Total { max_clients: 2 })
        );
        t.touch(ClientId(1), at_secs(2));
        // Client 2 (idle since 1 s) is now the longest idle; expired at 11 s.
        t.open(ClientId(3), Seq(1), PEER, at_secs(11)).unwrap();
        assert!(t.get_mut(ClientId(2)).is_none());
        assert!(t.get_mut(ClientId(1)).is_some());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn acknowledge_below_prunes_saved_entries() {
        let mut t = ReplyTable::new(4, 4, EXP);
        let mut s = t.open(ClientId(1), Seq(1), PEER, Instant::EPOCH).unwrap();
        for seq in 1..=5 {
            s.entries.insert(Seq(seq), Entry::Running);
        }
        s.acknowledge_below(Seq(4));
        assert_eq!(s.entries.keys().collect::<Vec<_>>(), vec![Seq(4), Seq(5)]);
        s.acknowledge_below(Seq(2));
        assert_eq!(s.ack_below, Seq(4), "ack_below never goes back");
    }

    fn reply(seq: u64, payload: &'static [u8]) -> Reply {
        Reply {
            client: ClientId(0),
            seq: Seq(seq),
            incarnation: crate::wire::Incarnation::at_least_one(1),
            method: 0,
            idempotent: false,
            json: false,
            outcome: Outcome::Ok,
            load: 0,
            service_time: ebb_core::Nanos::ZERO,
            payload: bytes::Bytes::from_static(payload),
        }
    }

    #[test]
    fn saved_bytes_stay_within_the_total_over_all_sessions_and_come_back() {
        let mut t = ReplyTable::new(4, 4, EXP).with_max_saved_bytes_total(10);
        let per_session = 8;
        let mut a = t.open(ClientId(1), Seq(1), PEER, at_secs(0)).unwrap();
        assert_eq!(
            a.save(Seq(1), reply(1, b"123456"), per_session).kept(),
            Ok(())
        );
        let mut b = t.open(ClientId(2), Seq(1), PEER, at_secs(0)).unwrap();
        // Within its own session's 8 bytes, but 6 + 6 is over the 10 in total.
        assert_eq!(
            b.save(Seq(1), reply(1, b"abcdef"), per_session).kept(),
            Err(NotKept::Total)
        );
        assert!(matches!(
            b.entries.get(&Seq(1)),
            Some(Entry::Done(r)) if r.outcome == Outcome::OutcomeUnknown
        ));
        assert_eq!(
            b.save(Seq(2), reply(2, b"abcd"), per_session).kept(),
            Ok(())
        );
        assert_eq!(t.saved_bytes(), 10);
        t.check().unwrap();
        // Acknowledging frees bytes in the total too; so does expiry.
        t.touch(ClientId(1), at_secs(1))
            .unwrap()
            .acknowledge_below(Seq(2));
        assert_eq!(t.saved_bytes(), 4);
        assert_eq!(t.expire_idle(at_secs(20)), 2);
        assert_eq!(t.saved_bytes(), 0);
        t.check().unwrap();
    }

    #[test]
    fn reopening_keeps_the_original_floor() {
        let mut t = ReplyTable::new(4, 4, EXP);
        t.open(ClientId(1), Seq(3), PEER, Instant::EPOCH).unwrap();
        assert_eq!(
            t.open(ClientId(1), Seq(9), PEER, Instant::EPOCH + Nanos(5))
                .unwrap()
                .floor,
            Seq(3)
        );
    }

    #[test]
    fn one_peer_cannot_take_more_than_its_share_of_sessions() {
        let mut t = ReplyTable::new(4, 2, EXP);
        t.open(ClientId(1), Seq(1), PEER, at_secs(0)).unwrap();
        t.open(ClientId(2), Seq(1), PEER, at_secs(0)).unwrap();
        assert_eq!(
            t.open(ClientId(3), Seq(1), PEER, at_secs(0)).err(),
            Some(TableFull::Peer { max_per_peer: 2 })
        );
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
        t.open(ClientId(3), Seq(1), other, at_secs(0)).unwrap();
        assert_eq!(t.expire_idle(at_secs(20)), 3);
        assert_eq!(t.opened_by(PEER), 0);
        t.check().unwrap();
    }

    #[test]
    fn expire_idle_drops_exactly_the_expired_sessions() {
        let mut t = ReplyTable::new(4, 4, EXP);
        t.open(ClientId(1), Seq(1), PEER, at_secs(0)).unwrap();
        t.open(ClientId(2), Seq(1), PEER, at_secs(5)).unwrap();
        assert_eq!(t.expire_idle(at_secs(12)), 1);
        assert!(t.get_mut(ClientId(2)).is_some());
    }
}
