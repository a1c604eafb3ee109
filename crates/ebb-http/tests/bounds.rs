//! The router's bounds on a call: its body's size, its deadline (the
//! header, the default, and an answer by it when the backend gives none)
//! and the requests in flight. One rule per test, in-process through the
//! router as a tower service or through its calls directly.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{Fake, app, post, send};
use ebb_core::Nanos;
use ebb_http::{Calls, HttpConfig};
use tokio::sync::mpsc;
use tower::ServiceExt;

#[tokio::test]
async fn a_declared_length_over_the_bound_is_refused_with_413() {
    let fake = Arc::new(Fake::default());
    let config = HttpConfig {
        max_body_bytes: 16,
        ..HttpConfig::default()
    };
    let body = format!(r#"{{"msg":"{}"}}"#, "x".repeat(32));
    let req = Request::post("/rpc/Fake/echo")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .unwrap();
    let (status, _, json) = send(app(Arc::clone(&fake), config), req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json["error"], "too_large");
    assert!(fake.deadlines.lock().unwrap().is_empty());
}

/// A streamed body with no length is cut off at the bound while reading.
#[tokio::test]
async fn a_streamed_body_over_the_bound_is_refused_with_413() {
    let fake = Arc::new(Fake::default());
    let config = HttpConfig {
        max_body_bytes: 16,
        ..HttpConfig::default()
    };
    let chunks: Vec<Result<String, std::io::Error>> = vec![
        Ok("{\"msg\":\"".into()),
        Ok("x".repeat(32)),
        Ok("\"}".into()),
    ];
    let body = Body::from_stream(futures_stream(chunks));
    let req = Request::post("/rpc/Fake/echo").body(body).unwrap();
    assert!(req.headers().get(header::CONTENT_LENGTH).is_none());
    let (status, _, json) = send(app(fake, config), req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json["error"], "too_large");
}

/// A minimal stream over a vector, so the test needs no futures crate.
fn futures_stream(
    items: Vec<Result<String, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<String, std::io::Error>> + Send + 'static {
    struct Iter(std::vec::IntoIter<Result<String, std::io::Error>>);
    impl futures_core::Stream for Iter {
        type Item = Result<String, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(items.into_iter())
}

#[tokio::test]
async fn the_deadline_header_reaches_the_backend_and_its_absence_gives_the_default() {
    let fake = Arc::new(Fake::default());
    let config = HttpConfig {
        default_deadline_ms: 250,
        ..HttpConfig::default()
    };
    let req = Request::post("/rpc/Fake/echo")
        .header("ebb-deadline-ms", "40")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(
        send(app(Arc::clone(&fake), config), req).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(app(Arc::clone(&fake), config), post("/rpc/Fake/echo", "{}"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        *fake.deadlines.lock().unwrap(),
        vec![Nanos::from_millis(40), Nanos::from_millis(250)]
    );
}

#[tokio::test]
async fn a_deadline_header_out_of_range_or_not_a_number_is_a_bad_request() {
    let fake = Arc::new(Fake::default());
    let config = HttpConfig {
        max_deadline_ms: 1_000,
        ..HttpConfig::default()
    };
    for bad in ["0", "1001", "-5", "1.5", "soon", ""] {
        let req = Request::post("/rpc/Fake/echo")
            .header("ebb-deadline-ms", bad)
            .body(Body::from("{}"))
            .unwrap();
        let (status, _, body) = send(app(Arc::clone(&fake), config), req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(body["error"], "bad_request", "{bad:?}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("ebb-deadline-ms"),
            "{body}"
        );
    }
    assert!(fake.deadlines.lock().unwrap().is_empty());
}

/// The router answers by the deadline even when the backend never does.
/// Time is paused, so the deadline passes without the test waiting for it.
#[tokio::test(start_paused = true)]
async fn a_backend_that_does_not_answer_by_the_deadline_gives_504() {
    let fake = Arc::new(Fake::default());
    let req = Request::post("/rpc/Fake/hang")
        .header("ebb-deadline-ms", "30000")
        .body(Body::from("{}"))
        .unwrap();
    let (status, _, body) = send(app(Arc::clone(&fake), HttpConfig::default()), req).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body["error"], "deadline_exceeded");
    assert_eq!(body["may_have_run"], true);
    assert_eq!(
        *fake.deadlines.lock().unwrap(),
        vec![Nanos::from_millis(30_000)]
    );
}

#[tokio::test]
async fn past_the_in_flight_bound_a_request_is_refused_as_overloaded() {
    let (tx, mut entered) = mpsc::unbounded_channel();
    let fake = Arc::new(Fake {
        entered: Some(tx),
        ..Fake::default()
    });
    let config = HttpConfig {
        max_in_flight: 1,
        ..HttpConfig::default()
    };
    let app = app(Arc::clone(&fake), config);
    let first = tokio::spawn(app.clone().oneshot(post("/rpc/Fake/hang", "{}")));
    entered.recv().await.unwrap();
    let (status, retry, body) = send(app.clone(), post("/rpc/Fake/echo", "{}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "overloaded");
    assert_eq!(retry.as_deref(), Some("1"));
    fake.release.notify_one();
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    // The slot is free again.
    assert_eq!(
        send(app, post("/rpc/Fake/echo", "{}")).await.0,
        StatusCode::OK
    );
}

/// The router's own timer (a backend that does not keep the deadline)
/// counts from the arrival it is given: a call handed over longer ago than
/// its deadline is answered `deadline_exceeded` at once, by a backend that
/// never answers, instead of a deadline later. Time is paused: were the
/// timer set from now, the test's bound would pass first, with no waiting.
#[tokio::test(start_paused = true)]
async fn the_routers_timer_counts_from_the_arrival() {
    let calls = Calls::new(Arc::new(Fake::default()), HttpConfig::default());
    let deadline = Duration::from_millis(ebb_http::DEFAULT_DEADLINE_MS);
    // Far enough back that the deadline passed before the call began; the
    // monotonic clock has run that long since the machine started.
    let handed_over = Instant::now().checked_sub(deadline * 2).unwrap();
    let headers = axum::http::HeaderMap::new();
    let body = axum::body::Body::from("{}");
    // A timer counting from now would end the call a deadline later, past
    // this bound.
    let answer = tokio::time::timeout(
        deadline / 2,
        calls.handle("Fake", "hang", headers, body, handed_over),
    )
    .await
    .expect("answered at once, its deadline past");
    assert_eq!(answer.status(), StatusCode::GATEWAY_TIMEOUT);
}
