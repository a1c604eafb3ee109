//! Method arguments and results: postcard, which is compact (varints, no field
//! names) and fast, and whose format is stable across its 1.x releases.

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use super::WireError;

/// Encodes a value for a frame's payload.
pub fn encode_payload<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, WireError> {
    Ok(Bytes::from(postcard::to_allocvec(value)?))
}

/// Decodes a payload, refusing bytes left over after the value: they mean the
/// two sides disagree about the type, which must not pass silently.
pub fn decode_payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(WireError::TrailingBytes(rest.len()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn payload_round_trips() {
        let v = (7u32, String::from("hi"), vec![1u8, 2, 3]);
        let b = encode_payload(&v).unwrap();
        assert_eq!(decode_payload::<(u32, String, Vec<u8>)>(&b).unwrap(), v);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut b = encode_payload(&5u8).unwrap().to_vec();
        b.push(0);
        assert_eq!(decode_payload::<u8>(&b), Err(WireError::TrailingBytes(1)));
    }

    #[test]
    fn truncated_payload_is_an_error_not_a_panic() {
        let b = encode_payload(&String::from("hello")).unwrap();
        assert!(matches!(
            decode_payload::<String>(&b[..3]),
            Err(WireError::Payload(_))
        ));
    }
}
