//! The seam between the HTTP ingress and whatever runs the call: a node's
//! local dispatch, one RPC connection, or a gateway's pool.

use std::sync::Arc;

use bytes::Bytes;
use ebb_core::Nanos;
use ebb_rpc::service::BoxFuture;
use serde_json::Value;

use crate::HttpError;

/// When a call came in, in two instants: an HTTP request is handed over
/// when its head has been read, and its body may come much later (a
/// client that sends it slowly, or only once told `100 Continue`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// When the HTTP server handed the request over, its body not yet
    /// read: the call's deadline counts from here, so a slow body is
    /// the caller's time.
    pub head: std::time::Instant,
    /// When its body was in: a backend that judges its own delay (a
    /// gateway's admission) counts it from here, since the wait for the
    /// body was the client's sending, not the server falling behind.
    /// `head` itself when the body was there at once (no read of the
    /// clock for it).
    pub body: std::time::Instant,
}

/// Runs one call given as JSON. The router has already checked that `args`
/// is a JSON object (an empty body arrives as `{}`) and bounded its size.
///
/// `deadline` is how long the caller will wait, counted from when the HTTP
/// server handed the request over (before its body was read); the router
/// ends the request with `deadline_exceeded` when it passes whether or not
/// the backend has answered, so a backend need not race its own timer (but
/// should pass the deadline on, so a node does not work for nobody).
pub trait JsonBackend: Send + Sync + 'static {
    fn call<'a>(
        &'a self,
        service: &'a str,
        method: &'a str,
        args: Value,
        deadline: Nanos,
    ) -> BoxFuture<'a, Result<Value, HttpError>>;

    /// Whether the router should hand this backend the request body as
    /// text ([`JsonBackend::call_text`]) rather than parsed. True for a
    /// backend that only forwards the JSON to where it is decoded anyway
    /// (a gateway in front of nodes that read JSON calls): parsing it into
    /// a [`Value`] and writing it out again, and the same for the reply,
    /// would be most of what such a call costs it.
    fn passes_text(&self) -> bool {
        false
    }

    /// Whether every call this backend runs ends by its `deadline` on its
    /// own (each wait bounded by what is left of it, the call to the node
    /// given it as its timeout), with `deadline_exceeded` or another
    /// error. The router then arms no timer of its own for the call: a
    /// timer per request is a good part of what a forwarded call costs.
    fn keeps_deadline(&self) -> bool {
        false
    }

    /// [`JsonBackend::call`] with `args` as JSON text, already checked to
    /// be one object, and the reply as JSON text. Called only when
    /// [`JsonBackend::passes_text`] says so; the default parses and calls
    /// [`JsonBackend::call`].
    ///
    /// `received`: when the HTTP server handed the request over
    /// (`deadline` counts from then) and when its body was in. A backend
    /// that judges how long a request waited (a gateway's admission) takes
    /// these rather than reading the clock again.
    ///
    /// Its future is the backend's own type, not boxed: this is the call
    /// of a forwarding backend, whose every call it is, and the router's
    /// future holds it in place (one allocation fewer per call).
    fn call_text<'a>(
        &'a self,
        service: &'a str,
        method: &'a str,
        args: Bytes,
        deadline: Nanos,
        received: Received,
    ) -> impl Future<Output = Result<Bytes, HttpError>> + Send + 'a {
        let _ = received;
        async move {
            let args = serde_json::from_slice(&args)
                .map_err(|e| HttpError::BadRequest(format!("the body is not valid JSON ({e})")))?;
            let reply = self.call(service, method, args, deadline).await?;
            crate::router::to_json(&reply)
        }
    }
}

impl<B: JsonBackend> JsonBackend for Arc<B> {
    fn call<'a>(
        &'a self,
        service: &'a str,
        method: &'a str,
        args: Value,
        deadline: Nanos,
    ) -> BoxFuture<'a, Result<Value, HttpError>> {
        (**self).call(service, method, args, deadline)
    }

    fn passes_text(&self) -> bool {
        (**self).passes_text()
    }

    fn keeps_deadline(&self) -> bool {
        (**self).keeps_deadline()
    }

    fn call_text<'a>(
        &'a self,
        service: &'a str,
        method: &'a str,
        args: Bytes,
        deadline: Nanos,
        received: Received,
    ) -> impl Future<Output = Result<Bytes, HttpError>> + Send + 'a {
        (**self).call_text(service, method, args, deadline, received)
    }
}
