#[ebb_rpc_macros::service]
trait Receivers {
    async fn no_self(x: u8);
    async fn mut_self(&mut self);
    async fn by_value(self);
    async fn boxed(self: Box<Self>);
    async fn ok(&self);
}

fn main() {}
