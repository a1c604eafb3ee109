//! The server's at-most-once memory: per client session, the saved replies
//! and in-progress markers of its calls, bounded in clients and in calls.
//!
//! A session is opened by the client's ping (the handshake) and remembers the
//! client's *floor*: the lowest at-most-once seq the client had never sent
//! when it pinged. Calls below the floor may have run in a session this table
//! forgot (evicted, or lost in a crash), so the server answers them
//! `OutcomeUnknown` instead of running them. That is what makes evicting an
//! expired session safe.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ebb_core::{ClientId, Instant, Nanos};

use crate::wire::Frame;

/// What the table knows about one call of a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Executing now: a duplicate waits for it instead of running again.
    Running,
    /// Finished; the reply goes out again on any duplicate.
    Done(Frame),
}

/// One client's session on this server.
#[derive(Debug)]
pub struct ClientState {
    /// At-most-once calls below this may have run in a forgotten session.
    pub floor: u64,
    /// The highest `ack_below` seen: the client waits for nothing below it.
    pub ack_below: u64,
    pub last_active: Instant,
    /// Calls in `[ack_below, ack_below + MAX_REPLIES_PER_CLIENT)`.
    pub entries: BTreeMap<u64, Entry>,
}

impl ClientState {
    /// Raises `ack_below` and forgets every call below it.
    pub fn acknowledge_below(&mut self, ack_below: u64) {
        if ack_below > self.ack_below {
            self.ack_below = ack_below;
            // Usually one or two entries go per call; popping them avoids
            // the allocation `split_off` would make.
            while let Some(entry) = self.entries.first_entry() {
                if *entry.key() >= ack_below {
                    break;
                }
                entry.remove();
            }
        }
    }
}

/// Refused to open a session: the table is at its bound and no session has
/// been idle past the expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("server at its bound of {max_clients} client sessions, none idle past expiry")]
pub struct TableFull {
    pub max_clients: usize,
}

/// Client sessions, with an index by idle time for eviction. The `HashMap` is
/// only looked up, never iterated, so runs stay deterministic.
#[derive(Debug)]
pub struct ReplyTable {
    max_clients: usize,
    session_expiry: Nanos,
    clients: HashMap<ClientId, ClientState>,
    idle: BTreeSet<(Instant, ClientId)>,
}

impl ReplyTable {
    pub fn new(max_clients: usize, session_expiry: Nanos) -> ReplyTable {
        ReplyTable {
            max_clients: max_clients.max(1),
            session_expiry,
            clients: HashMap::new(),
            idle: BTreeSet::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Total entries (saved replies and running markers) over all sessions.
    pub fn entries(&self) -> usize {
        self.clients.values().map(|c| c.entries.len()).sum()
    }

    /// Touches `client`'s session, creating it with `floor` if absent. When
    /// full, evicts the longest-idle session if it has expired, else refuses.
    pub fn open(
        &mut self,
        client: ClientId,
        floor: u64,
        now: Instant,
    ) -> Result<&mut ClientState, TableFull> {
        if !self.clients.contains_key(&client) {
            if self.clients.len() >= self.max_clients {
                self.evict_one_expired(now)?;
            }
            self.clients.insert(
                client,
                ClientState {
                    floor,
                    ack_below: 0,
                    last_active: now,
                    entries: BTreeMap::new(),
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
    pub fn touch(&mut self, client: ClientId, now: Instant) -> Option<&mut ClientState> {
        let state = self.clients.get_mut(&client)?;
        if state.last_active != now {
            self.idle.remove(&(state.last_active, client));
            // Time never runs backwards for a caller, but a stale `now` must
            // not make a session look older than it is.
            state.last_active = state.last_active.max(now);
            self.idle.insert((state.last_active, client));
        }
        Some(state)
    }

    /// Looks a session up without marking it active.
    pub fn get_mut(&mut self, client: ClientId) -> Option<&mut ClientState> {
        self.clients.get_mut(&client)
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
        let full = TableFull {
            max_clients: self.max_clients,
        };
        let &(since, client) = self.idle.first().ok_or(full)?;
        if since + self.session_expiry > now {
            return Err(full);
        }
        self.idle.remove(&(since, client));
        self.clients.remove(&client);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const EXP: Nanos = Nanos::from_secs(10);

    fn at_secs(s: u64) -> Instant {
        Instant::EPOCH + Nanos::from_secs(s)
    }

    #[test]
    fn full_table_evicts_only_an_expired_session_longest_idle_first() {
        let mut t = ReplyTable::new(2, EXP);
        t.open(ClientId(1), 1, at_secs(0)).unwrap();
        t.open(ClientId(2), 1, at_secs(1)).unwrap();
        assert_eq!(
            t.open(ClientId(3), 1, at_secs(5)).err(),
            Some(TableFull { max_clients: 2 })
        );
        t.touch(ClientId(1), at_secs(2));
        // Client 2 (idle since 1 s) is now the longest idle; expired at 11 s.
        t.open(ClientId(3), 1, at_secs(11)).unwrap();
        assert!(t.get_mut(ClientId(2)).is_none());
        assert!(t.get_mut(ClientId(1)).is_some());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn acknowledge_below_prunes_saved_entries() {
        let mut t = ReplyTable::new(4, EXP);
        let s = t.open(ClientId(1), 1, Instant::EPOCH).unwrap();
        for seq in 1..=5 {
            s.entries.insert(seq, Entry::Running);
        }
        s.acknowledge_below(4);
        assert_eq!(s.entries.keys().copied().collect::<Vec<_>>(), vec![4, 5]);
        s.acknowledge_below(2);
        assert_eq!(s.ack_below, 4, "ack_below never goes back");
    }

    #[test]
    fn reopening_keeps_the_original_floor() {
        let mut t = ReplyTable::new(4, EXP);
        t.open(ClientId(1), 3, Instant::EPOCH).unwrap();
        assert_eq!(
            t.open(ClientId(1), 9, Instant::EPOCH + Nanos(5))
                .unwrap()
                .floor,
            3
        );
    }

    #[test]
    fn expire_idle_drops_exactly_the_expired_sessions() {
        let mut t = ReplyTable::new(4, EXP);
        t.open(ClientId(1), 1, at_secs(0)).unwrap();
        t.open(ClientId(2), 1, at_secs(5)).unwrap();
        assert_eq!(t.expire_idle(at_secs(12)), 1);
        assert!(t.get_mut(ClientId(2)).is_some());
    }
}
