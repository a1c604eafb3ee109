//! The router's mapping of requests and backend outcomes onto HTTP, one rule
//! per test, driven in-process through the router as a tower service.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use ebb_core::Nanos;
use ebb_http::{HttpConfig, HttpError, JsonBackend, router};
use ebb_rpc::service::BoxFuture;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tower::ServiceExt;

/// Echoes what it was given, or fails with the error its method names; records
/// every call's deadline.
#[derive(Default)]
struct Fake {
    deadlines: Mutex<Vec<Nanos>>,
    entered: Option<mpsc::UnboundedSender<()>>,
    release: Arc<Notify>,
}

fn failure(method: &str) -> Option<HttpError> {
    Some(match method {
        "bad_args" => {
            HttpError::BadArguments("Fake.bad_args(n: u64): parameter `n` expects u64".into())
        }
        "unknown_service" => HttpError::UnknownService {
            service: "Nope".into(),
            known: vec!["Fake".into()],
        },
        "unknown_method" => HttpError::UnknownMethod("Fake.nope (methods of Fake: echo)".into()),
        "overloaded" => HttpError::Overloaded {
            message: "queue full".into(),
            retry_after: Nanos::from_millis(2_500),
        },
        "deadline" => HttpError::DeadlineExceeded {
            deadline: Nanos::from_millis(5),
            may_have_run: true,
        },
        "lost_after_send" => HttpError::NodeLost {
            message: "node died".into(),
            may_have_run: true,
        },
        "lost_before_send" => HttpError::NodeLost {
            message: "no connection".into(),
            may_have_run: false,
        },
        "unauthenticated" => HttpError::Unauthenticated,
        "remote" => HttpError::Remote("method panicked".into()),
        "internal" => HttpError::Internal("bug".into()),
        _ => return None,
    })
}

impl JsonBackend for Fake {
    fn call<'a>(
        &'a self,
        service: &'a str,
        method: &'a str,
        args: Value,
        deadline: Nanos,
    ) -> BoxFuture<'a, Result<Value, HttpError>> {
        Box::pin(async move {
            self.deadlines.lock().unwrap().push(deadline);
            if method == "hang" {
                if let Some(tx) = &self.entered {
                    tx.send(()).unwrap();
                }
                self.release.notified().await;
            }
            match failure(method) {
                Some(e) => Err(e),
                None => Ok(json!({"service": service, "method": method, "args": args})),
            }
        })
    }
}

fn app(fake: Arc<Fake>, config: HttpConfig) -> Router {
    router(fake, config).fallback(ebb_http::not_found)
}

fn post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

async fn json_of(response: Response<Body>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// Sends one request and returns the status, `Retry-After` and body.
async fn send(app: Router, req: Request<Body>) -> (StatusCode, Option<String>, Value) {
    let response = app.oneshot(req).await.unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, json_of(response).await)
}

#[tokio::test]
async fn a_reply_is_the_backends_json_with_200() {
    let fake = Arc::new(Fake::default());
    let (status, _, body) = send(
        app(fake, HttpConfig::default()),
        post("/rpc/Fake/echo", r#"{"msg":"hi"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"service": "Fake", "method": "echo", "args": {"msg": "hi"}})
    );
}

#[tokio::test]
async fn an_empty_body_means_no_arguments() {
    let fake = Arc::new(Fake::default());
    let (status, _, body) = send(
        app(fake, HttpConfig::default()),
        post("/rpc/Fake/echo", " \n"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["args"], json!({}));
}

/// Every backend failure gets its status, its stable kind, and the fields
/// that belong to it (and no others).
#[tokio::test]
async fn each_backend_error_maps_to_its_status_and_kind() {
    /// Method, status, kind, `may_have_run`, `Retry-After`.
    type Case = (
        &'static str,
        u16,
        &'static str,
        Option<bool>,
        Option<&'static str>,
    );
    let cases: &[Case] = &[
        ("bad_args", 400, "bad_arguments", None, None),
        ("unauthenticated", 401, "unauthenticated", None, None),
        ("unknown_service", 404, "unknown_service", None, None),
        ("unknown_method", 404, "unknown_method", None, None),
        ("overloaded", 503, "overloaded", None, Some("3")),
        ("deadline", 504, "deadline_exceeded", Some(true), None),
        ("lost_after_send", 502, "node_lost", Some(true), None),
        ("lost_before_send", 502, "node_lost", Some(false), None),
        ("remote", 500, "remote_error", None, None),
        ("internal", 500, "internal", None, None),
    ];
    let fake = Arc::new(Fake::default());
    let mut kinds_seen = Vec::new();
    for &(method, status, kind, may_have_run, retry_after) in cases {
        let path = format!("/rpc/Fake/{method}");
        let (got, retry, body) = send(
            app(Arc::clone(&fake), HttpConfig::default()),
            post(&path, "{}"),
        )
        .await;
        assert_eq!(got.as_u16(), status, "{method}: {body}");
        assert_eq!(body["error"], kind, "{method}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{method}: {body}"
        );
        assert_eq!(
            body.get("may_have_run").and_then(Value::as_bool),
            may_have_run,
            "{method}"
        );
        assert_eq!(retry.as_deref(), retry_after, "{method}");
        assert!(ebb_http::ERROR_KINDS.contains(&kind));
        kinds_seen.push(kind);
    }
    let (_, _, body) = send(
        app(fake, HttpConfig::default()),
        post("/rpc/Fake/overloaded", "{}"),
    )
    .await;
    assert_eq!(body["retry_after_ms"], 2_500);
    assert_eq!(kinds_seen.len(), cases.len());
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_bad_request() {
    let fake = Arc::new(Fake::default());
    let (status, _, body) = send(
        app(Arc::clone(&fake), HttpConfig::default()),
        post("/rpc/Fake/echo", "{\"msg\":"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "bad_request");
    assert!(
        fake.deadlines.lock().unwrap().is_empty(),
        "the backend must not be called"
    );
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_bad_arguments() {
    let fake = Arc::new(Fake::default());
    for bad in ["[1,2]", "\"a\"", "3", "null"] {
        let (status, _, body) = send(
            app(Arc::clone(&fake), HttpConfig::default()),
            post("/rpc/Fake/echo", bad),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"], "bad_arguments", "{bad}");
    }
    assert!(fake.deadlines.lock().unwrap().is_empty());
}

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

#[tokio::test]
async fn another_http_method_on_a_call_route_is_405_naming_post() {
    let fake = Arc::new(Fake::default());
    let req = Request::get("/rpc/Fake/echo").body(Body::empty()).unwrap();
    let response = app(fake, HttpConfig::default()).oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "POST");
    assert_eq!(json_of(response).await["error"], "method_not_allowed");
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let fake = Arc::new(Fake::default());
    for path in ["/rpc/Fake", "/nothing", "/rpc/Fake/echo/extra"] {
        let (status, _, body) = send(
            app(Arc::clone(&fake), HttpConfig::default()),
            post(path, "{}"),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["error"], "not_found", "{path}");
    }
}

/// What axum answers on its own (a method a route does not serve, a body
/// over `DefaultBodyLimit`) comes out of `json_errors` as JSON with a kind,
/// status and `Allow` kept; JSON errors and successes pass untouched.
#[tokio::test]
async fn json_errors_turns_axums_own_answers_into_json() {
    use axum::routing::{get, post};
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route("/status", get(|| async { "fine" }))
        .route(
            "/pool",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(16))
        .merge(router(fake, HttpConfig::default()))
        .fallback(ebb_http::not_found)
        .layer(axum::middleware::from_fn(ebb_http::json_errors));
    let req = Request::get("/pool").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "POST");
    let body = json_of(response).await;
    assert_eq!(body["error"], "method_not_allowed", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("GET is not served on /pool"),
        "{body}"
    );
    let req = Request::post("/status").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        response.headers()[header::ALLOW]
            .to_str()
            .unwrap()
            .contains("GET")
    );
    assert_eq!(json_of(response).await["error"], "method_not_allowed");
    let req = Request::post("/pool")
        .body(Body::from("x".repeat(64)))
        .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json_of(response).await["error"], "too_large");
    // Untouched: a success, and an error that was JSON already.
    let req = Request::get("/status").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "fine"
    );
    let req = Request::get("/rpc/Fake/echo").body(Body::empty()).unwrap();
    let response = app.oneshot(req).await.unwrap();
    let body = json_of(response).await;
    assert_eq!(body["error"], "method_not_allowed");
    assert!(
        body["message"].as_str().unwrap().contains("POST /rpc/"),
        "the router's own message is kept: {body}"
    );
}

/// A backend that takes the body as text, as a gateway does, and answers
/// with fixed JSON text; records what it was handed.
#[derive(Default)]
struct Forwarding {
    handed: Mutex<Vec<bytes::Bytes>>,
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
    ) -> Result<bytes::Bytes, HttpError> {
        self.handed.lock().unwrap().push(args);
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
