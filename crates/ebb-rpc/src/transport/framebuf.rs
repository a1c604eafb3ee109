//! Encoded frames waiting for the socket, with large payloads left where
//! they are.
//!
//! Headers and small frames are appended to one byte buffer; a payload of
//! at least [`MIN_SHARED_PAYLOAD_BYTES`] is kept as its own refcounted
//! `Bytes` (the one in the reply table, or the one a client keeps for
//! resends) and written in place by a vectored write. A 16 KiB reply then
//! reaches the kernel without being copied into an output buffer first.
//! Small payloads are copied: one iovec entry and one refcount per frame
//! would cost more than the copy.

use std::io::IoSlice;

use bytes::{Bytes, BytesMut};

/// Payloads of at least this many bytes are written from their own
/// buffer instead of being copied into the output buffer.
pub const MIN_SHARED_PAYLOAD_BYTES: usize = 2048;

/// Most slices handed to one vectored write; `IOV_MAX` is 1024 on Linux,
/// and a write of this many slices already moves hundreds of kilobytes.
pub const MAX_SLICES_PER_WRITE: usize = 64;

/// Frames in the order they are to be written: `head` with the payloads of
/// `tails` inserted at their offsets.
#[derive(Debug, Default)]
pub struct FrameBuf {
    head: BytesMut,
    /// `(offset in head, payload)`: the payload goes before `head[offset..]`.
    /// Offsets never decrease.
    tails: Vec<(usize, Bytes)>,
    tail_bytes: usize,
}

impl FrameBuf {
    pub fn with_capacity(bytes: usize) -> FrameBuf {
        FrameBuf {
            head: BytesMut::with_capacity(bytes),
            tails: Vec::new(),
            tail_bytes: 0,
        }
    }

    /// Bytes to be written.
    pub fn len(&self) -> usize {
        self.head.len() + self.tail_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything, keeping the capacity.
    pub fn clear(&mut self) {
        self.head.clear();
        self.tails.clear();
        self.tail_bytes = 0;
    }

    /// [`FrameBuf::clear`], giving each shared payload that nothing else
    /// holds any more back to this thread's reply buffers
    /// (`crate::reply_pool`).
    pub fn clear_recycling(&mut self) {
        for (_, payload) in self.tails.drain(..) {
            crate::reply_pool::recycle(payload);
        }
        self.clear();
    }

    /// The byte buffer, for appending whole headers and small frames.
    pub fn head_mut(&mut self) -> &mut BytesMut {
        &mut self.head
    }

    /// Whether a payload of `len` bytes is worth sharing rather than
    /// copying.
    pub fn shares(len: usize) -> bool {
        len >= MIN_SHARED_PAYLOAD_BYTES
    }

    /// Appends a frame's payload after what was appended so far, by
    /// reference: it is written from its own buffer.
    pub fn put_shared(&mut self, payload: &Bytes) {
        self.tail_bytes += payload.len();
        self.tails.push((self.head.len(), payload.clone()));
    }

    /// Moves `other`'s frames after these, leaving `other` empty. When this
    /// buffer is empty the two are swapped, so a batch changes hands
    /// without a copy and `other` gets back a buffer with capacity.
    pub fn append(&mut self, other: &mut FrameBuf) {
        if self.is_empty() {
            std::mem::swap(self, other);
        } else {
            let base = self.head.len();
            self.head.extend_from_slice(&other.head);
            self.tails
                .extend(other.tails.drain(..).map(|(at, p)| (base + at, p)));
            self.tail_bytes += other.tail_bytes;
        }
        other.clear();
    }

    /// Fills `out` with the slices that follow the first `skip` bytes, in
    /// order, and returns how many it filled (fewer than `out.len()` only
    /// when nothing is left after them).
    pub fn slices_from<'a>(&'a self, mut skip: usize, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let mut from = 0;
        let mut put = |part: &'a [u8], n: &mut usize| -> bool {
            if *n == out.len() {
                return false;
            }
            if skip >= part.len() {
                skip -= part.len();
                return true;
            }
            out[*n] = IoSlice::new(&part[skip..]);
            skip = 0;
            *n += 1;
            true
        };
        for (at, payload) in &self.tails {
            if !put(&self.head[from..*at], &mut n) || !put(payload, &mut n) {
                return n;
            }
            from = *at;
        }
        put(&self.head[from..], &mut n);
        n
    }

    /// The one slice to write when nothing is shared: most batches.
    pub fn contiguous(&self) -> Option<&[u8]> {
        self.tails.is_empty().then_some(&self.head[..])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn written(buf: &FrameBuf, mut step: usize) -> Vec<u8> {
        // Writes in pieces of `step` bytes, as a socket taking part of
        // each write would.
        let mut got = Vec::new();
        while got.len() < buf.len() {
            let mut slices = [IoSlice::new(&[]); 3];
            let n = buf.slices_from(got.len(), &mut slices);
            assert!(n > 0);
            let mut room = step;
            for s in &slices[..n] {
                let take = s.len().min(room);
                got.extend_from_slice(&s[..take]);
                room -= take;
            }
            step = step % 7 + 1 + step;
        }
        got
    }

    #[test]
    fn shared_payloads_come_out_in_order_across_partial_writes() {
        let big = |b: u8| Bytes::from(vec![b; MIN_SHARED_PAYLOAD_BYTES + 3]);
        let mut buf = FrameBuf::default();
        let mut want = Vec::new();
        for (i, payload) in [big(1), Bytes::from_static(b"small"), big(2), big(3)]
            .iter()
            .enumerate()
        {
            let header = [i as u8; 5];
            buf.head_mut().extend_from_slice(&header);
            if FrameBuf::shares(payload.len()) {
                buf.put_shared(payload);
            } else {
                buf.head_mut().extend_from_slice(payload);
            }
            want.extend_from_slice(&header);
            want.extend_from_slice(payload);
        }
        buf.head_mut().extend_from_slice(b"end");
        want.extend_from_slice(b"end");
        assert_eq!(buf.tails.len(), 3, "the large payloads were shared");
        assert_eq!(buf.len(), want.len());
        for step in [1, 4, 100, 5000, 1 << 20] {
            assert_eq!(written(&buf, step), want, "written {step} bytes at a time");
        }
    }

    /// A reply acknowledged (forgotten by the reply table) while it was
    /// still being written: once written, its buffer carries the next
    /// reply instead of going back to the allocator.
    #[test]
    fn a_written_payload_nothing_else_holds_goes_back_to_the_reply_buffers() {
        let args = vec![3u8; MIN_SHARED_PAYLOAD_BYTES * 2];
        let reply = crate::reply_pool::encode(&args).unwrap();
        let at = reply.as_ptr();
        let mut buf = FrameBuf::default();
        buf.head_mut().extend_from_slice(b"header");
        buf.put_shared(&reply);
        drop(reply);
        buf.clear_recycling();
        assert!(buf.is_empty());
        let next = crate::reply_pool::encode(&args).unwrap();
        assert_eq!(next.as_ptr(), at, "the written buffer was not reused");

        // One the reply table still holds stays where it is.
        let mut buf = FrameBuf::default();
        buf.put_shared(&next);
        buf.clear_recycling();
        assert_eq!(next.as_ptr(), at);
        let other = crate::reply_pool::encode(&args).unwrap();
        assert_ne!(other.as_ptr(), at, "a buffer still held was handed out");
    }

    #[test]
    fn append_keeps_offsets_and_swaps_into_an_empty_buffer() {
        let big = Bytes::from(vec![9u8; MIN_SHARED_PAYLOAD_BYTES]);
        let mut a = FrameBuf::default();
        a.head_mut().extend_from_slice(b"a");
        a.put_shared(&big);
        let mut b = FrameBuf::default();
        b.head_mut().extend_from_slice(b"b");
        b.put_shared(&big);
        b.head_mut().extend_from_slice(b"c");
        let mut want = written(&a, 1 << 20);
        want.extend(written(&b, 1 << 20));
        a.append(&mut b);
        assert!(b.is_empty());
        assert_eq!(written(&a, 1 << 20), want);

        let mut empty = FrameBuf::default();
        empty.append(&mut a);
        assert!(a.is_empty());
        assert_eq!(written(&empty, 1 << 20), want);
        assert!(empty.contiguous().is_none());
    }
}
