//! What the pool serves, as the gateway knows it: a service this build was
//! compiled with ([`Served::Typed`]), or one learned from the first node's
//! `Describe` at its handshake ([`Served::Described`]), which is how a
//! user's own node binary is served without rebuilding the gateway.
//!
//! A typed service's JSON calls over RPC (`ebb call`) are turned into
//! postcard here; a described one's travel to the node as JSON, since only
//! the node has the types, and so does every HTTP call's body (`http.rs`).
//! Either way a node joins the pool only if its description fits what the
//! pool serves ([`Served::admits`]): a node of another service, or of
//! another version of the method table, never gets a call.

mod cell;
mod tables;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use ebb_rpc::service::{DispatchError, MethodInfo, ServiceCodec, ServiceDescription};

pub use cell::{ServiceCell, ServiceSource};
use tables::non_blocking;
pub use tables::{Described, MAX_NON_BLOCKING_COPIES};

/// How a forwarded call's argument bytes are encoded, and so how the node
/// is asked to run it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// The postcard argument tuple: what generated stubs send.
    Postcard,
    /// A JSON object keyed by parameter name, for the node's JSON adapter.
    Json,
}

/// The service of the pool.
#[derive(Clone, Copy)]
pub enum Served {
    Typed(&'static dyn ServiceCodec),
    Described(&'static Described),
}

impl Served {
    pub fn name(&self) -> &'static str {
        match self {
            Served::Typed(c) => c.name(),
            Served::Described(d) => d.name,
        }
    }

    pub fn methods(&self) -> &'static [MethodInfo] {
        match self {
            Served::Typed(c) => c.methods(),
            Served::Described(d) => d.methods,
        }
    }

    /// The method table as the gateway's RPC ingress runs it: every method
    /// inline (`blocking: false`). A method its nodes run on a worker thread
    /// (`#[blocking]`, like `Demo.work`) is, here, a wait for a node's
    /// reply; run on the ingress's worker threads (one per core) it would
    /// let the gateway forward only that many such calls at once, and the
    /// rest would queue before admission sees them.
    pub fn forwarded_methods(&self) -> &'static [MethodInfo] {
        match self {
            Served::Typed(c) => non_blocking(c.methods()),
            Served::Described(d) => d.methods,
        }
    }

    /// The method called `name`, or an error listing the service's methods.
    pub fn method(&self, name: &str) -> Result<&'static MethodInfo, DispatchError> {
        match self {
            Served::Typed(c) => c.method(name),
            Served::Described(d) => d.methods.iter().find(|m| m.name == name).ok_or_else(|| {
                DispatchError::UnknownMethod(format!(
                    "{}.{name} (methods of {}: {})",
                    d.name,
                    d.name,
                    d.description.method_names()
                ))
            }),
        }
    }

    /// The method with id `id`, or an error naming how many there are.
    pub fn method_by_id(&self, id: u16) -> Result<&'static MethodInfo, DispatchError> {
        self.methods().get(usize::from(id)).ok_or_else(|| {
            DispatchError::UnknownMethod(format!(
                "method id {id} of {} (it has {} methods)",
                self.name(),
                self.methods().len()
            ))
        })
    }

    /// JSON arguments as the bytes a node is sent: postcard for a typed
    /// service (checked against the types here), JSON text otherwise (the
    /// node's adapter checks them).
    pub fn encode_json_args(
        &self,
        method: &'static MethodInfo,
        args: serde_json::Value,
    ) -> Result<(Bytes, Encoding), DispatchError> {
        match self {
            Served::Typed(c) => Ok((c.encode_json_args(method, args)?, Encoding::Postcard)),
            Served::Described(_) => {
                if !args.is_object() {
                    return Err(DispatchError::BadArgs(format!(
                        "{}.{}: arguments must be a JSON object keyed by parameter name, got {args}",
                        method.service, method.name
                    )));
                }
                let text = serde_json::to_vec(&args)
                    .map_err(|e| DispatchError::BadArgs(format!("arguments as JSON: {e}")))?;
                Ok((Bytes::from(text), Encoding::Json))
            }
        }
    }

    /// A node's reply, encoded as `encoding` says, as JSON.
    pub fn decode_json_reply(
        &self,
        method: &'static MethodInfo,
        reply: &[u8],
        encoding: Encoding,
    ) -> Result<serde_json::Value, DispatchError> {
        match (self, encoding) {
            (Served::Typed(c), Encoding::Postcard) => c.decode_json_reply(method, reply),
            _ => serde_json::from_slice(reply).map_err(|e| {
                DispatchError::BadReply(format!(
                    "the JSON reply of {}.{}: {e}",
                    method.service, method.name
                ))
            }),
        }
    }

    /// What the gateway answers a `Describe` with.
    pub fn description(&self) -> ServiceDescription {
        match self {
            Served::Typed(c) => ServiceDescription::of(c.name(), c.methods()),
            Served::Described(d) => d.description.clone(),
        }
    }

    /// Whether a node that describes itself as `node` may serve this pool:
    /// the same service, with every method at the same id and with the same
    /// semantics (a node that called an at-most-once method idempotent, or
    /// moved a method, would break the callers' contract).
    pub fn admits(&self, node: &ServiceDescription) -> Result<(), String> {
        let ours = self.description();
        if node.service != ours.service {
            return Err(format!(
                "the node serves {}, the pool serves {}",
                node.service, ours.service
            ));
        }
        if node.methods.len() != ours.methods.len() {
            return Err(format!(
                "the node's {} has {} methods ({}), the pool's has {} ({})",
                ours.service,
                node.methods.len(),
                node.method_names(),
                ours.methods.len(),
                ours.method_names()
            ));
        }
        for (n, o) in node.methods.iter().zip(&ours.methods) {
            if (n.id, &n.name, n.idempotent) != (o.id, &o.name, o.idempotent) {
                return Err(format!(
                    "the node has {} (id {}, idempotent {}) where the pool has {} (id {}, idempotent {})",
                    n.signature(&node.service),
                    n.id,
                    n.idempotent,
                    o.signature(&ours.service),
                    o.id,
                    o.idempotent
                ));
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Served::Typed(c) => write!(f, "Typed({})", c.name()),
            Served::Described(d) => write!(f, "Described({})", d.name),
        }
    }
}
