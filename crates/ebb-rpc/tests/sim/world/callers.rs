//! Who may act for a client: a forger that copies a client's id without
//! its secret is refused, runs nothing and resizes nothing, and each caller (by its token)
//! keeps within its bound of calls executing on a server.

use bytes::Bytes;
use ebb_rpc::semantics::{Action, CallKey, Caller};
use ebb_rpc::wire::{ClientSecret, Describe, Message, Outcome, Ping, Refusal, Seq};

use super::{FORGER_PEER, World};

impl World {
    /// A forger resumes client `c`'s session on server `s` without its
    /// secret; the server must refuse both the handshake and the copied
    /// request, typed, and run nothing.
    pub(super) fn forge(&mut self, s: usize, c: usize) -> Result<(), String> {
        let victim = self.sessions[c][s].client_id();
        let secret = ClientSecret::random(&mut self.rng);
        let copied = self.captured.get(&(c, s)).cloned();
        // With tokens, a forger holds a caller's token (it is a caller
        // acting for another's client id) or none it may use.
        // Its handshake is refused, so its connection never presented an
        // accepted token: with tokens, the copied request is refused for
        // that first.
        let (token, expected, expected_request) = match &self.tokens {
            Some(_) if self.rng.chance(0.5) => (
                super::token_of(c),
                Refusal::Unauthenticated,
                Refusal::Unauthorized,
            ),
            Some(_) => (
                Bytes::from_static(b"stolen?"),
                Refusal::Unauthorized,
                Refusal::Unauthorized,
            ),
            None => (
                Bytes::new(),
                Refusal::Unauthenticated,
                Refusal::Unauthenticated,
            ),
        };
        let Some(server) = self.servers[s].as_mut() else {
            return Ok(());
        };
        let Ok(conn) = server.open_connection(FORGER_PEER, self.now) else {
            self.stats.conns_refused += 1;
            return Ok(());
        };
        let live = server.table().get(victim).is_some();
        let ping = Ping {
            client: victim,
            floor: Seq::FIRST,
            ack_below: Seq::FIRST,
            incarnation: Some(server.incarnation()),
            secret,
            token,
        };
        match server.admit(conn, ping, self.now) {
            Action::Reply(Message::Pong(p)) if p.refused == Some(expected) => {
                if expected == Refusal::Unauthorized {
                    self.stats.unauthorized_handshakes += 1;
                } else {
                    self.stats.forged_handshakes_refused += 1;
                    if live {
                        self.stats.forged_resumes_refused += 1;
                    }
                }
            }
            other => {
                return Err(format!(
                    "a forged handshake for client {c} on server {s} got {other:?}"
                ));
            }
        }
        if let Some(request) = copied {
            let seq = request.seq;
            match server.admit(conn, request, self.now) {
                Action::Reply(Message::Reply(r))
                    if r.outcome == Outcome::Refused(expected_request) =>
                {
                    if expected_request == Refusal::Unauthorized {
                        self.stats.unauthorized_requests += 1;
                    } else {
                        self.stats.forged_requests_refused += 1;
                    }
                }
                other => {
                    return Err(format!(
                        "a forged copy of client {c}'s call {seq} on server {s} got {other:?}"
                    ));
                }
            }
        }
        if self.resizes.is_some() {
            // Nor may it resize the server: its connection proved nothing.
            let resize = ebb_rpc::wire::Resize {
                id: 0,
                capacity: std::num::NonZeroU32::MAX,
            };
            match server.admit(conn, resize, self.now) {
                Action::Drop => self.stats.resizes_unanswered += 1,
                other => {
                    return Err(format!("a forger's resize on server {s} got {other:?}"));
                }
            }
        }
        if self.tokens.is_some() {
            // Nor does it learn the service's methods.
            match server.admit(conn, Describe { id: 9 }, self.now) {
                Action::Drop => self.stats.describes_refused += 1,
                other => {
                    return Err(format!(
                        "a Describe on server {s} without an accepted token got {other:?}"
                    ));
                }
            }
        }
        server.check()?;
        self.tracks.insert(
            (s, conn),
            super::Track {
                opened_at: self.now,
                last_heard: Some(self.now),
            },
        );
        Ok(())
    }

    /// Counts a call `key` started on server `s` against its caller, and
    /// checks the caller's bound: never more executing than it allows, and
    /// notes a call served while another caller is at its bound.
    pub(super) fn started_for_caller(&mut self, s: usize, key: &CallKey) -> Result<(), String> {
        let (Caller::Token(i), Some(max)) = (key.caller, self.server_cfg.max_in_flight_per_caller)
        else {
            return Ok(());
        };
        if self
            .executing
            .iter()
            .any(|(&(server, other), &n)| server == s && other != i && n >= max)
        {
            self.stats.served_beside_full_caller += 1;
        }
        let n = self.executing.entry((s, i)).or_default();
        *n += 1;
        if *n > max {
            return Err(format!(
                "caller {i} has {n} calls executing on server {s}, over its bound of {max}"
            ));
        }
        Ok(())
    }
}
