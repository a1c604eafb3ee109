//! `POST /rpc/{Service}/{method}`: the request is checked and bounded here
//! (deadline header, body size, JSON shape, requests in flight), handed to a
//! [`JsonBackend`], and every outcome is answered by the router, also when
//! the backend does not answer by the deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::body::HttpBody;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::{Bytes, BytesMut};
use ebb_core::Nanos;
use http_body_util::{Either, Full};
use serde::de::IgnoredAny;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::config::{DEADLINE_HEADER, FULL_RETRY_AFTER_MS};
use crate::{HttpConfig, HttpError, JsonBackend, Received};

/// [`DEADLINE_HEADER`] as a name made once: comparing with a `&str`
/// parses it on every request.
static DEADLINE_NAME: HeaderName = HeaderName::from_static(DEADLINE_HEADER);

/// Errors a request body may end with.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The route this module serves, in axum's syntax.
pub const RPC_ROUTE: &str = "/rpc/{service}/{method}";

/// The calls of one ingress over one backend, with the ingress's bound on
/// requests in flight: what [`router`] serves, and what a server that
/// routes `POST /rpc/...` itself (the gateway, sparing each call axum's
/// routing and layers) hands a call to.
pub struct Calls<B> {
    backend: B,
    config: HttpConfig,
    in_flight: Semaphore,
}

impl<B: JsonBackend> Calls<B> {
    pub fn new(backend: B, config: HttpConfig) -> Calls<B> {
        Calls {
            backend,
            config,
            in_flight: Semaphore::new(config.max_in_flight),
        }
    }

    /// What runs the calls.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Answers one `POST /rpc/{service}/{method}` (the path's two parts
    /// given percent-decoded): its reply as JSON, or its failure as a JSON
    /// error body with the status that fits.
    ///
    /// `arrived`: when the HTTP server handed the request over, its body
    /// not yet read. The deadline counts from then, so the time the body
    /// takes to come in is the caller's, and a backend that judges how
    /// long a request waited is given it rather than reading the clock
    /// once more.
    ///
    /// The request's `headers` become the reply's, emptied: hyper keeps a
    /// written response's header map for the next request on the
    /// connection, so one map serves all of a connection's calls.
    pub async fn handle<T>(
        &self,
        service: &str,
        method: &str,
        headers: HeaderMap,
        body: T,
        arrived: Instant,
    ) -> Response<CallBody>
    where
        T: HttpBody<Data = Bytes>,
        T::Error: Into<BoxError>,
    {
        match call(self, service, method, &headers, body, arrived).await {
            Ok(reply) => json_response(headers, reply),
            Err(e) => e.into_response().map(Either::Right),
        }
    }
}

/// The body of a call's response: a reply in one piece (no boxed body, as
/// axum's [`Body`] would be), or an error's (or another route's) body.
pub type CallBody = Either<Full<Bytes>, Body>;

/// The router for `POST /rpc/{Service}/{method}`, to serve alone or merge
/// into a larger one. It has no fallback of its own (merging two routers
/// with fallbacks panics); add `.fallback(ebb_http::not_found)` at the top.
pub fn router<B: JsonBackend>(backend: B, config: HttpConfig) -> Router {
    router_over(Arc::new(Calls::new(backend, config)))
}

/// [`router`] over calls shared with another server of them (their bound
/// on requests in flight is then one for both).
pub fn router_over<B: JsonBackend>(calls: Arc<Calls<B>>) -> Router {
    Router::new()
        .route(RPC_ROUTE, post(handle::<B>).fallback(method_not_allowed))
        .with_state(calls)
}

/// [`router`] served alone (what `ebb node --http` serves): the calls, a
/// JSON 404 for every other path, and [`crate::json_errors`] around it all,
/// so that even axum's own answers (a path parameter that is not UTF-8, a
/// rejected body) reach a client as a JSON body with an `error` kind.
pub fn standalone<B: JsonBackend>(backend: B, config: HttpConfig) -> Router {
    router(backend, config)
        .fallback(not_found)
        .layer(axum::middleware::from_fn(crate::json_errors))
}

/// A JSON 404 for paths nothing serves, naming the route that exists.
pub async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    HttpError::NotFound(format!(
        "no route for {method} {}; calls go to POST /rpc/{{Service}}/{{method}}",
        uri.path()
    ))
    .into_response()
}

async fn method_not_allowed(method: Method) -> Response {
    HttpError::MethodNotAllowed(format!(
        "{method} is not served here; calls are POST /rpc/{{Service}}/{{method}} with a JSON object body"
    ))
    .into_response()
}

/// A call through the router. Its arrival is read here, as the handler
/// starts: the router's own work is done, the body not yet read.
async fn handle<B: JsonBackend>(
    State(calls): State<Arc<Calls<B>>>,
    Path((service, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let arrived = Instant::now();
    calls
        .handle(&service, &method, headers, body, arrived)
        .await
        .into_response()
}

async fn call<B: JsonBackend, T>(
    ingress: &Calls<B>,
    service: &str,
    method: &str,
    headers: &HeaderMap,
    body: T,
    arrived: Instant,
) -> Result<Bytes, HttpError>
where
    T: HttpBody<Data = Bytes>,
    T::Error: Into<BoxError>,
{
    let config = &ingress.config;
    let Ok(_permit) = ingress.in_flight.try_acquire() else {
        return Err(HttpError::Overloaded {
            message: format!(
                "{} requests already in flight here; retry later",
                config.max_in_flight
            ),
            retry_after: Nanos::from_millis(FULL_RETRY_AFTER_MS),
        });
    };
    let deadline = deadline(headers, config)?;
    let (body, waited) = read_body(body, config.max_body_bytes).await?;
    let backend = &ingress.backend;
    let timed = !backend.keeps_deadline();
    let ends = (arrived, deadline);
    if backend.passes_text() {
        let args = checked_object(body)?;
        // A body that had to be waited for came in just now; one that was
        // there at once came with the head.
        let body_in = if waited { Instant::now() } else { arrived };
        let received = Received {
            head: arrived,
            body: body_in,
        };
        let run = backend.call_text(service, method, args, deadline, received);
        if timed {
            within(timed, ends, run).await
        } else {
            // Awaited here, not through `within`: the call's future (a
            // forwarding backend's, large) is then not moved into
            // another future's state and again into its await, two
            // copies of it per call.
            run.await
        }
    } else {
        let args = parsed_object(&body)?;
        let run = backend.call(service, method, args, deadline);
        to_json(&within(timed, ends, run).await?)
    }
}

/// `run`'s outcome, or, when `timed`, `deadline_exceeded` once `deadline`
/// has passed since `arrived` (untimed: the backend keeps the deadline
/// itself). The timer is set at that instant, with no read of the clock.
async fn within<T>(
    timed: bool,
    (arrived, deadline): (Instant, Nanos),
    run: impl Future<Output = Result<T, HttpError>>,
) -> Result<T, HttpError> {
    if !timed {
        return run.await;
    }
    let ends = tokio::time::Instant::from_std(arrived) + Duration::from(deadline);
    match tokio::time::timeout_at(ends, run).await {
        Ok(outcome) => outcome,
        Err(_) => Err(HttpError::DeadlineExceeded {
            deadline,
            may_have_run: true,
        }),
    }
}

/// A reply as the body of a 200.
pub(crate) fn to_json(reply: &Value) -> Result<Bytes, HttpError> {
    serde_json::to_vec(reply)
        .map(Bytes::from)
        .map_err(|e| HttpError::Internal(format!("writing the reply as JSON: {e}")))
}

/// 200 with `json` as its body and `headers`, emptied, as its headers
/// (they keep their allocation). The one header is a constant, so
/// building it costs no parsing or copying.
fn json_response(mut headers: HeaderMap, json: Bytes) -> Response<CallBody> {
    headers.clear();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut response = Response::new(Either::Left(Full::new(json)));
    *response.headers_mut() = headers;
    response
}

/// The request's deadline: the header if present and in range, else the
/// configured default.
fn deadline(headers: &HeaderMap, config: &HttpConfig) -> Result<Nanos, HttpError> {
    let Some(value) = deadline_value(headers) else {
        return Ok(Nanos::from_millis(config.default_deadline_ms));
    };
    let max = config.max_deadline_ms;
    let bad = || {
        HttpError::BadRequest(format!(
            "header {DEADLINE_HEADER}: {value:?} is not a whole number of milliseconds from 1 to {max}"
        ))
    };
    let ms = whole_number(value.as_bytes()).ok_or_else(bad)?;
    if ms == 0 || ms > max {
        return Err(bad());
    }
    Ok(Nanos::from_millis(ms))
}

/// The first [`DEADLINE_HEADER`] value, found by walking the few headers
/// of a request rather than by the map's lookup: hashing the name and
/// probing costs more than comparing it with each of them (a name the
/// request did not send differs in its kind or its length, mostly).
/// Walking is bounded by the headers hyper accepts in one request.
fn deadline_value(headers: &HeaderMap) -> Option<&HeaderValue> {
    headers
        .iter()
        .find_map(|(name, value)| (*name == DEADLINE_NAME).then_some(value))
}

/// `text` as a `u64` in decimal, spaces around it allowed: what
/// `str::trim` and `u64::from_str` accept of a header value (which holds
/// no other whitespace), read from its bytes in one pass.
fn whole_number(text: &[u8]) -> Option<u64> {
    let text = text.trim_ascii();
    let digits = text.strip_prefix(b"+").unwrap_or(text);
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Reads at most `max_bytes` of body, and says whether it had to wait for
/// any of it (a body that came with its head is read without waiting:
/// hyper has put it in the body's channel before the request's future is
/// first polled). A body that comes in one piece (a small call's, nearly
/// always) is that piece: neither copied nor listed. A body whose
/// declared length is over the bound is refused unread (its size hint:
/// hyper's is the `Content-Length` it parsed, so the header is not looked
/// up and parsed again).
async fn read_body<T>(body: T, max_bytes: usize) -> Result<(Bytes, bool), HttpError>
where
    T: HttpBody<Data = Bytes>,
    T::Error: Into<BoxError>,
{
    let too_large = HttpError::TooLarge { max_bytes };
    if body.size_hint().lower() > max_bytes as u64 {
        return Err(too_large);
    }
    let mut body = std::pin::pin!(body);
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    // Counted here rather than by a `Limited` around the body: hyper's
    // frames are at most what it read at once, so one over the bound
    // costs no more memory than that read did.
    let mut read = 0usize;
    let mut waited = false;
    while let Some(frame) = next_frame(body.as_mut(), &mut waited).await {
        let frame = frame.map_err(|e| {
            HttpError::BadRequest(format!("reading the request body failed: {}", e.into()))
        })?;
        // Trailers carry no arguments.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        read = read.saturating_add(data.len());
        if read > max_bytes {
            return Err(too_large);
        }
        if let Some(joined) = joined.as_mut() {
            joined.extend_from_slice(&data);
        } else if first.is_empty() {
            first = data;
        } else {
            let mut both = BytesMut::with_capacity(first.len() + data.len());
            both.extend_from_slice(&first);
            both.extend_from_slice(&data);
            joined = Some(both);
        }
        // A body whose length was given is over once that much came (the
        // contract of `is_end_stream`): no poll to hear it end.
        if body.is_end_stream() {
            break;
        }
    }
    Ok((joined.map_or(first, BytesMut::freeze), waited))
}

/// `body`'s next frame; `waited` is set if it was not there at once.
async fn next_frame<T: HttpBody>(
    mut body: std::pin::Pin<&mut T>,
    waited: &mut bool,
) -> Option<Result<hyper::body::Frame<T::Data>, T::Error>> {
    std::future::poll_fn(|cx| {
        let frame = body.as_mut().poll_frame(cx);
        *waited |= frame.is_pending();
        frame
    })
    .await
}

/// Whether a body stands for no arguments: empty, or only whitespace.
fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

fn not_json(e: impl std::fmt::Display) -> HttpError {
    HttpError::BadRequest(format!(
        "the body is not valid JSON ({e}); send an object keyed by parameter name, e.g. {{\"key\":\"a\"}}"
    ))
}

fn not_an_object() -> HttpError {
    HttpError::BadArguments(
        "the body must be a JSON object keyed by parameter name, e.g. {\"key\":\"a\"}".into(),
    )
}

/// The body parsed as a JSON object; a blank body stands for `{}`.
fn parsed_object(body: &[u8]) -> Result<Value, HttpError> {
    if is_blank(body) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(not_an_object()),
        Err(e) => Err(not_json(e)),
    }
}

/// The body as it came, once checked to be one JSON object (UTF-8, every
/// token valid, nothing after it) without building it; a blank body
/// stands for `{}`. Refused as [`parsed_object`] refuses.
fn checked_object(body: Bytes) -> Result<Bytes, HttpError> {
    if is_blank(&body) {
        return Ok(Bytes::from_static(b"{}"));
    }
    // Skipping a string does not check its UTF-8, so a body with a byte
    // past ASCII is checked first; an ASCII one (most calls') needs not.
    if body.is_ascii() {
        serde_json::from_slice::<IgnoredAny>(&body).map_err(not_json)?;
    } else {
        let text = std::str::from_utf8(&body).map_err(not_json)?;
        serde_json::from_str::<IgnoredAny>(text).map_err(not_json)?;
    }
    // It parsed, so the first byte past JSON whitespace starts the value.
    match body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        Some(b'{') => Ok(body),
        _ => Err(not_an_object()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass reading of a deadline accepts exactly what trimming
    /// and `u64::from_str` accept, with the same value.
    #[test]
    fn whole_number_agrees_with_trim_and_parse() {
        let cases = [
            "250",
            " 250 ",
            "\t7",
            "+5",
            "-5",
            "",
            " ",
            "+",
            "++5",
            "5 5",
            "0",
            "007",
            "18446744073709551615",
            "18446744073709551616",
            "1e3",
            "12a",
            "\u{e9}",
        ];
        for case in cases {
            let expected = case.trim().parse::<u64>().ok();
            assert_eq!(whole_number(case.as_bytes()), expected, "{case:?}");
        }
    }

    /// Walking the headers finds what the map's lookup finds: the first
    /// value of the deadline header among others, repeated or not, or none.
    #[test]
    fn deadline_value_agrees_with_the_maps_lookup() {
        let mut maps = vec![HeaderMap::new()];
        let mut m = HeaderMap::new();
        m.insert(header::HOST, HeaderValue::from_static("a:1"));
        m.insert(header::CONTENT_TYPE, HeaderValue::from_static("x"));
        m.insert("ebb-deadline", HeaderValue::from_static("1"));
        maps.push(m.clone());
        m.append(DEADLINE_NAME.clone(), HeaderValue::from_static("40"));
        m.append(DEADLINE_NAME.clone(), HeaderValue::from_static("50"));
        m.append("ebb-deadline-msx", HeaderValue::from_static("60"));
        maps.push(m);
        for m in &maps {
            assert_eq!(deadline_value(m), m.get(DEADLINE_HEADER), "{m:?}");
        }
        assert_eq!(
            deadline_value(&maps[2]),
            Some(&HeaderValue::from_static("40"))
        );
    }

    /// The text path refuses exactly what the parsing path refuses, with
    /// the same kind, and passes the rest on byte for byte.
    #[test]
    fn checked_and_parsed_bodies_agree() {
        let cases: &[&[u8]] = &[
            b"",
            b" \n",
            br#"{"msg":"hi"}"#,
            br#" {"a":[1,2,{"b":null}]} "#,
            b"{",
            b"[1]",
            b"5",
            br#""s""#,
            b"null",
            br#"{"a":1} x"#,
            br#"{"a":1}{"#,
            b"{\"a\":\"\xff\"}",
            br#"{"a":"\u12"}"#,
            b"\x0c{}",
            b"{\"a\":\"\x01\"}",
        ];
        for &case in cases {
            let parsed = parsed_object(case);
            let checked = checked_object(Bytes::copy_from_slice(case));
            match (&parsed, &checked) {
                (Ok(v), Ok(text)) => {
                    let again: Value = serde_json::from_slice(text).unwrap_or_default();
                    assert_eq!(&again, v, "{case:?}");
                    if !is_blank(case) {
                        assert_eq!(&text[..], case, "{case:?}");
                    }
                }
                (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "{case:?}"),
                _ => panic!("{case:?}: parsed {parsed:?}, checked {checked:?}"),
            }
        }
    }
}
