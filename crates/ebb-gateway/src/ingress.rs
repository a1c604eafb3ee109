//! The RPC ingress: the gateway as one ebb server whose methods are the
//! pool's.
//!
//! A `transport::Server` serves [`RpcIngress`]; its server session sits in
//! front of this dispatch, so a client's retry of an at-most-once call is
//! answered from the session (or waits for the running copy) and never
//! reaches a second node. What reaches [`RpcIngress::dispatch`] is a first
//! execution: method id and argument bytes, forwarded as they are. JSON
//! requests of a service learned from the nodes' `Describe` are forwarded
//! as JSON, since the gateway has no types to encode them with.

use std::sync::Arc;

use bytes::Bytes;
use ebb_core::Nanos;
use ebb_rpc::service::{
    BoxFuture, CallContext, DeferredReply, DispatchError, MethodInfo, ServiceCodec,
    ServiceDescription, ServiceDispatch, WriteBatch,
};
use serde_json::Value;

use crate::forward::{Arrival, Forwarder, GatewayError};
use crate::service::{Encoding, Served};

/// How a JSON call through the gateway can fail: before it was sent
/// (unknown method, arguments that do not fit) or on its way.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonCallError {
    #[error(transparent)]
    Codec(#[from] DispatchError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

/// The service the pool serves, as the gateway forwards it.
#[derive(Clone)]
pub struct RpcIngress {
    forwarder: Arc<Forwarder>,
    served: Served,
    /// `served`'s methods, none of them blocking ([`Served::forwarded_methods`]).
    forwarded: &'static [MethodInfo],
    default_timeout: Nanos,
}

impl RpcIngress {
    pub fn new(forwarder: Arc<Forwarder>, served: Served, default_timeout: Nanos) -> RpcIngress {
        RpcIngress {
            forwarder,
            served,
            forwarded: served.forwarded_methods(),
            default_timeout,
        }
    }

    pub fn served(&self) -> Served {
        self.served
    }

    /// A call by method name with JSON arguments: the HTTP ingress's path.
    /// `arrived`: when the ingress took it in, if before now.
    pub async fn call_json(
        &self,
        method: &str,
        args: Value,
        timeout: Option<Nanos>,
        arrived: Option<Arrival>,
    ) -> Result<Value, JsonCallError> {
        let info = self.served.method(method)?;
        let (bytes, encoding) = self.served.encode_json_args(info, args)?;
        let timeout = timeout.unwrap_or(self.default_timeout);
        let reply = self
            .forwarder
            .call_encoded(info, bytes, encoding, timeout, arrived)
            .await?;
        Ok(self.served.decode_json_reply(info, &reply, encoding)?)
    }
}

impl ServiceDispatch for RpcIngress {
    fn name(&self) -> &'static str {
        self.served.name()
    }

    fn methods(&self) -> &'static [MethodInfo] {
        self.served.methods()
    }

    /// Every method runs inline here, also those the nodes run on a worker
    /// thread: forwarding one is a wait for the node's reply, and on the
    /// server's worker threads (one per core) only that many calls would be
    /// forwarded at once.
    fn method(&self, method_id: u16) -> Option<&'static MethodInfo> {
        self.forwarded.get(usize::from(method_id))
    }

    /// A typed service's JSON requests (`ebb call`) are turned into binary
    /// ones here; a described service has no codec here, and its JSON
    /// requests go to the nodes as they are.
    fn json_codec(&self) -> Option<&'static dyn ServiceCodec> {
        match self.served {
            Served::Typed(c) => Some(c),
            Served::Described(_) => None,
        }
    }

    /// A call with no context of its own gets the gateway's default
    /// deadline; the RPC server always brings the caller's.
    fn dispatch(&self, method_id: u16, args: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        self.dispatch_with(method_id, args, CallContext::new(self.default_timeout))
    }

    /// The caller's own deadline (the time it had left when it sent the
    /// call) is what admission checks and what the node is given, so a
    /// caller in a hurry is refused at once rather than queued past the
    /// point where it stopped listening.
    fn dispatch_with(
        &self,
        method_id: u16,
        args: Bytes,
        cx: CallContext,
    ) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        Box::pin(async move {
            let info = self.served.method_by_id(method_id)?;
            let arrived = self.forwarder.arrival(&cx).map(Arrival::whole);
            let postcard = Encoding::Postcard;
            let call = self
                .forwarder
                .call_encoded(info, args, postcard, cx.timeout, arrived);
            Ok(call.await?)
        })
    }

    /// Every binary call of a known method is started here and answered
    /// by the task that reads the node's reply ([`Forwarder::start`]);
    /// [`RpcIngress::dispatch_with`] is the same call as a future.
    fn defers(&self, method_id: u16) -> bool {
        self.forwarded.get(usize::from(method_id)).is_some()
    }

    fn dispatch_deferred(
        &self,
        method_id: u16,
        args: Bytes,
        cx: CallContext,
        reply: DeferredReply,
    ) {
        match self.served.method_by_id(method_id) {
            Ok(info) => self.forwarder.start(info, args, cx, reply),
            Err(e) => reply.send(Err(e)),
        }
    }

    /// The calls of one read go to their nodes in one write per node
    /// connection, flushed by the server once all have started.
    fn dispatch_deferred_in(
        &self,
        method_id: u16,
        args: Bytes,
        cx: CallContext,
        reply: DeferredReply,
        writes: &mut WriteBatch,
    ) {
        match self.served.method_by_id(method_id) {
            Ok(info) => self.forwarder.start_in(info, args, cx, reply, writes),
            Err(e) => reply.send(Err(e)),
        }
    }

    fn dispatch_json(
        &self,
        method: &str,
        args: Value,
    ) -> BoxFuture<'_, Result<Value, DispatchError>> {
        let method = method.to_owned();
        Box::pin(async move {
            self.call_json(&method, args, None, None)
                .await
                .map_err(JsonCallError::into_dispatch)
        })
    }

    fn dispatch_json_by_id(
        &self,
        method_id: u16,
        args: Value,
    ) -> BoxFuture<'_, Result<Value, DispatchError>> {
        self.dispatch_json_with(method_id, args, CallContext::new(self.default_timeout))
    }

    /// A JSON request over ebb RPC (`ebb call`) is held to its caller's
    /// deadline, as a binary one is ([`RpcIngress::dispatch_with`]).
    fn dispatch_json_with(
        &self,
        method_id: u16,
        args: Value,
        cx: CallContext,
    ) -> BoxFuture<'_, Result<Value, DispatchError>> {
        Box::pin(async move {
            let info = self.served.method_by_id(method_id)?;
            let arrived = self.forwarder.arrival(&cx).map(Arrival::whole);
            self.call_json(info.name, args, Some(cx.timeout), arrived)
                .await
                .map_err(JsonCallError::into_dispatch)
        })
    }

    fn description(&self) -> ServiceDescription {
        self.served.description()
    }
}

impl JsonCallError {
    fn into_dispatch(self) -> DispatchError {
        match self {
            JsonCallError::Codec(d) => d,
            JsonCallError::Gateway(g) => g.into(),
        }
    }
}
