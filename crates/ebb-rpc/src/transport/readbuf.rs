//! How the client keeps its read buffer reusable.
//!
//! A decoded message's payload points into the read buffer it was read
//! into, until whoever holds it lets go. While anything points into a
//! buffer it cannot be reused, and the next read lands in freshly
//! allocated memory, paying a page fault per page on first touch. Small
//! payloads stay where they were read (a buffer holds hundreds of them and
//! they are let go of soon); payloads of at least [`COPY_OUT_MIN_BYTES`]
//! are copied into their own allocation, so a buffer that held only a few
//! large frames is free again at once. At 16 KiB payloads the copy costs
//! less than the page faults it saves (the client took about 25 times
//! fewer page faults at 16 KiB echoes, and less CPU per call).
//!
//! The server's reader does not do this: its page faults at 16 KiB come
//! from encoding replies into fresh memory, not from its read buffer, and
//! copying requests out cost it an allocation per call for no measured gain.

use bytes::{Bytes, BytesMut};

use crate::wire::Message;

/// The read buffer's size: how much one read may take.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Payloads of at least this many bytes are copied out of the read buffer.
pub const COPY_OUT_MIN_BYTES: usize = 2048;

/// Makes room for the next read: at least a quarter chunk. Asks for no
/// more than a chunk in all, so a buffer nothing points into any more is
/// reused in place (what is left of a partial frame moves to its front)
/// instead of replaced.
pub fn make_room(buf: &mut BytesMut) {
    let len = buf.len();
    if buf.capacity() - len < READ_CHUNK_BYTES / 4 {
        buf.reserve(
            READ_CHUNK_BYTES
                .saturating_sub(len)
                .max(READ_CHUNK_BYTES / 4),
        );
    }
}

/// Copies a large request or reply payload out of the read buffer.
pub fn detach(message: &mut Message) {
    let payload = match message {
        Message::Request(r) => &mut r.payload,
        Message::Reply(r) => &mut r.payload,
        _ => return,
    };
    if payload.len() >= COPY_OUT_MIN_BYTES {
        *payload = Bytes::copy_from_slice(payload);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_buffer_nothing_points_into_is_reused_in_place() {
        let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
        let start = buf.as_ptr();
        buf.resize(READ_CHUNK_BYTES - 100, 7);
        let frame = buf.split_to(READ_CHUNK_BYTES - 200).freeze();
        // A reply still points into the buffer: room comes from elsewhere.
        make_room(&mut buf);
        assert_ne!(buf.as_ptr(), start, "a pinned buffer was replaced");
        assert_eq!(buf.len(), 100);
        drop(frame);

        let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
        let start = buf.as_ptr();
        buf.resize(READ_CHUNK_BYTES - 100, 7);
        drop(buf.split_to(READ_CHUNK_BYTES - 200).freeze());
        make_room(&mut buf);
        assert_eq!(buf.as_ptr(), start, "the partial frame moved to the front");
        assert_eq!(&buf[..], &[7u8; 100][..]);
        assert!(buf.capacity() - buf.len() >= READ_CHUNK_BYTES / 4);
    }

    #[test]
    fn large_payloads_are_copied_out_and_small_ones_stay() {
        use crate::wire::{Request, Seq};
        let read = Bytes::from(vec![1u8; 2 * COPY_OUT_MIN_BYTES]);
        let request = |payload: Bytes| {
            Message::Request(Request {
                client: ebb_core::ClientId(1),
                seq: Seq::FIRST,
                ack_below: Seq::FIRST,
                incarnation: None,
                deadline: ebb_core::Nanos::from_secs(1),
                method: 0,
                idempotent: false,
                json: false,
                payload,
            })
        };
        let mut large = request(read.slice(..COPY_OUT_MIN_BYTES));
        let mut small = request(read.slice(..COPY_OUT_MIN_BYTES - 1));
        detach(&mut large);
        detach(&mut small);
        let at = |m: &Message| match m {
            Message::Request(r) => (r.payload.as_ptr(), r.payload.len()),
            _ => (std::ptr::null(), 0),
        };
        assert_ne!(at(&large).0, read.as_ptr(), "large payload copied");
        assert_eq!(at(&large).1, COPY_OUT_MIN_BYTES);
        assert_eq!(at(&small).0, read.as_ptr(), "small payload left in place");
    }
}
