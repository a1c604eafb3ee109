#[ebb_rpc_macros::service]
trait WithType<T> {
    async fn a(&self);
}

#[ebb_rpc_macros::service]
trait WithLifetime<'a> {
    async fn a(&self);
}

#[ebb_rpc_macros::service]
trait WithWhere
where
    Self: Sized,
{
    async fn a(&self);
}

fn main() {}
