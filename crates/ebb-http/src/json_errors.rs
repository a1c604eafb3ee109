//! Every error response as JSON, including the ones no handler wrote.
//!
//! axum answers some requests before any handler of ours runs: a method a
//! route does not serve (405, empty body), a body over `DefaultBodyLimit`
//! (413, plain text), an extractor's rejection (400/415/422, plain text).
//! A client that matches on the `error` kind of [`crate::ErrorBody`] would
//! find nothing there, so this layer rewrites any error response that is
//! not JSON already into one, keeping its status and headers (`Allow` on a
//! 405 among them). Responses that are JSON, and successes, pass untouched.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::ErrorBody;

/// Most bytes of a non-JSON error body kept as the JSON one's message.
pub const MAX_REWRITTEN_BODY_BYTES: usize = 1_024;

/// The stable kind for a status that only axum produced.
fn kind_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "unauthenticated",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => "overloaded",
        StatusCode::GATEWAY_TIMEOUT => "deadline_exceeded",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    }
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Middleware (`axum::middleware::from_fn(json_errors)`): an error response
/// that is not JSON becomes `{"error": KIND, "message": ...}` with the same
/// status and headers. The message is the original body if it had one
/// (axum's rejections explain themselves), else what the status says, with
/// the allowed methods for a 405.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REWRITTEN_BODY_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let allow = parts
        .headers
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // axum may add `Allow` outside this layer: the header says it then.
    let message = match (text.is_empty(), status, allow) {
        (false, ..) => text,
        (true, StatusCode::METHOD_NOT_ALLOWED, Some(allow)) => {
            format!("{method} is not served on {path}; allowed: {allow}")
        }
        (true, StatusCode::METHOD_NOT_ALLOWED, None) => {
            format!("{method} is not served on {path} (the Allow header names what is)")
        }
        (true, ..) => format!(
            "{method} {path}: {}",
            status.canonical_reason().unwrap_or("error")
        ),
    };
    let body = ErrorBody {
        error: kind_of(status),
        message,
        may_have_run: None,
        retry_after_ms: None,
    };
    let Ok(json) = serde_json::to_vec(&body) else {
        // A struct of strings always serializes; keep the status anyway.
        return Response::from_parts(parts, Body::empty());
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_given_is_a_published_one() {
        for s in [
            400, 401, 404, 405, 408, 413, 415, 422, 429, 500, 502, 503, 504,
        ] {
            let status = StatusCode::from_u16(s).expect("a valid status");
            let kind = kind_of(status);
            assert!(crate::ERROR_KINDS.contains(&kind), "{s} -> {kind}");
        }
    }
}
