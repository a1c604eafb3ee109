#[ebb_rpc_macros::service]
trait Reserved {
    async fn new(&self);
    async fn transport(&self);
}

fn main() {}
