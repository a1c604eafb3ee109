#[ebb_rpc_macros::service]
trait Conditional {
    #[cfg(feature = "extra")]
    async fn extra(&self);
    async fn always(&self);
}

fn main() {}
