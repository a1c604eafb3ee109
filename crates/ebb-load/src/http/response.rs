//! Reading one HTTP/1.1 response, without I/O: [`parse_head`] takes the
//! bytes read so far and says whether a whole head is there (skipping
//! informational `1xx` heads), and [`Body`] walks the body's framing
//! (`Content-Length`, `chunked`, or to the connection's close), handing
//! over the body's bytes only when the caller keeps them (an error body).
//!
//! The generator writes one request and then reads exactly one response
//! (no pipelining), so what the head says about the connection
//! ([`Head::keep_alive`]) decides whether it carries the next request.

use ebb_core::Nanos;

use crate::MAX_RESPONSE_BYTES;

/// Header lines a response may have; more is a malformed response.
pub(super) const MAX_RESPONSE_HEADERS: usize = 64;
/// Bytes of trailer lines after a chunked body's last chunk.
pub(super) const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// How the body's end is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// `Content-Length` (0 for a status that has no body).
    Length(u64),
    Chunked,
    /// Neither: the body runs to the connection's close.
    UntilClose,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) status: u16,
    pub(super) framing: Framing,
    /// The connection may carry another request after this response.
    pub(super) keep_alive: bool,
    /// `Retry-After` in delta-seconds; `None` when absent or given as an
    /// HTTP date (which would tie the figure to the two clocks' offset).
    pub(super) retry_after: Option<Nanos>,
}

/// Why a head cannot be read; the request's fate is then unknown.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum HeadError {
    #[error("malformed response head: {0}")]
    Malformed(httparse::Error),
    #[error("unreadable Content-Length")]
    BadLength,
    #[error("the server switched protocols")]
    Upgrade,
}

/// Why a body cannot be read to its end.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum BodyError {
    #[error("body over {MAX_RESPONSE_BYTES} bytes")]
    TooLong,
    #[error("malformed chunk")]
    BadChunk,
    #[error("trailers over {MAX_TRAILER_BYTES} bytes")]
    TooManyTrailers,
    #[error("the connection closed inside the body")]
    Truncated,
}

/// The final head at the start of `buf` and the bytes it took (those of
/// any `1xx` heads before it included); `None` if more bytes are needed.
pub(super) fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let mut used = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(&buf[used..]) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(HeadError::Malformed(e)),
        };
        used += len;
        // Complete, so the status and version are there.
        let status = response.code.unwrap_or_default();
        match status {
            101 => return Err(HeadError::Upgrade),
            100..=199 => continue,
            _ => {}
        }
        let head = head_of(status, response.version.unwrap_or(1), response.headers)?;
        return Ok(Some((head, used)));
    }
}

fn head_of(status: u16, version: u8, headers: &[httparse::Header<'_>]) -> Result<Head, HeadError> {
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let (mut close, mut keep) = (false, false);
    let mut retry_after = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            for part in h.value.split(|&b| b == b',') {
                let n = std::str::from_utf8(part)
                    .ok()
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or(HeadError::BadLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::BadLength);
                }
                length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding says how the body ends.
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = delta_seconds(h.value);
        }
    }
    let framing = match (status, chunked, length) {
        (204 | 304, _, _) => Framing::Length(0),
        (_, Some(true), _) => Framing::Chunked,
        (_, Some(false), _) => Framing::UntilClose,
        (_, None, Some(n)) => Framing::Length(n),
        (_, None, None) => Framing::UntilClose,
    };
    // HTTP/1.0 closes unless asked not to; a body framed by both a
    // length and a coding is a smuggling risk: read it, then close.
    let keep_alive = !close
        && (version == 1 || keep)
        && framing != Framing::UntilClose
        && !(chunked.is_some() && length.is_some());
    Ok(Head {
        status,
        framing,
        keep_alive,
        retry_after,
    })
}

/// A `Retry-After` of whole seconds (RFC 9110 `delay-seconds`).
fn delta_seconds(value: &[u8]) -> Option<Nanos> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Too many digits for a u64 is a wait longer than any run: saturate.
    let secs = std::str::from_utf8(digits)
        .ok()
        .map(|s| s.parse::<u64>().unwrap_or(u64::MAX))?;
    Some(Nanos::from_secs(secs))
}

/// Where a body's reading stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Bytes of the body (or of the current chunk) still to come.
    Data(u64),
    /// A chunk's size line.
    ChunkSize,
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines after the last chunk, up to an empty one.
    Trailers,
    UntilClose,
    Done,
}

/// One response body being read; bounded by [`MAX_RESPONSE_BYTES`] of data
/// and [`MAX_TRAILER_BYTES`] of trailers.
pub(super) struct Body {
    state: State,
    chunked: bool,
    /// Data bytes so far.
    data: u64,
    trailers: usize,
}

impl Body {
    pub(super) fn new(framing: Framing) -> Result<Body, BodyError> {
        let (state, chunked) = match framing {
            Framing::Length(n) if n > MAX_RESPONSE_BYTES as u64 => return Err(BodyError::TooLong),
            Framing::Length(0) => (State::Done, false),
            Framing::Length(n) => (State::Data(n), false),
            Framing::Chunked => (State::ChunkSize, true),
            Framing::UntilClose => (State::UntilClose, false),
        };
        Ok(Body {
            state,
            chunked,
            data: 0,
            trailers: 0,
        })
    }

    pub(super) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads what it can of `buf` and says how many bytes it took; the
    /// body's data is appended to `kept` when `keep`. Stops at the body's
    /// end: bytes past it are not the body's.
    pub(super) fn feed(
        &mut self,
        buf: &[u8],
        keep: bool,
        kept: &mut Vec<u8>,
    ) -> Result<usize, BodyError> {
        let mut used = 0;
        loop {
            let rest = &buf[used..];
            match self.state {
                State::Done => return Ok(used),
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(used);
                    }
                    let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.take(&rest[..n], keep, kept)?;
                    used += n;
                    let left = left - n as u64;
                    self.state = match (left, self.chunked) {
                        (0, true) => State::ChunkEnd,
                        (0, false) => State::Done,
                        (l, _) => State::Data(l),
                    };
                }
                State::UntilClose => {
                    self.take(rest, keep, kept)?;
                    return Ok(used + rest.len());
                }
                State::ChunkSize => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Partial) => return Ok(used),
                    Err(httparse::InvalidChunkSize) => return Err(BodyError::BadChunk),
                    Ok(httparse::Status::Complete((len, 0))) => {
                        used += len;
                        self.state = State::Trailers;
                    }
                    Ok(httparse::Status::Complete((len, size))) => {
                        used += len;
                        self.state = State::Data(size);
                    }
                },
                State::ChunkEnd => {
                    if rest.len() < 2 {
                        return Ok(used);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(BodyError::BadChunk);
                    }
                    used += 2;
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                        if self.trailers + rest.len() > MAX_TRAILER_BYTES {
                            return Err(BodyError::TooManyTrailers);
                        }
                        return Ok(used);
                    };
                    used += eol + 2;
                    self.trailers += eol + 2;
                    if self.trailers > MAX_TRAILER_BYTES {
                        return Err(BodyError::TooManyTrailers);
                    }
                    if eol == 0 {
                        self.state = State::Done;
                    }
                }
            }
        }
    }

    /// The connection closed: the end of a body that runs to it, and a
    /// truncated one otherwise.
    pub(super) fn at_close(&mut self) -> Result<(), BodyError> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(BodyError::Truncated),
        }
    }

    fn take(&mut self, data: &[u8], keep: bool, kept: &mut Vec<u8>) -> Result<(), BodyError> {
        self.data += data.len() as u64;
        if self.data > MAX_RESPONSE_BYTES as u64 {
            return Err(BodyError::TooLong);
        }
        if keep {
            kept.extend_from_slice(data);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> (Head, usize) {
        parse_head(text.as_bytes())
            .expect("a valid head")
            .expect("a whole head")
    }

    /// Reads `body` fed in pieces of `step` bytes (as reads may cut it),
    /// keeping its data; returns the data and the bytes taken.
    fn read_body(
        framing: Framing,
        wire: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, usize), BodyError> {
        let mut body = Body::new(framing)?;
        let mut kept = Vec::new();
        let (mut have, mut used) = (0, 0);
        while !body.is_done() {
            if have == wire.len() {
                body.at_close()?;
                break;
            }
            have = (have + step).min(wire.len());
            used += body.feed(&wire[used..have], true, &mut kept)?;
        }
        Ok((kept, used))
    }

    #[test]
    fn a_keep_alive_head_with_a_length() {
        let text = "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: application/json\r\ncontent-length: 24\r\n\r\n{\"error\":\"overloaded\"}xx";
        let (h, used) = head(text);
        assert_eq!(
            h,
            Head {
                status: 503,
                framing: Framing::Length(24),
                keep_alive: true,
                retry_after: Some(Nanos::from_secs(1)),
            }
        );
        assert_eq!(&text[used..], "{\"error\":\"overloaded\"}xx");
    }

    /// Whole seconds are read; an HTTP date or garbage is no figure.
    #[test]
    fn retry_after_is_read_in_delta_seconds_only() {
        let after = |v: &str| {
            head(&format!(
                "HTTP/1.1 429 Too Many\r\nretry-after: {v}\r\ncontent-length: 0\r\n\r\n"
            ))
            .0
            .retry_after
        };
        assert_eq!(after("7"), Some(Nanos::from_secs(7)));
        assert_eq!(after(" 0 "), Some(Nanos::ZERO));
        assert_eq!(after("99999999999999999999999"), Some(Nanos::MAX));
        assert_eq!(after("Fri, 31 Dec 1999 23:59:59 GMT"), None);
        assert_eq!(after("-1"), None);
        assert_eq!(
            head("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .0
                .retry_after,
            None
        );
    }

    #[test]
    fn a_partial_head_asks_for_more_and_garbage_is_malformed() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le"), Ok(None));
        assert!(matches!(
            parse_head(b"HTTX/1.1 200 OK\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 1x\r\n\r\n"),
            Err(HeadError::BadLength)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n"),
            Err(HeadError::BadLength)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
            Err(HeadError::Upgrade)
        );
    }

    #[test]
    fn informational_heads_are_skipped() {
        let text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n1";
        let (h, used) = head(text);
        assert_eq!(h.status, 200);
        assert_eq!(&text[used..], "1");
        // Only the informational head so far: more is needed.
        assert_eq!(
            parse_head(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2"),
            Ok(None)
        );
    }

    #[test]
    fn what_closes_the_connection() {
        let keep = |t: &str| head(t).0.keep_alive;
        assert!(!keep(
            "HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!keep(
            "HTTP/1.1 200 OK\r\nconnection: Upgrade, Close\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!keep("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(keep(
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"
        ));
        // To the close: the close is the body's end.
        let (h, _) = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        // A length and a coding: read by the coding, then closed.
        let (h, _) =
            head("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
        let (h, _) = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));
        let (h, _) = head("HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(0), true));
    }

    #[test]
    fn bodies_by_length_chunks_and_close_in_any_pieces() {
        let chunked = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\ntrailer: x\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 64] {
            let (data, used) = read_body(Framing::Chunked, chunked, step).expect("chunked");
            assert_eq!(data, b"hello world", "step {step}");
            assert_eq!(&chunked[used..], b"NEXT", "step {step}");
            let (data, used) = read_body(Framing::Length(5), b"helloNEXT", step).expect("length");
            assert_eq!((data.as_slice(), used), (&b"hello"[..], 5), "step {step}");
            let (data, _) = read_body(Framing::UntilClose, b"to the end", step).expect("close");
            assert_eq!(data, b"to the end", "step {step}");
        }
        let (data, used) = read_body(Framing::Chunked, b"0\r\n\r\n", 1).expect("empty");
        assert_eq!((data.len(), used), (0, 5));
    }

    #[test]
    fn broken_bodies_are_errors() {
        assert_eq!(
            read_body(Framing::Length(5), b"hel", 2),
            Err(BodyError::Truncated)
        );
        assert_eq!(
            read_body(Framing::Chunked, b"5\r\nhello\r\n", 4),
            Err(BodyError::Truncated)
        );
        assert_eq!(
            read_body(Framing::Chunked, b"zz\r\n", 4),
            Err(BodyError::BadChunk)
        );
        assert_eq!(
            read_body(Framing::Chunked, b"2\r\nhiXX0\r\n\r\n", 64),
            Err(BodyError::BadChunk)
        );
        let too_long = MAX_RESPONSE_BYTES as u64 + 1;
        assert_eq!(
            Body::new(Framing::Length(too_long)).err(),
            Some(BodyError::TooLong)
        );
        let big = vec![b'x'; MAX_RESPONSE_BYTES + 1];
        assert_eq!(
            read_body(Framing::UntilClose, &big, 4096),
            Err(BodyError::TooLong)
        );
        let mut trailers = b"0\r\n".to_vec();
        trailers
            .extend(std::iter::repeat_n(b"t: x\r\n".as_slice(), MAX_TRAILER_BYTES / 4).flatten());
        assert_eq!(
            read_body(Framing::Chunked, &trailers, 4096),
            Err(BodyError::TooManyTrailers)
        );
    }

    #[test]
    fn a_kept_body_is_only_gathered_when_asked() {
        let mut body = Body::new(Framing::Length(5)).expect("small");
        let mut kept = Vec::new();
        assert_eq!(body.feed(b"hello", false, &mut kept), Ok(5));
        assert!(body.is_done() && kept.is_empty());
    }
}
