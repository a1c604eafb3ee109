//! Sending over ebb RPC: `connections` multiplexed `TcpClient`s, used in
//! turn, each call with the method's own semantics and the run's deadline.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use ebb_core::Nanos;
use ebb_rpc::service::{BoxFuture, CallOptions, MethodInfo, ServiceCodec, Transport};
use ebb_rpc::transport::TcpClient;
use serde_json::Value;

use crate::{LoadError, Outcome, Target};

pub struct RpcTarget {
    clients: Vec<TcpClient>,
    next: AtomicUsize,
    method: &'static MethodInfo,
    /// The arguments, encoded once for the whole run.
    args: Bytes,
    options: CallOptions,
}

impl RpcTarget {
    /// Encodes the arguments (so bad ones fail before the run) and opens
    /// `connections` connections to `addr`.
    pub async fn connect(
        addr: &str,
        connections: usize,
        codec: &'static dyn ServiceCodec,
        method: &str,
        args: Value,
        deadline: Nanos,
    ) -> Result<RpcTarget, LoadError> {
        let info = codec
            .method(method)
            .map_err(|e| LoadError::Method(e.to_string()))?;
        let args = codec
            .encode_json_args(info, args)
            .map_err(|e| LoadError::Arguments(e.to_string()))?;
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            let client = TcpClient::connect(addr)
                .await
                .map_err(|e| LoadError::RpcConnect(e.to_string()))?;
            clients.push(client);
        }
        Ok(RpcTarget {
            clients,
            next: AtomicUsize::new(0),
            method: info,
            args,
            options: CallOptions::default().with_timeout(deadline),
        })
    }
}

impl Target for RpcTarget {
    fn call(&self) -> BoxFuture<'_, Outcome> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        Box::pin(async move {
            match self.clients[i]
                .call(self.method, self.args.clone(), self.options)
                .await
            {
                Ok(_) => Outcome::Ok,
                Err(e) => Outcome::from_call_error(e),
            }
        })
    }
}
