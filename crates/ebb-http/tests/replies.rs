//! A call's reply and every backend failure mapped onto HTTP (status,
//! stable kind, the fields that belong to it), and bodies that never reach
//! the backend: one rule per test, driven in-process through the router as
//! a tower service.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{Fake, app, post, send};
use ebb_http::HttpConfig;
use serde_json::{Value, json};

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
