//! A transport that calls a dispatcher in the same process: for tests, and
//! for a node that runs its service on a thread of the gateway.

use bytes::Bytes;

use super::{BoxFuture, CallOptions, MethodInfo, ServiceDispatch, Transport};
use crate::CallError;

/// Hands each call straight to a [`ServiceDispatch`], with the same encoding
/// as the network path, so a typed client over it exercises the real stubs.
///
/// It has no timer, so `options.timeout` is not enforced, and no failures to
/// recover from, so it never resends: each call runs exactly once.
#[derive(Clone, Debug)]
pub struct LocalTransport<D> {
    dispatch: D,
}

impl<D: ServiceDispatch> LocalTransport<D> {
    pub fn new(dispatch: D) -> LocalTransport<D> {
        LocalTransport { dispatch }
    }

    pub fn dispatcher(&self) -> &D {
        &self.dispatch
    }
}

impl<D: ServiceDispatch> Transport for LocalTransport<D> {
    fn call(
        &self,
        method: &'static MethodInfo,
        args: Bytes,
        _options: CallOptions,
    ) -> BoxFuture<'_, Result<Bytes, CallError>> {
        Box::pin(async move {
            // A method table from another service must not reach a method
            // that merely shares the id.
            let ours = self.dispatch.method(method.id);
            if method.service != self.dispatch.name() || ours.map(|m| m.name) != Some(method.name) {
                return Err(CallError::UnknownMethod {
                    method: format!(
                        "{}.{} (this transport serves {})",
                        method.service,
                        method.name,
                        self.dispatch.name()
                    ),
                });
            }
            Ok(self.dispatch.dispatch(method.id, args).await?)
        })
    }

    fn call_json_text(
        &self,
        method: &'static MethodInfo,
        args: Bytes,
        _options: CallOptions,
    ) -> BoxFuture<'_, Result<Bytes, CallError>> {
        Box::pin(async move {
            let parsed: serde_json::Value =
                serde_json::from_slice(&args).map_err(|e| CallError::BadRequest {
                    message: format!(
                        "{}.{}: arguments are not JSON: {e}",
                        method.service, method.name
                    ),
                })?;
            let reply = self.dispatch.dispatch_json_by_id(method.id, parsed).await?;
            serde_json::to_vec(&reply)
                .map(Bytes::from)
                .map_err(CallError::decoding)
        })
    }
}
