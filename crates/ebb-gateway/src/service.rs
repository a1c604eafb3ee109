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

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use ebb_core::Nanos;
use ebb_rpc::service::{DispatchError, MethodInfo, ParamInfo, ServiceCodec, ServiceDescription};
use tokio::sync::watch;

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

/// A method table built from a node's description.
///
/// The ingress traits hand out `&'static` tables, so a description is
/// leaked once per gateway when the first node describes itself: a few
/// kilobytes at most (bounded by `MAX_METHODS` and `MAX_PARAMS`).
#[derive(Debug)]
pub struct Described {
    pub name: &'static str,
    pub methods: &'static [MethodInfo],
    pub description: ServiceDescription,
}

/// Typed method tables copied with `blocking` cleared, at most: a build
/// serves a handful of services; past it a table is run as it is.
pub const MAX_NON_BLOCKING_COPIES: usize = 16;

/// `methods` with `blocking` cleared: one copy per table, leaked for the
/// process's lifetime (a few hundred bytes each).
fn non_blocking(methods: &'static [MethodInfo]) -> &'static [MethodInfo] {
    type Copies = Vec<(usize, &'static [MethodInfo])>;
    static COPIES: Mutex<Copies> = Mutex::new(Vec::new());
    if !methods.iter().any(|m| m.blocking) {
        return methods;
    }
    let key = methods.as_ptr() as usize;
    // A lookup or a push: the list is consistent at any panic point.
    let mut copies = COPIES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, copy)) = copies.iter().find(|(k, _)| *k == key) {
        return copy;
    }
    if copies.len() >= MAX_NON_BLOCKING_COPIES {
        return methods;
    }
    let copy: Vec<MethodInfo> = methods
        .iter()
        .map(|m| MethodInfo {
            blocking: false,
            ..*m
        })
        .collect();
    let copy: &'static [MethodInfo] = Box::leak(copy.into_boxed_slice());
    copies.push((key, copy));
    copy
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

impl Described {
    /// The method table of `d`, leaked for the gateway's lifetime. Ids must
    /// be `0..n` in order, as every ebb service's are; anything else is
    /// refused with what was wrong.
    pub fn leak(d: ServiceDescription) -> Result<&'static Described, String> {
        if d.methods.len() > ebb_rpc::service::MAX_METHODS {
            return Err(format!(
                "{} describes {} methods; at most {} are accepted",
                d.service,
                d.methods.len(),
                ebb_rpc::service::MAX_METHODS
            ));
        }
        for (i, m) in d.methods.iter().enumerate() {
            if usize::from(m.id) != i {
                return Err(format!(
                    "{}.{} has id {} at position {i}; ids must count from 0 in order",
                    d.service, m.name, m.id
                ));
            }
            if m.params.len() > ebb_rpc::service::MAX_PARAMS {
                return Err(format!(
                    "{}.{} has {} parameters; at most {} are accepted",
                    d.service,
                    m.name,
                    m.params.len(),
                    ebb_rpc::service::MAX_PARAMS
                ));
            }
        }
        let service = leak(&d.service);
        let methods: Vec<MethodInfo> = d
            .methods
            .iter()
            .map(|m| {
                let params: Vec<ParamInfo> = m
                    .params
                    .iter()
                    .map(|p| ParamInfo {
                        name: leak(&p.name),
                        ty: leak(&p.ty),
                    })
                    .collect();
                MethodInfo {
                    service,
                    id: m.id,
                    name: leak(&m.name),
                    idempotent: m.idempotent,
                    // The gateway only forwards: nothing blocks here.
                    blocking: false,
                    params: Box::leak(params.into_boxed_slice()),
                    returns: leak(&m.returns),
                }
            })
            .collect();
        Ok(Box::leak(Box::new(Described {
            name: service,
            methods: Box::leak(methods.into_boxed_slice()),
            description: d,
        })))
    }
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

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Served::Typed(c) => write!(f, "Typed({})", c.name()),
            Served::Described(d) => write!(f, "Described({})", d.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use ebb_rpc::service::{MethodDescription, ParamDescription};

    use super::*;

    fn greeter() -> ServiceDescription {
        let m = |id: u16, name: &str, idempotent: bool| MethodDescription {
            id,
            name: name.into(),
            idempotent,
            params: vec![ParamDescription {
                name: "name".into(),
                ty: "String".into(),
            }],
            returns: "String".into(),
        };
        ServiceDescription {
            service: "Greeter".into(),
            methods: vec![m(0, "hello", true), m(1, "sign", false)],
        }
    }

    #[test]
    fn a_described_table_keeps_ids_names_and_idempotence() {
        let d = Described::leak(greeter()).expect("ids count from 0");
        let served = Served::Described(d);
        let sign = served.method("sign").expect("sign is described");
        assert_eq!(
            (sign.id, sign.idempotent, sign.service),
            (1, false, "Greeter")
        );
        assert!(served.method_by_id(0).expect("hello").idempotent);
        let e = served.method("bye").expect_err("no such method");
        assert!(e.to_string().contains("hello, sign"), "{e}");
        assert!(served.method_by_id(2).is_err());
    }

    #[test]
    fn json_arguments_of_a_described_service_travel_as_json() {
        let served = Served::Described(Described::leak(greeter()).expect("valid"));
        let hello = served.method("hello").expect("hello");
        let (bytes, enc) = served
            .encode_json_args(hello, serde_json::json!({"name": "ann"}))
            .expect("an object");
        assert_eq!(enc, Encoding::Json);
        assert_eq!(&bytes[..], br#"{"name":"ann"}"#);
        assert!(
            served
                .encode_json_args(hello, serde_json::json!([1]))
                .is_err()
        );
        let reply = served
            .decode_json_reply(hello, br#""hello, ann""#, Encoding::Json)
            .expect("JSON text");
        assert_eq!(reply, "hello, ann");
    }

    #[test]
    fn a_node_joins_only_with_the_same_methods_and_semantics() {
        let served = Served::Described(Described::leak(greeter()).expect("valid"));
        assert_eq!(served.admits(&greeter()), Ok(()));
        let mut other = greeter();
        other.service = "Demo".into();
        assert!(
            served
                .admits(&other)
                .expect_err("another service")
                .contains("Demo")
        );
        let mut flipped = greeter();
        flipped.methods[1].idempotent = true;
        let e = served.admits(&flipped).expect_err("sign turned idempotent");
        assert!(e.contains("sign"), "{e}");
        let mut shorter = greeter();
        shorter.methods.pop();
        assert!(served.admits(&shorter).is_err());
    }

    #[test]
    fn the_first_node_defines_a_learned_service_and_later_ones_must_fit() {
        let cell = ServiceCell::new(ServiceSource::Describe {
            expect: Some("Greeter".into()),
        });
        assert!(cell.get().is_none());
        let mut demo = greeter();
        demo.service = "Demo".into();
        let e = cell
            .admit(demo.clone())
            .expect_err("not the expected service");
        assert!(e.contains("expects Greeter"), "{e}");
        assert!(cell.get().is_none(), "a refused node defines nothing");
        cell.admit(greeter())
            .expect("the first greeter defines the pool");
        assert_eq!(cell.get().map(|s| s.name()), Some("Greeter"));
        cell.admit(greeter()).expect("a second greeter fits");
        let mut flipped = greeter();
        flipped.methods[0].idempotent = false;
        assert!(cell.admit(flipped).is_err());
    }

    #[test]
    fn ids_out_of_order_are_refused() {
        let mut d = greeter();
        d.methods.swap(0, 1);
        let e = Described::leak(d).expect_err("ids out of order");
        assert!(e.contains("position 0"), "{e}");
    }
}
