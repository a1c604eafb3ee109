//! A valid service compiles, and its generated items have the promised
//! shapes. Written as a user depending on `ebb_rpc` directly would.

use std::sync::Arc;

use ebb_rpc::service::{LocalTransport, MethodInfo, ServiceCodec, ServiceDispatch, Transport};

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Point {
    pub x: i32,
    pub y: i32,
}

#[ebb_rpc_macros::service(crate = ::ebb_rpc)]
pub trait Geometry: std::fmt::Debug {
    /// Sum of coordinates.
    #[idempotent]
    async fn sum(&self, p: Point) -> i64;
    async fn nothing(&self);
    async fn many(&self, a: u8, b: Vec<String>, c: Option<(u8, u16)>, r#move: bool) -> Point;
}

/// A service may have no methods yet.
#[ebb_rpc_macros::service(crate = ::ebb_rpc)]
pub trait Empty {}

#[derive(Debug)]
struct Plane;

impl Geometry for Plane {
    async fn sum(&self, p: Point) -> i64 {
        i64::from(p.x) + i64::from(p.y)
    }
    async fn nothing(&self) {}
    async fn many(&self, a: u8, b: Vec<String>, _c: Option<(u8, u16)>, r#move: bool) -> Point {
        Point { x: i32::from(a), y: b.len() as i32 + i32::from(r#move) }
    }
}

fn assert_send<T: Send>(_: &T) {}

fn main() {
    const _TABLE: &[MethodInfo] = GeometryCodec::METHODS;
    let dispatch: Arc<dyn ServiceDispatch> = Arc::new(GeometryServer::new(Plane));
    let codec: &dyn ServiceCodec = &GeometryCodec;
    assert_eq!(dispatch.methods(), codec.methods());
    let transport: Arc<dyn Transport> = Arc::new(LocalTransport::new(dispatch));
    let client = GeometryClient::new(transport);
    // Client futures can be spawned on a multi-threaded runtime.
    let fut = client.sum(Point { x: 1, y: 2 });
    assert_send(&fut);
    drop(fut);
    assert!(EmptyCodec::METHODS.is_empty());
}
