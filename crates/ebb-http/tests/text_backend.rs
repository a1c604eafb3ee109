//! A backend that takes the call's body as text (as a gateway does): what
//! it is handed (the body, when the call arrived) and what goes back,
//! through the router as a tower service or through its calls directly.
#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::{StatusCode, header};
use common::{failure, post, send};
use ebb_core::Nanos;
use ebb_http::{Calls, HttpConfig, HttpError, JsonBackend, Received, router};
use ebb_rpc::service::BoxFuture;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::oneshot;
use tower::ServiceExt;

/// A backend that takes the body as text, as a gateway does, and answers
/// with fixed JSON text; records what it was handed and when each call
/// arrived.
#[derive(Default)]
struct Forwarding {
    handed: Mutex<Vec<bytes::Bytes>>,
    arrivals: Mutex<Vec<Received>>,
}

impl JsonBackend for Forwarding {
    fn call<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Value,
        _: Nanos,
    ) -> BoxFuture<'a, Result<Value, HttpError>> {
        Box::pin(async { Err(HttpError::Internal("the text path was not taken".into())) })
    }

    fn passes_text(&self) -> bool {
        true
    }

    async fn call_text<'a>(
        &'a self,
        _: &'a str,
        method: &'a str,
        args: bytes::Bytes,
        _: Nanos,
        received: Received,
    ) -> Result<bytes::Bytes, HttpError> {
        self.handed.lock().unwrap().push(args);
        self.arrivals.lock().unwrap().push(received);
        match failure(method) {
            Some(e) => Err(e),
            None => Ok(bytes::Bytes::from_static(b"{\"z\": 1,  \"a\": [2]}")),
        }
    }
}

/// The body reaches a text backend byte for byte (a blank one as `{}`),
/// its reply is the response body as it wrote it, its errors map as any
/// backend's do, and a body that is not one JSON object never reaches it.
#[tokio::test]
async fn a_text_backend_gets_the_body_as_sent_and_its_reply_goes_back_as_is() {
    let fwd = Arc::new(Forwarding::default());
    let app = || router(Arc::clone(&fwd), HttpConfig::default());
    let sent = " {\"msg\" : \"h\\u00e9\", \"n\": [1, 2.5e3]}\n";
    let response = app().oneshot(post("/rpc/Fake/echo", sent)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"{\"z\": 1,  \"a\": [2]}");
    let (status, _, _) = send(app(), post("/rpc/Fake/echo", "")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, retry, body) = send(app(), post("/rpc/Fake/overloaded", "{}")).await;
    assert_eq!((status.as_u16(), retry.as_deref()), (503, Some("3")));
    assert_eq!(body["error"], "overloaded");
    for (bad, kind) in [
        ("[1]", "bad_arguments"),
        ("\"a\"", "bad_arguments"),
        ("{\"a\":1} {", "bad_request"),
        ("{\"a\":", "bad_request"),
    ] {
        let (status, _, body) = send(app(), post("/rpc/Fake/echo", bad)).await;
        assert_eq!(
            (status.as_u16(), body["error"].as_str()),
            (400, Some(kind)),
            "{bad}"
        );
    }
    let handed = fwd.handed.lock().unwrap();
    let handed: Vec<&[u8]> = handed.iter().map(|b| &b[..]).collect();
    assert_eq!(handed, [sent.as_bytes(), b"{}", b"{}"]);
}

/// A body whose one piece comes when the test sends it: the call is handed
/// over before it.
struct Later(Option<oneshot::Receiver<bytes::Bytes>>);

impl hyper::body::Body for Later {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>>> {
        let Some(rx) = self.0.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let piece = std::task::ready!(std::pin::Pin::new(rx).poll(cx));
        self.0 = None;
        std::task::Poll::Ready(piece.ok().map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// A call's arrival is the instant the server handed it over, not when its
/// body was in: a text backend is given that instant, though the body came
/// after the call had started waiting for it, and, apart, when the body
/// came (read once it was in, so no earlier than its sending).
#[tokio::test]
async fn a_text_backend_is_given_the_instant_the_call_was_handed_over() {
    let fwd = Arc::new(Forwarding::default());
    let calls = Calls::new(Arc::clone(&fwd), HttpConfig::default());
    let handed_over = Instant::now();
    let (tx, rx) = oneshot::channel();
    let headers = axum::http::HeaderMap::new();
    let call = calls.handle("Fake", "echo", headers, Later(Some(rx)), handed_over);
    let mut call = std::pin::pin!(call);
    // Polled once, the call waits for its body; its backend is not called.
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx))).await;
    assert!(first.is_pending());
    assert!(fwd.arrivals.lock().unwrap().is_empty());
    let sent = Instant::now();
    tx.send(bytes::Bytes::from_static(b"{}")).unwrap();
    assert_eq!(call.await.status(), StatusCode::OK);
    let arrivals = fwd.arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), 1);
    assert_eq!(arrivals[0].head, handed_over);
    assert!(
        arrivals[0].body >= sent,
        "{:?} before {sent:?}",
        arrivals[0]
    );
}

/// A body that is there when the call is first polled came with its head:
/// the backend is given the hand-over for both, with no read of the clock.
#[tokio::test]
async fn a_body_there_at_once_came_with_the_head() {
    let fwd = Arc::new(Forwarding::default());
    let calls = Calls::new(Arc::clone(&fwd), HttpConfig::default());
    let handed_over = Instant::now()
        .checked_sub(std::time::Duration::from_secs(1))
        .expect("the monotonic clock has run for a second");
    let body = http_body_util::Full::new(bytes::Bytes::from_static(b"{}"));
    let headers = axum::http::HeaderMap::new();
    let response = calls
        .handle("Fake", "echo", headers, body, handed_over)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let received = Received {
        head: handed_over,
        body: handed_over,
    };
    assert_eq!(*fwd.arrivals.lock().unwrap(), [received]);
}
