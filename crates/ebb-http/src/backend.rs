//! The seam between the HTTP ingress and whatever runs the call: a node's
//! local dispatch, one RPC connection, or a gateway's pool.

use std::sync::Arc;

use ebb_core::Nanos;
use ebb_rpc::service::BoxFuture;
use serde_json::Value;

use crate::HttpError;

/// Runs one call given as JSON. The router has already checked that `args`
/// is a JSON object (an empty body arrives as `{}`) and bounded its size.
///
/// `deadline` is how long the caller will wait, from now; the router ends the
/// request with `deadline_exceeded` when it passes whether or not the
/// backend has answered, so a backend need not race its own timer (but
/// should pass the deadline on, so a node does not work for nobody).
pub trait JsonBackend: Send + Sync + 'static {
    fn call<'a>(
        &'a self,
        service: &'a str,
        method: &'a str,
        args: Value,
        deadline: Nanos,
    ) -> BoxFuture<'a, Result<Value, HttpError>>;
}

impl<B: JsonBackend + ?Sized> JsonBackend for Arc<B> {
    fn call<'a>(
        &'a self,
        service: &'a str,
        method: &'a str,
        args: Value,
        deadline: Nanos,
    ) -> BoxFuture<'a, Result<Value, HttpError>> {
        (**self).call(service, method, args, deadline)
    }
}
