//! The gateway's HTTP side: `GET /status`, `GET /metrics`, `POST /pool`
//! and `POST /rpc/{Service}/{method}` (JSON in, JSON out).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ebb_core::Nanos;
use ebb_rpc::CallError;
use ebb_rpc::service::DispatchError;
use serde_json::{Value, json};

use crate::Shared;
use crate::forward::GatewayError;
use crate::ingress::JsonCallError;

/// The request header that carries a call's deadline in milliseconds.
pub const DEADLINE_HEADER: &str = "ebb-deadline-ms";
/// The largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 1 << 20;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/pool", post(set_pool))
        .route("/rpc/{service}/{method}", post(rpc))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

async fn status(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(s.status())
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    match s.render_metrics() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct PoolRequest {
    target: usize,
}

async fn set_pool(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let req: PoolRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("expected {{\"target\": N}} with N a whole number: {e}");
            return error(StatusCode::BAD_REQUEST, "bad_request", &msg, None);
        }
    };
    match s.set_target(req.target) {
        Ok(t) => Json(json!({ "target": t })).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, "bad_target", &e.to_string(), None),
    }
}

fn error(status: StatusCode, kind: &str, message: &str, may_have_run: Option<bool>) -> Response {
    let mut body = json!({ "error": kind, "message": message });
    if let Some(m) = may_have_run {
        body["may_have_run"] = json!(m);
    }
    (status, Json(body)).into_response()
}

async fn rpc(
    State(s): State<Arc<Shared>>,
    Path((service, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let codec = s.ingress.codec();
    if service != codec.name() {
        let msg = format!("unknown service {service}; this gateway serves {}", codec.name());
        return error(StatusCode::NOT_FOUND, "unknown_method", &msg, None);
    }
    let timeout = match headers.get(DEADLINE_HEADER).map(HeaderValue::to_str) {
        None => None,
        Some(Ok(v)) => match v.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Some(Nanos::from_millis(ms)),
            _ => {
                let msg = format!("{DEADLINE_HEADER}: {v:?} is not a positive whole number of milliseconds");
                return error(StatusCode::BAD_REQUEST, "bad_request", &msg, None);
            }
        },
        Some(Err(_)) => {
            let msg = format!("{DEADLINE_HEADER} is not ASCII");
            return error(StatusCode::BAD_REQUEST, "bad_request", &msg, None);
        }
    };
    let args: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                let msg = format!("the body must be a JSON object of named arguments: {e}");
                return error(StatusCode::BAD_REQUEST, "bad_request", &msg, None);
            }
        }
    };
    match s.ingress.call_json(&method, args, timeout).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => json_error(e),
    }
}

/// The one mapping from a call's failure to an HTTP answer.
fn json_error(e: JsonCallError) -> Response {
    let msg = e.to_string();
    match e {
        JsonCallError::Codec(DispatchError::UnknownMethod(_)) => {
            error(StatusCode::NOT_FOUND, "unknown_method", &msg, None)
        }
        JsonCallError::Codec(_) => error(StatusCode::BAD_REQUEST, "bad_request", &msg, None),
        JsonCallError::Gateway(g) => {
            let may = g.may_have_run();
            let kind = g.kind();
            match g {
                GatewayError::Overloaded { retry_after, .. } => {
                    let secs = retry_after.as_millis().div_ceil(1000).max(1);
                    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, kind, &msg, None);
                    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                        r.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                    r
                }
                GatewayError::ShuttingDown => {
                    error(StatusCode::SERVICE_UNAVAILABLE, kind, &msg, None)
                }
                GatewayError::DeadlineExceeded { .. } => {
                    error(StatusCode::GATEWAY_TIMEOUT, kind, &msg, Some(may))
                }
                GatewayError::OutcomeUnknown { .. } | GatewayError::NodeLost { .. } => {
                    error(StatusCode::BAD_GATEWAY, kind, &msg, Some(may))
                }
                GatewayError::Node(CallError::UnknownMethod(_)) => {
                    error(StatusCode::NOT_FOUND, kind, &msg, None)
                }
                GatewayError::Node(CallError::BadRequest(_)) => {
                    error(StatusCode::BAD_REQUEST, kind, &msg, None)
                }
                GatewayError::Node(CallError::Rejected(_)) => {
                    error(StatusCode::SERVICE_UNAVAILABLE, kind, &msg, Some(false))
                }
                GatewayError::Node(_) => error(StatusCode::BAD_GATEWAY, kind, &msg, Some(may)),
            }
        }
    }
}
