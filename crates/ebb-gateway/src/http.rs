//! The gateway's HTTP side: `POST /rpc/{Service}/{method}` is ebb-http's
//! router over the pool ([`GatewayBackend`]); beside it `GET /` (the
//! dashboard), `GET /status`, `GET /metrics` and `POST /pool`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ebb_core::Nanos;
use ebb_http::{HttpConfig, HttpError, JsonBackend};
use ebb_rpc::service::BoxFuture;
use serde_json::{Value, json};

use crate::Shared;
use crate::forward::GatewayError;
use crate::ingress::JsonCallError;

/// The dashboard: one static page that reads `/status` and `/metrics`.
const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// Largest `POST /pool` body, in bytes.
const MAX_POOL_BODY_BYTES: usize = 4096;

pub fn router(shared: Arc<Shared>, http: HttpConfig) -> Router {
    let backend = GatewayBackend(Arc::clone(&shared));
    let admin = Router::new()
        .route("/", get(dashboard))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/pool", post(set_pool))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_POOL_BODY_BYTES))
        .with_state(shared);
    admin
        .merge(ebb_http::router(backend, http))
        .fallback(ebb_http::not_found)
}

/// The pool as ebb-http's JSON backend.
pub struct GatewayBackend(pub Arc<Shared>);

impl JsonBackend for GatewayBackend {
    fn call<'a>(
        &'a self,
        service: &'a str,
        method: &'a str,
        args: Value,
        deadline: Nanos,
    ) -> BoxFuture<'a, Result<Value, HttpError>> {
        Box::pin(async move {
            // A service learned from the nodes is known once the first node
            // described it; until then a call waits, within its deadline.
            let Some(ingress) = self.0.ingress_within(deadline).await else {
                return Err(HttpError::DeadlineExceeded {
                    deadline,
                    may_have_run: false,
                });
            };
            let name = ingress.served().name();
            if service != name {
                return Err(HttpError::UnknownService {
                    service: service.to_owned(),
                    known: vec![name.to_owned()],
                });
            }
            ingress
                .call_json(method, args, Some(deadline))
                .await
                .map_err(http_error)
        })
    }
}

/// The one mapping from the gateway's failures onto HTTP's.
pub fn http_error(e: JsonCallError) -> HttpError {
    let g = match e {
        JsonCallError::Codec(d) => return HttpError::from(d),
        JsonCallError::Gateway(g) => g,
    };
    let message = g.to_string();
    match g {
        GatewayError::Overloaded { retry_after, .. } => HttpError::Overloaded {
            message,
            retry_after,
        },
        GatewayError::ShuttingDown => HttpError::Overloaded {
            message,
            retry_after: Nanos::from_millis(ebb_http::DEFAULT_RETRY_AFTER_MS),
        },
        GatewayError::DeadlineExceeded { after, sent } => HttpError::DeadlineExceeded {
            deadline: after,
            may_have_run: sent,
        },
        GatewayError::OutcomeUnknown { .. } | GatewayError::NodeLost { .. } => {
            HttpError::NodeLost {
                message,
                may_have_run: true,
            }
        }
        GatewayError::Node(e) => HttpError::from(e),
    }
}

async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(DASHBOARD_HTML)
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
        Err(e) => HttpError::Internal(e.to_string()).into_response(),
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
            return HttpError::BadRequest(msg).into_response();
        }
    };
    match s.set_target(req.target) {
        Ok(t) => Json(json!({ "target": t })).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "bad_request", "message": e.to_string() })),
        )
            .into_response(),
    }
}
