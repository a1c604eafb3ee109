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

mod session;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::net::IpAddr;

use ebb_core::{ClientId, Instant, Nanos};

use super::MAX_REPLIES_PER_CLIENT;
use super::window::Window;
use crate::fast_map::FastMap;
use crate::wire::Seq;

pub use session::{ClientState, Entry, NotKept, Saved, Session};

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

/// How far a session's activity runs ahead of its key in the idle index
/// before the key is moved: a call moves it at most this often, rather
/// than on every call (a removal and an insertion in a B-tree). Eviction
/// reads a session's real `last_active` before it evicts, so the key's lag
/// changes which sessions count as expired, and which is the longest idle,
/// not at all.
pub const IDLE_INDEX_STEP: Nanos = Nanos::from_millis(100);

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
    /// Each session by its `indexed_at`, which lags its `last_active` by
    /// less than `IDLE_INDEX_STEP`.
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
                    indexed_at: now,
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
        // Time never runs backwards for a caller, but a stale `now` must
        // not make a session look older than it is.
        state.last_active = state.last_active.max(now);
        if state.last_active.saturating_since(state.indexed_at) >= IDLE_INDEX_STEP {
            self.idle.remove(&(state.indexed_at, client));
            state.indexed_at = state.last_active;
            self.idle.insert((state.indexed_at, client));
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
        // A key that lags its session's activity is moved up to it first,
        // so the first key that does not lag is the longest idle session:
        // every other key is at least as late, and no session is older
        // than its key. Each session is moved at most once here.
        for _ in 0..=self.idle.len() {
            let &(since, client) = self.idle.first().ok_or(full)?;
            let Some(state) = self.clients.get_mut(&client) else {
                debug_assert!(false, "an idle key of no session");
                self.idle.remove(&(since, client));
                continue;
            };
            if state.last_active > since {
                self.idle.remove(&(since, client));
                state.indexed_at = state.last_active;
                self.idle.insert((state.indexed_at, client));
                continue;
            }
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
            return Ok(());
        }
        debug_assert!(false, "every key was moved, and the first still lags");
        Err(full)
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
            let Some(c) = self.clients.get(client) else {
                return Err(format!("idle index names {client}, which has no session"));
            };
            if c.indexed_at != *since || c.last_active < *since {
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
