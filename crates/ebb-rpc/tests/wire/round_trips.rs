//! Properties over arbitrary frames: each round-trips, coalesced frames
//! decode in order, a frame split anywhere decodes the same, and neither
//! arbitrary nor corrupted bytes make the decoder panic or loop.

use super::strategies::frame;
use super::*;

proptest! {
    #[test]
    fn any_frame_round_trips(f in frame()) {
        let mut buf = encoded(&f);
        prop_assert_eq!(buf.len(), f.encoded_len());
        let got = decode_frame(&mut buf).unwrap().unwrap();
        prop_assert_eq!(got, f);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn coalesced_frames_decode_in_order(fs in proptest::collection::vec(frame(), 0..8)) {
        let mut buf = BytesMut::new();
        for f in &fs {
            encode_frame(f, &mut buf).unwrap();
        }
        for f in &fs {
            prop_assert_eq!(&decode_frame(&mut buf).unwrap().unwrap(), f);
        }
        prop_assert_eq!(decode_frame(&mut buf).unwrap(), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = BytesMut::from(&bytes[..]);
        // Bounded: every successful decode consumes at least one header.
        for _ in 0..bytes.len() + 1 {
            match decode_frame(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }

    #[test]
    fn a_corrupted_frame_decodes_to_a_frame_or_a_typed_error(
        f in frame(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut buf = encoded(&f);
        let at = at.index(buf.len());
        buf[at] = byte;
        // Either outcome is fine; a panic or an endless loop is not.
        for _ in 0..2 {
            if !matches!(decode_frame(&mut buf), Ok(Some(_))) {
                break;
            }
        }
    }

    #[test]
    fn a_frame_split_anywhere_decodes_identically(f in frame(), cut in any::<prop::sample::Index>()) {
        let whole = encoded(&f);
        let cut = cut.index(whole.len() + 1);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&whole[..cut]);
        if cut < whole.len() {
            prop_assert_eq!(decode_frame(&mut buf).unwrap(), None);
            prop_assert_eq!(buf.len(), cut, "an incomplete frame must not be consumed");
        }
        buf.extend_from_slice(&whole[cut..]);
        prop_assert_eq!(decode_frame(&mut buf).unwrap().unwrap(), f);
    }
}
