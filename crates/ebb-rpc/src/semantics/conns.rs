//! The server's connections as the call semantics see them: who is connected
//! from where, which client ids each connection speaks for, how many calls
//! each has running, and where each client's replies go.
//!
//! The transport owns the sockets; this table owns every decision about
//! them (accept or refuse a connection, route a reply), so the fault
//! simulation exercises the same bounds the TCP server enforces.

use crate::fast_map::FastMap;
use std::net::IpAddr;

use ebb_core::{ClientId, Instant, Nanos};

/// Names one transport connection for the server session. Assigned by
/// [`super::ServerSession::open_connection`], never reused by one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Why a connection was refused at accept: nothing it sent was read, so
/// nothing it sent ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ConnRefusal {
    #[error("server full: {max} connections open")]
    ServerFull { max: usize },
    #[error("server full for this peer: {max} connections open from it")]
    PeerFull { max: usize },
}

/// Who a connection calls for, for per-caller bounds: the bearer token
/// it presented (its index in the server's tokens), else its peer address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Caller {
    Token(usize),
    Peer(IpAddr),
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Counted from 1, as lines of the token file are.
            Caller::Token(i) => write!(f, "token {}", i + 1),
            Caller::Peer(ip) => write!(f, "peer {ip}"),
        }
    }
}

/// What a connection may do for the client id a frame names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Route {
    /// The connection speaks for the id (false: it is at its bound of ids,
    /// and the frame gets no route).
    pub listed: bool,
    /// The connection proved the id; only then do replies follow it here.
    pub proven: bool,
    /// The bearer token the connection presented, if any.
    pub token: Option<usize>,
    pub caller: Caller,
    /// Calls of the connection executing now.
    pub in_flight: usize,
}

#[derive(Debug)]
struct Conn {
    peer: IpAddr,
    /// The bearer token a handshake on it presented (index), if any.
    token: Option<usize>,
    opened_at: Instant,
    /// When a message was last admitted from it; `None` before the first.
    last_heard: Option<Instant>,
    /// Calls admitted on this connection and not yet completed.
    in_flight: usize,
    /// The client ids this connection has spoken for, at most
    /// `max_clients_per_conn`, each with whether the connection proved it
    /// (a handshake carried the id's secret).
    clients: Vec<(ClientId, bool)>,
}

/// Connections and reply routes. The maps are only looked up, never
/// iterated, so runs stay deterministic.
#[derive(Debug, Default)]
pub(super) struct Conns {
    next: u64,
    conns: FastMap<ConnId, Conn>,
    per_peer: FastMap<IpAddr, usize>,
    /// Each client's reply route: the connection it was last heard on.
    routes: FastMap<ClientId, ConnId>,
}

impl Conns {
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn open(
        &mut self,
        peer: IpAddr,
        now: Instant,
        max_total: usize,
        max_per_peer: usize,
    ) -> Result<ConnId, ConnRefusal> {
        if self.conns.len() >= max_total {
            return Err(ConnRefusal::ServerFull { max: max_total });
        }
        let from_peer = self.per_peer.entry(peer).or_default();
        if *from_peer >= max_per_peer {
            return Err(ConnRefusal::PeerFull { max: max_per_peer });
        }
        *from_peer += 1;
        self.next += 1;
        let id = ConnId(self.next);
        self.conns.insert(
            id,
            Conn {
                peer,
                token: None,
                opened_at: now,
                last_heard: None,
                in_flight: 0,
                clients: Vec::new(),
            },
        );
        Ok(id)
    }

    /// Forgets `id` and the routes that pointed at it: its clients' replies
    /// wait in the reply table until they ask again on a new connection.
    pub fn close(&mut self, id: ConnId) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        for (client, _) in conn.clients {
            if self.routes.get(&client) == Some(&id) {
                self.routes.remove(&client);
            }
        }
        if let Some(n) = self.per_peer.get_mut(&conn.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&conn.peer);
            }
        }
    }

    pub fn is_open(&self, id: ConnId) -> bool {
        self.conns.contains_key(&id)
    }

    /// Notes that `id` was heard from at `now`; false if it is not open
    /// (one lookup for both, on every message).
    pub fn heard(&mut self, id: ConnId, now: Instant) -> bool {
        let Some(c) = self.conns.get_mut(&id) else {
            return false;
        };
        c.last_heard = Some(c.last_heard.map_or(now, |t| t.max(now)));
        true
    }

    /// Connections silent past their bound at `now`, in id order: never
    /// heard from within `handshake` of opening, or not heard from within
    /// `idle` since last heard. Walks every connection.
    pub fn silent(&self, now: Instant, handshake: Nanos, idle: Nanos) -> Vec<ConnId> {
        let mut out: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| match c.last_heard {
                None => c.opened_at + handshake <= now,
                Some(t) => t + idle <= now,
            })
            .map(|(&id, _)| id)
            .collect();
        out.sort_unstable();
        out
    }

    pub fn peer(&self, id: ConnId) -> Option<IpAddr> {
        self.conns.get(&id).map(|c| c.peer)
    }

    /// Notes that `id` speaks for `client` and, if it proved the id,
    /// routes `client`'s replies to it. `None` when `id` already speaks for
    /// `max_clients` other client ids: such a frame gets no route; else
    /// whether `id` proved `client`. An unproven connection never takes
    /// another client's replies.
    pub fn route(&mut self, id: ConnId, client: ClientId, max_clients: usize) -> Option<Route> {
        let conn = self.conns.get_mut(&id)?;
        let (listed, proven) = match conn.clients.iter().find(|(c, _)| *c == client) {
            Some(&(_, proven)) => (true, proven),
            None if conn.clients.len() >= max_clients => (false, false),
            None => {
                conn.clients.push((client, false));
                (true, false)
            }
        };
        let route = Route {
            listed,
            proven,
            token: conn.token,
            caller: conn.token.map_or(Caller::Peer(conn.peer), Caller::Token),
            in_flight: conn.in_flight,
        };
        if proven {
            self.routes.insert(client, id);
        }
        Some(route)
    }

    /// The bearer token `id` presented and the server accepted (its index),
    /// if any.
    pub fn token(&self, id: ConnId) -> Option<usize> {
        self.conns.get(&id).and_then(|c| c.token)
    }

    /// `id` presented accepted bearer token `token` (its index): it calls
    /// as that token from now on.
    pub fn authorize(&mut self, id: ConnId, token: usize) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.token = Some(token);
        }
    }

    /// `id` proved `client` (a handshake showed the id's secret): its
    /// requests may act on `client`'s session, and `client`'s replies go to
    /// it. Call it after [`Conns::route`] listed `client`, which keeps the
    /// list within its bound.
    pub fn prove(&mut self, id: ConnId, client: ClientId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        match conn.clients.iter_mut().find(|(c, _)| *c == client) {
            Some(entry) => entry.1 = true,
            None => conn.clients.push((client, true)),
        }
        self.routes.insert(client, id);
    }

    /// `id` proved some client id (a handshake showed its secret).
    pub fn proven_any(&self, id: ConnId) -> bool {
        self.conns
            .get(&id)
            .is_some_and(|c| c.clients.iter().any(|(_, proven)| *proven))
    }

    pub fn route_of(&self, client: ClientId) -> Option<ConnId> {
        self.routes.get(&client).copied()
    }

    pub fn in_flight(&self, id: ConnId) -> usize {
        self.conns.get(&id).map_or(0, |c| c.in_flight)
    }

    pub fn started(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.in_flight += 1;
        }
    }

    pub fn finished(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            debug_assert!(c.in_flight > 0, "a call finished that never started");
            c.in_flight = c.in_flight.saturating_sub(1);
        }
    }

    /// Connections from `peer`.
    pub fn opened_by(&self, peer: IpAddr) -> usize {
        self.per_peer.get(&peer).copied().unwrap_or(0)
    }

    /// Checks the table's claims: the per-peer counts add up to the
    /// connections, and every route points at an open connection that
    /// lists the client. Costly; for debug builds and tests.
    pub fn check(&self) -> Result<(), String> {
        let peers: usize = self.per_peer.values().sum();
        if peers != self.conns.len() {
            return Err(format!(
                "{peers} connections counted per peer, {} open",
                self.conns.len()
            ));
        }
        for (client, id) in &self.routes {
            if !self
                .conns
                .get(id)
                .is_some_and(|c| c.clients.contains(&(*client, true)))
            {
                return Err(format!(
                    "route of {client} points at {id:?}, which has not proven it"
                ));
            }
        }
        Ok(())
    }
}
