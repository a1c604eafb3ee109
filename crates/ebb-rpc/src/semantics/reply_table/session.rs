//! One client's session as the table lends it out: its calls' entries, and
//! the one way its saved replies change (`Session`), so the table's byte
//! total can never drift from the sum of its sessions'.

use std::net::IpAddr;

use ebb_core::Instant;

use crate::semantics::window::Window;
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
    /// Its key in the table's idle index: at most `last_active`, moved up
    /// to it only every `IDLE_INDEX_STEP` (see `ReplyTable::touch`).
    pub(super) indexed_at: Instant,
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
    pub(super) state: &'a mut ClientState,
    pub(super) saved_total: &'a mut usize,
    pub(super) max_saved_total: usize,
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
