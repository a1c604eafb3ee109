//! What the pool serves, once known, shared between the pool manager
//! (which admits nodes against it) and the ingress (which waits for it).

use std::sync::Arc;

use ebb_core::Nanos;
use ebb_rpc::service::{ServiceCodec, ServiceDescription};
use tokio::sync::watch;

use super::{Described, Served};

/// Where the gateway starts from: a service it was built with, or one to
/// learn from the nodes (optionally expected under a name).
#[derive(Clone)]
pub enum ServiceSource {
    Codec(&'static dyn ServiceCodec),
    Describe { expect: Option<String> },
}

impl From<&'static dyn ServiceCodec> for ServiceSource {
    fn from(c: &'static dyn ServiceCodec) -> ServiceSource {
        ServiceSource::Codec(c)
    }
}

/// What the pool serves, once known: from the start for a typed service,
/// from the first node's handshake for a described one. Shared by the pool
/// manager (which admits nodes) and the ingress (which waits for it).
#[derive(Clone)]
pub struct ServiceCell {
    tx: Arc<watch::Sender<Option<Served>>>,
    expect: Option<Arc<str>>,
}

impl ServiceCell {
    pub fn new(source: ServiceSource) -> ServiceCell {
        let (first, expect) = match source {
            ServiceSource::Codec(c) => (Some(Served::Typed(c)), None),
            ServiceSource::Describe { expect } => (None, expect.map(Arc::from)),
        };
        ServiceCell {
            tx: Arc::new(watch::channel(first).0),
            expect,
        }
    }

    pub fn get(&self) -> Option<Served> {
        *self.tx.borrow()
    }

    /// The service, waiting at most `wait` for the first node to describe
    /// it.
    pub async fn known_within(&self, wait: Nanos) -> Option<Served> {
        // Known already (every call but the first few): no receiver, no
        // timer.
        if let Some(served) = self.get() {
            return Some(served);
        }
        let mut rx = self.tx.subscribe();
        let known = rx.wait_for(Option::is_some);
        match tokio::time::timeout(std::time::Duration::from(wait), known).await {
            Ok(Ok(s)) => *s,
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// The service, however long it takes to learn (the RPC ingress opens
    /// only then, since it must answer `Describe`).
    pub async fn known(&self) -> Option<Served> {
        let mut rx = self.tx.subscribe();
        let known = rx.wait_for(Option::is_some).await;
        known.ok().and_then(|s| *s)
    }

    /// A node described itself as `node` at its handshake: `Ok` if it may
    /// serve the pool. The first node of a learned service defines it.
    pub fn admit(&self, node: ServiceDescription) -> Result<(), String> {
        if let Some(served) = self.get() {
            return served.admits(&node);
        }
        if let Some(expect) = &self.expect {
            if node.service != **expect {
                return Err(format!(
                    "the node serves {}, service.name expects {expect}",
                    node.service
                ));
            }
        }
        let table = Described::leak(node)?;
        self.tx.send_replace(Some(Served::Described(table)));
        Ok(())
    }
}
