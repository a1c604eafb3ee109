//! A backend that runs calls in this process: what a node uses to serve
//! HTTP/JSON itself, beside its RPC server and on the same service instance.

use ebb_core::Nanos;
use ebb_rpc::service::{BoxFuture, ServiceDispatch};
use serde_json::Value;

use crate::{HttpError, JsonBackend};

/// Calls the service's JSON dispatch directly. HTTP callers carry no client
/// id, so there is nothing to deduplicate: each request runs once, like a
/// first RPC attempt. The deadline is enforced by the router.
pub struct DispatchBackend<D> {
    dispatch: D,
}

impl<D: ServiceDispatch> DispatchBackend<D> {
    pub fn new(dispatch: D) -> DispatchBackend<D> {
        DispatchBackend { dispatch }
    }
}

impl<D: ServiceDispatch> JsonBackend for DispatchBackend<D> {
    fn call<'a>(
        &'a self,
        service: &'a str,
        method: &'a str,
        args: Value,
        _deadline: Nanos,
    ) -> BoxFuture<'a, Result<Value, HttpError>> {
        Box::pin(async move {
            if service != self.dispatch.name() {
                return Err(HttpError::UnknownService {
                    service: service.to_owned(),
                    known: vec![self.dispatch.name().to_owned()],
                });
            }
            Ok(self.dispatch.dispatch_json(method, args).await?)
        })
    }
}
