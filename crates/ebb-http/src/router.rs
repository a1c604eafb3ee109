//! `POST /rpc/{Service}/{method}`: the request is checked and bounded here
//! (deadline header, body size, JSON shape, requests in flight), handed to a
//! [`JsonBackend`], and every outcome is answered by the router, also when
//! the backend does not answer by the deadline.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ebb_core::Nanos;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::config::{DEADLINE_HEADER, FULL_RETRY_AFTER_MS};
use crate::{HttpConfig, HttpError, JsonBackend};

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

    /// Answers one `POST /rpc/{service}/{method}` (the path's two parts
    /// given percent-decoded): its reply as JSON, or its failure as a JSON
    /// error body with the status that fits.
    pub async fn handle(
        &self,
        service: &str,
        method: &str,
        headers: &HeaderMap,
        body: Body,
    ) -> Response {
        match call(self, service, method, headers, body).await {
            Ok(reply) => axum::Json(reply).into_response(),
            Err(e) => e.into_response(),
        }
    }
}

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

async fn handle<B: JsonBackend>(
    State(calls): State<Arc<Calls<B>>>,
    Path((service, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    calls.handle(&service, &method, &headers, body).await
}

async fn call<B: JsonBackend>(
    ingress: &Calls<B>,
    service: &str,
    method: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, HttpError> {
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
    let args = read_args(headers, body, config.max_body_bytes).await?;
    let run = ingress.backend.call(service, method, args, deadline);
    match tokio::time::timeout(Duration::from(deadline), run).await {
        Ok(outcome) => outcome,
        Err(_) => Err(HttpError::DeadlineExceeded {
            deadline,
            may_have_run: true,
        }),
    }
}

/// The request's deadline: the header if present and in range, else the
/// configured default.
fn deadline(headers: &HeaderMap, config: &HttpConfig) -> Result<Nanos, HttpError> {
    let Some(value) = headers.get(DEADLINE_HEADER) else {
        return Ok(Nanos::from_millis(config.default_deadline_ms));
    };
    let max = config.max_deadline_ms;
    let bad = || {
        HttpError::BadRequest(format!(
            "header {DEADLINE_HEADER}: {value:?} is not a whole number of milliseconds from 1 to {max}"
        ))
    };
    let ms: u64 = value
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(bad)?;
    if ms == 0 || ms > max {
        return Err(bad());
    }
    Ok(Nanos::from_millis(ms))
}

/// Reads at most `max_bytes` of body and parses it as a JSON object; an
/// empty body stands for `{}`.
async fn read_args(headers: &HeaderMap, body: Body, max_bytes: usize) -> Result<Value, HttpError> {
    let too_large = HttpError::TooLarge { max_bytes };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_bytes as u64) {
        return Err(too_large);
    }
    let bytes = match Limited::new(body, max_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large),
        Err(e) => {
            return Err(HttpError::BadRequest(format!(
                "reading the request body failed: {e}"
            )));
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(HttpError::BadArguments(
            "the body must be a JSON object keyed by parameter name, e.g. {\"key\":\"a\"}".into(),
        )),
        Err(e) => Err(HttpError::BadRequest(format!(
            "the body is not valid JSON ({e}); send an object keyed by parameter name, e.g. {{\"key\":\"a\"}}"
        ))),
    }
}
