//! What the router answers besides calls: another HTTP method on a call's
//! route, a path nothing serves, and axum's own answers, all as JSON
//! errors with a kind.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{Fake, app, json_of, post, send};
use ebb_http::{HttpConfig, router};
use http_body_util::BodyExt;
use tower::ServiceExt;

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
