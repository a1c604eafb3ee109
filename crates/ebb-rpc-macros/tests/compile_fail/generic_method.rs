#[ebb_rpc_macros::service]
trait Generic {
    async fn with_type<T>(&self, x: T);
    async fn with_where(&self, x: u8)
    where
        u8: Copy;
    async fn with_impl(&self, x: impl std::fmt::Debug);
}

fn main() {}
