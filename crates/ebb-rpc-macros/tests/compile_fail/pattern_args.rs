#[ebb_rpc_macros::service]
trait Patterns {
    async fn tuple(&self, (a, b): (u8, u8));
    async fn wild(&self, _: u8);
    async fn mutable(&self, mut x: u8);
}

fn main() {}
