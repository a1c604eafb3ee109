//! Feeds arbitrary bytes to the message decoder, whole and in two chunks.
//!
//! Checks beyond "no panic": the decoder never consumes a partial frame, a
//! decoded frame re-encodes to exactly the bytes it came from, and feeding
//! the same bytes split at an arbitrary point yields the same frames.
#![no_main]

use bytes::BytesMut;
use ebb_rpc::wire::{FrameCodec, HEADER_BYTES};
use libfuzzer_sys::fuzz_target;

/// Decodes all frames from `chunks` fed in order; stops at the first error.
fn decode_all(codec: &FrameCodec, chunks: &[&[u8]]) -> Vec<Result<ebb_rpc::Message, String>> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.clone();
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let mut re = BytesMut::new();
                    codec.encode(&frame, &mut re).expect("a decoded frame re-encodes");
                    assert_eq!(&re[..], &before[..re.len()], "re-encoding differs");
                    out.push(Ok(frame));
                }
                Ok(None) => {
                    assert_eq!(buf, before, "a partial frame must not be consumed");
                    break;
                }
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks a split point and a (small) frame limit so that
    // the size checks are reached without megabyte inputs.
    let Some((&knob, rest)) = data.split_first() else { return };
    let codec = FrameCodec::with_max_frame_bytes(HEADER_BYTES + usize::from(knob) * 4);
    let whole = decode_all(&codec, &[rest]);
    let cut = usize::from(knob) % (rest.len() + 1);
    let split = decode_all(&codec, &[&rest[..cut], &rest[cut..]]);
    assert_eq!(whole, split, "splitting the input changed the frames");
});
