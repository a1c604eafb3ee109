//! A backend that forwards each call over one RPC transport (a `TcpClient`
//! to a node or a gateway), translating JSON with the codecs this build was
//! compiled with.

use ebb_core::Nanos;
use ebb_rpc::service::{BoxFuture, CallOptions, ServiceCodec, Transport, call_json};
use serde_json::Value;

use crate::{HttpError, JsonBackend};

/// The services a backend can translate, by name. A handful at most, so a
/// list beats a map.
#[derive(Clone, Default)]
pub struct Codecs {
    codecs: Vec<&'static dyn ServiceCodec>,
}

impl Codecs {
    pub fn new(codecs: &[&'static dyn ServiceCodec]) -> Codecs {
        Codecs {
            codecs: codecs.to_vec(),
        }
    }

    pub fn get(&self, service: &str) -> Result<&'static dyn ServiceCodec, HttpError> {
        self.codecs
            .iter()
            .copied()
            .find(|c| c.name() == service)
            .ok_or_else(|| HttpError::UnknownService {
                service: service.to_owned(),
                known: self.names(),
            })
    }

    pub fn names(&self) -> Vec<String> {
        self.codecs.iter().map(|c| c.name().to_owned()).collect()
    }
}

impl std::fmt::Debug for Codecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// JSON in, one RPC out through `transport`, JSON back. The call keeps its
/// method's semantics (idempotent methods may be resent by the transport,
/// others run at most once) and carries the request's deadline.
pub struct RpcBackend<T> {
    transport: T,
    codecs: Codecs,
}

impl<T: Transport + 'static> RpcBackend<T> {
    pub fn new(transport: T, codecs: Codecs) -> RpcBackend<T> {
        RpcBackend { transport, codecs }
    }
}

impl<T: Transport + 'static> JsonBackend for RpcBackend<T> {
    fn call<'a>(
        &'a self,
        service: &'a str,
        method: &'a str,
        args: Value,
        deadline: Nanos,
    ) -> BoxFuture<'a, Result<Value, HttpError>> {
        Box::pin(async move {
            let codec = self.codecs.get(service)?;
            let options = CallOptions::default().with_timeout(deadline);
            Ok(call_json(codec, &self.transport, method, args, options).await?)
        })
    }
}
