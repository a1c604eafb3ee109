//! The one request every call of a run sends, as bytes: method, path and
//! headers are fixed per run and so is the body, so they are encoded once
//! and each call writes the same bytes.

use crate::LoadError;

/// `POST /rpc/{service}/{method}` to `host` with `body` (a JSON object)
/// and the run's deadline in ms, framed by `Content-Length`, on a
/// keep-alive connection (HTTP/1.1's default).
pub(super) fn encode(
    host: &str,
    service: &str,
    method: &str,
    body: &[u8],
    deadline_ms: u64,
) -> Result<Vec<u8>, LoadError> {
    // What lands in the request line and the headers: visible ASCII, and
    // no character that would end or split a path segment there.
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if !plain(service) || !plain(method) || format!("{service}{method}").contains(['/', '?', '#']) {
        return Err(LoadError::Method(format!(
            "{service}.{method} makes no URI path: give SERVICE.METHOD in letters, digits and _"
        )));
    }
    if !plain(host) {
        return Err(LoadError::Connect(
            host.to_owned(),
            "not a host:port for the Host header".into(),
        ));
    }
    let head = format!(
        "POST /rpc/{service}/{method} HTTP/1.1\r\n\
         host: {host}\r\n\
         content-type: application/json\r\n\
         {}: {}\r\n\
         content-length: {}\r\n\r\n",
        ebb_http::DEADLINE_HEADER,
        deadline_ms.max(1),
        body.len()
    );
    let mut bytes = Vec::with_capacity(head.len() + body.len());
    bytes.extend_from_slice(head.as_bytes());
    bytes.extend_from_slice(body);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes parse as one whole HTTP/1.1 request with every header
    /// the server needs, and the body right after the head.
    #[test]
    fn the_request_parses_back_whole() {
        let bytes = encode("127.0.0.1:8000", "Demo", "echo", br#"{"msg":"hi"}"#, 250)
            .expect("a plain method");
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(&bytes) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!("{other:?}"),
        };
        assert_eq!(req.method, Some("POST"));
        assert_eq!(req.path, Some("/rpc/Demo/echo"));
        assert_eq!(req.version, Some(1));
        let get = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| std::str::from_utf8(h.value).expect("ASCII"))
        };
        assert_eq!(get("host"), Some("127.0.0.1:8000"));
        assert_eq!(get("content-type"), Some("application/json"));
        assert_eq!(get("ebb-deadline-ms"), Some("250"));
        assert_eq!(get("content-length"), Some("12"));
        assert_eq!(&bytes[len..], br#"{"msg":"hi"}"#);
    }

    #[test]
    fn a_method_that_makes_no_path_is_refused_naming_it() {
        for (service, method) in [
            ("De mo", "echo"),
            ("Demo", "a/b"),
            ("Demo", ""),
            ("Demo", "x?y"),
        ] {
            let e = encode("h:1", service, method, b"{}", 1).expect_err("refused");
            assert!(
                e.to_string().contains(&format!("{service}.{method}")),
                "{e}"
            );
        }
    }
}
