//! Calls whose arguments are JSON: parsed here, run through the service's
//! JSON adapter, the reply written back as JSON text. A reply the service
//! hands back still binary and larger than [`MAX_INLINE_JSON_BYTES`] is
//! converted on a worker thread when the call runs on the I/O loop: small
//! arguments can ask for a large reply (`Demo.get` of a 10 MB value), and
//! converting it inline would hold up every frame of the connection,
//! pongs included.

use std::panic::AssertUnwindSafe;

use bytes::Bytes;

use super::MAX_INLINE_JSON_BYTES;
use crate::service::{BoxFuture, CallContext, DispatchError, JsonReply, ServiceDispatch};
use crate::transport::workers::{Job, Workers};

/// Runs a JSON call; the reply is JSON text. `workers`: the call runs on
/// the I/O loop, and a large reply is converted on one of these.
pub(super) fn dispatch_json<'a, D: ServiceDispatch>(
    dispatch: &'a D,
    workers: Option<&'a Workers>,
    method: u16,
    args: Bytes,
    cx: CallContext,
) -> BoxFuture<'a, Result<Bytes, DispatchError>> {
    let parsed = serde_json::from_slice::<serde_json::Value>(&args)
        .map_err(|e| DispatchError::BadArgs(format!("arguments are not JSON: {e}")));
    Box::pin(async move {
        let reply = dispatch.dispatch_json_split(method, parsed?, cx).await?;
        match workers {
            Some(workers) if reply.binary_len() > MAX_INLINE_JSON_BYTES => {
                convert_on_worker(workers, reply).await
            }
            _ => reply.into_text(),
        }
    })
}

/// Converts `reply` on a worker thread while the I/O loop serves other
/// frames; only if no worker thread can start does it convert here.
async fn convert_on_worker(workers: &Workers, reply: JsonReply) -> Result<Bytes, DispatchError> {
    let (done, converted) = tokio::sync::oneshot::channel();
    let job: Job = Box::pin(async move {
        // A panic must not end the worker thread, and the call must end.
        let text =
            std::panic::catch_unwind(AssertUnwindSafe(|| reply.into_text())).unwrap_or_else(|_| {
                Err(DispatchError::EncodeReply(
                    "converting the reply to JSON panicked".into(),
                ))
            });
        let _ = done.send(text);
    });
    if let Err(job) = workers.run(&tokio::runtime::Handle::current(), job) {
        job.await;
    }
    converted.await.unwrap_or_else(|_| {
        Err(DispatchError::EncodeReply(
            "the worker converting the reply to JSON ended".into(),
        ))
    })
}
