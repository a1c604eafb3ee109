//! Reply buffers recycled per thread, so a server that keeps its replies
//! until their clients acknowledge them does not ask the allocator for
//! fresh memory on every call.
//!
//! An at-most-once reply lives from its call's completion until its client
//! acknowledges it, up to `MAX_REPLIES_PER_CLIENT` calls later, and clients
//! acknowledge in bursts. The allocator then gets back a megabyte of
//! neighbouring 16 KiB replies at once, hands it back to the kernel (glibc
//! trims its heap top past 128 KiB), and for the next replies takes it back
//! page by page, one page fault per 4 KiB: about one fault per 16 KiB call.
//! Here a forgotten reply's buffer goes on a small free list of the thread
//! that forgot it, and the next reply encoded on that thread is written
//! into it, so steady state allocates nothing for reply payloads.
//!
//! A buffer is reused only for a reply that fills it to within an eighth,
//! and only a buffer its payload filled that tightly is taken back, so a
//! saved reply holds at most 9/8 of the bytes the reply table counts
//! against its bounds. Buffers are made shareable once, when allocated, so
//! handing a recycled reply to a vectored write allocates nothing either.
//!
//! This changes no decision: which memory a reply is written into is
//! invisible to everything but the allocator.

use std::cell::RefCell;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

/// Buffers one thread keeps for reuse.
pub const MAX_RECYCLED_BUFFERS_PER_THREAD: usize = 256;
/// Bytes of buffers (their capacity) one thread keeps for reuse: what a
/// burst of acknowledgements of 16 KiB replies at 128 calls outstanding
/// gives back, with room to spare.
pub const MAX_RECYCLED_BYTES_PER_THREAD: usize = 4 * 1024 * 1024;
/// Larger buffers go back to the allocator, which maps and unmaps such
/// sizes on its own anyway.
pub const MAX_RECYCLED_BUFFER_BYTES: usize = 256 * 1024;
/// Free buffers looked at for one reply, most recently freed first.
const MAX_SCANNED_PER_TAKE: usize = 4;

#[derive(Default)]
struct Free {
    bufs: Vec<BytesMut>,
    /// Capacity of `bufs`, summed.
    bytes: usize,
}

thread_local! {
    static FREE: RefCell<Free> = const {
        RefCell::new(Free {
            bufs: Vec::new(),
            bytes: 0,
        })
    };
}

/// A buffer of `capacity` bytes holding `len` wastes at most an eighth.
fn fits(capacity: usize, len: usize) -> bool {
    capacity >= len && capacity - len <= len / 8
}

/// Postcard-encodes `value` into a free buffer that fits it, or into a new
/// one of exactly its size.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> postcard::Result<Bytes> {
    let len = postcard::experimental::serialized_size(value)?;
    let buf = take(len);
    postcard::serialize_with_flavor(value, Writer(buf)).map(BytesMut::freeze)
}

/// Takes back a reply's payload for reuse on this thread; drops it if
/// anything else still holds it (a write in progress), if it does not fit
/// its payload tightly, or if the free list is at its bounds.
pub fn recycle(payload: Bytes) {
    let len = payload.len();
    let Ok(mut buf) = payload.try_into_mut() else {
        return;
    };
    buf.clear();
    // A payload that was a view into a larger buffer: take the space in
    // front of it back too, so the buffer's whole size is what is judged.
    let _ = buf.try_reclaim(buf.capacity() + 1);
    let capacity = buf.capacity();
    if capacity == 0 || capacity > MAX_RECYCLED_BUFFER_BYTES || !fits(capacity, len) {
        return;
    }
    let refused = FREE.try_with(|free| {
        let mut free = free.borrow_mut();
        if free.bufs.len() >= MAX_RECYCLED_BUFFERS_PER_THREAD
            || free.bytes + capacity > MAX_RECYCLED_BYTES_PER_THREAD
        {
            return Some(buf);
        }
        free.bytes += capacity;
        free.bufs.push(buf);
        None
    });
    // Dropped here, outside the borrow: the free list is full, or the
    // thread is exiting.
    drop(refused);
}

/// A free buffer that fits `len` bytes, or a new one.
fn take(len: usize) -> BytesMut {
    let reused = FREE
        .try_with(|free| {
            let mut free = free.borrow_mut();
            let n = free.bufs.len();
            let i = (n.saturating_sub(MAX_SCANNED_PER_TAKE)..n)
                .rev()
                .find(|&i| fits(free.bufs[i].capacity(), len))?;
            let buf = free.bufs.swap_remove(i);
            free.bytes -= buf.capacity();
            Some(buf)
        })
        .ok()
        .flatten();
    reused.unwrap_or_else(|| fresh(len))
}

/// A new buffer of `len` bytes, already shareable: sharing a buffer the
/// first time allocates its reference count, and doing that now, once,
/// saves it on every later trip through the free list.
fn fresh(len: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(len);
    drop(buf.split());
    buf
}

/// Postcard output straight into a `BytesMut`, a slice at a time.
struct Writer(BytesMut);

impl postcard::ser_flavors::Flavor for Writer {
    type Output = BytesMut;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.put_u8(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<BytesMut> {
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Tests may share a thread (`--test-threads=1`): each starts empty.
    fn empty_free_list() {
        FREE.with(|f| *f.borrow_mut() = Free::default());
    }

    fn free_list() -> (usize, usize) {
        FREE.with(|f| {
            let f = f.borrow();
            (f.bufs.len(), f.bytes)
        })
    }

    /// Bytes as a service's `ByteBuf` encodes them: a length, then the bytes.
    struct Blob(Vec<u8>);

    impl Serialize for Blob {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    fn payload(len: usize) -> Blob {
        Blob(vec![7u8; len])
    }

    #[test]
    fn a_recycled_buffer_carries_the_next_reply_of_its_size() {
        empty_free_list();
        let first = encode(&payload(16 * 1024)).unwrap();
        let at = first.as_ptr();
        recycle(first);
        assert_eq!(free_list().0, 1);
        let second = encode(&payload(16 * 1024)).unwrap();
        assert_eq!(second.as_ptr(), at, "the freed buffer was not reused");
        assert_eq!(free_list(), (0, 0));
        assert_eq!(
            second,
            Bytes::from(postcard::to_allocvec(&payload(16 * 1024)).unwrap())
        );
    }

    #[test]
    fn a_buffer_still_shared_or_too_loose_is_not_taken_back() {
        empty_free_list();
        let reply = encode(&payload(4096)).unwrap();
        let writing = reply.clone();
        recycle(reply);
        assert_eq!(free_list().0, 0, "taken back while a write still held it");
        drop(writing);

        // A small view into a large buffer would keep the whole buffer.
        let big = Bytes::from(vec![1u8; 64 * 1024]);
        let tail = big.slice(60 * 1024..);
        drop(big);
        recycle(tail);
        assert_eq!(free_list().0, 0, "a view into a larger buffer was kept");

        // A reply much smaller than the free buffer gets a new one.
        recycle(encode(&payload(8192)).unwrap());
        let small = encode(&payload(100)).unwrap();
        assert_eq!(small.len(), 101);
        assert_eq!(
            free_list().0,
            1,
            "the large buffer was used for a small reply"
        );
    }

    #[test]
    fn the_free_list_stays_within_its_bounds() {
        empty_free_list();
        let replies: Vec<Bytes> = (0..MAX_RECYCLED_BUFFERS_PER_THREAD + 10)
            .map(|_| encode(&payload(1000)).unwrap())
            .collect();
        for r in replies {
            recycle(r);
        }
        assert_eq!(free_list().0, MAX_RECYCLED_BUFFERS_PER_THREAD);
        let (_, bytes) = free_list();
        assert!(bytes <= MAX_RECYCLED_BYTES_PER_THREAD);
        let large: Vec<Bytes> = (0..MAX_RECYCLED_BYTES_PER_THREAD / (200 * 1024) + 2)
            .map(|_| encode(&payload(200 * 1024)).unwrap())
            .collect();
        let each = large[0].len();
        empty_free_list();
        for r in large {
            recycle(r);
        }
        let (n, bytes) = free_list();
        assert!(bytes <= MAX_RECYCLED_BYTES_PER_THREAD, "{bytes} bytes kept");
        assert_eq!(n, MAX_RECYCLED_BYTES_PER_THREAD / each);
    }
}
