//! The handshake (a ping proving its client id and presenting a token),
//! `Describe` and `Resize`: the messages that gate what a connection may do
//! later or ask of the server itself, kept together so the proof and token
//! checks are read in one place.

use bytes::Bytes;
use ebb_core::Instant;

use super::{Action, ServerSession};
use crate::semantics::conns::ConnId;
use crate::semantics::reply_table::TableFull;
use crate::wire::{Description, Message, Ping, Pong, Refusal, Resize, Resized};

impl ServerSession {
    /// A description names every method and its parameter types: on a
    /// server that requires a bearer token, only a connection that
    /// presented an accepted one learns it. A refused Describe is left
    /// unanswered: the handshake before it was already refused
    /// `Unauthorized` in its pong, which is what the client reports, and a
    /// peer that skips the handshake learns nothing at all.
    pub(super) fn handle_describe(&mut self, conn: ConnId, id: u64) -> Action {
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

    /// A resize changes what the server spends, so only a connection whose
    /// handshake was accepted may ask: it presented an accepted bearer
    /// token where one is required, and proved a client id. Anything else
    /// is left unanswered, as a refused `Describe` is. It runs no method:
    /// the transport sets its workers to the capacity decided here (what
    /// was asked, cut to the server's bound) and answers with what they
    /// took.
    pub(super) fn handle_resize(&mut self, conn: ConnId, resize: Resize) -> Action {
        let token_ok = self.tokens.is_none() || self.conns.token(conn).is_some();
        if !token_ok || !self.conns.proven_any(conn) {
            self.stats.refused_unauthorized_resizes += 1;
            return Action::Drop;
        }
        self.stats.resizes += 1;
        let resized = Resized {
            id: resize.id,
            incarnation: self.incarnation,
            capacity: self.resize_up_to.map(|most| resize.capacity.min(most)),
        };
        match resized.capacity {
            Some(_) => Action::Resize(resized),
            None => Action::Reply(Message::Resized(resized)),
        }
    }

    /// The ping is the session handshake and heartbeat: it proves the
    /// client id on this connection, opens (or keeps alive) the client's
    /// session and tells the client our incarnation. A ping that does not
    /// prove its id touches nothing.
    pub(super) fn handle_ping(&mut self, conn: ConnId, ping: &Ping, now: Instant) -> Pong {
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
}
