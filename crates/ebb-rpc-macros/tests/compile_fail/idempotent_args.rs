#[ebb_rpc_macros::service]
trait BadIdempotent {
    #[idempotent(true)]
    async fn list(&self);
    #[idempotent = "yes"]
    async fn name_value(&self);
    #[idempotent]
    #[idempotent]
    async fn twice(&self);
}

fn main() {}
