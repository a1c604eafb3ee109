//! The simulated network: connections that break and reconnect, frames
//! that are dropped, duplicated and delayed (and so reordered), and a
//! session's output moved into the world. Kept apart from the event
//! handlers so the fault model reads in one place.

use ebb_core::Nanos;
use ebb_rpc::wire::{Message, decode_payload};

use super::{Event, REPLY_MARK, World};

impl World {
    pub(super) fn conn_live(&self, c: usize, s: usize, epoch: u64) -> bool {
        let conn = &self.conns[c][s];
        conn.up && conn.epoch == epoch
    }

    /// The connection dies; in-flight frames are lost. `notified`: the
    /// client sees it at once (else only its failure detector will).
    pub(super) fn break_conn(&mut self, c: usize, s: usize, notified: bool) -> Result<(), String> {
        let conn = &mut self.conns[c][s];
        conn.up = false;
        conn.epoch += 1;
        if let Some(id) = conn.server_conn.take()
            && let Some(server) = self.servers[s].as_mut()
        {
            server.close_connection(id);
            self.tracks.remove(&(s, id));
        }
        if notified {
            self.sessions[c][s].handle_disconnect(self.now);
            let after = Nanos::from_millis(1 + self.rng.below(50));
            self.schedule_reconnect(c, s, after);
        }
        self.pump(c, s)
    }

    pub(super) fn schedule_reconnect(&mut self, c: usize, s: usize, after: Nanos) {
        if !std::mem::replace(&mut self.conns[c][s].reconnect_pending, true) {
            self.at(self.now + after, Event::Reconnect { c, s });
        }
    }

    pub(super) fn send_to_server(&mut self, c: usize, s: usize, frame: Message) {
        if let Message::Request(r) = &frame
            && !r.idempotent
        {
            self.captured.insert((c, s), r.clone());
        }
        let epoch = self.conns[c][s].epoch;
        self.transmit(frame, |frame| Event::ToServer { c, s, epoch, frame }, c, s);
    }

    pub(super) fn send_to_client(&mut self, c: usize, s: usize, frame: Message) {
        let epoch = self.conns[c][s].epoch;
        self.transmit(frame, |frame| Event::ToClient { c, s, epoch, frame }, c, s);
    }

    pub(super) fn transmit(
        &mut self,
        frame: Message,
        ev: impl Fn(Message) -> Event,
        c: usize,
        s: usize,
    ) {
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
    pub(super) fn pump(&mut self, c: usize, s: usize) -> Result<(), String> {
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
            let after = Nanos::from_millis(1 + self.rng.below(50));
            self.schedule_reconnect(c, s, after);
        }
        Ok(())
    }
}
