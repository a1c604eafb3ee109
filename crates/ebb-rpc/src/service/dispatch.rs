//! The server side of the contract: what a node's RPC server holds and
//! hands every incoming call to, with JSON calls run through the same
//! binary dispatch so both kinds of call run the same code.

use std::sync::Arc;

use bytes::Bytes;

use super::{
    BoxFuture, CallContext, DeferredReply, DispatchError, JsonReply, MethodInfo, ServiceCodec,
    ServiceDescription, WriteBatch,
};

/// The server side of a service: what a node's RPC server holds and hands
/// every incoming call to. Generated as `<Trait>Server<S>`.
pub trait ServiceDispatch: Send + Sync + 'static {
    /// The service's name (the trait's name).
    fn name(&self) -> &'static str;

    /// The method table; `methods()[i].id == i`.
    fn methods(&self) -> &'static [MethodInfo];

    /// Runs method `method_id` on postcard-encoded `args` and returns the
    /// postcard-encoded reply. Does no deduplication: at-most-once is the
    /// server runtime's job, before it calls this.
    fn dispatch(&self, method_id: u16, args: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>>;

    /// [`ServiceDispatch::dispatch`] with what the server knows about the
    /// call; what a server runs for a binary request. Only a forwarding
    /// server (the gateway) needs more than the method and its arguments.
    fn dispatch_with(
        &self,
        method_id: u16,
        args: Bytes,
        _cx: CallContext,
    ) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        self.dispatch(method_id, args)
    }

    /// Whether a binary call of `method_id` is answered through
    /// [`ServiceDispatch::dispatch_deferred`] rather than a future: a
    /// forwarder's calls, whose outcome some other task learns.
    fn defers(&self, method_id: u16) -> bool {
        let _ = method_id;
        false
    }

    /// Starts a binary call that [`ServiceDispatch::defers`] and returns at
    /// once; `reply` answers it later, from any thread. What a server runs
    /// instead of [`ServiceDispatch::dispatch_with`] for such a call.
    fn dispatch_deferred(
        &self,
        method_id: u16,
        args: Bytes,
        cx: CallContext,
        reply: DeferredReply,
    ) {
        let _ = (args, cx);
        reply.send(Err(DispatchError::UnknownMethod(format!(
            "{}#{method_id}: this service answers no call deferred",
            self.name()
        ))));
    }

    /// [`ServiceDispatch::dispatch_deferred`] for one of the calls of one
    /// read: what the dispatcher writes to other connections for it (a
    /// forwarder's request to a node) may wait in `writes`, which the
    /// server flushes once the read's calls have all started.
    fn dispatch_deferred_in(
        &self,
        method_id: u16,
        args: Bytes,
        cx: CallContext,
        reply: DeferredReply,
        writes: &mut WriteBatch,
    ) {
        let _ = writes;
        self.dispatch_deferred(method_id, args, cx, reply);
    }

    /// The service's JSON adapter, if it has one (generated services do):
    /// what lets HTTP ingress, the CLI and JSON requests reach it.
    fn json_codec(&self) -> Option<&'static dyn ServiceCodec> {
        None
    }

    fn method(&self, method_id: u16) -> Option<&'static MethodInfo> {
        self.methods().get(usize::from(method_id))
    }

    /// Runs the method called `method` on a JSON object of named arguments
    /// and returns the reply as JSON, through [`ServiceDispatch::json_codec`]
    /// and the binary dispatch, so JSON and binary calls run the same code.
    fn dispatch_json(
        &self,
        method: &str,
        args: serde_json::Value,
    ) -> BoxFuture<'_, Result<serde_json::Value, DispatchError>> {
        let found = self
            .json_codec()
            .ok_or_else(|| no_json_adapter(self.name(), method))
            .and_then(|codec| Ok((codec, codec.method(method)?)));
        Box::pin(async move {
            let (codec, info) = found?;
            json_round_trip(self, codec, info, args).await
        })
    }

    /// [`ServiceDispatch::dispatch_json`] by method id: what a server runs
    /// for a request whose arguments are JSON.
    fn dispatch_json_by_id(
        &self,
        method_id: u16,
        args: serde_json::Value,
    ) -> BoxFuture<'_, Result<serde_json::Value, DispatchError>> {
        let found = match (self.json_codec(), self.method(method_id)) {
            (Some(codec), Some(info)) => Ok((codec, info)),
            (None, _) => Err(no_json_adapter(self.name(), &format!("#{method_id}"))),
            (_, None) => Err(DispatchError::UnknownMethod(format!(
                "{}#{method_id}",
                self.name()
            ))),
        };
        Box::pin(async move {
            let (codec, info) = found?;
            json_round_trip(self, codec, info, args).await
        })
    }

    /// [`ServiceDispatch::dispatch_json_by_id`] with what the server knows
    /// about the call; what a server runs for a request whose arguments are
    /// JSON. Only a forwarding server needs the context (the caller's
    /// deadline), as for [`ServiceDispatch::dispatch_with`].
    fn dispatch_json_with(
        &self,
        method_id: u16,
        args: serde_json::Value,
        _cx: CallContext,
    ) -> BoxFuture<'_, Result<serde_json::Value, DispatchError>> {
        self.dispatch_json_by_id(method_id, args)
    }

    /// [`ServiceDispatch::dispatch_json_with`], but the reply may come back
    /// still binary, with what converts it ([`JsonReply`]): what a server
    /// runs for a request whose arguments are JSON, so that it converts a
    /// large reply off its I/O loop. Generated services return it binary
    /// ([`dispatch_json_through`]); by default the reply is what
    /// `dispatch_json_with` returns, so a service that overrides the JSON
    /// methods keeps its own.
    fn dispatch_json_split(
        &self,
        method_id: u16,
        args: serde_json::Value,
        cx: CallContext,
    ) -> BoxFuture<'_, Result<JsonReply, DispatchError>> {
        let run = self.dispatch_json_with(method_id, args, cx);
        Box::pin(async move { run.await.map(JsonReply::Json) })
    }

    /// What a `Describe` request is answered with.
    fn description(&self) -> ServiceDescription {
        ServiceDescription::of(self.name(), self.methods())
    }
}

fn no_json_adapter(service: &str, method: &str) -> DispatchError {
    DispatchError::UnknownMethod(format!(
        "{service}.{method}: this service has no JSON adapter"
    ))
}

async fn json_round_trip<D: ServiceDispatch + ?Sized>(
    dispatch: &D,
    codec: &dyn ServiceCodec,
    info: &'static MethodInfo,
    args: serde_json::Value,
) -> Result<serde_json::Value, DispatchError> {
    let bytes = codec.encode_json_args(info, args)?;
    let reply = dispatch.dispatch(info.id, bytes).await?;
    codec.decode_json_reply(info, &reply)
}

impl<D: ServiceDispatch + ?Sized> ServiceDispatch for Arc<D> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn methods(&self) -> &'static [MethodInfo] {
        (**self).methods()
    }
    fn dispatch(&self, method_id: u16, args: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        (**self).dispatch(method_id, args)
    }
    fn dispatch_with(
        &self,
        method_id: u16,
        args: Bytes,
        cx: CallContext,
    ) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        (**self).dispatch_with(method_id, args, cx)
    }
    fn defers(&self, method_id: u16) -> bool {
        (**self).defers(method_id)
    }
    fn dispatch_deferred(
        &self,
        method_id: u16,
        args: Bytes,
        cx: CallContext,
        reply: DeferredReply,
    ) {
        (**self).dispatch_deferred(method_id, args, cx, reply)
    }
    fn dispatch_deferred_in(
        &self,
        method_id: u16,
        args: Bytes,
        cx: CallContext,
        reply: DeferredReply,
        writes: &mut WriteBatch,
    ) {
        (**self).dispatch_deferred_in(method_id, args, cx, reply, writes)
    }
    fn json_codec(&self) -> Option<&'static dyn ServiceCodec> {
        (**self).json_codec()
    }
    fn dispatch_json(
        &self,
        method: &str,
        args: serde_json::Value,
    ) -> BoxFuture<'_, Result<serde_json::Value, DispatchError>> {
        (**self).dispatch_json(method, args)
    }
    fn dispatch_json_by_id(
        &self,
        method_id: u16,
        args: serde_json::Value,
    ) -> BoxFuture<'_, Result<serde_json::Value, DispatchError>> {
        (**self).dispatch_json_by_id(method_id, args)
    }
    fn dispatch_json_with(
        &self,
        method_id: u16,
        args: serde_json::Value,
        cx: CallContext,
    ) -> BoxFuture<'_, Result<serde_json::Value, DispatchError>> {
        (**self).dispatch_json_with(method_id, args, cx)
    }
    fn dispatch_json_split(
        &self,
        method_id: u16,
        args: serde_json::Value,
        cx: CallContext,
    ) -> BoxFuture<'_, Result<JsonReply, DispatchError>> {
        (**self).dispatch_json_split(method_id, args, cx)
    }
    fn description(&self) -> ServiceDescription {
        (**self).description()
    }
}
