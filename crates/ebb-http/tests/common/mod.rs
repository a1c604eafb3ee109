//! What the router's tests share: a backend that echoes its call or fails
//! with the error its method names (recording every call's deadline), the
//! router over it, and a request sent through the router as a tower
//! service with its status, `Retry-After` and JSON body read back.
//!
//! A test file uses it with `mod common;`; each uses only part of it, so
//! the parts another file needs are not dead code.
#![allow(dead_code, clippy::unwrap_used)]

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
pub struct Fake {
    pub deadlines: Mutex<Vec<Nanos>>,
    pub entered: Option<mpsc::UnboundedSender<()>>,
    pub release: Arc<Notify>,
}

pub fn failure(method: &str) -> Option<HttpError> {
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

pub fn app(fake: Arc<Fake>, config: HttpConfig) -> Router {
    router(fake, config).fallback(ebb_http::not_found)
}

pub fn post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

pub async fn json_of(response: Response<Body>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// Sends one request and returns the status, `Retry-After` and body.
pub async fn send(app: Router, req: Request<Body>) -> (StatusCode, Option<String>, Value) {
    let response = app.oneshot(req).await.unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, json_of(response).await)
}
