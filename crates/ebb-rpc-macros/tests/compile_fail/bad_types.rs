#[ebb_rpc_macros::service]
trait BadTypes {
    async fn text(&self, s: &str);
    async fn reply(&self) -> &'static str;
    async fn opaque(&self) -> impl std::fmt::Debug;
    async fn itself(&self, other: Option<Box<Self>>);
}

fn main() {}
