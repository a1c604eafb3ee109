//! A node for the transport's tests whose replies leave together: its one
//! method, `gather`, answers with its arguments once a set number of calls
//! are running, so a test can show what the client or the server does with
//! replies that arrive (or leave) in one read (or write).

use bytes::Bytes;
use tokio::sync::Barrier;

use crate::service::{BoxFuture, DispatchError, MethodInfo, ServiceDispatch};

/// The service's one method.
pub(crate) static METHODS: [MethodInfo; 1] = [MethodInfo {
    service: "Test",
    id: 0,
    name: "gather",
    idempotent: false,
    blocking: false,
    params: &[],
    returns: "Vec<u8>",
}];

/// Answers each `gather` call once `calls` of them are running.
pub(crate) struct Gather(Barrier);

impl Gather {
    pub(crate) fn new(calls: usize) -> Gather {
        Gather(Barrier::new(calls))
    }
}

impl ServiceDispatch for Gather {
    fn name(&self) -> &'static str {
        "Test"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &METHODS
    }
    fn dispatch(&self, _: u16, args: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        Box::pin(async move {
            self.0.wait().await;
            Ok(args)
        })
    }
}
