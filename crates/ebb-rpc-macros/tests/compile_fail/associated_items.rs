#[ebb_rpc_macros::service]
trait Associated {
    type Item;
    const LIMIT: u32;
    async fn a(&self);
}

fn main() {}
