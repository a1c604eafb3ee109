//! Resizes through the faulty network, as a gateway sends them on its
//! connection to a node: dropped, duplicated, delayed past the handshake
//! or into a crashed server's successor like any frame. In a resize run a
//! server lets resizes ask for up to a small bound of workers (or, in some
//! runs, does not resize at all); resizes ask within the bound, past it
//! and for the widest capacity the wire carries, and now and then a client
//! sends a `Resized` the wrong way.
//!
//! Each one the server takes is checked as it is admitted: it runs no
//! method, leaves the at-most-once table and every count but its own as
//! they were; one on a connection whose handshake was not accepted (before
//! the ping arrived, or an outsider's without an accepted token) is left
//! unanswered; an answered one sets the server's worker threads (those
//! that run the overdue runs' blocking methods) to what was asked cut to
//! the bound, so their number stays within 1 ..= the bound. A `Resized`
//! sent to the server is dropped and changes nothing.

use std::num::NonZeroU32;

use ebb_core::{Nanos, Rng};
use ebb_rpc::semantics::{Action, ConnId};
use ebb_rpc::wire::{Message, Resize, Resized};

use super::{Event, HORIZON, World};

/// Resizes (and wrong-way `Resized` frames) per client and server in a
/// resize run, at most.
const MAX_RESIZES: u64 = 6;

/// Knobs of a run that drives resizes, drawn from their own RNG so the
/// runs that do not are what they were.
pub(super) struct ResizeRun {
    pub(super) rng: Rng,
    /// The most workers a resize may ask for; `None`: the servers do not
    /// resize and say so.
    pub(super) bound: Option<NonZeroU32>,
    /// Resize request ids, so each is told apart.
    next_id: u64,
}

impl ResizeRun {
    /// Half the runs drive resizes; a fifth of those to servers that do
    /// not resize.
    pub(super) fn draw(seed: u64) -> Option<ResizeRun> {
        let mut rng = Rng::seeded(seed ^ 0x7265_7369_7a65_0000);
        if !rng.chance(0.5) {
            return None;
        }
        let bound = if rng.chance(0.2) {
            None
        } else {
            NonZeroU32::new(1 + rng.below(4) as u32)
        };
        Some(ResizeRun {
            rng,
            bound,
            next_id: 0,
        })
    }
}

impl World {
    /// Schedules the resizes of a resize run.
    pub(super) fn plan_resizes(&mut self, clients: usize) {
        let Some(run) = self.resizes.as_mut() else {
            return;
        };
        let mut planned = Vec::new();
        for c in 0..clients {
            for s in 0..super::SERVERS {
                for _ in 0..run.rng.below(MAX_RESIZES + 1) {
                    let t = ebb_core::Instant::EPOCH + Nanos(run.rng.below(HORIZON.0));
                    let wrong_way = run.rng.chance(0.2);
                    planned.push((t, Event::Resize { c, s, wrong_way }));
                }
            }
        }
        for (t, ev) in planned {
            self.at(t, ev);
        }
    }

    /// Client `c` sends server `s` a resize (or, `wrong_way`, a
    /// `Resized`) on its connection, through the network.
    pub(super) fn send_resize(&mut self, c: usize, s: usize, wrong_way: bool) {
        let Some(run) = self.resizes.as_mut() else {
            return;
        };
        run.next_id += 1;
        let id = run.next_id;
        let most = run.bound.map_or(4, NonZeroU32::get);
        let asked = match run.rng.below(4) {
            0 => u32::MAX,
            1 => most + 1 + run.rng.below(3) as u32,
            _ => 1 + run.rng.below(u64::from(most)) as u32,
        };
        let capacity = NonZeroU32::new(asked).expect("never zero");
        let frame = if wrong_way {
            let incarnation = self.servers[s]
                .as_ref()
                .map_or(ebb_rpc::wire::Incarnation::at_least_one(1), |v| {
                    v.incarnation()
                });
            Message::Resized(Resized {
                id,
                incarnation,
                capacity: Some(capacity),
            })
        } else {
            Message::Resize(Resize { id, capacity })
        };
        self.send_to_server(c, s, frame);
    }

    /// Server `s` takes a resize frame from client `c` on `conn`; checks
    /// what it did (module docs) and answers as the transport would.
    pub(super) fn resize_reached(
        &mut self,
        c: usize,
        s: usize,
        conn: ConnId,
        frame: Message,
    ) -> Result<(), String> {
        let bound = self.resizes.as_ref().and_then(|r| r.bound);
        let outsider = self.outsider == Some(c);
        let Some(server) = self.servers[s].as_mut() else {
            return Ok(());
        };
        let table = format!("{:?}", server.table());
        let before = server.stats();
        let asked = match &frame {
            Message::Resize(r) => Some(*r),
            _ => None,
        };
        let action = server.admit(conn, frame, self.now);
        server.check()?;
        let after = server.stats();
        let incarnation = server.incarnation();
        if format!("{:?}", server.table()) != table {
            return Err(format!(
                "a resize frame changed server {s}'s at-most-once table: {action:?}"
            ));
        }
        let mut others = after;
        others.resizes = before.resizes;
        others.refused_unauthorized_resizes = before.refused_unauthorized_resizes;
        if others != before {
            return Err(format!(
                "a resize frame changed server {s}'s counts: {before:?} -> {after:?}"
            ));
        }
        let answered = after.resizes - before.resizes;
        let refused = after.refused_unauthorized_resizes - before.refused_unauthorized_resizes;
        let Some(resize) = asked else {
            // A `Resized` sent to the server.
            if action != Action::Drop || (answered, refused) != (0, 0) {
                return Err(format!(
                    "a Resized sent to server {s} got {action:?}, or was counted"
                ));
            }
            self.stats.resized_dropped += 1;
            return Ok(());
        };
        match action {
            Action::Drop if (answered, refused) == (0, 1) => {
                self.stats.resizes_unanswered += 1;
                Ok(())
            }
            // The server closed the connection already (a silence sweep)
            // and the world has not told the client yet: nothing counted.
            Action::Drop if (answered, refused) == (0, 0) => Ok(()),
            Action::Resize(r) if !outsider && (answered, refused) == (1, 0) => {
                let Some(most) = bound else {
                    return Err(format!(
                        "server {s}, which does not resize, applied {resize:?}"
                    ));
                };
                let want = resize.capacity.min(most);
                if (r.id, r.capacity, r.incarnation) != (resize.id, Some(want), incarnation) {
                    return Err(format!(
                        "{resize:?} on server {s} was answered {r:?}, not {want}"
                    ));
                }
                let threads = want.get() as usize;
                if !(1..=most.get() as usize).contains(&threads) {
                    return Err(format!(
                        "server {s} set {threads} workers, outside 1..={most}"
                    ));
                }
                self.workers[s].threads = Some(threads);
                self.stats.resizes_applied += 1;
                if resize.capacity > most {
                    self.stats.resizes_cut_to_bound += 1;
                }
                self.send_to_client(c, s, Message::Resized(r));
                // More workers take queued blocking calls at once.
                self.start_workers(s)
            }
            Action::Reply(Message::Resized(r))
                if !outsider
                    && bound.is_none()
                    && (answered, refused) == (1, 0)
                    && r.capacity.is_none()
                    && r.id == resize.id =>
            {
                self.stats.resizes_not_resizable += 1;
                self.send_to_client(c, s, Message::Resized(r));
                Ok(())
            }
            other => Err(format!(
                "{resize:?} from client {c} (outsider: {outsider}) on server {s} \
                 (bound {bound:?}) got {other:?}"
            )),
        }
    }
}
