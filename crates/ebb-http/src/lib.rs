//! ebb's HTTP/JSON ingress.
//!
//! `POST /rpc/{Service}/{method}` with a JSON object of named arguments runs
//! the method and answers with its JSON reply. Failures answer with a JSON
//! body `{"error": KIND, "message": ..., "may_have_run"?: bool,
//! "retry_after_ms"?: n}` and a status that fits (`HttpError`, the one
//! mapping). A request's deadline comes from the `ebb-deadline-ms` header.
//!
//! The router is generic over a [`JsonBackend`], so one ingress serves a
//! node's own dispatch ([`DispatchBackend`]), one RPC connection
//! ([`RpcBackend`]) or a gateway's pool.

mod backend;
mod config;
mod dispatch_backend;
mod error;
mod from_rpc;
mod json_errors;
mod router;
mod rpc_backend;
mod serve;

pub use backend::{JsonBackend, Received};
pub use config::{
    DEADLINE_HEADER, DEFAULT_DEADLINE_MS, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_IN_FLIGHT, FULL_RETRY_AFTER_MS, HttpConfig, MAX_DEADLINE_MS,
};
pub use dispatch_backend::DispatchBackend;
pub use error::{DEFAULT_RETRY_AFTER_MS, ERROR_KINDS, ErrorBody, HttpError};
pub use json_errors::{MAX_REWRITTEN_BODY_BYTES, json_errors};
pub use router::{CallBody, Calls, RPC_ROUTE, not_found, router, router_over, standalone};
pub use rpc_backend::{Codecs, RpcBackend};
pub use serve::{BoundedListener, Counted, serve, serve_http1};
