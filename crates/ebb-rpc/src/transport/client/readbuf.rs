//! The client's read buffer: replies are handed to their callers as slices
//! of it, never copied, and the memory is reused once they let go.
//!
//! A decoded reply's payload points into the buffer it was read into until
//! its caller drops it (a generated stub decodes it and drops it at once).
//! While anything points into a buffer it cannot be reused, and a read into
//! freshly allocated memory pays a page fault per page on first touch. So a
//! buffer that is still pinned when the next read needs room is set aside,
//! the next read lands in a set-aside buffer that has been let go of since,
//! and only when none has is a new one allocated. Under load the driver
//! reads several buffers' worth before the callers it woke run, so a few
//! buffers cycle; at most [`MAX_SPARE_READ_BUFS`] are kept.
//!
//! Copying each large payload out of the buffer instead (what this did
//! before) kept one buffer reusable, but cost a 16 KiB copy per 16 KiB
//! reply, a large part of the client's time at that size.
//!
//! The frame being read is completed in place: room is made for all of it,
//! so a large frame is never moved by the decoder growing the buffer.
//!
//! A reply held for long (by a caller that keeps it, or a gateway whose
//! client reads slowly) keeps its whole buffer alive: a 64-byte reply could
//! retain 64 KiB. So once the callers are seen retaining buffers (room had
//! to be made in fresh memory while [`RETAINED_BUFS_BEFORE_COPYING`] set-
//! aside buffers were all still pinned), replies under
//! [`MIN_SLICED_REPLY_BYTES`] are copied out ([`ReadBuf::keep`]) until a
//! buffer is let go of again. A reply that stays a slice is then at least
//! a sixteenth of the buffer it pins. Callers that drop their replies at
//! once (a generated stub decodes and drops) never see a copy.

use bytes::BytesMut;

use crate::wire::{LENGTH_PREFIX_BYTES, MAX_FRAME_BYTES};

/// A read buffer's size: how much one read may take.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Pinned buffers kept for reuse per connection (each
/// [`READ_CHUNK_BYTES`]); one pinned when this many are kept already is
/// left to be freed by whoever holds its replies.
pub const MAX_SPARE_READ_BUFS: usize = 8;
/// Replies under this many bytes are copied out of the read buffer while
/// callers retain buffers: a slice this small would keep up to sixteen
/// times its size alive.
pub const MIN_SLICED_REPLY_BYTES: usize = READ_CHUNK_BYTES / 16;
/// Set-aside buffers all still pinned when fresh memory is taken that mean
/// the callers retain replies (rather than not having run yet: the driver
/// lets them run first).
pub const RETAINED_BUFS_BEFORE_COPYING: usize = 2;

/// One connection's read buffers.
#[derive(Debug)]
pub struct ReadBuf {
    /// Where reads land; decoded frames are split off its front.
    cur: BytesMut,
    /// `cur` was allocated as a [`READ_CHUNK_BYTES`] buffer (not for one
    /// larger frame), so it may be kept for reuse.
    cur_is_chunk: bool,
    /// Buffers set aside while replies pointed into them, oldest first.
    spare: Vec<BytesMut>,
    /// Buffers allocated because every one at hand was pinned.
    allocated: u64,
    /// Callers are retaining buffers: small replies are copied out.
    retaining: bool,
}

impl Default for ReadBuf {
    fn default() -> ReadBuf {
        ReadBuf {
            cur: BytesMut::with_capacity(READ_CHUNK_BYTES),
            cur_is_chunk: true,
            spare: Vec::new(),
            allocated: 1,
            retaining: false,
        }
    }
}

impl ReadBuf {
    /// The bytes read and not yet decoded; reads append here.
    pub fn bytes(&mut self) -> &mut BytesMut {
        &mut self.cur
    }

    /// Read buffers allocated so far (the first included): stays small
    /// while callers let go of their replies.
    #[cfg(test)]
    pub fn allocated(&self) -> u64 {
        self.allocated
    }

    /// The whole size of the frame at the front, prefix included, once its
    /// length prefix has arrived and while the frame has not: the decoder
    /// is not asked about it before then, so it never grows (moves) the
    /// buffer itself. `None` when the frame is whole, or its length is
    /// unknown or out of bounds (the decoder says so).
    pub fn incomplete_frame(&self) -> Option<usize> {
        let prefix = self.cur.get(..LENGTH_PREFIX_BYTES)?;
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let total = LENGTH_PREFIX_BYTES + len;
        (len <= MAX_FRAME_BYTES && self.cur.len() < total).then_some(total)
    }

    /// A decoded reply's payload as it should be kept: a slice of the read
    /// buffer, or a copy of it while callers retain buffers and it is
    /// small beside one.
    pub fn keep(&self, payload: bytes::Bytes) -> bytes::Bytes {
        if self.retaining && payload.len() < MIN_SLICED_REPLY_BYTES {
            bytes::Bytes::copy_from_slice(&payload)
        } else {
            payload
        }
    }

    /// Makes room for the next read, as [`ReadBuf::make_room`] does, if
    /// it can without allocating; false if every buffer at hand is still
    /// pinned (letting the callers that hold replies run first frees one).
    pub fn try_make_room(&mut self) -> bool {
        self.room(false)
    }

    /// Makes room for the next read: at least a quarter chunk, and the
    /// rest of the frame being read. In place when nothing points into
    /// the buffer any more (what is left of a partial frame moves to its
    /// front); else in a spare buffer that has been let go of; else in a
    /// new one.
    pub fn make_room(&mut self) {
        let made = self.room(true);
        debug_assert!(made, "room is made when allocating is allowed");
    }

    fn room(&mut self, allocate: bool) -> bool {
        let len = self.cur.len();
        let frame_rest = self.incomplete_frame().map_or(0, |total| total - len);
        let need = frame_rest.max(READ_CHUNK_BYTES / 4);
        if self.cur.capacity() - len >= need {
            return true;
        }
        let want = READ_CHUNK_BYTES.saturating_sub(len).max(need);
        if self.cur.try_reclaim(want) {
            return true;
        }
        let fits_chunk = len + want <= READ_CHUNK_BYTES;
        let reusable = if fits_chunk {
            self.spare
                .iter_mut()
                .position(|b| b.try_reclaim(READ_CHUNK_BYTES))
        } else {
            None
        };
        let mut next = match reusable {
            Some(i) => {
                self.retaining = false;
                self.spare.swap_remove(i)
            }
            None if !allocate => return false,
            None => {
                self.allocated += 1;
                self.retaining |= fits_chunk && self.spare.len() >= RETAINED_BUFS_BEFORE_COPYING;
                BytesMut::with_capacity(if fits_chunk {
                    READ_CHUNK_BYTES
                } else {
                    len + want
                })
            }
        };
        debug_assert!(next.is_empty(), "spare buffers are kept empty");
        next.extend_from_slice(&self.cur);
        let mut pinned = std::mem::replace(&mut self.cur, next);
        let pinned_is_chunk = std::mem::replace(&mut self.cur_is_chunk, fits_chunk);
        if pinned_is_chunk && self.spare.len() < MAX_SPARE_READ_BUFS {
            pinned.clear();
            self.spare.push(pinned);
        }
        debug_assert!(self.cur.capacity() - self.cur.len() >= need);
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::Bytes;

    /// Fills `rb` to `len` bytes of `byte` and returns the first `taken`
    /// of them split off as a reply would be.
    fn fill_and_take(rb: &mut ReadBuf, len: usize, taken: usize, byte: u8) -> Bytes {
        let b = rb.bytes();
        b.resize(len, byte);
        b.split_to(taken).freeze()
    }

    #[test]
    fn a_buffer_nothing_points_into_is_reused_in_place() {
        let mut rb = ReadBuf::default();
        let start = rb.bytes().as_ptr();
        drop(fill_and_take(
            &mut rb,
            READ_CHUNK_BYTES - 100,
            READ_CHUNK_BYTES - 200,
            7,
        ));
        rb.make_room();
        assert_eq!(
            rb.bytes().as_ptr(),
            start,
            "the partial frame moved to the front"
        );
        assert_eq!(&rb.bytes()[..], &[7u8; 100][..]);
        assert_eq!(rb.allocated(), 1);
    }

    #[test]
    fn a_pinned_buffer_is_set_aside_and_reused_once_let_go() {
        let mut rb = ReadBuf::default();
        let first = rb.bytes().as_ptr();
        let reply = fill_and_take(&mut rb, READ_CHUNK_BYTES - 100, READ_CHUNK_BYTES - 200, 7);
        // A reply still points into the buffer: room comes from elsewhere,
        // and the reply's bytes stay where they are (not copied).
        rb.make_room();
        assert_ne!(rb.bytes().as_ptr(), first);
        assert_eq!(reply.as_ptr(), first);
        assert_eq!(&rb.bytes()[..], &[7u8; 100][..]);
        assert_eq!(rb.allocated(), 2);
        let second = rb.bytes().as_ptr();
        let pinned_second = fill_and_take(&mut rb, READ_CHUNK_BYTES - 10, READ_CHUNK_BYTES - 10, 8);
        drop(reply);
        // The first buffer was let go of: it takes the next read.
        rb.make_room();
        assert_eq!(
            rb.bytes().as_ptr(),
            first,
            "the set-aside buffer was reused"
        );
        assert_eq!(rb.allocated(), 2, "nothing new allocated");
        assert_eq!(pinned_second.as_ptr(), second);
    }

    /// Reads a whole buffer's worth, takes its first `taken` bytes as a
    /// reply and decodes (drops) the rest: the buffer is then used up.
    fn read_full(rb: &mut ReadBuf, taken: usize, byte: u8) -> Bytes {
        let b = rb.bytes();
        let cap = b.capacity();
        b.resize(cap, byte);
        let reply = b.split_to(taken).freeze();
        drop(b.split());
        reply
    }

    /// Replies held for long: once buffers are seen retained, small replies
    /// are copied out (their buffer is then reused in place), large ones
    /// stay slices; once a set-aside buffer is let go of, small ones are
    /// slices again.
    #[test]
    fn small_replies_are_copied_out_while_callers_retain_buffers() {
        let mut rb = ReadBuf::default();
        let small = 64;
        // Callers that hold every reply: each buffer stays pinned, and
        // fresh memory is taken with set-aside buffers all pinned.
        let mut held = Vec::new();
        for i in 0..=RETAINED_BUFS_BEFORE_COPYING {
            let reply = read_full(&mut rb, small, 1);
            let kept = rb.keep(reply.clone());
            assert_eq!(kept.as_ptr(), reply.as_ptr(), "a slice before retention");
            held.push(kept);
            assert!(!rb.retaining, "not yet after {i} buffers");
            rb.make_room();
        }
        assert!(rb.retaining, "retention was noticed");
        let allocated = rb.allocated();
        // Now a small reply is a copy and does not pin its buffer: the next
        // read reuses it in place.
        let at = rb.bytes().as_ptr();
        let reply = read_full(&mut rb, small, 3);
        let kept = rb.keep(reply);
        assert_ne!(kept.as_ptr(), at, "copied out");
        assert_eq!(&kept[..], &[3u8; 64][..]);
        rb.make_room();
        assert_eq!(rb.bytes().as_ptr(), at, "reused in place");
        assert_eq!(rb.allocated(), allocated, "nothing new allocated");
        assert!(rb.retaining, "copying is what let the buffer go");
        // A large reply stays a slice even now, and pins its buffer.
        let big = read_full(&mut rb, MIN_SLICED_REPLY_BYTES, 4);
        assert_eq!(rb.keep(big.clone()).as_ptr(), big.as_ptr());
        // The callers let go of the small replies: a set-aside buffer is
        // reused, and small replies are slices again.
        held.clear();
        rb.make_room();
        assert_eq!(rb.allocated(), allocated, "a set-aside buffer reused");
        assert!(!rb.retaining, "retention over once a buffer was let go of");
        let reply = read_full(&mut rb, small, 5);
        assert_eq!(rb.keep(reply.clone()).as_ptr(), reply.as_ptr());
        drop(big);
    }

    #[test]
    fn spare_buffers_are_bounded() {
        let mut rb = ReadBuf::default();
        let mut held = Vec::new();
        for _ in 0..MAX_SPARE_READ_BUFS + 4 {
            held.push(fill_and_take(
                &mut rb,
                READ_CHUNK_BYTES,
                READ_CHUNK_BYTES,
                1,
            ));
            rb.make_room();
        }
        assert!(rb.spare.len() <= MAX_SPARE_READ_BUFS);
        assert_eq!(rb.allocated(), MAX_SPARE_READ_BUFS as u64 + 5);
    }

    #[test]
    fn room_is_made_for_the_whole_frame_being_read() {
        let mut rb = ReadBuf::default();
        let total = 3 * READ_CHUNK_BYTES;
        let len = (total - LENGTH_PREFIX_BYTES) as u32;
        rb.bytes().extend_from_slice(&len.to_le_bytes());
        rb.bytes().extend_from_slice(&[0u8; 60]);
        assert_eq!(rb.incomplete_frame(), Some(total));
        rb.make_room();
        assert!(rb.bytes().capacity() >= total);
        rb.bytes().resize(total, 0);
        assert_eq!(rb.incomplete_frame(), None, "the frame is whole");
    }

    #[test]
    fn a_length_out_of_bounds_is_left_to_the_decoder() {
        let mut rb = ReadBuf::default();
        let len = (MAX_FRAME_BYTES + 1) as u32;
        rb.bytes().extend_from_slice(&len.to_le_bytes());
        assert_eq!(rb.incomplete_frame(), None);
        rb.make_room();
        assert!(
            rb.bytes().capacity() < 2 * READ_CHUNK_BYTES,
            "no room made for it"
        );
    }
}
