//! A backend that takes the call's body as text (as a gateway does): what
//! it is handed and what goes back, through the router as a tower service.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use axum::http::{StatusCode, header};
use common::{failure, post, send};
use ebb_core::Nanos;
use ebb_http::{HttpConfig, HttpError, JsonBackend, router};
use ebb_rpc::service::BoxFuture;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

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
