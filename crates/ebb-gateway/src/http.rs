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
use bytes::Bytes;
use ebb_core::Nanos;
use ebb_http::{HttpConfig, HttpError, JsonBackend, Received};
use ebb_rpc::service::BoxFuture;
use serde_json::{Value, json};

use crate::Shared;
use crate::auth::Caller;
use crate::forward::{Arrival, GatewayError};
use crate::front::GatewayCalls;
use crate::ingress::{JsonCallError, RpcIngress};
use crate::service::{Encoding, Served};

/// The dashboard: one static page that reads `/status` and `/metrics`.
const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// Largest `POST /pool` body, in bytes.
const MAX_POOL_BODY_BYTES: usize = 4096;

/// Everything on one address.
pub fn router(shared: Arc<Shared>, http: HttpConfig) -> Router {
    let calls = gateway_calls(&shared, http);
    let (all, _) = routers(shared, calls, false);
    all
}

/// The HTTP ingress's calls over the pool, shared by the router and the
/// front (`front.rs`), so their bound on requests in flight is one.
pub fn gateway_calls(shared: &Arc<Shared>, http: HttpConfig) -> GatewayCalls {
    Arc::new(ebb_http::Calls::new(
        GatewayBackend(Arc::clone(shared)),
        http,
    ))
}

/// The ingress router and, when `separate_admin`, the admin one (`/`,
/// `/status`, `/metrics`, `/pool`) apart from it; otherwise one router
/// serves both. Calls pass [`guard_calls`] (credentials, the caller's
/// bound); `POST /pool` needs credentials when tokens are configured.
/// Every error, whoever wrote it, is a JSON body with an `error` kind
/// (`ebb_http::json_errors`).
pub fn routers(
    shared: Arc<Shared>,
    calls: GatewayCalls,
    separate_admin: bool,
) -> (Router, Option<Router>) {
    let pool = post(set_pool).layer(axum::middleware::from_fn_with_state(
        Arc::clone(&shared),
        require_token,
    ));
    let admin = Router::new()
        .route("/", get(dashboard))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/pool", pool)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_POOL_BODY_BYTES))
        .with_state(Arc::clone(&shared));
    let calls = ebb_http::router_over(calls)
        .layer(axum::middleware::from_fn_with_state(shared, guard_calls));
    // Last, so it covers the fallback and axum's own answers (a 405 on
    // `/pool`, a body over the limit) as well as the routes.
    let json = || axum::middleware::from_fn(ebb_http::json_errors);
    if separate_admin {
        let admin = admin.fallback(ebb_http::not_found).layer(json());
        (
            calls.fallback(ebb_http::not_found).layer(json()),
            Some(admin),
        )
    } else {
        let all = admin.merge(calls).fallback(ebb_http::not_found);
        (all.layer(json()), None)
    }
}

fn authorization(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// A call gets in with a valid bearer token (when tokens are configured)
/// and while its caller (the token, or the peer address without tokens)
/// has fewer than its bound in flight; otherwise 401 or 503 at once,
/// before it reaches the pool.
async fn guard_calls(
    State(s): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let _slot = match admit_caller(&s, req.headers(), peer) {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    next.run(req).await
}

/// [`guard_calls`]' check, also made by the front for the calls it serves
/// itself: the caller's place (held until the call ends), or why it is
/// refused (counted in the metrics).
pub(crate) fn admit_caller(
    s: &Shared,
    headers: &axum::http::HeaderMap,
    peer: Option<std::net::SocketAddr>,
) -> Result<crate::auth::CallerSlot, HttpError> {
    let caller = match &s.tokens {
        Some(tokens) => match tokens.check(authorization(headers)) {
            Some(i) => Caller::Token(i),
            None => {
                s.forwarder.metrics().unauthenticated();
                return Err(HttpError::Unauthenticated);
            }
        },
        None => peer.map_or(Caller::Unknown, |p| Caller::Peer(p.ip())),
    };
    s.callers.enter(caller).map_err(|e| {
        s.forwarder.metrics().caller_refused();
        HttpError::Overloaded {
            message: e.to_string(),
            retry_after: Nanos::from_millis(ebb_http::FULL_RETRY_AFTER_MS),
        }
    })
}

/// Changing the pool needs a bearer token when tokens are configured.
async fn require_token(
    State(s): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(tokens) = &s.tokens {
        if tokens.check(authorization(req.headers())).is_none() {
            s.forwarder.metrics().unauthenticated();
            return HttpError::Unauthenticated.into_response();
        }
    }
    next.run(req).await
}

/// The pool as ebb-http's JSON backend.
pub struct GatewayBackend(pub Arc<Shared>);

impl GatewayBackend {
    /// The pool's service, once known (a service learned from the nodes is
    /// known once the first node described it; until then a call waits,
    /// within its deadline), if it is `service`.
    async fn served(&self, service: &str, deadline: Nanos) -> Result<Served, HttpError> {
        let Some(served) = self.0.service.known_within(deadline).await else {
            return Err(HttpError::DeadlineExceeded {
                deadline,
                may_have_run: false,
            });
        };
        let name = served.name();
        if service != name {
            return Err(HttpError::UnknownService {
                service: service.to_owned(),
                known: vec![name.to_owned()],
            });
        }
        Ok(served)
    }
}

impl JsonBackend for GatewayBackend {
    fn call<'a>(
        &'a self,
        service: &'a str,
        method: &'a str,
        args: Value,
        deadline: Nanos,
    ) -> BoxFuture<'a, Result<Value, HttpError>> {
        Box::pin(async move {
            // The request reached the gateway: what waits from here on
            // (learning a service, a busy core) is the gateway's own delay.
            let arrived = Some(Arrival::whole(self.0.forwarder.now()));
            let served = self.served(service, deadline).await?;
            let forwarder = Arc::clone(&self.0.forwarder);
            RpcIngress::new(forwarder, served, self.0.default_deadline)
                .call_json(method, args, Some(deadline), arrived)
                .await
                .map_err(http_error)
        })
    }

    /// Every node reads JSON calls (its generated adapter decodes them
    /// into the method's types), so the body is forwarded as it came and
    /// the node's JSON reply is the response: the gateway parses neither.
    fn passes_text(&self) -> bool {
        true
    }

    /// Every wait of a call here is bounded by its deadline: learning the
    /// service (`known_within`), a place in the held FIFO, and the node
    /// call, whose client ends it at the timeout it is given (what is left
    /// of the deadline). So the router arms no timer of its own.
    fn keeps_deadline(&self) -> bool {
        true
    }

    async fn call_text<'a>(
        &'a self,
        service: &'a str,
        method: &'a str,
        args: Bytes,
        deadline: Nanos,
        received: Received,
    ) -> Result<Bytes, HttpError> {
        // Its deadline counts from hyper's hand-over of its head; the
        // gateway's own delay, which admission judges, from when its body
        // was in: a client's slow body is not the gateway falling behind.
        // No read of the clock, and for a body that came with its head
        // (most calls') one conversion.
        let at = self.0.clock.at(received.head);
        let complete = if received.body == received.head {
            at
        } else {
            self.0.clock.at(received.body)
        };
        let arrived = Some(Arrival { at, complete });
        let served = self.served(service, deadline).await?;
        let info = served.method(method).map_err(HttpError::from)?;
        self.0
            .forwarder
            .call_encoded(info, args, Encoding::Json, deadline, arrived)
            .await
            .map_err(|e| http_error(JsonCallError::Gateway(e)))
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

/// Unknown keys are refused: a typo such as `{"targte": 3}` or a key this
/// version does not know must not look like a pool change that happened.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolRequest {
    target: usize,
    /// Blocking calls each node runs at once (scale up); absent: as it is.
    #[serde(default)]
    capacity: Option<u32>,
}

async fn set_pool(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let req: PoolRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!(
                "expected {{\"target\": N}} or {{\"target\": N, \"capacity\": C}} with whole numbers and no other key: {e}"
            );
            return HttpError::BadRequest(msg).into_response();
        }
    };
    match s
        .set_pool(req.target, req.capacity)
        .map(|t| (t, req.capacity))
    {
        Ok((t, None)) => Json(json!({ "target": t })).into_response(),
        Ok((t, Some(c))) => Json(json!({ "target": t, "capacity": c })).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "bad_request", "message": e.to_string() })),
        )
            .into_response(),
    }
}
