//! A backend that runs calls in this process: what a node uses to serve
//! HTTP/JSON itself, beside its RPC server and on the same service instance.

use std::sync::Arc;

use ebb_core::Nanos;
use ebb_rpc::service::{BoxFuture, ServiceDispatch};
use ebb_rpc::transport::workers::{Job, Workers};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::{HttpError, JsonBackend};

/// Calls the service's JSON dispatch directly. HTTP callers carry no client
/// id, so there is nothing to deduplicate: each request runs once, like a
/// first RPC attempt. The deadline is enforced by the router.
///
/// With worker threads (`with_workers`), methods marked `#[blocking]` run
/// on them, as the RPC server runs them, so a long `work` does not stall
/// the I/O thread; without, every method runs on the caller's task.
pub struct DispatchBackend<D> {
    dispatch: Arc<D>,
    workers: Option<Workers>,
}

impl<D: ServiceDispatch> DispatchBackend<D> {
    pub fn new(dispatch: D) -> DispatchBackend<D> {
        DispatchBackend {
            dispatch: Arc::new(dispatch),
            workers: None,
        }
    }

    /// Runs `#[blocking]` methods on `workers` (at most their number at
    /// once; the rest wait for a free thread).
    pub fn with_workers(mut self, workers: Workers) -> DispatchBackend<D> {
        self.workers = Some(workers);
        self
    }

    fn is_blocking(&self, method: &str) -> bool {
        self.dispatch
            .methods()
            .iter()
            .any(|m| m.name == method && m.blocking)
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
            let Some(workers) = self.workers.as_ref().filter(|_| self.is_blocking(method)) else {
                return Ok(self.dispatch.dispatch_json(method, args).await?);
            };
            let (reply, replied) = oneshot::channel();
            let dispatch = Arc::clone(&self.dispatch);
            let method = method.to_owned();
            let job: Job = Box::pin(async move {
                let _ = reply.send(dispatch.dispatch_json(&method, args).await);
            });
            // No worker thread could start: run it here rather than lose it.
            if let Err(job) = workers.run(&tokio::runtime::Handle::current(), job) {
                job.await;
            }
            match replied.await {
                Ok(outcome) => Ok(outcome?),
                Err(_) => Err(HttpError::Remote(
                    "the method's worker thread ended without a reply (the method panicked)".into(),
                )),
            }
        })
    }
}
