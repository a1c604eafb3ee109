//! Resizes driven as a gateway sends them, and what each must leave
//! unchanged: see the module above for the rules they are checked against.

use std::num::{NonZeroU32, NonZeroUsize};

use ebb_rpc::semantics::{Action, ConnId};
use ebb_rpc::wire::{Incarnation, Message, Resize, Resized};

use super::World;

/// The most workers the driven server lets a resize ask for.
pub(super) const RESIZE_BOUND: u32 = 4;
/// What resizes ask for, in turn: within the bound, at it, past it, and
/// the widest the wire carries.
const ASKED: [u32; 5] = [1, 2, RESIZE_BOUND, RESIZE_BOUND + 1, u32::MAX];

/// What the resizes driven came to, over one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resizes {
    /// Answered and applied to the workers.
    pub applied: u64,
    /// Of those, ones that asked past the bound and were cut to it.
    pub cut_to_bound: u64,
    /// Answered that the server does not resize.
    pub not_resizable: u64,
    /// Left unanswered: their connection proved no client id.
    pub unanswered: u64,
    /// `Resized` frames sent to the server, dropped.
    pub resized_dropped: u64,
}

impl World {
    /// The next resize operation, chosen in turn with client `c`: no input
    /// byte is read, so inputs recorded before resizes were driven replay
    /// their other steps as they did.
    pub(super) fn resize_op(&mut self, c: usize) -> Result<(), String> {
        let n = self.resize_ops;
        self.resize_ops += 1;
        let asked = ASKED[(n / 4) as usize % ASKED.len()];
        let capacity = NonZeroU32::new(asked).expect("ASKED holds no zero");
        let resize = Resize { id: n, capacity };
        match n % 4 {
            0 => {
                if let Some(conn) = self.conns[c] {
                    self.admit_resize(conn, resize, false)?;
                }
            }
            1 => {
                if let Some(&conn) = self.strays.first() {
                    let never_proved = !self.proofs.iter().any(|&(p, _)| p == conn);
                    self.admit_resize(conn, resize, never_proved)?;
                }
            }
            2 => {
                if let Some(conn) = self.conns[c].or(self.strays.first().copied()) {
                    self.admit_resized(conn, n)?;
                }
            }
            _ => {
                // The server stops or starts resizing, and a `Resized` from
                // nowhere reaches a client, which takes it for no reply.
                self.resizable = !self.resizable;
                let up_to = NonZeroU32::new(RESIZE_BOUND).filter(|_| self.resizable);
                self.server.set_resize_up_to(up_to);
                let stray = Resized {
                    id: n,
                    incarnation: Incarnation::at_least_one(7),
                    capacity: Some(capacity),
                };
                self.clients[c].handle_message(Message::Resized(stray), self.now);
            }
        }
        Ok(())
    }

    /// Admits `resize` on `conn`; `unproven`: the connection never sent a
    /// handshake proving an id, so it must be left unanswered.
    fn admit_resize(&mut self, conn: ConnId, resize: Resize, unproven: bool) -> Result<(), String> {
        let table = format!("{:?}", self.server.table());
        let before = self.server.stats();
        let action = self.server.admit(conn, Message::Resize(resize), self.now);
        let after = self.server.stats();
        if format!("{:?}", self.server.table()) != table {
            return Err(format!("{resize:?} changed the at-most-once table"));
        }
        let mut others = after;
        others.resizes = before.resizes;
        others.refused_unauthorized_resizes = before.refused_unauthorized_resizes;
        if others != before {
            return Err(format!(
                "{resize:?} changed counts other than its own: {before:?} -> {after:?}"
            ));
        }
        let answered = after.resizes - before.resizes;
        let refused = after.refused_unauthorized_resizes - before.refused_unauthorized_resizes;
        let bound = NonZeroU32::new(RESIZE_BOUND).expect("the bound is not zero");
        let want = resize.capacity.min(bound);
        match action {
            Action::Drop if (refused, answered) == (1, 0) => self.resizes.unanswered += 1,
            Action::Resize(r) if !unproven && self.resizable && (refused, answered) == (0, 1) => {
                if (r.id, r.capacity, r.incarnation)
                    != (resize.id, Some(want), self.server.incarnation())
                {
                    return Err(format!(
                        "{resize:?} was answered {r:?}, not {want} by its server"
                    ));
                }
                let threads = usize::try_from(want.get()).expect("the bound fits a usize");
                let took = self
                    .workers
                    .resize(NonZeroUsize::new(threads).expect("not zero"));
                let most = usize::try_from(RESIZE_BOUND).expect("the bound fits a usize");
                if took.get() != threads || !(1..=most).contains(&self.workers.threads().get()) {
                    return Err(format!(
                        "{resize:?} left {} workers, not {want} within 1..={most}",
                        self.workers.threads()
                    ));
                }
                self.resizes.applied += 1;
                if resize.capacity > bound {
                    self.resizes.cut_to_bound += 1;
                }
            }
            Action::Reply(Message::Resized(r))
                if !unproven
                    && !self.resizable
                    && (refused, answered) == (0, 1)
                    && r.capacity.is_none()
                    && r.id == resize.id =>
            {
                self.resizes.not_resizable += 1;
            }
            other => {
                return Err(format!(
                    "{resize:?} on {conn:?} (never proved: {unproven}, resizable: {}) got {other:?}",
                    self.resizable
                ));
            }
        }
        Ok(())
    }

    /// A `Resized` sent to the server (a peer speaking as a server) is
    /// dropped and changes nothing.
    fn admit_resized(&mut self, conn: ConnId, id: u64) -> Result<(), String> {
        let table = format!("{:?}", self.server.table());
        let before = self.server.stats();
        let resized = Resized {
            id,
            incarnation: Incarnation::at_least_one(7),
            capacity: NonZeroU32::new(RESIZE_BOUND),
        };
        let action = self.server.admit(conn, Message::Resized(resized), self.now);
        if action != Action::Drop
            || format!("{:?}", self.server.table()) != table
            || self.server.stats() != before
        {
            return Err(format!(
                "a Resized sent to the server got {action:?}, or changed it"
            ));
        }
        self.resizes.resized_dropped += 1;
        Ok(())
    }
}
