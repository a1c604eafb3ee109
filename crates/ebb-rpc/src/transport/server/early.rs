//! When the first replies of a read leave ahead of the rest.
//!
//! Answered in one write, a read of many requests makes the two ends take
//! turns: the client waits while the server runs the whole read, then the
//! server waits while the client runs the whole batch of replies (on a
//! quiet machine each end falls asleep, and is woken, once per turn).
//! Shipped as soon as they are ready, the replies of the read's first
//! quarter reach the client while the server runs the rest, and the new
//! requests they let the client start are often waiting by the time the
//! server is done, so neither end goes idle. The client does the same
//! from its side (`client/driver.rs`, `first_share`); the figures are in
//! docs/benchmarks.md.

/// The first 1/N of a read (in bytes) whose replies leave early.
const EARLY_SHARE_DIVISOR: usize = 4;
/// Requests a read must hold on each side of the early write, or it leaves
/// in one.
const MIN_EARLY_SHIP_FRAMES: usize = 2;

/// Reads larger than this are not split here: their replies already leave
/// in parts, every `REPLY_CHUNK_BYTES` (and split at 16 KiB, where most
/// reads hold three or four requests, an early write cost the server CPU
/// per call and the calls/s it was meant to gain).
const MAX_EARLY_SHIP_READ_BYTES: usize = super::REPLY_CHUNK_BYTES;

/// One read's progress towards its early write.
#[derive(Debug)]
pub(super) struct EarlyShip {
    read_bytes: usize,
    handled: usize,
    shipped: bool,
}

impl EarlyShip {
    /// A read whose frames take `read_bytes` bytes of the buffer (with the
    /// start of one still arriving, if any).
    pub(super) fn new(read_bytes: usize) -> EarlyShip {
        EarlyShip {
            read_bytes,
            handled: 0,
            shipped: read_bytes > MAX_EARLY_SHIP_READ_BYTES,
        }
    }

    /// One more request of the read was handled and `left` bytes of it are
    /// still to decode: true once, when the replies so far should leave.
    pub(super) fn due(&mut self, left: usize) -> bool {
        self.handled += 1;
        if self.shipped || self.handled < MIN_EARLY_SHIP_FRAMES {
            return false;
        }
        let consumed = self.read_bytes.saturating_sub(left);
        debug_assert!(consumed > 0, "a handled request was decoded from the read");
        // Past the first share, and at least the minimum of requests left
        // (counted at the mean size of those handled).
        let past_share = consumed * EARLY_SHARE_DIVISOR >= self.read_bytes;
        let enough_left = left * self.handled >= consumed * MIN_EARLY_SHIP_FRAMES;
        self.shipped = past_share && enough_left;
        self.shipped
    }
}

#[cfg(test)]
mod tests {
    use super::EarlyShip;

    /// At which requests of a read of `frames` requests of `size` bytes the
    /// early write happens.
    fn ships(frames: usize, size: usize) -> Vec<usize> {
        let mut early = EarlyShip::new(frames * size);
        (1..=frames)
            .filter(|&i| early.due((frames - i) * size))
            .collect()
    }

    #[test]
    fn a_read_of_many_requests_ships_its_first_quarter_once() {
        assert_eq!(ships(16, 123), vec![4]);
        assert_eq!(ships(8, 123), vec![2]);
        assert_eq!(ships(48, 1100), vec![12]);
        assert_eq!(ships(4, 16_000), vec![2]);
    }

    #[test]
    fn a_read_of_few_requests_leaves_whole() {
        assert!(ships(1, 123).is_empty());
        assert!(ships(2, 123).is_empty());
        assert!(ships(3, 123).is_empty());
    }

    #[test]
    fn a_read_larger_than_a_reply_chunk_leaves_in_chunks_only() {
        assert!(ships(128, 1100).is_empty());
        assert!(ships(5, 16_500).is_empty());
    }

    #[test]
    fn a_trailing_partial_frame_counts_as_what_is_left() {
        // Three requests of 16 KiB and the start of a fourth: shipping
        // after two leaves one and a part, under the minimum.
        let size = 16_500;
        let mut early = EarlyShip::new(3 * size + 1_000);
        assert!(!early.due(2 * size + 1_000));
        assert!(!early.due(size + 1_000));
        assert!(!early.due(1_000));
    }
}
