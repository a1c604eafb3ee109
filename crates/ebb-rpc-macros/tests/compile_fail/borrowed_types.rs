#[ebb_rpc_macros::service]
trait Borrowed {
    async fn text(&self, s: &str);
    async fn reply(&self) -> &'static str;
    async fn opaque(&self) -> impl std::fmt::Debug;
}

fn main() {}
