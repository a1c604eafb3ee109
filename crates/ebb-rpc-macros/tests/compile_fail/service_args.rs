#[ebb_rpc_macros::service(retries = 3)]
trait UnknownArg {
    async fn a(&self);
}

#[ebb_rpc_macros::service(crate = 5)]
trait BadCratePath {
    async fn a(&self);
}

#[ebb_rpc_macros::service(crate = ::ebb_rpc, crate = ::ebb_rpc)]
trait CrateTwice {
    async fn a(&self);
}

fn main() {}
