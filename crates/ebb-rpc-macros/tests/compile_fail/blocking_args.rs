#[ebb_rpc_macros::service]
trait BadBlocking {
    #[blocking(true)]
    async fn list(&self);
    #[blocking]
    #[blocking]
    async fn twice(&self);
}

fn main() {}
