//! The ways an HTTP/JSON call can fail, and the one mapping from each onto an
//! HTTP status and a JSON body.
//!
//! The `error` field of the body is a stable kind a program can match on
//! (`ERROR_KINDS`); the `message` is for people and may change. A kind is
//! never renamed once published: add a new one instead.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ebb_core::Nanos;
use serde::Serialize;

/// What a caller is told to wait before retrying an overloaded call when the
/// backend gives no better figure.
pub const DEFAULT_RETRY_AFTER_MS: u64 = 1_000;

/// Every value the `error` field can take, for documentation and tests.
pub const ERROR_KINDS: &[&str] = &[
    "bad_request",
    "bad_arguments",
    "unauthenticated",
    "not_found",
    "unknown_service",
    "unknown_method",
    "method_not_allowed",
    "too_large",
    "overloaded",
    "deadline_exceeded",
    "node_lost",
    "remote_error",
    "internal",
];

/// Why a call made through the HTTP ingress did not produce a reply. A
/// [`crate::JsonBackend`] returns it; the router turns it into a response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The request itself is malformed (not JSON, a bad header). 400.
    #[error("{0}")]
    BadRequest(String),
    /// The JSON arguments do not fit the method's parameters. 400.
    #[error("{0}")]
    BadArguments(String),
    /// No valid credentials. 401.
    #[error("missing or invalid credentials")]
    Unauthenticated,
    /// No such route. 404.
    #[error("{0}")]
    NotFound(String),
    /// The service is not served here; `known` lists the ones that are. 404.
    #[error("unknown service `{service}` (served here: {})", known.join(", "))]
    UnknownService { service: String, known: Vec<String> },
    /// The service has no such method; the message lists its methods. 404.
    #[error("{0}")]
    UnknownMethod(String),
    /// Only POST is served on `/rpc/...`. 405.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request body is over the configured bound. 413.
    #[error("request body over the {max_bytes}-byte limit")]
    TooLarge { max_bytes: usize },
    /// Refused without running (no capacity to meet the deadline, a bound
    /// reached); retry after `retry_after`. 503 with `Retry-After`.
    #[error("{message}")]
    Overloaded { message: String, retry_after: Nanos },
    /// No reply within the deadline. For an at-most-once method that was
    /// sent, it may have run. 504.
    #[error("no reply within the {deadline} deadline")]
    DeadlineExceeded { deadline: Nanos, may_have_run: bool },
    /// The node serving the call died, restarted or became unreachable.
    /// `may_have_run` is false only when the call provably never reached
    /// it. 502.
    #[error("{message}")]
    NodeLost { message: String, may_have_run: bool },
    /// The method ran and failed (panicked), or its reply did not decode. 500.
    #[error("{0}")]
    Remote(String),
    /// A fault on this side (encoding, a bug). 500.
    #[error("{0}")]
    Internal(String),
}

impl HttpError {
    /// The stable kind in the body's `error` field.
    pub fn kind(&self) -> &'static str {
        match self {
            HttpError::BadRequest(_) => "bad_request",
            HttpError::BadArguments(_) => "bad_arguments",
            HttpError::Unauthenticated => "unauthenticated",
            HttpError::NotFound(_) => "not_found",
            HttpError::UnknownService { .. } => "unknown_service",
            HttpError::UnknownMethod(_) => "unknown_method",
            HttpError::MethodNotAllowed(_) => "method_not_allowed",
            HttpError::TooLarge { .. } => "too_large",
            HttpError::Overloaded { .. } => "overloaded",
            HttpError::DeadlineExceeded { .. } => "deadline_exceeded",
            HttpError::NodeLost { .. } => "node_lost",
            HttpError::Remote(_) => "remote_error",
            HttpError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::BadRequest(_) | HttpError::BadArguments(_) => StatusCode::BAD_REQUEST,
            HttpError::Unauthenticated => StatusCode::UNAUTHORIZED,
            HttpError::NotFound(_)
            | HttpError::UnknownService { .. }
            | HttpError::UnknownMethod(_) => StatusCode::NOT_FOUND,
            HttpError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
            HttpError::NodeLost { .. } => StatusCode::BAD_GATEWAY,
            HttpError::Remote(_) | HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the method may have run: present only where it is a question
    /// (a call that was or may have been handed to a node).
    pub fn may_have_run(&self) -> Option<bool> {
        match self {
            HttpError::DeadlineExceeded { may_have_run, .. }
            | HttpError::NodeLost { may_have_run, .. } => Some(*may_have_run),
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<Nanos> {
        match self {
            HttpError::Overloaded { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The JSON body of the response.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.kind(),
            message: self.to_string(),
            may_have_run: self.may_have_run(),
            retry_after_ms: self.retry_after().map(Nanos::as_millis),
        }
    }
}

/// The JSON body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    pub error: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub may_have_run: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub retry_after_ms: Option<u64>,
}

/// `Retry-After` is whole seconds; a shorter wait rounds up to one second so
/// a client never reads "retry at once" from an overloaded server.
fn retry_after_secs(wait: Nanos) -> u64 {
    wait.as_nanos().div_ceil(1_000_000_000).max(1)
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry = self.retry_after();
        let allow = matches!(self, HttpError::MethodNotAllowed(_));
        let mut response = (status, axum::Json(self.body())).into_response();
        let headers = response.headers_mut();
        if let Some(wait) = retry {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(wait)),
            );
        }
        if allow {
            headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Nanos::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Nanos::ZERO), 1);
        assert_eq!(retry_after_secs(Nanos::from_millis(1_000)), 1);
        assert_eq!(retry_after_secs(Nanos::from_millis(1_001)), 2);
    }
}
