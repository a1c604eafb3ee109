//! What each HTTP connection is served by: calls (`POST /rpc/{S}/{m}`)
//! straight to the ingress, everything else through the axum router.
//!
//! A call is most of what the HTTP side serves, and through the router
//! each one paid for axum's machinery: the error-rewriting and caller
//! layers (a boxed clone of the inner service and a boxed future each),
//! the route match, the path extractor (percent-decoded copies) and a
//! clone of the headers, about thirty allocations before the call began.
//! Here a call whose path is plain (two segments, no percent escapes) is
//! checked (credentials, its caller's bound) and handed to ebb-http's
//! [`ebb_http::Calls`] at once; its errors are JSON already. Any other
//! request, a call with an unusual path included, takes the router, so
//! what it answers stays the router's.
//!
//! A connection's service is hyper's ([`ebb_http::serve_http1`]), not a
//! tower one behind `axum::serve`: a request costs no clone of it, no
//! boxed body and no tower oneshot. Its future is not boxed either: hyper
//! keeps one place per connection for the request in flight, and the
//! call's future lives there, with no allocation of its own per request.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use axum::response::{IntoResponse, Response};
use ebb_http::CallBody;
use http_body_util::Either;
use hyper::body::Incoming;
use tower_service::Service;

use crate::Shared;
use crate::http::{GatewayBackend, admit_caller};

/// The calls every connection shares (one bound on requests in flight).
pub type GatewayCalls = Arc<ebb_http::Calls<GatewayBackend>>;

/// Makes one [`Front`] per accepted connection, knowing its peer.
#[derive(Clone)]
pub struct MakeFront {
    /// The pool's state is the calls' backend's ([`GatewayBackend`]), so
    /// a call takes one reference for both.
    pub calls: GatewayCalls,
    pub router: Router,
}

impl MakeFront {
    /// The service of a connection from `peer`: hyper's, over a
    /// [`Front`], so that its future is the front's own type.
    pub fn front(
        &self,
        peer: SocketAddr,
    ) -> impl hyper::service::Service<
        Request<Incoming>,
        Response = Response<CallBody>,
        Error = Infallible,
        Future: Send + 'static,
    > + Send
    + use<> {
        let front = Front {
            calls: Arc::clone(&self.calls),
            router: self.router.clone(),
            peer,
        };
        hyper::service::service_fn(move |req| front.answer(req))
    }
}

/// One connection's service.
pub struct Front {
    calls: GatewayCalls,
    router: Router,
    peer: SocketAddr,
}

/// Where a request goes, decided before its future starts.
enum Route {
    /// A plain call (split at `split`), handed over at `arrived`.
    Call {
        split: usize,
        arrived: std::time::Instant,
        calls: GatewayCalls,
    },
    /// Anything else, through the router.
    Other(Router),
}

/// Where every call's path starts.
const CALL_PREFIX: &str = "/rpc/";

/// `(service, method)` of a call the front serves itself: `POST
/// /rpc/{service}/{method}`, both non-empty, without percent escapes (what
/// they decode to is the router's to say). `None`: the router's request.
pub fn plain_call<'a>(method: &Method, path: &'a str) -> Option<(&'a str, &'a str)> {
    let split = plain_call_split(method, path)?;
    Some(split_at(path, split))
}

/// [`plain_call`]'s answer as the index of the `/` between service and
/// method, found in one pass over the path (every call's path is looked
/// at, so it is not searched once per question).
fn plain_call_split(method: &Method, path: &str) -> Option<usize> {
    if method != Method::POST {
        return None;
    }
    let rest = path.strip_prefix(CALL_PREFIX)?;
    let mut slash = None;
    for (i, b) in rest.bytes().enumerate() {
        match b {
            b'%' => return None,
            b'/' if slash.is_none() => slash = Some(i),
            b'/' => return None,
            _ => {}
        }
    }
    let slash = slash?;
    if slash == 0 || slash + 1 == rest.len() {
        return None;
    }
    Some(CALL_PREFIX.len() + slash)
}

/// The service and method of a path [`plain_call_split`] split at `split`
/// (an ASCII `/`, so both ends are character boundaries).
fn split_at(path: &str, split: usize) -> (&str, &str) {
    let service = path.get(CALL_PREFIX.len()..split).unwrap_or_default();
    let method = path.get(split + 1..).unwrap_or_default();
    (service, method)
}

impl Front {
    /// Answers one request: a plain call at once, anything else through
    /// the router.
    fn answer(
        &self,
        mut req: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<CallBody>, Infallible>> + Send + use<> {
        let route = match plain_call_split(req.method(), req.uri().path()) {
            // The call's arrival: hyper has just read its head, its body
            // is yet to be read. The one read of the clock for it on the
            // way in.
            Some(split) => Route::Call {
                split,
                arrived: std::time::Instant::now(),
                calls: Arc::clone(&self.calls),
            },
            None => {
                req.extensions_mut().insert(ConnectInfo(self.peer));
                Route::Other(self.router.clone())
            }
        };
        let peer = self.peer;
        async move {
            let (split, arrived, calls) = match route {
                Route::Call {
                    split,
                    arrived,
                    calls,
                } => (split, arrived, calls),
                Route::Other(mut router) => {
                    return router.call(req).await.map(|r| r.map(Either::Right));
                }
            };
            let (parts, body) = req.into_parts();
            // The same request's path, split above.
            let (service, method) = split_at(parts.uri.path(), split);
            let _slot = match admit_caller(shared(&calls), &parts.headers, Some(peer)) {
                Ok(slot) => slot,
                Err(refused) => return Ok(refused.into_response().map(Either::Right)),
            };
            Ok(calls
                .handle(service, method, parts.headers, body, arrived)
                .await)
        }
    }
}

/// The gateway's state behind `calls`.
fn shared(calls: &GatewayCalls) -> &Shared {
    &calls.backend().0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a plain call is served here; anything the router would decode,
    /// refuse or route elsewhere is left to it.
    #[test]
    fn only_plain_calls_skip_the_router() {
        let post = Method::POST;
        assert_eq!(plain_call(&post, "/rpc/Demo/echo"), Some(("Demo", "echo")));
        assert_eq!(plain_call(&post, "/rpc/a/b"), Some(("a", "b")));
        assert_eq!(plain_call(&post, "/rpc/Dé/mo"), Some(("Dé", "mo")));
        for path in [
            "/rpc/Demo%2Fecho",
            "/rpc/Demo/echo%",
            "/rpc//",
            "/rpc/",
            "/rpc",
            "/rpc/Demo/%65cho",
            "/rpc/Demo",
            "/rpc/Demo/",
            "/rpc//echo",
            "/rpc/Demo/echo/extra",
            "/status",
            "/rpcx/Demo/echo",
        ] {
            assert_eq!(plain_call(&post, path), None, "{path}");
        }
        assert_eq!(plain_call(&Method::GET, "/rpc/Demo/echo"), None);
    }
}
